//! An in-memory [`Store`] for runs that need no durability (`hookflow run`,
//! `hookflow test`): the same contract, nothing on disk, every write applied
//! at once.

use crate::contract::{Accepted, BoxFuture, IdempotencyClaim, Resumable, Saved, Store};
use crate::record::{
    ExecutionFilter, ExecutionRecord, IdempotencyEntry, RunInput, RunStatus, RunSummary,
};
use crate::refused::{RefusedFilter, RefusedRequest, KEPT_PER_WORKFLOW};
use crate::StoreResult;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// An unfinished durable run.
struct Live {
    record: ExecutionRecord,
    input: RunInput,
    wake_at: Option<u64>,
    frames: Json,
    parts: BTreeMap<String, Json>,
}

/// A finished run and the input it kept (durable runs).
struct Finished {
    record: ExecutionRecord,
    input: Option<RunInput>,
}

#[derive(Default)]
struct Data {
    live: BTreeMap<String, Live>,
    finished: BTreeMap<String, Finished>,
    announced: BTreeMap<String, ExecutionRecord>,
    versions: BTreeMap<String, String>,
    idempotency: BTreeMap<(String, String), IdempotencyEntry>,
    /// Refused requests per workflow, oldest first, with their position.
    refused: HashMap<String, VecDeque<(u64, RefusedRequest)>>,
    /// The position of the last refused request kept.
    refused_seq: u64,
}

/// Everything in memory, lost when dropped.
#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        match self.data.lock() {
            Ok(mut d) => f(&mut d),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// A record with its request put back from the input it keeps apart.
fn with_trigger(mut record: ExecutionRecord, input: Option<&RunInput>) -> ExecutionRecord {
    if record.trigger.is_none() {
        record.trigger = input.map(RunInput::recorded_trigger);
    }
    record
}

fn ready() -> BoxFuture<'static, StoreResult<()>> {
    Box::pin(async { Ok(()) })
}

