//! Tests of the embedded store's own workings (the contract's promises are
//! in the conformance suite), and damage for the suite to find.

use super::*;
use crate::contract::Accepted;
use crate::record::{ExecutionRecord, RunStatus};
use hookflow_model::time::{now_millis, Timestamp};

/// Writes garbage over a run's head (`finished`: over the page holding its
/// finished record) in the closed store in `dir`, as damage would.
pub(crate) fn damage_for_tests(dir: &Path, id: &str, finished: bool) {
    let db = once_let_go(|| sled::open(dir.join("db")));
    let runs = db.open_tree("runs").expect("runs");
    let id = id_bytes(id).expect("an execution id");
    let key = if finished {
        runs.scan_prefix(pages::bucket_prefix(pages::bucket_of(&id)))
            .keys()
            .filter_map(Result::ok)
            .next()
            .expect("a page of that second")
            .to_vec()
    } else {
        let index = queued::rebuild(&runs).expect("rebuild").index;
        let run = index.runs.get(&id).expect("a queued run").clone();
        queued::page_key(queued::QUEUE, run.page).to_vec()
    };
    runs.insert(key, &b"\xc1\xc1 not a value"[..])
        .expect("write");
    db.flush().expect("flush");
}

/// Opens a store just closed: sled lets go of its file lock once its
/// threads have stopped, so `open` is tried again for a while (bounded).
fn once_let_go<T, E: std::fmt::Display>(open: impl Fn() -> Result<T, E>) -> T {
    let mut tries = 0;
    loop {
        match open() {
            Ok(opened) => return opened,
            Err(_) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open the closed store: {e}"),
        }
    }
}

/// Runs accepted in one writer turn share one queue page (one sled
/// insert for all of them), and their page goes once they all finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_accepted_together_share_a_queue_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open(dir.path()).expect("open"));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let run = a_run();
            let record = run.record.clone();
            store.accept(run).await.expect("accepted");
            record
        }));
    }
    let mut records = Vec::new();
    for t in tasks {
        records.push(t.await.expect("join"));
    }
    let pages = lock(&store.queued).pages.len();
    assert!(
        pages < 32,
        "{pages} queue pages for 32 runs accepted together"
    );
    for mut r in records {
        r.status = RunStatus::Resolved;
        r.finished_at = Some(Timestamp(now_millis()));
        store.finish(r, true);
    }
    store.flush().await.expect("flush");
    assert!(lock(&store.queued).pages.is_empty());
    let left = store.runs.scan_prefix([queued::QUEUE]).count()
        + store.runs.scan_prefix([queued::DONE]).count();
    assert_eq!(left, 0, "finished pages and their bitmaps are gone");
}

/// A link to a retry whose record is gone (a retention pass that stopped
/// half-way, a record set aside) goes at the next pass; one to a retry
/// still kept stays.
#[test]
fn retention_sweeps_links_to_retries_without_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("open");
    let old = now_millis() - 60_000;
    let id_at = |ms: u64| {
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, 0);
        *uuid::Uuid::new_v7(ts).as_bytes()
    };
    let (run, lost, young) = (id_at(old), id_at(old + 1_000), id_at(now_millis() + 60_000));
    for retry in [lost, young] {
        store
            .runs
            .insert(layout::retry_key(&run, &retry), &[][..])
            .expect("link");
    }
    store.retain(now_millis()).expect("retention");
    let left: Vec<_> = store
        .retry_links_for_tests()
        .into_iter()
        .map(|(_, retry)| retry)
        .collect();
    assert_eq!(
        left,
        vec![young],
        "the lost retry's link goes; one that started after the cutoff stays"
    );
}

/// Copies a folder's files (one level of folders below it).
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A bit flipped anywhere in sled's file is an error of the folder (with
/// what to do) or a store that opens, never a panic. Before, sled's recovery panicked on
/// some pages ("tried to serialize Uninitialized") and took the process
/// down at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_the_data_file_never_panics_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Arc::new(SledStore::open(dir.path()).expect("open"));
        let mut tasks = Vec::new();
        // Runs as the server writes them under load: most settled before
        // their acknowledgement (accepted finished), some left queued.
        for n in 0..12_000u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut accepted = a_run();
                accepted.record.error = Some(format!("run {n}"));
                accepted.input.trigger.raw_body =
                    format!("{{\"order\":{{\"id\":\"o-{n}\"}},\"status\":\"SUCCESS\"}}");
                accepted.input.vars = serde_json::json!({ "order_id": format!("o-{n}"), "n": n });
                let record = accepted.record.clone();
                if n % 10 == 0 {
                    store.accept(accepted).await.expect("accepted");
                } else {
                    let mut finished = record;
                    finished.status = RunStatus::Resolved;
                    finished.finished_at = Some(Timestamp(now_millis()));
                    store
                        .accept_finished(accepted, finished)
                        .await
                        .expect("accepted finished");
                }
            }));
        }
        for t in tasks {
            t.await.expect("join");
        }
        store.put_version("v", "title: w").expect("a version");
        store.flush().await.expect("flush");
    }
    // sled lets go of its files once its threads stop.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let file = dir.path().join("db").join("db");
    let len = std::fs::metadata(&file).expect("the data file").len();
    let (mut opened, mut refused) = (0, 0);
    for part in 1..40u64 {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_folder(dir.path(), copy.path());
        let damaged = copy.path().join("db").join("db");
        let mut bytes = std::fs::read(&damaged).expect("read");
        let at = usize::try_from(len * part / 40).expect("offset");
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 0x01;
        }
        std::fs::write(&damaged, bytes).expect("write");
        // A panic here fails the test.
        match SledStore::open(copy.path()) {
            Ok(_) => opened += 1,
            Err(e) => {
                assert!(
                    e.to_string().contains("is damaged and cannot be read"),
                    "{e}"
                );
                refused += 1;
            }
        }
    }
    eprintln!("of 39 copies of {len} bytes with a bit flipped, {opened} opened and {refused} were refused");
}

