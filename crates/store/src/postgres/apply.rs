//! One turn of the writer in one transaction. The idempotency keys of
//! accepts are claimed first (a key another run holds keeps that accept's
//! run out); then every write goes in, grouped: writes of different runs
//! commute, so the turn is cut into segments in which no run (and no key)
//! appears twice, and a segment sends one statement per kind of write with
//! its values as arrays (`unnest`). A turn of a thousand acknowledgements
//! and finishes costs a dozen statements, not thousands; the statements of
//! a turn are pipelined, in order.

use super::codec::ms;
use super::reads::{key_entry, KEY_ENTRY};
use super::writer::{KeyRow, RunRow, Submitted, Verdicts, Write};
use super::{pg_err, Shared};
use crate::record::RunStatus;
use crate::{StoreError, StoreResult};
use deadpool_postgres::Transaction;
use futures_util::future::try_join_all;
use std::collections::HashSet;
use tokio_postgres::types::ToSql;

/// Refused requests kept per workflow.
const KEPT: i64 = crate::refused::KEPT_PER_WORKFLOW as i64;

type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// One transaction with every write of the batch; one verdict per write.
pub async fn apply(shared: &Shared, batch: &[Submitted]) -> StoreResult<Verdicts> {
    let mut client = shared.conn().await?;
    let tx = client.transaction().await.map_err(pg_err)?;
    let now = ms(hookflow_model::time::now_millis());
    let offset = shared.offset_ms();
    let verdicts = claim_keys(&tx, batch, now).await?;
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
    let lease = ms(u64::try_from(shared.options.lease.as_millis()).unwrap_or(u64::MAX));
    let owner = shared.options.instance.as_str();
    let groups = segments(batch, &verdicts, offset);
    let mut trimmed: Vec<&str> = Vec::new();
    for g in &groups {
        for w in &g.refused.workflows {
            if !trimmed.contains(w) {
                trimmed.push(w);
            }
        }
    }
    let sql = Statements::prepare(&tx).await?;
    let fixed = Fixed {
        now: &now,
        owner: &owner,
        lease: &lease,
        kept: &KEPT,
    };
    let mut pending = Vec::new();
    for g in &groups {
        for (st, params) in g.statements(&sql, &fixed) {
            pending.push(tx.execute_raw(st, params));
        }
    }
    for workflow in &trimmed {
        let params: Params<'_> = vec![workflow, fixed.kept];
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

/// Claims the idempotency keys of the batch's accepts, in order: an accept
/// whose key another run holds (and that has not expired) gets
/// [`StoreError::KeyTaken`] with that run's entry; every other write `Ok`.
async fn claim_keys(tx: &Transaction<'_>, batch: &[Submitted], now: i64) -> StoreResult<Verdicts> {
    let mut verdicts: Verdicts = batch.iter().map(|_| Ok(())).collect();
    let keyed: Vec<(usize, &KeyRow)> = batch
        .iter()
        .enumerate()
        .filter_map(|(at, s)| match &s.write {
            Write::Accept { key: Some(k), .. } => Some((at, k)),
            _ => None,
        })
        .collect();
    if keyed.is_empty() {
        return Ok(verdicts);
    }
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
    let params: Vec<Params<'_>> = keyed
        .iter()
        .map(|(_, k)| {
            let p: Params<'_> = vec![
                &k.workflow,
                &k.key,
                &k.execution_id,
                &k.expires_ms,
                &k.response,
                &now,
            ];
            p
        })
        .collect();
    let won = try_join_all(params.iter().map(|p| tx.query_opt(&claim_key, p)))
        .await
        .map_err(pg_err)?;
    for ((at, k), won) in keyed.into_iter().zip(won) {
        if won.is_none() {
            // Not claimed: a run holds it, unexpired at `now`.
            let row = tx
                .query_opt(KEY_ENTRY, &[&k.workflow, &k.key, &now])
                .await
                .map_err(pg_err)?
                .ok_or_else(|| {
                    StoreError::Db("an idempotency key was neither claimed nor held".into())
                })?;
            let entry = key_entry(&row)?;
            // This very run: the turn is being tried again after a commit
            // whose answer was lost (the connection dropped after the
            // database committed). Its accept stands; the rest of its
            // writes are no-ops the second time.
            if entry.execution_id != k.execution_id {
                verdicts[at] = Err(StoreError::KeyTaken(Box::new(entry)));
            }
        }
    }
    Ok(verdicts)
}

/// The batch's writes (those not refused), cut where a run or a key comes
/// again, each part grouped by kind.
fn segments<'a>(batch: &'a [Submitted], verdicts: &Verdicts, offset: i64) -> Vec<Group<'a>> {
    let group = || Group {
        offset,
        ..Group::default()
    };
    let mut groups = vec![group()];
    let mut runs: HashSet<&str> = HashSet::new();
    let mut keys: HashSet<(&str, &[u8])> = HashSet::new();
    for (s, verdict) in batch.iter().zip(verdicts) {
        if verdict.is_err() {
            continue;
        }
        let again = match &s.write {
            Write::Accept { run, .. } | Write::Finish { run, .. } | Write::Announce { run } => {
                !runs.insert(&run.id)
            }
            Write::Save { id, .. } | Write::Woke { id } => !runs.insert(id),
            Write::Idempotency(k) => !keys.insert((&k.workflow, &k.key)),
            Write::Refused { .. } | Write::Flush(_) => false,
        };
        if again {
            runs.clear();
            keys.clear();
            match &s.write {
                Write::Idempotency(k) => keys.insert((&k.workflow, &k.key)),
                Write::Accept { run, .. } | Write::Finish { run, .. } | Write::Announce { run } => {
                    runs.insert(&run.id)
                }
                Write::Save { id, .. } | Write::Woke { id } => runs.insert(id),
                Write::Refused { .. } | Write::Flush(_) => false,
            };
            groups.push(group());
        }
        if let Some(g) = groups.last_mut() {
            g.add(&s.write);
        }
    }
    groups
}

