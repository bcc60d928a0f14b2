//! Refused requests: the last 1000 per workflow, newest first, filtered and
//! paged, kept across a restart once flushed.

use super::*;
use crate::refused::{RefusedFilter, RefusedRequest, KEPT_PER_WORKFLOW};

fn refused(workflow: &str, n: u64, at_ms: u64) -> RefusedRequest {
    RefusedRequest {
        at: Timestamp(at_ms),
        workflow: workflow.into(),
        status: if n.is_multiple_of(2) { 401 } else { 413 },
        error: format!("refusal {n}"),
        reason: if n.is_multiple_of(2) {
            "unauthorized".into()
        } else {
            "payload_too_large".into()
        },
        method: "POST".into(),
        remote_addr: Some("127.0.0.1:9".into()),
        headers: vec![("authorization".into(), "[redacted]".into())],
        body_size: n,
    }
}

fn sizes(rows: &[RefusedRequest]) -> Vec<u64> {
    rows.iter().map(|r| r.body_size).collect()
}

fn filter(workflow: Option<&str>, limit: usize) -> RefusedFilter {
    RefusedFilter {
        workflow: workflow.map(str::to_string),
        limit,
        ..RefusedFilter::default()
    }
}

/// The last 1000 per workflow are kept, newest first; filters and cursors
/// work per workflow and across them; a flushed store keeps them.
pub(crate) async fn refused_requests_are_bounded_filtered_and_paged<B: Backend>() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = B::open(dir.path());
    let base = now_millis() - 60_000;
    let extra = 5u64;
    let total = KEPT_PER_WORKFLOW as u64 + extra;
    for n in 0..total {
        store.refuse(refused("busy", n, base + n));
        if n.is_multiple_of(100) {
            store.refuse(refused("quiet", n, base + n));
        }
    }
    store.flush().await.expect("flush");
    let store = if B::DURABLE {
        drop(store);
        B::open(dir.path())
    } else {
        store
    };

    // Bounded: the oldest of `busy` went; newest first.
    let (rows, next) = store.refused(&filter(Some("busy"), 1000)).expect("list");
    assert_eq!(rows.len(), KEPT_PER_WORKFLOW);
    assert_eq!(next, None);
    let expected: Vec<u64> = (extra..total).rev().collect();
    assert_eq!(sizes(&rows), expected, "the newest 1000, newest first");
    // `quiet` lost nothing to `busy`'s bound.
    let (rows, _) = store.refused(&filter(Some("quiet"), 1000)).expect("list");
    assert_eq!(
        sizes(&rows),
        vec![1000, 900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    );

    // Paged without gaps or repeats, across workflows.
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let mut f = filter(None, 300);
        f.cursor = cursor.take();
        let (rows, next) = store.refused(&f).expect("list");
        seen.extend(rows.iter().map(|r| (r.workflow.clone(), r.body_size)));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), KEPT_PER_WORKFLOW + 11);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no repeats");

    // Reason and time filters.
    let mut f = filter(Some("busy"), 1000);
    f.reason = Some("payload_too_large".into());
    f.since_ms = Some(base + total - 10);
    let (rows, _) = store.refused(&f).expect("list");
    assert_eq!(sizes(&rows), vec![1003, 1001, 999, 997, 995]);
    assert!(rows.iter().all(|r| r.status == 413));
    let first = &rows[0];
    assert_eq!(first, &refused("busy", 1003, base + 1003));
}