pub(super) fn a_run() -> Accepted {
    let ms = now_millis();
    Accepted {
        record: ExecutionRecord {
            id: uuid::Uuid::now_v7().to_string(),
            workflow: "w".into(),
            version: "v".into(),
            status: RunStatus::Queued,
            started_at: Timestamp(ms),
            finished_at: None,
            started_ms: ms,
            trigger: None,
            jobs: Vec::new(),
            response: None,
            retry_of: None,
            error: None,
        },
        input: RunInput::default(),
        idempotency: None,
    }
}

/// A write that fails (a full disk) marks the store overloaded: new
/// webhooks are refused (503) for a few seconds instead of each failing in
/// turn; then one is let through, and once a write is on disk again the
/// store takes requests. Before, every request went on failing (500), the
/// log took two lines each, and `/healthz` said ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_refuses_new_work_for_a_while_then_tries_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("open");
    store.accept(a_run()).await.expect("accepted");
    assert!(!store.overloaded());
    store.fail_writes.store(true, Ordering::SeqCst);
    assert!(store.accept(a_run()).await.is_err(), "the disk is full");
    assert!(store.overloaded(), "refusing while the disk is full");
    assert!(!store.healthy());
    store.fail_writes.store(false, Ordering::SeqCst);
    let clock = std::time::Instant::now();
    while store.overloaded() {
        assert!(
            clock.elapsed() < std::time::Duration::from_secs(10),
            "never let a request try again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(clock.elapsed() >= std::time::Duration::from_secs(3));
    // Not healthy until a write is on disk again, with no request trying.
    assert!(!store.healthy(), "healthy before any write went through");
    store.accept(a_run()).await.expect("accepted again");
    assert!(!store.overloaded());
    assert!(store.healthy());
}

/// Runs written over many of sled's log segments read back whole after the
/// store is closed and opened again. The segment buffers are reused from
/// one segment to the next (vendor/sled: a used buffer still holds the
/// bytes of an older segment); none of those may reach the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_over_many_log_segments_read_back_after_a_restart() {
    // ~7 KiB of text that LZ4 cannot shrink much, different for each run.
    fn body(n: u64) -> String {
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..7 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
                        [(x % 64) as usize],
                )
            })
            .collect()
    }
    const RUNS: u64 = 600; // ~4 MB: sled's segments are 512 KiB
    let dir = tempfile::tempdir().expect("tempdir");
    let mut written = Vec::new();
    {
        let store = Arc::new(SledStore::open(dir.path()).expect("open"));
        let mut tasks = Vec::new();
        for n in 0..RUNS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut accepted = a_run();
                accepted.input.trigger.raw_body = body(n);
                let mut finished = accepted.record.clone();
                finished.status = RunStatus::Resolved;
                finished.finished_at = Some(Timestamp(now_millis()));
                let id = finished.id.clone();
                store
                    .accept_finished(accepted, finished)
                    .await
                    .expect("accepted finished");
                (n, id)
            }));
        }
        for t in tasks {
            written.push(t.await.expect("join"));
        }
        store.flush().await.expect("flush");
        // A segment added at the file's end is written as zeros before the
        // log goes into it (vendor/sled: `bump_tip`): the file grows by
        // whole segments, and a group commit's fdatasync overwrites blocks
        // the file has instead of growing it.
        let len = std::fs::metadata(dir.path().join("db").join("db"))
            .expect("the data file")
            .len();
        assert!(
            len > 0 && len.is_multiple_of(512 * 1024),
            "{len} bytes are not whole 512 KiB segments"
        );
    }
    let store = once_let_go(|| SledStore::open(dir.path()));
    assert_eq!(store.damaged(), 0, "nothing set aside as damaged");
    for (n, id) in written {
        let input = store.input(&id).expect("readable").expect("an input");
        assert!(
            input.trigger.raw_body == body(n),
            "run {n} reads back as written"
        );
        let record = store.get(&id).expect("readable").expect("a record");
        assert_eq!(record.status, RunStatus::Resolved);
    }
}

/// A finished run's event holds its record in a buffer cut to size: a small
/// record encoded into a fresh 1 KiB buffer, or into a larger one handed
/// back, weighs in the writer's backlog at most twice its bytes, not the
/// buffer's room.
#[test]
fn a_finished_records_event_weighs_about_its_bytes() {
    for _ in 0..3 {
        // Handed-back buffers larger than a record (as after large ones).
        spare::give_back(Vec::with_capacity(spare::KEEP_BYTES));
    }
    for _ in 0..40 {
        let mut record = a_run().record;
        record.status = RunStatus::Resolved;
        record.finished_at = Some(Timestamp(now_millis()));
        let (_, event) = finished_event(record, false).expect("an event");
        let Event::Finish { header, record, .. } = &event else {
            panic!("a finished run's event")
        };
        let bytes = record.len() + header.workflow.len();
        assert!(bytes > 0);
        let weight = writer::Job::Event(Box::new(event)).weight();
        assert!(weight <= 2 * bytes, "{bytes} bytes weigh {weight}");
    }
}