/// Columns of runs, as arrays.
#[derive(Default)]
struct Runs<'a> {
    id: Vec<&'a str>,
    workflow: Vec<&'a str>,
    version: Vec<&'a str>,
    status: Vec<&'a str>,
    started_ms: Vec<i64>,
    finished_ms: Vec<Option<i64>>,
    response_status: Vec<Option<i32>>,
    retry_of: Vec<Option<&'a str>>,
    record: Vec<&'a [u8]>,
    durable: Vec<bool>,
    input: Vec<&'a [u8]>,
}

impl<'a> Runs<'a> {
    fn add(&mut self, run: &'a RunRow, durable: bool, input: Option<&'a [u8]>) {
        self.id.push(&run.id);
        self.workflow.push(&run.workflow);
        self.version.push(&run.version);
        self.status.push(run.status);
        self.started_ms.push(run.started_ms);
        self.finished_ms.push(run.finished_ms);
        self.response_status.push(run.response_status);
        self.retry_of.push(run.retry_of.as_deref());
        self.record.push(&run.record);
        self.durable.push(durable);
        if let Some(input) = input {
            self.input.push(input);
        }
    }

    fn params(&self, with_input: bool) -> Params<'_> {
        let mut p: Params<'_> = vec![
            &self.id,
            &self.workflow,
            &self.version,
            &self.status,
            &self.started_ms,
            &self.finished_ms,
            &self.response_status,
            &self.retry_of,
            &self.record,
            &self.durable,
        ];
        if with_input {
            p.push(&self.input);
        }
        p
    }
}

/// Refused requests, as arrays.
#[derive(Default)]
struct Refused<'a> {
    workflows: Vec<&'a str>,
    at_ms: Vec<i64>,
    reasons: Vec<&'a str>,
    values: Vec<&'a [u8]>,
}

