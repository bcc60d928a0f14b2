//! Reads: a run's record, input and saved state; lists; the runs to resume
//! and to wake. A damaged entry met here is set aside (through the writer)
//! and skipped, never an error that stops the caller.

use super::codec::{decode, RunState};
use super::layout::{self, Id, HEAD, INPUT, JOB, PAGE, PART, STACK, STATE, WAKE};
use super::pages;
use super::SledStore;
use crate::contract::Resumable;
use crate::record::{ExecutionFilter, ExecutionRecord, JobRecord, RunInput, RunStatus, RunSummary};
use crate::{db_err, StoreResult};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// A finished run's page entry, decoded.
pub(crate) struct Packed {
    pub record: ExecutionRecord,
    pub input: Option<RunInput>,
}

impl SledStore {
    /// Decodes a value; a damaged one is set aside and read as absent.
    pub(crate) fn decoded<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        value: &[u8],
    ) -> Option<T> {
        match decode(key, value) {
            Ok(v) => Some(v),
            Err(error) => {
                self.set_aside(vec![key.to_vec()], &error);
                None
            }
        }
    }

    fn value<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StoreResult<Option<T>> {
        Ok(match self.runs.get(key).map_err(db_err)? {
            Some(v) => self.decoded(key, &v),
            None => None,
        })
    }

    /// An unfinished run's record as saved (its jobs, its status), without request.
    fn live_record(&self, id: &Id) -> StoreResult<Option<ExecutionRecord>> {
        let Some(mut record) = self.value::<ExecutionRecord>(&layout::run_key(HEAD, id))? else {
            return Ok(None);
        };
        if let Some(state) = self.value::<RunState>(&layout::run_key(STATE, id))? {
            record.status = state.status;
        }
        for item in self.runs.scan_prefix(layout::run_key(JOB, id)) {
            let (k, v) = item.map_err(db_err)?;
            let index = k
                .get(17..21)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .unwrap_or(u32::MAX) as usize;
            let Some(job) = self.decoded::<JobRecord>(&k, &v) else {
                continue;
            };
            if index < record.jobs.len() {
                record.jobs[index] = job;
            } else if index == record.jobs.len() {
                record.jobs.push(job);
            }
        }
        Ok(Some(record))
    }

    /// A finished run's entry in the pages of the second its id names (the
    /// last copy, should a resumed run have finished twice).
    pub(crate) fn packed(&self, id: &Id) -> StoreResult<Option<Packed>> {
        let mut found = None;
        for item in self
            .runs
            .scan_prefix(pages::bucket_prefix(pages::bucket_of(id)))
        {
            let (k, v) = item.map_err(db_err)?;
            let Ok(page) = pages::open(&v) else {
                self.set_aside(vec![k.to_vec()], &pages::corrupt(&k));
                continue;
            };
            for e in pages::entries(&page) {
                let Ok(e) = e else {
                    self.set_aside(vec![k.to_vec()], &pages::corrupt(&k));
                    break;
                };
                if e.id == *id {
                    let Some(record) = self.decoded(&k, e.record) else {
                        continue;
                    };
                    let input = match e.input.is_empty() {
                        true => None,
                        false => self.decoded(&k, e.input),
                    };
                    found = Some(Packed { record, input });
                }
            }
        }
        Ok(found)
    }

    /// One run's record, with its request (redacted).
    pub(crate) fn read_record(&self, id: &Id) -> StoreResult<Option<ExecutionRecord>> {
        if let Some(unwritten) = self.overlay.get(id) {
            if let Ok(mut record) = decode::<ExecutionRecord>(b"unwritten", &unwritten.record) {
                if record.trigger.is_none() && unwritten.durable {
                    record.trigger = self.read_input(id)?.map(|i| i.trigger.redacted());
                }
                return Ok(Some(record));
            }
        }
        if let Some(mut record) = self.live_record(id)? {
            if record.trigger.is_none() {
                record.trigger = self
                    .value::<RunInput>(&layout::run_key(INPUT, id))?
                    .map(|i| i.trigger.redacted());
            }
            return Ok(Some(record));
        }
        Ok(self.packed(id)?.map(|p| {
            let mut record = p.record;
            if record.trigger.is_none() {
                record.trigger = p.input.map(|i| i.trigger.redacted());
            }
            record
        }))
    }

    /// A run's input, live or kept with its finished record.
    pub(crate) fn read_input(&self, id: &Id) -> StoreResult<Option<RunInput>> {
        if let Some(input) = self.value(&layout::run_key(INPUT, id))? {
            return Ok(Some(input));
        }
        Ok(self.packed(id)?.and_then(|p| p.input))
    }

    /// An unfinished run as last saved.
    pub(crate) fn read_resumable(&self, id: &Id) -> StoreResult<Option<Resumable>> {
        let Some(record) = self.live_record(id)? else {
            return Ok(None);
        };
        let input = self.value(&layout::run_key(INPUT, id))?;
        let frames = self
            .value::<Json>(&layout::run_key(STACK, id))?
            .unwrap_or(Json::Null);
        let mut parts = BTreeMap::new();
        for item in self.runs.scan_prefix(layout::run_key(PART, id)) {
            let (k, v) = item.map_err(db_err)?;
            let name = String::from_utf8_lossy(&k[17..]).into_owned();
            if let Some(value) = self.decoded::<Json>(&k, &v) {
                parts.insert(name, value);
            }
        }
        Ok(Some(Resumable {
            record,
            input,
            frames,
            parts,
        }))
    }

    /// The status of an unfinished run (queued until it saved progress).
    fn live_status(&self, id: &Id) -> StoreResult<RunStatus> {
        if self.overlay.is_woken(id) {
            return Ok(RunStatus::Running);
        }
        Ok(self
            .value::<RunState>(&layout::run_key(STATE, id))?
            .map_or(RunStatus::Queued, |s| s.status))
    }

    /// Queued and running runs, oldest first, after `after`.
    pub(crate) fn read_unfinished(
        &self,
        after: Option<&Id>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let start = match after {
            Some(id) => {
                let mut k = layout::run_key(HEAD, id).to_vec();
                k.push(0);
                k
            }
            None => vec![HEAD],
        };
        let mut out = Vec::new();
        for item in self.runs.range(start..vec![HEAD + 1]) {
            let (k, _) = item.map_err(db_err)?;
            let Some(id) = layout::id_of(&k) else {
                continue;
            };
            if self.live_status(&id)? != RunStatus::Waiting {
                out.push(layout::id_string(&id));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Waiting runs due at `now_ms` (all of them for `u64::MAX`), earliest first.
    pub(crate) fn read_due(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<(u64, Id)>> {
        let end = layout::wake_key(now_ms, &[0xff; 16]).to_vec();
        let mut out = Vec::new();
        for item in self.runs.range(vec![WAKE]..=end) {
            let (k, _) = item.map_err(db_err)?;
            let Some((ms, id)) = layout::wake_of(&k) else {
                continue;
            };
            if !self.overlay.is_woken(&id) {
                out.push((ms, id));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Runs newest first: not yet written, unfinished, then finished pages.
    pub(crate) fn read_list(
        &self,
        f: &ExecutionFilter,
    ) -> StoreResult<(Vec<RunSummary>, Option<String>)> {
        let cursor = f.cursor.as_deref().and_then(layout::id_bytes);
        let limit = f.limit.max(1);
        let wanted = |id: &Id, workflow: &[u8], status: RunStatus, started_ms: u64| {
            cursor.is_none_or(|c| *id < c)
                && f.since_ms.is_none_or(|s| started_ms >= s)
                && f.until_ms.is_none_or(|u| started_ms <= u)
                && f.workflow.as_ref().is_none_or(|w| w.as_bytes() == workflow)
                && f.status.is_none_or(|s| s == status)
        };
        // The newest `limit + 1` matching runs (one more than asked tells
        // whether there is a next page): not yet written, unfinished, then
        // the pages a second at a time from the newest.
        let keep = limit + 1;
        let mut rows: BTreeMap<Id, RunSummary> = BTreeMap::new();
        let add = |rows: &mut BTreeMap<Id, RunSummary>, id: Id, summary: RunSummary| {
            rows.entry(id).or_insert(summary);
            if rows.len() > keep {
                rows.pop_first();
            }
        };
        let full_and_older = |rows: &BTreeMap<Id, RunSummary>, id: &Id| {
            rows.len() >= keep && rows.keys().next().is_some_and(|oldest| id < oldest)
        };
        for (id, unwritten) in self.overlay.all() {
            if let Ok(r) = decode::<ExecutionRecord>(b"unwritten", &unwritten.record) {
                if wanted(&id, r.workflow.as_bytes(), r.status, r.started_ms) {
                    add(&mut rows, id, r.summary());
                }
            }
        }
        let upper = match cursor {
            Some(c) => layout::run_key(HEAD, &c).to_vec(),
            None => vec![HEAD + 1],
        };
        for item in self.runs.range(vec![HEAD]..upper).rev() {
            let (k, v) = item.map_err(db_err)?;
            let Some(id) = layout::id_of(&k) else {
                continue;
            };
            if full_and_older(&rows, &id) {
                break;
            }
            let Some(mut r) = self.decoded::<ExecutionRecord>(&k, &v) else {
                continue;
            };
            r.status = self.live_status(&id)?;
            if wanted(&id, r.workflow.as_bytes(), r.status, r.started_ms) {
                add(&mut rows, id, r.summary());
            }
        }
        let end = match cursor {
            Some(c) => pages::bucket_prefix(pages::bucket_of(&c).saturating_add(1)).to_vec(),
            None => vec![PAGE + 1],
        };
        for item in self.runs.range(vec![PAGE]..end).rev() {
            let (k, v) = item.map_err(db_err)?;
            let Some(b) = pages::bucket_of_key(&k) else {
                continue;
            };
            // Ids are time-ordered: a second older than every row kept, or
            // before `since`, ends the walk.
            let older = rows.len() >= keep
                && rows
                    .keys()
                    .next()
                    .is_some_and(|oldest| b < pages::bucket_of(oldest));
            if older || f.since_ms.is_some_and(|s| pages::bucket_end_ms(b) <= s) {
                break;
            }
            let Ok(page) = pages::open(&v) else {
                self.set_aside(vec![k.to_vec()], &pages::corrupt(&k));
                continue;
            };
            for e in pages::entries(&page) {
                let Ok(e) = e else {
                    self.set_aside(vec![k.to_vec()], &pages::corrupt(&k));
                    break;
                };
                if rows.contains_key(&e.id)
                    || full_and_older(&rows, &e.id)
                    || !wanted(&e.id, e.workflow, e.status, e.started_ms)
                {
                    continue;
                }
                if let Some(r) = self.decoded::<ExecutionRecord>(&k, e.record) {
                    add(&mut rows, e.id, r.summary());
                }
            }
        }
        let mut out: Vec<RunSummary> = rows.into_values().rev().collect();
        let more = out.len() > limit;
        out.truncate(limit);
        let next = if more {
            out.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }
}