impl Store for MemoryStore {
    fn accept(&self, run: Accepted) -> BoxFuture<'_, StoreResult<()>> {
        self.with(|d| {
            if let Some(claim) = run.idempotency {
                d.idempotency
                    .insert((claim.workflow, claim.key), claim.entry);
            }
            d.live.insert(
                run.record.id.clone(),
                Live {
                    record: run.record,
                    input: run.input,
                    wake_at: None,
                    frames: Json::Null,
                    parts: BTreeMap::new(),
                },
            );
        });
        ready()
    }

    fn save(&self, id: &str, saved: Saved) {
        self.with(|d| {
            let Some(live) = d.live.get_mut(id) else {
                return;
            };
            live.record.status = saved.status;
            live.wake_at = saved.wake_at;
            for (index, job) in saved.jobs {
                if index < live.record.jobs.len() {
                    live.record.jobs[index] = job;
                } else if index == live.record.jobs.len() {
                    live.record.jobs.push(job);
                }
            }
            live.frames = saved.position.frames;
            live.parts.extend(saved.position.parts);
        });
    }

    fn woke(&self, id: &str) {
        self.with(|d| {
            if let Some(live) = d.live.get_mut(id) {
                live.record.status = RunStatus::Running;
                live.wake_at = None;
            }
        });
    }

    fn finish(&self, record: ExecutionRecord, durable: bool) {
        self.with(|d| {
            let input = d.live.remove(&record.id).map(|l| l.input);
            d.announced.remove(&record.id);
            d.finished.insert(
                record.id.clone(),
                Finished {
                    record,
                    input: input.filter(|_| durable),
                },
            );
        });
    }

    fn announce(&self, record: ExecutionRecord) {
        self.with(|d| {
            d.announced.insert(record.id.clone(), record);
        });
    }

    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        ready()
    }

    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>> {
        Ok(self.with(|d| {
            if let Some(f) = d.finished.get(id) {
                return Some(with_trigger(f.record.clone(), f.input.as_ref()));
            }
            if let Some(l) = d.live.get(id) {
                return Some(with_trigger(l.record.clone(), Some(&l.input)));
            }
            d.announced.get(id).cloned()
        }))
    }

    fn input(&self, id: &str) -> StoreResult<Option<RunInput>> {
        Ok(self.with(|d| match d.live.get(id) {
            Some(l) => Some(l.input.clone()),
            None => d.finished.get(id).and_then(|f| f.input.clone()),
        }))
    }

    fn list(&self, f: &ExecutionFilter) -> StoreResult<(Vec<RunSummary>, Option<String>)> {
        Ok(self.with(|d| {
            let mut rows: BTreeMap<&str, RunSummary> = BTreeMap::new();
            let records = d
                .announced
                .values()
                .chain(d.live.values().map(|l| &l.record))
                .chain(d.finished.values().map(|f| &f.record));
            for r in records {
                rows.insert(&r.id, r.summary());
            }
            let limit = f.limit.max(1);
            let matching: Vec<RunSummary> = rows
                .into_values()
                .rev()
                .filter(|r| f.cursor.as_ref().is_none_or(|c| r.id < *c))
                .filter(|r| f.workflow.as_ref().is_none_or(|w| r.workflow == *w))
                .filter(|r| f.status.is_none_or(|s| r.status == s))
                .filter(|r| f.since_ms.is_none_or(|s| r.started_at.millis() >= s))
                .filter(|r| f.until_ms.is_none_or(|u| r.started_at.millis() <= u))
                .filter(|r| f.retries(r.retry_of.as_deref()))
                .take(limit + 1)
                .collect();
            let more = matching.len() > limit;
            let page: Vec<RunSummary> = matching.into_iter().take(limit).collect();
            let next = if more {
                page.last().map(|r| r.id.clone())
            } else {
                None
            };
            (page, next)
        }))
    }

    fn unfinished(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        Ok(self.with(|d| {
            d.live
                .iter()
                .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
                .filter(|(_, l)| l.record.status != RunStatus::Waiting)
                .map(|(id, _)| id.clone())
                .take(limit)
                .collect()
        }))
    }

    fn resumable(&self, id: &str) -> StoreResult<Option<Resumable>> {
        Ok(self.with(|d| {
            d.live.get(id).map(|l| Resumable {
                record: l.record.clone(),
                input: Some(l.input.clone()),
                frames: l.frames.clone(),
                parts: l.parts.clone(),
            })
        }))
    }

    fn next_wake(&self) -> StoreResult<Option<u64>> {
        Ok(self.with(|d| d.live.values().filter_map(|l| l.wake_at).min()))
    }

    fn due(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
        Ok(self.with(|d| {
            let mut due: Vec<(u64, &String)> = d
                .live
                .iter()
                .filter_map(|(id, l)| l.wake_at.filter(|w| *w <= now_ms).map(|w| (w, id)))
                .collect();
            due.sort();
            due.into_iter()
                .take(limit)
                .map(|(_, id)| id.clone())
                .collect()
        }))
    }

    fn put_version(&self, version: &str, source: &str) -> StoreResult<()> {
        self.with(|d| {
            d.versions
                .entry(version.into())
                .or_insert_with(|| source.into());
        });
        Ok(())
    }

    fn version(&self, version: &str) -> StoreResult<Option<String>> {
        Ok(self.with(|d| d.versions.get(version).cloned()))
    }

    fn idempotency(
        &self,
        workflow: &str,
        key: &str,
        now_ms: u64,
    ) -> StoreResult<Option<IdempotencyEntry>> {
        Ok(self.with(|d| {
            d.idempotency
                .get(&(workflow.to_string(), key.to_string()))
                .filter(|e| e.expires_ms > now_ms)
                .cloned()
        }))
    }

    fn put_idempotency(&self, claim: IdempotencyClaim) {
        self.with(|d| {
            d.idempotency
                .insert((claim.workflow, claim.key), claim.entry);
        });
    }

    fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize> {
        Ok(self.with(|d| {
            let before = d.idempotency.len();
            d.idempotency.retain(|_, e| e.expires_ms > now_ms);
            before - d.idempotency.len()
        }))
    }

    fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize> {
        Ok(self.with(|d| {
            let before = d.finished.len();
            d.finished
                .retain(|_, f| f.record.finished_at.is_none_or(|t| t.millis() >= cutoff_ms));
            before - d.finished.len()
        }))
    }

    fn damaged(&self) -> usize {
        0
    }

    fn refuse(&self, request: RefusedRequest) {
        self.with(|d| {
            d.refused_seq += 1;
            let seq = d.refused_seq;
            let kept = d.refused.entry(request.workflow.clone()).or_default();
            kept.push_back((seq, request));
            while kept.len() > KEPT_PER_WORKFLOW {
                kept.pop_front();
            }
        });
    }

    fn refused(
        &self,
        filter: &RefusedFilter,
    ) -> StoreResult<(Vec<RefusedRequest>, Option<String>)> {
        let before = filter.before().unwrap_or(u64::MAX);
        Ok(self.with(|d| {
            let mut entries: Vec<(u64, RefusedRequest)> = d
                .refused
                .iter()
                .filter(|(w, _)| filter.workflow.as_ref().is_none_or(|f| f == *w))
                .flat_map(|(_, kept)| kept.iter())
                .filter(|(seq, _)| *seq < before)
                .cloned()
                .collect();
            entries.sort_by_key(|e| std::cmp::Reverse(e.0));
            crate::refused::page(entries.into_iter(), filter)
        }))
    }
}
