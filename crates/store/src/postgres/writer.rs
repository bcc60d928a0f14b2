//! The ordered writer: every write of a run (accept, save, woke, finish,
//! announce, sync idempotency keys) goes through one task that applies
//! what has arrived in one transaction (group commit): while a commit is
//! under way the next writes gather, so many acknowledgements share one
//! commit. Statements of a turn are pipelined on one connection, in order.
//! An accept resolves after the commit that holds its run and its
//! idempotency key; a key held by another run (another instance's, racing)
//! makes the accept fail with [`StoreError::KeyTaken`] and stores nothing.

use super::codec::{decode, encode, encode_json, ms};
use super::{pg_err, Shared};
use crate::contract::{Accepted, IdempotencyClaim, Saved};
use crate::record::{ExecutionRecord, IdempotencyEntry, RunStatus};
use crate::{StoreError, StoreResult};
use futures_util::future::try_join_all;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;
/// Tries of a turn whose transaction failed, before its writes are given up.
const TRIES: u32 = 5;

/// The columns of a run row.
pub struct RunRow {
    id: String,
    workflow: String,
    version: String,
    status: &'static str,
    started_ms: i64,
    finished_ms: Option<i64>,
    response_status: Option<i32>,
    retry_of: Option<String>,
    record: Vec<u8>,
}

impl RunRow {
    fn of(record: &ExecutionRecord) -> StoreResult<RunRow> {
        Ok(RunRow {
            id: record.id.clone(),
            workflow: record.workflow.clone(),
            version: record.version.clone(),
            status: record.status.as_str(),
            started_ms: ms(record.started_at.millis()),
            finished_ms: record.finished_at.map(|t| ms(t.millis())),
            response_status: record.response.as_ref().map(|r| i32::from(r.status)),
            retry_of: record.retry_of.clone(),
            record: encode(record)?,
        })
    }
}

/// An idempotency key's columns.
pub struct KeyRow {
    workflow: String,
    /// The key's bytes: a key is rendered from the request and may hold
    /// characters a text column refuses (NUL).
    key: Vec<u8>,
    execution_id: String,
    expires_ms: i64,
    response: Option<Vec<u8>>,
}

impl KeyRow {
    fn of(claim: &IdempotencyClaim) -> StoreResult<KeyRow> {
        Ok(KeyRow {
            workflow: claim.workflow.clone(),
            key: claim.key.as_bytes().to_vec(),
            execution_id: claim.entry.execution_id.clone(),
            expires_ms: ms(claim.entry.expires_ms),
            response: claim.entry.response.as_ref().map(encode).transpose()?,
        })
    }
}

/// A write, encoded by the caller.
pub enum Write {
    Accept {
        run: RunRow,
        input: Vec<u8>,
        key: Option<KeyRow>,
        done: oneshot::Sender<StoreResult<()>>,
    },
    Save {
        id: String,
        status: &'static str,
        wake_at: Option<i64>,
        jobs: Vec<(i32, Vec<u8>)>,
        frames: Vec<u8>,
        parts: Vec<(String, Vec<u8>)>,
    },
    Woke {
        id: String,
    },
    Finish {
        run: RunRow,
        durable: bool,
    },
    Announce {
        run: RunRow,
    },
    Idempotency(KeyRow),
    Refused {
        workflow: String,
        at_ms: i64,
        reason: String,
        value: Vec<u8>,
    },
    Flush(oneshot::Sender<StoreResult<()>>),
}

/// A write and its place in the order.
pub struct Submitted {
    pub seq: u64,
    pub write: Write,
}

pub fn accept(run: Accepted, done: oneshot::Sender<StoreResult<()>>) -> StoreResult<Write> {
    Ok(Write::Accept {
        run: RunRow::of(&run.record)?,
        input: encode(&run.input)?,
        key: run.idempotency.as_ref().map(KeyRow::of).transpose()?,
        done,
    })
}

