//! Reads: records, inputs, lists, the runs to resume, waiting runs,
//! versions and idempotency keys. A run whose stored values do not decode
//! is set aside ([`set_aside`]) and reads as absent.

use super::codec::{decode, decode_json, from_ms, ms, set_aside};
use super::{pg_err, Shared};
use crate::contract::Resumable;
use crate::record::{
    ExecutionFilter, ExecutionRecord, IdempotencyEntry, JobRecord, RunInput, RunStatus, RunSummary,
};
use crate::{StoreError, StoreResult};
use hookflow_model::time::Timestamp;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use tokio_postgres::types::ToSql;

/// A status column.
fn status(s: &str) -> RunStatus {
    RunStatus::parse(s).unwrap_or(RunStatus::Failed)
}

/// The jobs saved so far of a live run.
async fn jobs(client: &deadpool_postgres::Object, id: &str) -> StoreResult<Vec<JobRecord>> {
    let rows = client
        .query(
            "SELECT job FROM hookflow_jobs WHERE run_id = $1 ORDER BY idx",
            &[&id],
        )
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| decode::<JobRecord>(id, r.get(0)))
        .collect()
}

/// A record with its request put back from the input kept apart.
fn with_trigger(mut record: ExecutionRecord, input: Option<&RunInput>) -> ExecutionRecord {
    if record.trigger.is_none() {
        record.trigger = input.map(RunInput::recorded_trigger);
    }
    record
}

/// Decodes a run read by `get`; an error sets it aside.
async fn decode_run(
    client: &deadpool_postgres::Object,
    id: &str,
    record: &[u8],
    input: Option<&[u8]>,
    live: bool,
    status_column: &str,
) -> StoreResult<ExecutionRecord> {
    let mut record: ExecutionRecord = decode(id, record)?;
    let input: Option<RunInput> = input.map(|i| decode(id, i)).transpose()?;
    if live {
        record.jobs = jobs(client, id).await?;
        record.status = status(status_column);
    }
    Ok(with_trigger(record, input.as_ref()))
}

