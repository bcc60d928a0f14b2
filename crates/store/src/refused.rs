//! Refused requests (SPEC §7 `GET /api/requests`): requests to a known
//! workflow that got no run (401, 405, 408, 413, 415, 400, 503), the last
//! [`KEPT_PER_WORKFLOW`] per workflow, newest first. Headers arrive here
//! already redacted (SPEC §3) and bodies are never kept.
//!
//! Every backend keeps them behind the request: a refused request is handed
//! to the store and written later, with no disk sync of its own (a flood of
//! 401s must not cost a flush each). The shared rules (bounds, filters,
//! cursors) live here; backends only store and scan.

use hookflow_model::time::Timestamp;
use serde::{Deserialize, Serialize};

/// How many refused requests a store keeps per workflow (the oldest go first).
pub const KEPT_PER_WORKFLOW: usize = 1000;

/// One refused request, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedRequest {
    /// When it was answered.
    pub at: Timestamp,
    /// The workflow its URL belongs to.
    pub workflow: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The message sent with the error.
    pub error: String,
    /// The error code answered (`unauthorized`, `invalid_signature`, …).
    pub reason: String,
    /// The request's method.
    pub method: String,
    /// The sender's address, when known.
    pub remote_addr: Option<String>,
    /// Headers in arrival order, secret-bearing values redacted.
    pub headers: Vec<(String, String)>,
    /// How many body bytes the request declared or sent (the body is not kept).
    pub body_size: u64,
}

/// Which refused requests to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefusedFilter {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this error code.
    pub reason: Option<String>,
    /// Answered at or after (Unix ms).
    pub since_ms: Option<u64>,
    /// Page size (at least 1).
    pub limit: usize,
    /// Continue after this position (exclusive), going older.
    pub cursor: Option<String>,
}

impl RefusedFilter {
    /// Whether `r` passes the workflow, reason and time filters.
    pub fn matches(&self, r: &RefusedRequest) -> bool {
        self.workflow.as_ref().is_none_or(|w| *w == r.workflow)
            && self.reason.as_ref().is_none_or(|x| *x == r.reason)
            && self.since_ms.is_none_or(|s| r.at.millis() >= s)
    }

    /// Whether `cursor` can be a refused-request list's cursor (as
    /// `next_cursor` gives it).
    pub fn cursor_reads(cursor: &str) -> bool {
        cursor.parse::<u64>().is_ok()
    }

    /// The position the cursor names: entries strictly older are listed.
    /// A cursor that does not read lists nothing past it (an empty page).
    pub fn before(&self) -> Option<u64> {
        self.cursor
            .as_deref()
            .map(|c| c.parse::<u64>().unwrap_or(0))
    }
}

/// Builds a page from entries newest first (`(position, request)`, already
/// below the cursor): the first `limit` that match, and the cursor of the
/// next page when more may follow. Stops at the first entry older than
/// `since` (entries come newest first).
pub fn page(
    entries: impl Iterator<Item = (u64, RefusedRequest)>,
    filter: &RefusedFilter,
) -> (Vec<RefusedRequest>, Option<String>) {
    let limit = filter.limit.max(1);
    let mut out = Vec::new();
    let mut last = None;
    for (position, r) in entries {
        if filter.since_ms.is_some_and(|s| r.at.millis() < s) {
            break;
        }
        if !filter.matches(&r) {
            continue;
        }
        if out.len() == limit {
            return (out, last.map(|p: u64| p.to_string()));
        }
        last = Some(position);
        out.push(r);
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, reason: &str) -> RefusedRequest {
        RefusedRequest {
            at: Timestamp(ms),
            workflow: "w".into(),
            status: 401,
            error: "e".into(),
            reason: reason.into(),
            method: "POST".into(),
            remote_addr: None,
            headers: Vec::new(),
            body_size: 0,
        }
    }

    #[test]
    fn a_page_stops_at_since_and_names_the_next_one() {
        let entries = || {
            (1..=5u64)
                .rev()
                .map(|i| (i, at(i * 10, if i.is_multiple_of(2) { "a" } else { "b" })))
        };
        let filter = RefusedFilter {
            limit: 2,
            ..RefusedFilter::default()
        };
        let (rows, next) = page(entries(), &filter);
        assert_eq!(rows.len(), 2);
        assert_eq!(next.as_deref(), Some("4"));
        let filter = RefusedFilter {
            limit: 10,
            reason: Some("b".into()),
            since_ms: Some(20),
            ..RefusedFilter::default()
        };
        let (rows, next) = page(entries(), &filter);
        let times: Vec<u64> = rows.iter().map(|r| r.at.millis()).collect();
        assert_eq!((times, next), (vec![50, 30], None));
    }
}