/// Idempotency keys of sync runs, as arrays.
#[derive(Default)]
struct Keys<'a> {
    workflow: Vec<&'a str>,
    key: Vec<&'a [u8]>,
    execution_id: Vec<&'a str>,
    expires_ms: Vec<i64>,
    response: Vec<Option<&'a [u8]>>,
}

/// A segment's writes by kind: no run and no key twice.
#[derive(Default)]
struct Group<'a> {
    /// The database's clock minus this process's: wake times are kept on
    /// the database's (`clock.rs`).
    offset: i64,
    accepted: Runs<'a>,
    /// Saves: queue rows and statuses.
    saved_id: Vec<&'a str>,
    saved_status: Vec<&'a str>,
    saved_wake: Vec<Option<i64>>,
    saved_frames: Vec<&'a [u8]>,
    /// Jobs and parts of saves.
    job_run: Vec<&'a str>,
    job_idx: Vec<i32>,
    job: Vec<&'a [u8]>,
    part_run: Vec<&'a str>,
    part_name: Vec<&'a str>,
    part: Vec<&'a [u8]>,
    woke: Vec<&'a str>,
    /// Finished runs; durable ones leave the queue with their live state.
    finished: Runs<'a>,
    announced: Runs<'a>,
    keys: Keys<'a>,
    refused: Refused<'a>,
}

impl<'a> Group<'a> {
    fn add(&mut self, write: &'a Write) {
        match write {
            Write::Accept { run, input, .. } => self.accepted.add(run, true, Some(input)),
            Write::Save {
                id,
                status,
                wake_at,
                jobs,
                frames,
                parts,
            } => {
                self.saved_id.push(id);
                self.saved_status.push(status);
                self.saved_wake
                    .push(wake_at.map(|at| at.saturating_add(self.offset)));
                self.saved_frames.push(frames);
                for (i, job) in jobs {
                    self.job_run.push(id);
                    self.job_idx.push(*i);
                    self.job.push(job);
                }
                for (name, value) in parts {
                    self.part_run.push(id);
                    self.part_name.push(name);
                    self.part.push(value);
                }
            }
            Write::Woke { id } => self.woke.push(id),
            Write::Finish { run, durable } => self.finished.add(run, *durable, None),
            Write::Announce { run } => self.announced.add(run, false, None),
            Write::Idempotency(k) => {
                self.keys.workflow.push(&k.workflow);
                self.keys.key.push(&k.key);
                self.keys.execution_id.push(&k.execution_id);
                self.keys.expires_ms.push(k.expires_ms);
                self.keys.response.push(k.response.as_deref());
            }
            Write::Refused {
                workflow,
                at_ms,
                reason,
                value,
            } => {
                self.refused.workflows.push(workflow);
                self.refused.at_ms.push(*at_ms);
                self.refused.reasons.push(reason);
                self.refused.values.push(value);
            }
            Write::Flush(_) => {}
        }
    }

    /// The segment's statements with their parameters, in the order a
    /// run's writes come: accepted, saved, woken, finished.
    fn statements<'t>(
        &'t self,
        sql: &'t Statements,
        fixed: &'t Fixed<'t>,
    ) -> Vec<(&'t tokio_postgres::Statement, Params<'t>)> {
        let mut calls = Vec::new();
        let mut add = |st: &'t tokio_postgres::Statement, params: Params<'t>| {
            calls.push((st, params));
        };
        if !self.accepted.id.is_empty() {
            add(&sql.insert_runs, self.accepted.params(true));
            add(
                &sql.insert_queue,
                vec![
                    &self.accepted.id,
                    &self.accepted.status,
                    fixed.owner,
                    fixed.lease,
                ],
            );
        }
        if !self.saved_id.is_empty() {
            add(
                &sql.save,
                vec![
                    &self.saved_id,
                    &self.saved_status,
                    &self.saved_wake,
                    &self.saved_frames,
                    fixed.owner,
                    &self.job_run,
                    &self.job_idx,
                    &self.job,
                    &self.part_run,
                    &self.part_name,
                    &self.part,
                ],
            );
        }
        if !self.woke.is_empty() {
            add(&sql.woke, vec![&self.woke, fixed.owner, fixed.lease]);
            add(&sql.set_running, vec![&self.woke]);
        }
        if !self.finished.id.is_empty() {
            let mut params = self.finished.params(false);
            params.push(fixed.owner);
            add(&sql.finish_runs, params);
        }
        if !self.announced.id.is_empty() {
            add(&sql.announce, self.announced.params(false));
        }
        if !self.keys.workflow.is_empty() {
            let k = &self.keys;
            add(
                &sql.put_keys,
                vec![
                    &k.workflow,
                    &k.key,
                    &k.execution_id,
                    &k.expires_ms,
                    &k.response,
                    fixed.now,
                ],
            );
        }
        if !self.refused.workflows.is_empty() {
            let r = &self.refused;
            add(
                &sql.refused,
                vec![&r.workflows, &r.at_ms, &r.reasons, &r.values],
            );
        }
        calls
    }
}