pub fn save(id: &str, saved: Saved) -> StoreResult<Write> {
    let jobs = saved
        .jobs
        .iter()
        .map(|(i, job)| Ok((i32::try_from(*i).unwrap_or(i32::MAX), encode(job)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    let parts = saved
        .position
        .parts
        .iter()
        .map(|(name, v)| Ok((name.clone(), encode_json(v)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Write::Save {
        id: id.to_string(),
        status: saved.status.as_str(),
        wake_at: saved.wake_at.map(ms),
        jobs,
        frames: encode_json(&saved.position.frames)?,
        parts,
    })
}

pub fn finish(record: ExecutionRecord, durable: bool) -> StoreResult<Write> {
    let mut run = RunRow::of(&record)?;
    if run.finished_ms.is_none() {
        run.finished_ms = Some(ms(hookflow_model::time::now_millis()));
    }
    Ok(Write::Finish { run, durable })
}

pub fn announce(record: ExecutionRecord) -> StoreResult<Write> {
    Ok(Write::Announce {
        run: RunRow::of(&record)?,
    })
}

pub fn refused(request: &crate::refused::RefusedRequest) -> StoreResult<Write> {
    Ok(Write::Refused {
        workflow: request.workflow.clone(),
        at_ms: ms(request.at.millis()),
        reason: request.reason.clone(),
        value: encode(request)?,
    })
}

pub fn idempotency(claim: IdempotencyClaim) -> StoreResult<Write> {
    Ok(Write::Idempotency(KeyRow::of(&claim)?))
}

/// The writer: applies turns until every sender has gone.
pub async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Submitted>,
    applied: watch::Sender<u64>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let last = batch.last().map_or(0, |w| w.seq);
        turn(&shared, batch).await;
        applied.send_replace(last);
    }
}

/// What a turn tells each accept.
type Verdicts = Vec<StoreResult<()>>;

/// Applies one turn, trying again a few times when the database fails; a
/// turn that keeps failing is applied one write at a time, so that one bad
/// write does not take the others with it. Then tells the waiting accepts
/// and flushes.
async fn turn(shared: &Shared, mut batch: Vec<Submitted>) {
    let tries = if batch.len() > 1 { 2 } else { TRIES };
    let mut verdicts = match with_retries(shared, &batch, tries).await {
        Ok(v) => v,
        Err(_) if batch.len() > 1 => {
            let mut each = Vec::with_capacity(batch.len());
            for one in &batch {
                match with_retries(shared, std::slice::from_ref(one), TRIES).await {
                    Ok(v) => each.extend(v),
                    Err(error) => {
                        tracing::error!(message = "A store write was given up.", %error);
                        each.push(Err(error));
                    }
                }
            }
            each
        }
        Err(error) => {
            tracing::error!(message = "A store write was given up.", %error);
            vec![Err(error)]
        }
    }
    .into_iter();
    for submitted in batch.drain(..) {
        match submitted.write {
            Write::Accept { done, .. } => {
                let verdict = verdicts.next().unwrap_or(Ok(()));
                let _ = done.send(verdict);
            }
            Write::Flush(done) => {
                let verdict = verdicts.next().unwrap_or(Ok(()));
                let _ = done.send(verdict.map(|_| ()));
            }
            _ => {
                verdicts.next();
            }
        }
    }
}

type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// [`apply`], tried `tries` times with a growing pause.
async fn with_retries(shared: &Shared, batch: &[Submitted], tries: u32) -> StoreResult<Verdicts> {
    let mut attempt = 0;
    loop {
        match apply(shared, batch).await {
            Ok(v) => return Ok(v),
            Err(error) if attempt + 1 < tries => {
                tracing::warn!(message = "A store write failed; trying again.", attempt, %error);
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// One transaction with every write of the batch; one verdict per write.
async fn apply(shared: &Shared, batch: &[Submitted]) -> StoreResult<Verdicts> {
    let mut client = shared.conn().await?;
    let tx = client.transaction().await.map_err(pg_err)?;
    let now = ms(hookflow_model::time::now_millis());
    let lease = ms(u64::try_from(shared.options.lease.as_millis()).unwrap_or(u64::MAX));
    let owner = shared.options.instance.as_str();
    // First the idempotency keys of accepts: a key another run holds (and
    // that has not expired) keeps that accept's run out of the database.
    let claim_key = tx
        .prepare_cached(
            "INSERT INTO hookflow_idempotency (workflow, key, execution_id, expires_ms, response)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (workflow, key) DO UPDATE SET execution_id = EXCLUDED.execution_id,
               expires_ms = EXCLUDED.expires_ms, response = EXCLUDED.response
             WHERE hookflow_idempotency.expires_ms <= $6
             RETURNING execution_id",
        )
        .await
        .map_err(pg_err)?;
    let key_params: Vec<Params<'_>> = batch
        .iter()
        .filter_map(|s| match &s.write {
            Write::Accept { key: Some(k), .. } => {
                let p: Params<'_> = vec![
                    &k.workflow,
                    &k.key,
                    &k.execution_id,
                    &k.expires_ms,
                    &k.response,
                    &now,
                ];
                Some(p)
            }
            _ => None,
        })
        .collect();
    let claims = key_params.iter().map(|p| tx.query_opt(&claim_key, p));
    let won = try_join_all(claims).await.map_err(pg_err)?;
    let mut won = won.into_iter();
    let mut verdicts: Verdicts = Vec::with_capacity(batch.len());
    let mut taken = Vec::new();
    for s in batch {
        let verdict = match &s.write {
            Write::Accept { key: Some(k), .. } => match won.next().flatten() {
                Some(_) => Ok(()),
                None => {
                    taken.push((verdicts.len(), k));
                    Ok(())
                }
            },
            _ => Ok(()),
        };
        verdicts.push(verdict);
    }
    for (at, k) in taken {
        let row = tx
            .query_opt(
                "SELECT execution_id, expires_ms, response FROM hookflow_idempotency
                 WHERE workflow = $1 AND key = $2",
                &[&k.workflow, &k.key],
            )
            .await
            .map_err(pg_err)?;
        let entry = match row {
            Some(row) => {
                let response: Option<Vec<u8>> = row.get(2);
                IdempotencyEntry {
                    execution_id: row.get(0),
                    expires_ms: super::codec::from_ms(row.get(1)),
                    response: response
                        .as_deref()
                        .map(|r| decode("idempotency response", r))
                        .transpose()?,
                }
            }
            None => {
                return Err(StoreError::Db(
                    "an idempotency key was neither claimed nor held".into(),
                ))
            }
        };
        verdicts[at] = Err(StoreError::KeyTaken(Box::new(entry)));
    }
    // Refused requests are never synced on their own (a flood of 401s
    // must not cost a disk sync each): a turn of nothing else commits
    // without waiting for the disk; the next durable commit takes them.
    if batch
        .iter()
        .all(|s| matches!(s.write, Write::Refused { .. } | Write::Flush(_)))
    {
        tx.batch_execute("SET LOCAL synchronous_commit TO off")
            .await
            .map_err(pg_err)?;
    }
    let sql = Statements::prepare(&tx).await?;
    let mut trimmed: Vec<&String> = Vec::new();
    // Parameters that are not in the writes live as long as the futures.
    let owner_ref: &(dyn ToSql + Sync) = &owner;
    let lease_ref: &(dyn ToSql + Sync) = &lease;
    let running: &'static str = RunStatus::Running.as_str();
    let running_ref: &(dyn ToSql + Sync) = &running;
    let true_ref: &(dyn ToSql + Sync) = &true;
    let false_ref: &(dyn ToSql + Sync) = &false;
    let mut pending = Vec::new();
    for (s, verdict) in batch.iter().zip(&verdicts) {
        if verdict.is_err() {
            continue;
        }
        macro_rules! add {
            ($st:expr, $params:expr $(,)?) => {{
                let params: Params<'_> = $params;
                pending.push(tx.execute_raw(&$st, params));
            }};
        }
        match &s.write {
            Write::Accept { run, input, .. } => {
                add!(sql.insert_run, run_params(run, Some(input), true_ref));
                add!(
                    sql.insert_queue,
                    vec![&run.id, &run.status, owner_ref, lease_ref]
                );
            }
            Write::Save {
                id,
                status,
                wake_at,
                jobs,
                frames,
                parts,
            } => {
                add!(sql.save_queue, vec![id, status, wake_at, frames]);
                add!(sql.save_status, vec![id, status]);
                for (i, job) in jobs {
                    add!(sql.save_job, vec![id, i, job]);
                }
                for (name, value) in parts {
                    add!(sql.save_part, vec![id, name, value]);
                }
            }
            Write::Woke { id } => {
                add!(sql.woke, vec![id, owner_ref, lease_ref]);
                add!(sql.save_status, vec![id, running_ref]);
            }
            Write::Finish { run, durable } => {
                add!(sql.drop_queue, vec![&run.id]);
                add!(sql.drop_jobs, vec![&run.id]);
                add!(sql.drop_parts, vec![&run.id]);
                let durable: &(dyn ToSql + Sync) = if *durable { true_ref } else { false_ref };
                add!(sql.finish_run, run_params(run, None, durable));
            }
            Write::Announce { run } => {
                add!(sql.announce, run_params(run, None, false_ref));
            }
            Write::Idempotency(k) => {
                add!(
                    sql.put_key,
                    vec![
                        &k.workflow,
                        &k.key,
                        &k.execution_id,
                        &k.expires_ms,
                        &k.response,
                        &now
                    ],
                );
            }
            Write::Refused {
                workflow,
                at_ms,
                reason,
                value,
            } => {
                add!(sql.refused, vec![workflow, at_ms, reason, value]);
                if !trimmed.contains(&workflow) {
                    trimmed.push(workflow);
                }
            }
            Write::Flush(_) => {}
        }
    }
    for workflow in trimmed {
        let params: Params<'_> = vec![workflow, &KEPT];
        pending.push(tx.execute_raw(&sql.trim_refused, params));
    }
    try_join_all(pending).await.map_err(pg_err)?;
    let committing = std::time::Instant::now();
    tx.commit().await.map_err(pg_err)?;
    if let Some(hook) = shared.on_commit.get() {
        hook(committing.elapsed());
    }
    shared
        .commits
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(verdicts)
}

fn run_params<'a>(
    run: &'a RunRow,
    input: Option<&'a Vec<u8>>,
    durable: &'a (dyn ToSql + Sync),
) -> Params<'a> {
    let mut p: Params<'a> = vec![
        &run.id,
        &run.workflow,
        &run.version,
        &run.status,
        &run.started_ms,
        &run.finished_ms,
        &run.response_status,
        &run.retry_of,
        &run.record,
        durable,
    ];
    if let Some(input) = input {
        p.push(input);
    }
    p
}

/// The statements of a turn (prepared once per connection).
struct Statements {
    insert_run: tokio_postgres::Statement,
    insert_queue: tokio_postgres::Statement,
    save_queue: tokio_postgres::Statement,
    save_status: tokio_postgres::Statement,
    save_job: tokio_postgres::Statement,
    save_part: tokio_postgres::Statement,
    woke: tokio_postgres::Statement,
    drop_queue: tokio_postgres::Statement,
    drop_jobs: tokio_postgres::Statement,
    drop_parts: tokio_postgres::Statement,
    finish_run: tokio_postgres::Statement,
    announce: tokio_postgres::Statement,
    put_key: tokio_postgres::Statement,
    refused: tokio_postgres::Statement,
    trim_refused: tokio_postgres::Statement,
}

/// Refused requests kept per workflow.
const KEPT: i64 = crate::refused::KEPT_PER_WORKFLOW as i64;

const RUN_COLUMNS: &str = "id, workflow, version, status, started_ms, finished_ms, \
     response_status, retry_of, record, durable";

impl Statements {
    async fn prepare(tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<Statements> {
        let p = |sql: String| async move { tx.prepare_cached(&sql).await.map_err(pg_err) };
        Ok(Statements {
            insert_run: p(format!(
                "INSERT INTO hookflow_runs ({RUN_COLUMNS}, input)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (id) DO NOTHING"
            ))
            .await?,
            insert_queue: p("INSERT INTO hookflow_queue (id, status, owner, lease_until)
                 VALUES ($1, $2, $3, hookflow_now_ms() + $4)
                 ON CONFLICT (id) DO NOTHING"
                .into())
            .await?,
            save_queue: p("UPDATE hookflow_queue SET status = $2, wake_at = $3, frames = $4,
                   owner = CASE WHEN $3::bigint IS NULL THEN owner END
                 WHERE id = $1"
                .into())
            .await?,
            save_status: p("UPDATE hookflow_runs SET status = $2
                 WHERE id = $1 AND finished_ms IS NULL"
                .into())
            .await?,
            save_job: p("INSERT INTO hookflow_jobs (run_id, idx, job)
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM hookflow_queue WHERE id = $1)
                 ON CONFLICT (run_id, idx) DO UPDATE SET job = EXCLUDED.job"
                .into())
            .await?,
            save_part: p("INSERT INTO hookflow_parts (run_id, name, value)
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM hookflow_queue WHERE id = $1)
                 ON CONFLICT (run_id, name) DO UPDATE SET value = EXCLUDED.value"
                .into())
            .await?,
            woke: p("UPDATE hookflow_queue SET status = 'running', wake_at = NULL,
                   owner = $2, lease_until = hookflow_now_ms() + $3
                 WHERE id = $1"
                .into())
            .await?,
            drop_queue: p("DELETE FROM hookflow_queue WHERE id = $1".into()).await?,
            drop_jobs: p("DELETE FROM hookflow_jobs WHERE run_id = $1".into()).await?,
            drop_parts: p("DELETE FROM hookflow_parts WHERE run_id = $1".into()).await?,
            // A run finishes once: a second finish (an instance that lost
            // its lease finishing late) changes nothing.
            finish_run: p(format!(
                "INSERT INTO hookflow_runs ({RUN_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
                   finished_ms = EXCLUDED.finished_ms, record = EXCLUDED.record,
                   response_status = EXCLUDED.response_status,
                   durable = hookflow_runs.durable OR EXCLUDED.durable,
                   input = CASE WHEN EXCLUDED.durable THEN hookflow_runs.input END
                 WHERE hookflow_runs.finished_ms IS NULL"
            ))
            .await?,
            announce: p(format!(
                "INSERT INTO hookflow_runs ({RUN_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
                   record = EXCLUDED.record, response_status = EXCLUDED.response_status
                 WHERE hookflow_runs.finished_ms IS NULL AND NOT hookflow_runs.durable"
            ))
            .await?,
            // A sync run's answer replaces its own pending claim, an answer
            // or an expired row, never another run's live pending claim
            // (`pending.rs`).
            put_key: p("INSERT INTO hookflow_idempotency (workflow, key, execution_id, expires_ms, response)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (workflow, key) DO UPDATE SET execution_id = EXCLUDED.execution_id,
                   expires_ms = EXCLUDED.expires_ms, response = EXCLUDED.response
                 WHERE hookflow_idempotency.execution_id = EXCLUDED.execution_id
                   OR hookflow_idempotency.response IS NOT NULL
                   OR hookflow_idempotency.expires_ms <= $6"
                .into())
            .await?,
            refused: p("INSERT INTO hookflow_refused (workflow, at_ms, reason, value)
                 VALUES ($1, $2, $3, $4)"
                .into())
            .await?,
            // The workflow's oldest past the bound go.
            trim_refused: p("DELETE FROM hookflow_refused WHERE workflow = $1 AND position <= (
                   SELECT position FROM hookflow_refused WHERE workflow = $1
                   ORDER BY position DESC OFFSET $2 LIMIT 1)"
                .into())
            .await?,
        })
    }
}
