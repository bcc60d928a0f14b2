//! Reads: a run's record, input and saved state; lists; the runs to resume
//! and to wake. A damaged entry met here is set aside (through the writer)
//! and skipped, never an error that stops the caller.

use super::codec::{decode, split_head, RunState};
use super::layout::{self, Id, HEAD, JOB, PAGE, PART, RUN, RUNNING, STACK, STATE, WAKE};
use super::overlay::WakeScan;
use super::pages;
use super::queued::{self, QUEUE};
use super::{lock, SledStore};
use crate::contract::Resumable;
use crate::record::{ExecutionFilter, ExecutionRecord, JobRecord, RunInput, RunStatus, RunSummary};
use crate::{db_err, StoreResult};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};

/// An unfinished run's head and what it saved, as reads assemble it.
struct Head {
    record: ExecutionRecord,
    input: Option<RunInput>,
    jobs: BTreeMap<usize, JobRecord>,
    parts: BTreeMap<String, Json>,
    frames: Option<Json>,
    state: Option<RunState>,
}

impl Head {
    fn new(record: ExecutionRecord, input: Option<RunInput>) -> Head {
        Head {
            record,
            input,
            jobs: BTreeMap::new(),
            parts: BTreeMap::new(),
            frames: None,
            state: None,
        }
    }

    /// Applies one saved key (from the head's first save, or a key of its own).
    fn apply(&mut self, store: &SledStore, key: &[u8], kind: u8, name: &[u8], value: &[u8]) {
        match kind {
            JOB => {
                let index = <[u8; 4]>::try_from(name)
                    .ok()
                    .map(u32::from_be_bytes)
                    .and_then(|i| usize::try_from(i).ok());
                if let (Some(i), Some(job)) = (index, store.decoded::<JobRecord>(key, value)) {
                    self.jobs.insert(i, job);
                }
            }
            PART => {
                if let Some(v) = store.decoded::<Json>(key, value) {
                    self.parts
                        .insert(String::from_utf8_lossy(name).into_owned(), v);
                }
            }
            STACK => self.frames = store.decoded::<Json>(key, value),
            STATE => self.state = store.decoded::<RunState>(key, value),
            _ => {}
        }
    }

    /// Queued until it saved progress.
    fn status(&self) -> RunStatus {
        self.state.map_or(RunStatus::Queued, |s| s.status)
    }