/// Parameters of a turn that are not in its writes.
struct Fixed<'a> {
    now: &'a (dyn ToSql + Sync),
    owner: &'a (dyn ToSql + Sync),
    lease: &'a (dyn ToSql + Sync),
    kept: &'a (dyn ToSql + Sync),
}

/// The statements of a turn (prepared once per connection).
struct Statements {
    insert_runs: tokio_postgres::Statement,
    insert_queue: tokio_postgres::Statement,
    save: tokio_postgres::Statement,
    woke: tokio_postgres::Statement,
    set_running: tokio_postgres::Statement,
    finish_runs: tokio_postgres::Statement,
    announce: tokio_postgres::Statement,
    put_keys: tokio_postgres::Statement,
    refused: tokio_postgres::Statement,
    trim_refused: tokio_postgres::Statement,
}

/// The run columns, and the same as arrays to unnest.
const RUN_COLUMNS: &str = "id, workflow, version, status, started_ms, finished_ms, \
     response_status, retry_of, record, durable";
const RUN_ARRAYS: &str = "$1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
     $6::int8[], $7::int4[], $8::text[], $9::bytea[], $10::bool[]";

/// Upserts rows of runs' live state (jobs, parts) by (run, `key`), the
/// arrays `$n`, `$n+1`, `$n+2`, only for runs in `saved` (a save that
/// did not apply adds nothing).
fn live_rows(table: &str, (key, key_type): (&str, &str), value: &str, n: usize) -> String {
    format!(
        "INSERT INTO {table} (run_id, {key}, {value})
         SELECT t.run_id, t.{key}, t.{value}
         FROM unnest(${n}::text[], ${}::{key_type}[], ${}::bytea[]) AS t(run_id, {key}, {value})
         WHERE t.run_id IN (SELECT id FROM saved)
         ON CONFLICT (run_id, {key}) DO UPDATE SET {value} = EXCLUDED.{value}",
        n + 1,
        n + 2
    )
}

