//! The ordered writer: every write of a run (accept, save, woke, finish,
//! announce, sync idempotency keys) goes through one task that applies
//! what has arrived in one transaction (group commit): while a commit is
//! under way the next writes gather, so many acknowledgements share one
//! commit ([`apply`](super::apply) writes a turn with a few statements).
//! An accept resolves after the commit that holds its run and its
//! idempotency key; a key held by another run (another instance's, racing)
//! makes the accept fail with [`StoreError::KeyTaken`] and stores nothing.

use super::codec::{encode, encode_json, ms};
use super::Shared;
use crate::contract::{Accepted, IdempotencyClaim, Saved};
use crate::record::ExecutionRecord;
use crate::StoreResult;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;
/// Tries of a turn whose transaction failed, before its writes are given up.
const TRIES: u32 = 5;

/// The columns of a run row.
pub struct RunRow {
    pub(super) id: String,
    pub(super) workflow: String,
    pub(super) version: String,
    pub(super) status: &'static str,
    pub(super) started_ms: i64,
    pub(super) finished_ms: Option<i64>,
    pub(super) response_status: Option<i32>,
    pub(super) retry_of: Option<String>,
    pub(super) record: Vec<u8>,
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
            response_status: record.answered_status().map(i32::from),
            retry_of: record.retry_of.clone(),
            record: encode(record)?,
        })
    }

    fn weight(&self) -> usize {
        self.id.capacity()
            + self.workflow.capacity()
            + self.version.capacity()
            + self.retry_of.as_ref().map_or(0, String::capacity)
            + self.record.capacity()
    }
}

/// An idempotency key's columns.
pub struct KeyRow {
    pub(super) workflow: String,
    /// The key's bytes: a key is rendered from the request and may hold
    /// characters a text column refuses (NUL).
    pub(super) key: Vec<u8>,
    pub(super) execution_id: String,
    pub(super) expires_ms: i64,
    pub(super) response: Option<Vec<u8>>,
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

    fn weight(&self) -> usize {
        self.workflow.capacity()
            + self.key.capacity()
            + self.execution_id.capacity()
            + self.response.as_ref().map_or(0, Vec::capacity)
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

impl Write {
    /// The bytes it holds (what it weighs in the backlog's bound).
    pub(super) fn weight(&self) -> usize {
        match self {
            Write::Accept {
                run, input, key, ..
            } => run.weight() + input.capacity() + key.as_ref().map_or(0, KeyRow::weight),
            Write::Save {
                id,
                jobs,
                frames,
                parts,
                ..
            } => id.capacity() + frames.capacity() + crate::saved_weight(jobs, parts),
            Write::Woke { id } => id.capacity(),
            Write::Finish { run, .. } | Write::Announce { run } => run.weight(),
            Write::Idempotency(key) => key.weight(),
            Write::Refused {
                workflow,
                reason,
                value,
                ..
            } => workflow.capacity() + reason.capacity() + value.capacity(),
            Write::Flush(_) => 0,
        }
    }
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
        let weight = batch.iter().map(|w| w.write.weight()).sum::<usize>();
        turn(&shared, batch).await;
        shared
            .pending_bytes
            .fetch_sub(weight, std::sync::atomic::Ordering::Relaxed);
        applied.send_replace(last);
    }
}

/// What a turn tells each accept.
pub type Verdicts = Vec<StoreResult<()>>;

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

/// Longest pause between tries while the database cannot be reached.
const AWAY_PAUSE: Duration = Duration::from_secs(5);

/// [`apply`], tried `tries` times with a growing pause. A failure while
/// the database cannot be reached (refused connections, a restart) is not
/// a try: the turn waits for the database however long it is away — the
/// writes are of runs already acknowledged — while new webhook requests
/// are refused ([`Store::overloaded`](crate::Store::overloaded): from the
/// moment the database is found away, and by the backlog's bound).
async fn with_retries(shared: &Shared, batch: &[Submitted], tries: u32) -> StoreResult<Verdicts> {
    let mut attempt = 0;
    let mut away = 0u32;
    loop {
        match super::apply::apply(shared, batch).await {
            Ok(v) => {
                shared
                    .away
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                return Ok(v);
            }
            Err(error) if !reachable(shared).await => {
                shared
                    .away
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                if away.is_multiple_of(10) {
                    tracing::warn!(message = "The database cannot be reached; writes wait for it.", %error);
                }
                let pause = Duration::from_millis(100u64 << away.min(6)).min(AWAY_PAUSE);
                tokio::time::sleep(pause).await;
                away = away.saturating_add(1);
            }
            Err(error) if attempt + 1 < tries => {
                tracing::warn!(message = "A store write failed; trying again.", attempt, %error);
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Whether a connection answers a trivial query (within a bound).
async fn reachable(shared: &Shared) -> bool {
    let probe = async {
        match shared.conn().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    };
    tokio::time::timeout(AWAY_PAUSE, probe)
        .await
        .unwrap_or(false)
}