    /// The record with its jobs (in index order, up to the first gap) and status.
    fn into_record(self) -> (ExecutionRecord, Option<RunInput>) {
        let status = self.status();
        let mut record = self.record;
        record.status = status;
        for (i, job) in self.jobs {
            if i == record.jobs.len() {
                record.jobs.push(job);
            } else if i < record.jobs.len() {
                record.jobs[i] = job;
            }
        }
        (record, self.input)
    }
}

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

    /// The head key of a run that saved progress.
    fn own_head(&self, id: &Id) -> StoreResult<Option<Head>> {
        let key = layout::run_key(id, HEAD);
        let Some(v) = self.runs.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        self.split_decoded(&key, &v)
    }

    /// A head value, decoded with what its first save carried; a damaged
    /// one is set aside and read as absent.
    fn split_decoded(&self, key: &[u8], v: &[u8]) -> StoreResult<Option<Head>> {
        let parts = match split_head(key, v) {
            Ok(parts) => parts,
            Err(error) => {
                self.set_aside(vec![key.to_vec()], &error);
                return Ok(None);
            }
        };
        let Some(record) = self.decoded::<ExecutionRecord>(key, parts.record) else {
            return Ok(None);
        };
        let input = match parts.input.is_empty() {
            true => None,
            false => self.decoded::<RunInput>(key, parts.input),
        };
        let mut head = Head::new(record, input);
        for (kind, name, value) in parts.first {
            head.apply(self, key, kind, name, value);
        }
        Ok(Some(head))
    }

    /// An unfinished run's head: its record (as accepted) and its input,
    /// from its queue page (`pages` keeps pages opened by the caller) or its
    /// own head key.
    fn head_in(
        &self,
        id: &Id,
        pages: &mut HashMap<u64, Option<Vec<u8>>>,
    ) -> StoreResult<Option<Head>> {
        let Some(run) = lock(&self.queued).runs.get(id).cloned() else {
            return self.own_head(id);
        };
        let key = queued::page_key(QUEUE, run.page);
        if let std::collections::hash_map::Entry::Vacant(slot) = pages.entry(run.page) {
            // A page not written yet (its turn is being applied) reads as absent.
            let page = match self.runs.get(key).map_err(db_err)? {
                Some(v) => match queued::open(&key, &v) {
                    Ok(page) => Some(page),
                    Err(error) => {
                        self.set_aside(vec![key.to_vec()], &error);
                        None
                    }
                },
                None => None,
            };
            slot.insert(page);
        }
        let Some(Some(page)) = pages.get(&run.page) else {
            return Ok(None);
        };
        let entries = match queued::entries(&key, page) {
            Ok(entries) => entries,
            Err(error) => {
                self.set_aside(vec![key.to_vec()], &error);
                return Ok(None);
            }
        };
        let Some(e) = entries.get(usize::from(run.index)).filter(|e| e.id == *id) else {
            return Ok(None);
        };
        let Some(record) = self.decoded::<ExecutionRecord>(&key, e.head) else {
            return Ok(None);
        };
        let input = match e.input.is_empty() {
            true => None,
            false => self.decoded::<RunInput>(&key, e.input),
        };
        Ok(Some(Head::new(record, input)))
    }

    /// An unfinished run as saved: its head, then its own keys, which win.
    fn live(&self, id: &Id) -> StoreResult<Option<Head>> {
        let Some(mut head) = self.head_in(id, &mut HashMap::new())? else {
            return Ok(None);
        };
        for item in self.runs.scan_prefix(layout::run_prefix(id)) {
            let (k, v) = item.map_err(db_err)?;
            if let Some(kind @ (JOB | PART | STACK | STATE)) = layout::kind_of(&k) {
                head.apply(self, &k, kind, &k[18..], &v);
            }
        }
        Ok(Some(head))
    }

    /// An unfinished run's record as saved (its jobs, its status), without
    /// request; and its input.
    fn live_record(&self, id: &Id) -> StoreResult<Option<(ExecutionRecord, Option<RunInput>)>> {
        Ok(self.live(id)?.map(Head::into_record))
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
        if let Some(announced) = self.overlay.get(id) {
            if let Ok(record) = decode::<ExecutionRecord>(b"announced", &announced) {
                return Ok(Some(record));
            }
        }
        if let Some((mut record, input)) = self.live_record(id)? {
            if record.trigger.is_none() {
                record.trigger = input.map(|i| i.recorded_trigger());
            }
            return Ok(Some(record));
        }
        Ok(self.packed(id)?.map(|p| {
            let mut record = p.record;
            if record.trigger.is_none() {
                record.trigger = p.input.map(|i| i.recorded_trigger());
            }
            record
        }))
    }

    /// A run's input, live or kept with its finished record.
    pub(crate) fn read_input(&self, id: &Id) -> StoreResult<Option<RunInput>> {
        if let Some(head) = self.head_in(id, &mut HashMap::new())? {
            return Ok(head.input);
        }
        Ok(self.packed(id)?.and_then(|p| p.input))
    }

    /// An unfinished run as last saved.
    pub(crate) fn read_resumable(&self, id: &Id) -> StoreResult<Option<Resumable>> {
        let Some(head) = self.live(id)? else {
            return Ok(None);
        };
        let frames = head.frames.clone().unwrap_or(Json::Null);
        let parts = head.parts.clone();
        let (record, input) = head.into_record();
        Ok(Some(Resumable {
            record,
            input,
            frames,
            parts,
        }))
    }

    /// The status of a run with a head of its own: its `t` key, or what its
    /// head carries.
    fn own_status(&self, id: &Id, head: &Head) -> StoreResult<RunStatus> {
        if self.overlay.is_woken(id) {
            return Ok(RunStatus::Running);
        }
        Ok(match self.value::<RunState>(&layout::run_key(id, STATE))? {
            Some(state) => state.status,
            None => head.status(),
        })
    }

    /// Queued and running runs, oldest first, after `after`.
    pub(crate) fn read_unfinished(
        &self,
        after: Option<&Id>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        // Runs still in queue pages are queued; runs with heads of their own
        // that run are marked (`u` keys): no run's data is read.
        // Only the first `limit` of each source can be among the first
        // `limit` of both: a page costs `limit` reads, not every marker.
        let mut ids: Vec<Id> = {
            let index = lock(&self.queued);
            index
                .runs
                .keys()
                .filter(|id| after.is_none_or(|a| *id > a))
                .copied()
                .collect()
        };
        if ids.len() > limit {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        let start = match after {
            Some(a) => {
                let mut k = layout::running_key(a).to_vec();
                k.push(0);
                k
            }
            None => vec![RUNNING],
        };
        for item in self.runs.range(start..vec![RUNNING + 1]).take(limit) {
            let (k, _) = item.map_err(db_err)?;
            if let Some(id) = layout::id_of(&k) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids.iter().take(limit).map(layout::id_string).collect())
    }

    /// Waiting runs due at `now_ms` (all of them for `u64::MAX`), earliest
    /// first, not taken: in `scan` ([`Overlay::begin_scan`]).
    pub(crate) fn read_due(
        &self,
        scan: &WakeScan<'_>,
        now_ms: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Id)>> {
        let end = layout::wake_key(now_ms, &[0xff; 16]).to_vec();
        let mut out = Vec::new();
        for item in self.runs.range(vec![WAKE]..=end) {
            let (k, _) = item.map_err(db_err)?;
            let Some((ms, id)) = layout::wake_of(&k) else {
                continue;
            };
            if !self.overlay.taken(scan, &id) {
                out.push((ms, id));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The retries of run `id`, oldest first: the `y` keys written with
    /// them, and sync retries still running (announced).
    pub(crate) fn read_retries(&self, id: &Id) -> StoreResult<Vec<String>> {
        let mut found = self.overlay.retries_of(id);
        for key in self.runs.scan_prefix(layout::retry_prefix(id)).keys() {
            if let Some((_, retry)) = layout::retry_of(&key.map_err(db_err)?) {
                found.push(retry);
            }
        }
        found.sort_unstable();
        found.dedup();
        let newest = found.len().saturating_sub(crate::MAX_RETRIES_LISTED);
        Ok(found[newest..].iter().map(layout::id_string).collect())
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
        for (id, announced) in self.overlay.all() {
            if let Ok(r) = decode::<ExecutionRecord>(b"announced", &announced) {
                if wanted(&id, r.workflow.as_bytes(), r.status, r.started_ms)
                    && f.retries(r.retry_of.as_deref())
                {
                    add(&mut rows, id, r.summary());
                }
            }
        }
        // Runs still in queue pages (few), newest first.
        let queued: Vec<Id> = {
            let mut found: Vec<Id> = {
                let index = lock(&self.queued);
                index
                    .runs
                    .keys()
                    .filter(|id| cursor.is_none_or(|c| **id < c))
                    .copied()
                    .collect()
            };
            found.sort_unstable_by(|a, b| b.cmp(a));
            found
        };
        let mut opened = HashMap::new();
        for id in queued {
            if full_and_older(&rows, &id) {
                break;
            }
            let Some(head) = self.head_in(&id, &mut opened)? else {
                continue;
            };
            let mut r = head.record;
            r.status = RunStatus::Queued;
            if wanted(&id, r.workflow.as_bytes(), r.status, r.started_ms)
                && f.retries(r.retry_of.as_deref())
            {
                add(&mut rows, id, r.summary());
            }
        }
        // Runs with heads of their own, newest first, read only as far as
        // the page needs.
        let upper = match cursor {
            Some(c) => layout::run_prefix(&c).to_vec(),
            None => vec![RUN + 1],
        };
        for item in self.runs.range(vec![RUN]..upper).rev() {
            let (k, v) = item.map_err(db_err)?;
            let (Some(id), Some(HEAD)) = (layout::id_of(&k), layout::kind_of(&k)) else {
                continue;
            };
            if full_and_older(&rows, &id) {
                break;
            }
            let Some(head) = self.split_decoded(&k, &v)? else {
                continue;
            };
            let status = self.own_status(&id, &head)?;
            let mut r = head.record;
            r.status = status;
            if wanted(&id, r.workflow.as_bytes(), r.status, r.started_ms)
                && f.retries(r.retry_of.as_deref())
            {
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
                    if f.retries(r.retry_of.as_deref()) {
                        add(&mut rows, e.id, r.summary());
                    }
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
