//! The store contract, checked once for every backend: each promise is one
//! test function generic over a [`Backend`], instantiated per backend at the
//! end of this file (a new backend adds one line there). The promises are
//! in rooms: `runs` (accepting, saving, waking, finishing a run), `listing`
//! (lists, retention, idempotency keys, versions), `restarts` (what
//! survives a restart, retention and damage) and `refused` (refused
//! requests: bounded, filtered, paged).
//!
//! Durable backends are also checked across restarts: a scripted run of
//! events is replayed into the backend and into an in-memory oracle, and
//! after every event the backend is closed and opened again and must show
//! what the oracle shows.

use crate::contract::{Accepted, IdempotencyClaim, KeyClaim, Position, Saved, Store};
use crate::record::{
    ExecutionFilter, ExecutionRecord, IdempotencyEntry, JobRecord, JobStatus, ResponseRecord,
    RunInput, RunStatus, TryOutcome, TryRecord,
};
use crate::{MemoryStore, PgOptions, PgStore, SledStore};
use hookflow_model::request::TriggerRequest;
use hookflow_model::time::{now_millis, Timestamp};
use serde_json::{json, Value as Json};
use std::path::Path;
use std::sync::Arc;

/// A store implementation under test.
pub(crate) trait Backend {
    /// Whether it survives a restart.
    const DURABLE: bool;
    /// Opens the store kept in `dir` (a fresh one for a new folder).
    fn open(dir: &Path) -> Arc<dyn Store>;
    /// Damages the stored head of run `id` in the closed store in `dir`.
    fn damage_run(dir: &Path, id: &str);
    /// Damages the stored finished record of run `id`.
    fn damage_finished(dir: &Path, id: &str);
}

pub(crate) struct Memory;
pub(crate) struct Sled;
pub(crate) struct Postgres;

impl Backend for Memory {
    const DURABLE: bool = false;
    fn open(_dir: &Path) -> Arc<dyn Store> {
        Arc::new(MemoryStore::new())
    }
    fn damage_run(_dir: &Path, _id: &str) {}
    fn damage_finished(_dir: &Path, _id: &str) {}
}

impl Backend for Sled {
    const DURABLE: bool = true;
    fn open(dir: &Path) -> Arc<dyn Store> {
        Arc::new(SledStore::open(dir).expect("the store opens"))
    }
    fn damage_run(dir: &Path, id: &str) {
        crate::embedded::damage_for_tests(dir, id, false);
    }
    fn damage_finished(dir: &Path, id: &str) {
        crate::embedded::damage_for_tests(dir, id, true);
    }
}

/// The PostgreSQL store of a test folder: a database of its own in this
/// test binary's private cluster (the same folder, the same database).
fn pg_open(dir: &Path) -> PgStore {
    let url = hookflow_pgtest::cluster().database(&hookflow_pgtest::name_for(dir));
    let options = PgOptions {
        instance: "conformance".into(),
        ..PgOptions::default()
    };
    PgStore::open(&url, options).expect("the PostgreSQL store opens")
}

impl Backend for Postgres {
    const DURABLE: bool = true;
    fn open(dir: &Path) -> Arc<dyn Store> {
        Arc::new(pg_open(dir))
    }
    fn damage_run(dir: &Path, id: &str) {
        pg_open(dir).damage_for_tests(id);
    }
    fn damage_finished(dir: &Path, id: &str) {
        pg_open(dir).damage_for_tests(id);
    }
}

// ---- building blocks ------------------------------------------------------

/// A UUID v7 execution id for a run started at `ms`.
fn id_at(ms: u64) -> String {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    );
    uuid::Uuid::new_v7(ts).to_string()
}

fn record_at(workflow: &str, status: RunStatus, started_ms: u64) -> ExecutionRecord {
    ExecutionRecord {
        id: id_at(started_ms),
        workflow: workflow.into(),
        version: "v1".into(),
        status,
        started_at: Timestamp(started_ms),
        finished_at: None,
        started_ms,
        trigger: None,
        jobs: Vec::new(),
        response: None,
        retry_of: None,
        error: None,
    }
}

fn input(n: u64) -> RunInput {
    RunInput {
        trigger: TriggerRequest {
            method: "POST".into(),
            path: "/api/webhook:trigger/k".into(),
            headers: vec![
                ("authorization", "Basic c2VjcmV0".to_string()),
                ("x-n", n.to_string()),
            ]
            .into(),
            query: json!({}),
            body: json!({"n": n}),
            raw_body: format!("{{\"n\":{n}}}"),
            ..TriggerRequest::default()
        },
        vars: json!({"n": n}),
        secret_headers: Vec::new(),
    }
}

fn job(key: &str, status: JobStatus, result: Json) -> JobRecord {
    JobRecord {
        key: Some(key.into()),
        kind: "calculation".into(),
        status,
        result,
        error: None,
        started_at: Timestamp(now_millis()),
        duration_ms: 1,
        truncated: false,
        // Every store keeps each try of a request node, with its answer.
        tries: vec![TryRecord {
            attempt: 1,
            started_at: Timestamp(now_millis()),
            duration_ms: 1,
            outcome: TryOutcome::ServerError,
            status: Some(503),
            headers: serde_json::Map::from_iter([("retry-after".to_string(), json!("1"))]),
            body: json!({"busy": key}),
            error: None,
        }],
    }
}

fn ack() -> ResponseRecord {
    ResponseRecord {
        status: 200,
        headers: Default::default(),
        body: Arc::new(json!("ok")),
    }
}

