//! Records of large webhooks are not kept in memory once written (a test
//! binary of its own: it counts the heap, and no other test may allocate
//! meanwhile).
//!
//! sled stores a value over ~128 KiB as a blob and weighed such a page in
//! its cache by the blob's pointer alone (a few dozen bytes), across 256
//! shards that each evict only after 64 accesses: every page of large
//! records stayed in memory, and a server taking 900 KB webhooks grew by
//! what it wrote (3.6 GiB in 10 s under `wrk`; docs/performance.md).

use hookflow_model::time::{now_millis, Timestamp};
use hookflow_store::{ExecutionRecord, RunStatus, SledStore, Store};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the same
// arguments; the count is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller promised for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller promised for `ptr`, `layout` and `new_size`.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A finished record holding `len` letters LZ4 cannot shrink much (as
/// with real payloads of this size: signed documents, images in base64).
fn large_record(state: &mut u64, len: usize) -> ExecutionRecord {
    let text: String = (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            char::from(b'a' + (*state % 26) as u8)
        })
        .collect();
    let ms = now_millis();
    ExecutionRecord {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: "large".into(),
        version: "v".into(),
        status: RunStatus::Resolved,
        started_at: Timestamp(ms),
        finished_at: Some(Timestamp(ms)),
        started_ms: ms,
        trigger: None,
        jobs: Vec::new(),
        response: None,
        retry_of: None,
        error: Some(text),
    }
}

/// Memory levels off: 300 records of 900 KB after 150 others (~165 MB of
/// pages once compressed) leave the heap where the first 150 did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_pages_of_large_records_leave_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("open");
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut last = String::new();
    let mut write = |n: usize| {
        for _ in 0..n {
            let record = large_record(&mut state, 900_000);
            last = record.id.clone();
            store.finish(record, false);
        }
    };
    write(150);
    store.flush().await.expect("flush");
    let before = LIVE.load(Ordering::Relaxed);
    write(300);
    store.flush().await.expect("flush");
    let after = LIVE.load(Ordering::Relaxed);
    let kept = store.get(&last).expect("read").expect("the last record");
    assert_eq!(kept.error.map(|e| e.len()), Some(900_000));
    let grown = after.saturating_sub(before) >> 10;
    assert!(
        grown < 32 * 1024,
        "the heap grew by {grown} KiB over 300 records of 900 KB ({} KiB before)",
        before >> 10
    );
}