pub async fn get(shared: &Shared, id: &str) -> StoreResult<Option<ExecutionRecord>> {
    let client = shared.conn().await?;
    let row = client
        .query_opt(
            "SELECT r.status, r.record, r.input, q.id IS NOT NULL
             FROM hookflow_runs r LEFT JOIN hookflow_queue q ON q.id = r.id
             WHERE r.id = $1",
            &[&id],
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = row else { return Ok(None) };
    let status_column: &str = row.get(0);
    let record: &[u8] = row.get(1);
    let input: Option<&[u8]> = row.get(2);
    let live: bool = row.get(3);
    match decode_run(&client, id, record, input, live, status_column).await {
        Ok(record) => Ok(Some(record)),
        Err(error @ StoreError::Corrupt { .. }) => {
            drop(client);
            set_aside(shared, id, &error).await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub async fn input(shared: &Shared, id: &str) -> StoreResult<Option<RunInput>> {
    let client = shared.conn().await?;
    let row = client
        .query_opt("SELECT input FROM hookflow_runs WHERE id = $1", &[&id])
        .await
        .map_err(pg_err)?;
    let Some(bytes) = row.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)) else {
        return Ok(None);
    };
    match decode(id, &bytes) {
        Ok(input) => Ok(Some(input)),
        Err(error) => {
            drop(client);
            set_aside(shared, id, &error).await?;
            Ok(None)
        }
    }
}

pub async fn list(
    shared: &Shared,
    f: &ExecutionFilter,
) -> StoreResult<(Vec<RunSummary>, Option<String>)> {
    let client = shared.conn().await?;
    let limit = f.limit.max(1);
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let status_name = f.status.map(RunStatus::as_str);
    let since = f.since_ms.map(ms);
    let until = f.until_ms.map(ms);
    let params: [&(dyn ToSql + Sync); 7] = [
        &f.cursor,
        &f.workflow,
        &status_name,
        &since,
        &until,
        &fetch,
        &f.retry_of,
    ];
    let rows = client
        .query(
            "SELECT id, workflow, version, status, started_ms, finished_ms, response_status, retry_of
             FROM hookflow_runs
             WHERE ($1::text IS NULL OR id < $1)
               AND ($2::text IS NULL OR workflow = $2)
               AND ($3::text IS NULL OR status = $3)
               AND ($4::bigint IS NULL OR started_ms >= $4)
               AND ($5::bigint IS NULL OR started_ms <= $5)
               AND ($7::text IS NULL OR retry_of = $7)
             ORDER BY id DESC LIMIT $6",
            &params,
        )
        .await
        .map_err(pg_err)?;
    let mut page: Vec<RunSummary> = rows
        .iter()
        .map(|r| RunSummary {
            id: r.get(0),
            workflow: r.get(1),
            version: r.get(2),
            status: status(r.get(3)),
            started_at: Timestamp(from_ms(r.get(4))),
            finished_at: r.get::<_, Option<i64>>(5).map(|v| Timestamp(from_ms(v))),
            response_status: r
                .get::<_, Option<i32>>(6)
                .and_then(|s| u16::try_from(s).ok()),
            retry_of: r.get(7),
        })
        .collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let next = if more {
        page.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok((page, next))
}

/// The ids of the retries of run `id`, oldest first (ids are time-ordered);
/// through the partial index on `retry_of`.
pub async fn retries_of(shared: &Shared, id: &str) -> StoreResult<Vec<String>> {
    let client = shared.conn().await?;
    let rows = client
        .query(
            "SELECT id FROM hookflow_runs WHERE retry_of = $1 ORDER BY id DESC LIMIT $2",
            &[&id, &(crate::MAX_RETRIES_LISTED as i64)],
        )
        .await
        .map_err(pg_err)?;
    Ok(rows.iter().rev().map(|r| r.get(0)).collect())
}

pub async fn unfinished(
    shared: &Shared,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<String>> {
    let client = shared.conn().await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT id FROM hookflow_queue
             WHERE status <> 'waiting' AND ($1::text IS NULL OR id > $1)
             ORDER BY id LIMIT $2",
            &[&after, &limit],
        )
        .await
        .map_err(pg_err)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn resumable(shared: &Shared, id: &str) -> StoreResult<Option<Resumable>> {
    let client = shared.conn().await?;
    let row = client
        .query_opt(
            "SELECT q.status, q.frames, r.record, r.input
             FROM hookflow_queue q JOIN hookflow_runs r ON r.id = q.id
             WHERE q.id = $1",
            &[&id],
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = row else { return Ok(None) };
    let decoded = async {
        let mut record: ExecutionRecord = decode(id, row.get(2))?;
        record.status = status(row.get(0));
        record.jobs = jobs(&client, id).await?;
        let input: Option<RunInput> = row
            .get::<_, Option<&[u8]>>(3)
            .map(|i| decode(id, i))
            .transpose()?;
        let frames = match row.get::<_, Option<&[u8]>>(1) {
            Some(f) => decode_json(id, f)?,
            None => Json::Null,
        };
        let mut parts = BTreeMap::new();
        let rows = client
            .query(
                "SELECT name, value FROM hookflow_parts WHERE run_id = $1",
                &[&id],
            )
            .await
            .map_err(pg_err)?;
        for r in rows {
            parts.insert(r.get::<_, String>(0), decode_json(id, r.get(1))?);
        }
        Ok(Resumable {
            record,
            input,
            frames,
            parts,
        })
    };
    let decoded: StoreResult<Resumable> = decoded.await;
    match decoded {
        Ok(r) => Ok(Some(r)),
        Err(error @ StoreError::Corrupt { .. }) => {
            drop(client);
            set_aside(shared, id, &error).await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub async fn next_wake(shared: &Shared) -> StoreResult<Option<u64>> {
    let client = shared.conn().await?;
    let row = client
        .query_one("SELECT min(wake_at) FROM hookflow_queue", &[])
        .await
        .map_err(pg_err)?;
    // On this process's clock (wake times are kept on the database's).
    let first: Option<i64> = row.get(0);
    Ok(first.map(|at| from_ms(at.saturating_sub(shared.offset_ms()))))
}

/// How many runs wait, every instance's (the queue's index on `wake_at`).
pub async fn count_waiting(shared: &Shared) -> StoreResult<usize> {
    let client = shared.conn().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM hookflow_queue WHERE wake_at IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg_err)?;
    let n: i64 = row.get(0);
    Ok(usize::try_from(n).unwrap_or(0))
}

pub async fn due(shared: &Shared, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
    let client = shared.conn().await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT id FROM hookflow_queue WHERE wake_at <= $1
             ORDER BY wake_at, id LIMIT $2",
            &[&ms(now_ms).saturating_add(shared.offset_ms()), &limit],
        )
        .await
        .map_err(pg_err)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn put_version(shared: &Shared, version: &str, source: &str) -> StoreResult<()> {
    let client = shared.conn().await?;
    client
        .execute(
            "INSERT INTO hookflow_versions (version, source) VALUES ($1, $2)
             ON CONFLICT (version) DO NOTHING",
            &[&version, &source],
        )
        .await
        .map_err(pg_err)?;
    Ok(())
}

/// Versions inserted at most this many per statement.
const VERSIONS_PER_STATEMENT: usize = 1000;

pub async fn put_versions(shared: &Shared, versions: &[(String, String)]) -> StoreResult<()> {
    let client = shared.conn().await?;
    for chunk in versions.chunks(VERSIONS_PER_STATEMENT) {
        let (ids, sources): (Vec<&str>, Vec<&str>) =
            chunk.iter().map(|(v, s)| (v.as_str(), s.as_str())).unzip();
        client
            .execute(
                "INSERT INTO hookflow_versions (version, source)
                 SELECT * FROM unnest($1::text[], $2::text[])
                 ON CONFLICT (version) DO NOTHING",
                &[&ids, &sources],
            )
            .await
            .map_err(pg_err)?;
    }
    Ok(())
}

pub async fn version(shared: &Shared, version: &str) -> StoreResult<Option<String>> {
    let client = shared.conn().await?;
    let row = client
        .query_opt(
            "SELECT source FROM hookflow_versions WHERE version = $1",
            &[&version],
        )
        .await
        .map_err(pg_err)?;
    Ok(row.map(|r| r.get(0)))
}

/// The live entry of a key ($1 workflow, $2 key bytes, $3 now in ms), read
/// by [`key_entry`]. A pending claim (sync runs on a shared store) is an
/// entry without a response.
pub(super) const KEY_ENTRY: &str = "SELECT execution_id, expires_ms, response
     FROM hookflow_idempotency WHERE workflow = $1 AND key = $2 AND expires_ms > $3";

/// A row of [`KEY_ENTRY`]; an error when its response does not decode.
pub(super) fn key_entry(row: &tokio_postgres::Row) -> StoreResult<IdempotencyEntry> {
    Ok(IdempotencyEntry {
        execution_id: row.get(0),
        expires_ms: from_ms(row.get(1)),
        response: row
            .get::<_, Option<&[u8]>>(2)
            .map(|r| decode("idempotency response", r))
            .transpose()?,
    })
}

pub async fn idempotency(
    shared: &Shared,
    workflow: &str,
    key: &str,
    now_ms: u64,
) -> StoreResult<Option<IdempotencyEntry>> {
    let client = shared.conn().await?;
    let row = client
        .query_opt(KEY_ENTRY, &[&workflow, &key.as_bytes(), &ms(now_ms)])
        .await
        .map_err(pg_err)?;
    let Some(row) = row else { return Ok(None) };
    match key_entry(&row) {
        Ok(entry) => Ok(Some(entry)),
        Err(error) => {
            tracing::error!(message = "A stored idempotency key does not decode; it is ignored.", %error);
            Ok(None)
        }
    }
}

pub async fn refused(
    shared: &Shared,
    f: &crate::refused::RefusedFilter,
) -> StoreResult<(Vec<crate::refused::RefusedRequest>, Option<String>)> {
    let client = shared.conn().await?;
    let before = f.before().map(ms).unwrap_or(i64::MAX);
    let since = f.since_ms.map(ms);
    let fetch = i64::try_from(f.limit.max(1) + 1).unwrap_or(i64::MAX);
    let params: [&(dyn ToSql + Sync); 5] = [&f.workflow, &f.reason, &since, &before, &fetch];
    let rows = client
        .query(
            "SELECT position, value FROM hookflow_refused
             WHERE ($1::text IS NULL OR workflow = $1)
               AND ($2::text IS NULL OR reason = $2)
               AND ($3::bigint IS NULL OR at_ms >= $3)
               AND position < $4
             ORDER BY position DESC LIMIT $5",
            &params,
        )
        .await
        .map_err(pg_err)?;
    let mut entries = Vec::with_capacity(rows.len());
    for r in &rows {
        match decode::<crate::refused::RefusedRequest>("refused request", r.get(1)) {
            Ok(request) => entries.push((from_ms(r.get(0)), request)),
            Err(error) => {
                tracing::error!(message = "A stored refused request does not decode; it is skipped.", %error)
            }
        }
    }
    Ok(crate::refused::page(entries.into_iter(), f))
}