/// Accepts a queued run of `workflow` started at `ms`; returns its record.
async fn accept_at(
    store: &dyn Store,
    workflow: &str,
    ms: u64,
    key: Option<&str>,
) -> ExecutionRecord {
    let mut record = record_at(workflow, RunStatus::Queued, ms);
    record.response = Some(ack());
    let idempotency = key.map(|k| IdempotencyClaim {
        workflow: workflow.into(),
        key: k.into(),
        entry: IdempotencyEntry {
            execution_id: record.id.clone(),
            expires_ms: ms + 3_600_000,
            response: Some(ack()),
        },
    });
    store
        .accept(Accepted {
            record: record.clone(),
            input: input(ms),
            idempotency,
        })
        .await
        .expect("accepted");
    record
}

fn saved(
    status: RunStatus,
    wake_at: Option<u64>,
    jobs: Vec<(usize, JobRecord)>,
    frames: Json,
    parts: Vec<(&str, Json)>,
) -> Saved {
    Saved {
        status,
        wake_at,
        jobs,
        position: Position {
            frames,
            parts: parts.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
        },
    }
}

/// A sync run of `w` started at `ms` and finished 5 ms later with
/// `status`, handed to `store`.
fn finished_sync(store: &dyn Store, status: RunStatus, ms: u64) -> ExecutionRecord {
    let record = finished(record_at("w", status, ms), status, ms + 5);
    store.finish(record.clone(), false);
    record
}

/// A sync retry of run `of` started at `ms`, resolved 5 ms later, handed
/// to `store`.
fn finished_retry(store: &dyn Store, of: &str, ms: u64) -> ExecutionRecord {
    let mut record = finished(
        record_at("w", RunStatus::Resolved, ms),
        RunStatus::Resolved,
        ms + 5,
    );
    record.retry_of = Some(of.to_string());
    store.finish(record.clone(), false);
    record
}

fn finished(mut record: ExecutionRecord, status: RunStatus, at_ms: u64) -> ExecutionRecord {
    record.status = status;
    record.finished_at = Some(Timestamp(at_ms));
    record
}

fn all() -> ExecutionFilter {
    ExecutionFilter {
        limit: 1000,
        ..ExecutionFilter::default()
    }
}

fn ids(rows: &[crate::RunSummary]) -> Vec<String> {
    rows.iter().map(|r| r.id.clone()).collect()
}

// ---- the promises ---------------------------------------------------------

mod listing;
mod refused;
mod restarts;
mod runs;

use listing::*;
use refused::*;
use restarts::*;
use runs::*;

macro_rules! conformance {
    ($backend:ty, $name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn accepted_runs_keep_request_input_and_key() {
                super::accepted_runs_keep_request_input_and_key::<$backend>().await
            }
            #[tokio::test]
            async fn progress_is_saved_as_deltas() {
                super::progress_is_saved_as_deltas::<$backend>().await
            }
            #[tokio::test]
            async fn waiting_runs_are_due_by_wake_time() {
                super::waiting_runs_are_due_by_wake_time::<$backend>().await
            }
            #[tokio::test]
            async fn a_due_run_is_claimed_once() {
                super::a_due_run_is_claimed_once::<$backend>().await
            }
            #[tokio::test]
            async fn finished_runs_leave_nothing_to_resume() {
                super::finished_runs_leave_nothing_to_resume::<$backend>().await
            }
            #[tokio::test]
            async fn announced_runs_are_readable() {
                super::announced_runs_are_readable::<$backend>().await
            }
            #[tokio::test]
            async fn lists_are_newest_first_filtered_and_paged() {
                super::lists_are_newest_first_filtered_and_paged::<$backend>().await
            }
            #[tokio::test]
            async fn lists_find_the_retries_of_a_run() {
                super::lists_find_the_retries_of_a_run::<$backend>().await
            }
            #[tokio::test]
            async fn a_record_names_its_retries() {
                super::a_record_names_its_retries::<$backend>().await
            }
            #[tokio::test]
            async fn retention_counts_from_the_finish() {
                super::retention_counts_from_the_finish::<$backend>().await
            }
            #[tokio::test]
            async fn idempotency_keys_expire() {
                super::idempotency_keys_expire::<$backend>().await
            }
            #[tokio::test]
            async fn a_sync_key_is_claimed_then_held_by_its_answer() {
                super::a_sync_key_is_claimed_then_held_by_its_answer::<$backend>().await
            }
            #[tokio::test]
            async fn versions_are_kept() {
                super::versions_are_kept::<$backend>().await
            }
            #[tokio::test]
            async fn a_finished_run_never_runs_again() {
                super::a_finished_run_never_runs_again::<$backend>().await
            }
            #[tokio::test]
            async fn restarts_at_every_point_lose_nothing() {
                super::restarts_at_every_point_lose_nothing::<$backend>().await
            }
            #[tokio::test]
            async fn a_run_accepted_finished_is_kept_whole() {
                super::a_run_accepted_finished_is_kept_whole::<$backend>().await
            }
            #[tokio::test]
            async fn a_dropped_accept_finished_still_writes_when_promised() {
                super::a_dropped_accept_finished_still_writes_when_promised::<$backend>().await
            }
            #[tokio::test]
            async fn a_kept_sync_record_reads_back_finished() {
                super::a_kept_sync_record_reads_back_finished::<$backend>().await
            }
            #[tokio::test]
            async fn runs_accepted_together_finish_apart() {
                super::runs_accepted_together_finish_apart::<$backend>().await
            }
            #[tokio::test]
            async fn damage_is_set_aside() {
                super::damage_is_set_aside::<$backend>().await
            }
            #[tokio::test]
            async fn refused_requests_are_bounded_filtered_and_paged() {
                super::refused_requests_are_bounded_filtered_and_paged::<$backend>().await
            }
        }
    };
}

conformance!(Memory, memory);
conformance!(Sled, sled_store);
conformance!(Postgres, postgres_store);