impl Statements {
    async fn prepare(tx: &Transaction<'_>) -> StoreResult<Statements> {
        let p = |sql: String| async move { tx.prepare_cached(&sql).await.map_err(pg_err) };
        let running = RunStatus::Running.as_str();
        Ok(Statements {
            insert_runs: p(format!(
                "INSERT INTO hookflow_runs ({RUN_COLUMNS}, input)
                 SELECT * FROM unnest({RUN_ARRAYS}, $11::bytea[])
                 ON CONFLICT (id) DO NOTHING"
            ))
            .await?,
            insert_queue: p("INSERT INTO hookflow_queue (id, status, owner, lease_until)
                 SELECT id, status, $3, hookflow_now_ms() + $4
                 FROM unnest($1::text[], $2::text[]) AS t(id, status)
                 ON CONFLICT (id) DO NOTHING"
                .into())
            .await?,
            // A save applies only while this instance owns the run: one
            // that lost it (its lease ran out while it was paused or cut
            // off, and another took it over) changes nothing, neither the
            // position nor the owner (a wait would free the run for a
            // second instance to claim while the first still runs it).
            save: p(format!(
                "WITH saved AS (
                   UPDATE hookflow_queue q SET status = t.status,
                     wake_at = t.wake_at,
                     frames = t.frames, owner = CASE WHEN t.wake_at IS NULL THEN q.owner END
                   FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[])
                     AS t(id, status, wake_at, frames)
                   WHERE q.id = t.id AND q.owner = $5
                   RETURNING q.id, q.status),
                 statuses AS (
                   UPDATE hookflow_runs r SET status = saved.status FROM saved
                   WHERE r.id = saved.id AND r.finished_ms IS NULL),
                 jobs AS ({}),
                 parts AS ({})
                 SELECT count(*) FROM saved",
                live_rows("hookflow_jobs", ("idx", "int4"), "job", 6),
                live_rows("hookflow_parts", ("name", "text"), "value", 9),
            ))
            .await?,
            woke: p("UPDATE hookflow_queue SET status = 'running', wake_at = NULL,
                   owner = $2, lease_until = hookflow_now_ms() + $3
                 WHERE id = ANY($1::text[])"
                .into())
            .await?,
            set_running: p(format!(
                "UPDATE hookflow_runs SET status = '{running}'
                 WHERE id = ANY($1::text[]) AND finished_ms IS NULL"
            ))
            .await?,
            // A run finishes once: a second finish changes nothing. A
            // durable run leaves the queue with its live state, and only
            // its owner finishes it: an instance that lost it finishing
            // late changes nothing (its queue row is another's). One in no
            // queue row (never queued) is written as it comes.
            finish_runs: p(format!(
                "WITH dropped AS (
                   DELETE FROM hookflow_queue q
                   USING unnest($1::text[], $10::bool[]) AS d(id, durable)
                   WHERE q.id = d.id AND d.durable AND q.owner = $11
                   RETURNING q.id),
                 jobs AS (DELETE FROM hookflow_jobs WHERE run_id IN (SELECT id FROM dropped)),
                 parts AS (DELETE FROM hookflow_parts WHERE run_id IN (SELECT id FROM dropped))
                 INSERT INTO hookflow_runs ({RUN_COLUMNS})
                 SELECT * FROM unnest({RUN_ARRAYS}) AS u({RUN_COLUMNS})
                 WHERE NOT u.durable OR u.id IN (SELECT id FROM dropped)
                   OR NOT EXISTS (SELECT 1 FROM hookflow_queue q WHERE q.id = u.id)
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
                 SELECT * FROM unnest({RUN_ARRAYS})
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
                   record = EXCLUDED.record, response_status = EXCLUDED.response_status
                 WHERE hookflow_runs.finished_ms IS NULL AND NOT hookflow_runs.durable"
            ))
            .await?,
            // A sync run's answer replaces its own pending claim, an answer
            // or an expired row, never another run's live pending claim
            // (`pending.rs`).
            put_keys: p("INSERT INTO hookflow_idempotency (workflow, key, execution_id, expires_ms, response)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::int8[], $5::bytea[])
                 ON CONFLICT (workflow, key) DO UPDATE SET execution_id = EXCLUDED.execution_id,
                   expires_ms = EXCLUDED.expires_ms, response = EXCLUDED.response
                 WHERE hookflow_idempotency.execution_id = EXCLUDED.execution_id
                   OR hookflow_idempotency.response IS NOT NULL
                   OR hookflow_idempotency.expires_ms <= $6"
                .into())
            .await?,
            // In the order they came: `position` is given as rows are inserted.
            refused: p("INSERT INTO hookflow_refused (workflow, at_ms, reason, value)
                 SELECT workflow, at_ms, reason, value
                 FROM unnest($1::text[], $2::int8[], $3::text[], $4::bytea[])
                   WITH ORDINALITY AS t(workflow, at_ms, reason, value, n)
                 ORDER BY n"
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
