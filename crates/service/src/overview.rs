//! What the run history page shows of each workflow besides its listing:
//! how many runs it had in the last 24 hours by status, and the problems
//! that keep files from being served.

use crate::registry::Registry;
use hookflow_store::{ExecutionFilter, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// The window of the counts.
pub const RECENT_MS: u64 = 24 * 60 * 60 * 1000;
/// At most this many runs are read to count them (pages of 1000): beyond
/// it the counts are marked cut, so a busy server's page stays fast.
pub const MAX_COUNTED: usize = 20_000;
const PAGE: usize = 1000;

/// Runs per workflow and status since a time.
#[derive(Debug, Default, Serialize)]
pub struct RecentCounts {
    /// Workflow id → status → runs.
    pub by_workflow: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// True when [`MAX_COUNTED`] runs were read and older ones were left out.
    pub cut: bool,
}

/// Counts the runs started at or after `since_ms`, newest first, reading at
/// most `max` of them.
pub fn recent_counts(
    store: &dyn Store,
    since_ms: u64,
    max: usize,
) -> Result<RecentCounts, StoreError> {
    let mut counts = RecentCounts::default();
    let mut cursor = None;
    let mut read = 0usize;
    while read < max {
        let (rows, next) = store.list(&ExecutionFilter {
            since_ms: Some(since_ms),
            limit: PAGE.min(max - read),
            cursor: cursor.take(),
            ..ExecutionFilter::default()
        })?;
        read += rows.len();
        for row in &rows {
            *counts
                .by_workflow
                .entry(row.workflow.clone())
                .or_default()
                .entry(row.status.as_str())
                .or_default() += 1;
        }
        match next {
            Some(c) if !rows.is_empty() => cursor = Some(c),
            _ => return Ok(counts),
        }
    }
    counts.cut = true;
    Ok(counts)
}

/// A problem of the workflows folder, with the file it is about.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The workflow id it concerns, if one.
    pub workflow: Option<String>,
    /// The file's name, if one.
    pub file: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Problems no row of the listing shows: files of no workflow (bad names,
/// an unreadable folder, a duplicate id) and enabled workflows that loaded
/// but are not served (credentials or signature check that cannot be set
/// up, a key already in use).
pub fn problems(registry: &Registry) -> Vec<Problem> {
    let folder = registry.other.iter().map(|d| Problem {
        workflow: None,
        file: d.file.file_name().map(|n| n.to_string_lossy().into_owned()),
        message: if d.line > 0 {
            format!("{}:{}: {}", d.line, d.column, d.message)
        } else {
            d.message.clone()
        },
    });
    let refused = registry.refused.iter().map(|r| Problem {
        workflow: Some(r.workflow.clone()),
        file: None,
        message: r.summary(),
    });
    folder.chain(refused).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_model::time::{now_millis, Timestamp};
    use hookflow_store::{ExecutionRecord, MemoryStore, RunStatus};

    fn record(n: u64, workflow: &str, status: RunStatus, ms: u64) -> ExecutionRecord {
        let ts = uuid_at(ms, n);
        ExecutionRecord {
            id: ts,
            workflow: workflow.into(),
            version: "v".into(),
            status,
            started_at: Timestamp(ms),
            finished_at: Some(Timestamp(ms + 1)),
            started_ms: ms,
            trigger: None,
            jobs: Vec::new(),
            response: None,
            retry_of: None,
            error: None,
        }
    }

    /// Time-ordered ids like the executor's (UUID v7 text sorts by time).
    fn uuid_at(ms: u64, n: u64) -> String {
        format!("{ms:016x}-{n:08x}")
    }

    #[test]
    fn counts_the_last_day_by_workflow_and_status_within_the_bound() {
        let store = MemoryStore::new();
        let now = now_millis();
        let old = now - RECENT_MS - 60_000;
        store.finish(record(0, "a", RunStatus::Resolved, old), false);
        for (n, (w, s)) in [
            ("a", RunStatus::Resolved),
            ("a", RunStatus::Failed),
            ("a", RunStatus::Failed),
            ("b", RunStatus::Aborted),
        ]
        .into_iter()
        .enumerate()
        {
            store.finish(record(n as u64 + 1, w, s, now - 1000 + n as u64), false);
        }
        let counts = recent_counts(&store, now - RECENT_MS, 100).expect("counts");
        assert!(!counts.cut);
        let a = &counts.by_workflow["a"];
        assert_eq!((a["resolved"], a["failed"]), (1, 2), "{counts:?}");
        assert_eq!(counts.by_workflow["b"]["aborted"], 1);
        let capped = recent_counts(&store, now - RECENT_MS, 3).expect("counts");
        assert!(capped.cut);
        let total: u64 = capped.by_workflow.values().flat_map(|m| m.values()).sum();
        assert_eq!(total, 3);
    }
}
