//! One writer turn: events in, the keys to write out.
//!
//! The turn's new runs go into queue pages ([`super::queued`]); a run's
//! first save moves it out of its page into keys of its own (its head, then
//! its jobs, parts, stack and status); finished runs go into pages of
//! finished records, with their queue bits set or their own keys removed. A turn
//! that touches a durable run is applied atomically, so a finished run's
//! record never exists without its bit (which would resume it: a second run
//! of a finished run), nor the bit without the record.

use super::codec::{decode, encode, head_value, split_head, Embedded, RunState};
use super::layout::{self, Id, HEAD, JOB, PART, STACK, STATE};
use super::pages::{self, Header};
use super::queued::{self, IdMap, Queued, DONE, QUEUE};
use super::spare;
use super::writer::{Event, FinishedHeader, KeyWrite};
use crate::record::RunStatus;
use crate::{db_err, StoreResult};
use std::collections::{BTreeMap, HashMap};

/// A page is closed once its entries hold this much, before compression.
/// sled's CPU is per insert and its resident memory grows with the bytes it
/// is given (measured under the benchmark: uncompressed pages of 1 KiB peak
/// ~46 MiB, of 16 KiB ~155 MiB; compressed 16 KiB pages ~36 MiB), so pages
/// are large and compressed ([`pages::seal`]): ~16 records of a kilobyte
/// cost one insert.
pub(crate) const PAGE_BYTES: usize = 16 * 1024;

/// Room past [`PAGE_BYTES`] a new page is made with: the entry that
/// closes it (a record of a few kilobytes) fits without a copy.
const PAGE_SLACK: usize = 4 * 1024;

type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The keys of one turn, in the order they are applied.
#[derive(Default)]
pub(crate) struct Batch {
    ops: Ops,
    /// Where this turn writes runs' states and heads (`t` and `h` keys), for
    /// reads within the turn.
    latest: HashMap<(Id, u8), usize>,
    /// Keys of unfinished runs written this turn, by run.
    run_keys: IdMap<Vec<Vec<u8>>>,
    /// Queue pages of runs accepted this turn (the last one is filling).
    queue_pages: Vec<(u64, Vec<u8>)>,
    /// Bitmaps of finished runs changed this turn, by queue page.
    done: BTreeMap<u64, Vec<u8>>,
    /// Queue pages whose runs all finished this turn.
    spent: Vec<u64>,
    /// Queue pages read back this turn (for inputs not kept in memory).
    opened: HashMap<u64, Vec<u8>>,
    /// The page of finished records being filled, per second.
    pages: BTreeMap<u64, Vec<u8>>,
    /// Pages already full.
    full: Vec<(u64, Vec<u8>)>,
    after: Ops,
    atomic: bool,
    woken: Vec<Id>,
    quarantine: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A turn ready to apply.
pub(crate) struct Turn {
    pub ops: Ops,
    /// Apply all or nothing.
    pub atomic: bool,
    /// Wake-ups applied.
    pub woken: Vec<Id>,
    /// Damaged entries (key, value) to keep in the quarantine tree.
    pub quarantine: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Puts one of run `id`'s keys (so that finishing it this turn removes it).
    fn put_run(&mut self, id: Id, key: Vec<u8>, value: Vec<u8>) {
        self.run_keys.entry(id).or_default().push(key.clone());
        if let Some(kind @ (STATE | HEAD)) = key.get(17).copied() {
            self.latest.insert((id, kind), self.ops.len());
        }
        self.put(key, value);
    }

    fn remove_after(&mut self, key: Vec<u8>) {
        self.after.push((key, None));
    }

    /// A key's value as this turn (runs' states) or the tree has it.
    fn read(&self, runs: &sled::Tree, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let pending = match (layout::id_of(key), layout::kind_of(key)) {
            (Some(id), Some(kind)) if key.first() == Some(&layout::RUN) => {
                self.latest.get(&(id, kind))
            }
            _ => None,
        };
        match pending {
            Some(i) => Ok(self.ops[*i].1.clone()),
            None => Ok(runs.get(key).map_err(db_err)?.map(|v| v.to_vec())),
        }
    }

    /// Adds one event; `seq` numbers the pages this turn writes.
    pub fn add(
        &mut self,
        runs: &sled::Tree,
        queued: &mut Queued,
        seq: &mut u64,
        event: Event,
    ) -> StoreResult<()> {
        match event {
            Event::Accept {
                id,
                head,
                input,
                key,
                retry_of,
            } => {
                self.atomic = true;
                self.link(retry_of, &id);
                if self
                    .queue_pages
                    .last()
                    .is_none_or(|(_, p)| p.len() >= PAGE_BYTES)
                {
                    *seq += 1;
                    self.queue_pages.push((*seq, Vec::new()));
                }
                if let Some((page_seq, page)) = self.queue_pages.last_mut() {
                    let index = queued.pages.get(page_seq).map_or(0, |p| p.entries);
                    queued::push_entry(page, &id, &head, &input);
                    queued.add(id, *page_seq, index, &input);
                }
                if let Some(key) = key {
                    self.key(key);
                }
            }
            Event::Save {
                id,
                state,
                wake_at,
                jobs,
                frames,
                parts,
            } => {
                self.atomic = true;
                if let Some(left) = queued.leave(&id) {
                    // Its first save: it leaves its queue page for a head of
                    // its own, which carries this save's keys too.
                    let (head, input) = self.entry_in_page(runs, left.page, left.index)?;
                    let input = left.input.as_deref().cloned().unwrap_or(input);
                    self.left_page(left.page, left.complete, left.done);
                    let mut first: Vec<Embedded> = Vec::with_capacity(jobs.len() + parts.len() + 2);
                    for (index, job) in jobs {
                        first.push((JOB, index.to_be_bytes().to_vec(), job));
                    }
                    for (name, value) in parts {
                        first.push((PART, name.into_bytes(), value));
                    }
                    first.push((STACK, Vec::new(), frames));
                    first.push((STATE, Vec::new(), state));
                    self.put_run(
                        id,
                        layout::run_key(&id, HEAD).to_vec(),
                        head_value(&head, &input, &first)?,
                    );
                } else {
                    for (index, job) in jobs {
                        self.put_run(id, layout::job_key(&id, index).to_vec(), job);
                    }
                    for (name, value) in parts {
                        self.put_run(id, layout::part_key(&id, &name), value);
                    }
                    self.put_run(id, layout::run_key(&id, STACK).to_vec(), frames);
                    self.put_run(id, layout::run_key(&id, STATE).to_vec(), state);
                }
                match wake_at {
                    Some(ms) => {
                        self.put(layout::wake_key(ms, &id).to_vec(), Vec::new());
                        self.ops.push((layout::running_key(&id).to_vec(), None));
                    }
                    None => self.put(layout::running_key(&id).to_vec(), Vec::new()),
                }
            }
            Event::Woke { id } => {
                self.atomic = true;
                let key = layout::run_key(&id, STATE);
                if let Some(ms) = self.wake_of(runs, &id)? {
                    self.ops.push((layout::wake_key(ms, &id).to_vec(), None));
                }
                let running = RunState {
                    status: RunStatus::Running,
                    wake_at: None,
                };
                self.put_run(id, key.to_vec(), encode(&running)?);
                self.put(layout::running_key(&id).to_vec(), Vec::new());
                // Only once its wake key's removal is in the turn: the
                // overlay lets scans see the key again after the turn.
                self.woken.push(id);
            }
            Event::Finish {
                id,
                header,
                record,
                durable,
            } => {
                let input = if durable {
                    self.atomic = true;
                    self.finish_durable(runs, queued, &id)?
                } else {
                    Vec::new()
                };
                self.finished(id, &header, &record, &input);
                spare::give_back(record);
            }
            Event::Settled {
                id,
                header,
                record,
                input,
                key,
            } => {
                self.atomic = true;
                if let Some(key) = key {
                    self.key(key);
                }
                self.finished(id, &header, &record, &input);
                spare::give_back(record);
                spare::give_back(input);
            }
            Event::Quarantine(keys) => {
                self.atomic = true;
                for key in keys {
                    if let Some(value) = self.read(runs, &key)? {
                        self.quarantine.push((key.clone(), value));
                    }
                    self.remove_after(key);
                }
            }
            // Taken out by the writer before a turn (another tree).
            Event::Refused(_) => {}
        }
        Ok(())
    }

    /// The page of `bucket` an entry goes into (a full one is closed).
    fn page_for(&mut self, bucket: u64) -> &mut Vec<u8> {
        // Made at its full size (a page closes past PAGE_BYTES, after one
        // more entry): filled a record at a time, it grew by doubling
        // otherwise, copied at each step.
        let page = self
            .pages
            .entry(bucket)
            .or_insert_with(|| Vec::with_capacity(PAGE_BYTES + PAGE_SLACK));
        if page.len() >= PAGE_BYTES {
            let next = Vec::with_capacity(PAGE_BYTES + PAGE_SLACK);
            self.full.push((bucket, std::mem::replace(page, next)));
        }
        page
    }

    /// Page entries made elsewhere (a lane's: [`super::lanes`]), each into
    /// its second's page; an error names entries cut short (none follow).
    pub fn finished_entries(&mut self, entries: &[u8]) -> Result<(), &'static str> {
        for entry in pages::entries(entries) {
            let entry = entry
                .map_err(|()| "a lane held a damaged entry; the rest of it was not written")?;
            let bytes = entries.get(entry.span.0..entry.span.1).unwrap_or_default();
            self.page_for(pages::bucket_of(&entry.id))
                .extend_from_slice(bytes);
        }
        Ok(())
    }

    /// A finished record (and a durable run's input) into its second's page.
    fn finished(&mut self, id: Id, header: &FinishedHeader, record: &[u8], input: &[u8]) {
        self.link(header.retry_of, &id);
        let page = self.page_for(pages::bucket_of(&id));
        let head = Header {
            id,
            started_ms: header.started_ms,
            finished_ms: header.finished_ms,
            status: header.status,
            workflow: &header.workflow,
        };
        pages::push_entry(page, &head, record, input);
    }

    /// Indexes `id` as a retry of `retry_of` (after the turn's records: a
    /// link never names a run not yet written).
    fn link(&mut self, retry_of: Option<Id>, id: &Id) {
        if let Some(of) = retry_of {
            self.after
                .push((layout::retry_key(&of, id).to_vec(), Some(Vec::new())));
        }
    }

    fn key(&mut self, key: KeyWrite) {
        let expiry = layout::expiry_key(key.expires_ms, &key.key);
        self.put(key.key, key.entry);
        self.put(expiry, Vec::new());
    }

    /// The wake time of a run: its `t` key, or the status its head carries.
    fn wake_of(&self, runs: &sled::Tree, id: &Id) -> StoreResult<Option<u64>> {
        let key = layout::run_key(id, STATE);
        if let Some(v) = self.read(runs, &key)? {
            return Ok(decode::<RunState>(&key, &v)
                .map(|s| s.wake_at)
                .unwrap_or(None));
        }
        let head = layout::run_key(id, HEAD);
        if let Some(v) = self.read(runs, &head)? {
            if let Ok(parts) = split_head(&head, &v) {
                for (kind, _, value) in parts.first {
                    if kind == STATE {
                        return Ok(decode::<RunState>(&key, value)
                            .map(|s| s.wake_at)
                            .unwrap_or(None));
                    }
                }
            }
        }
        Ok(None)
    }

    /// A queued run's head and input, read back from its page.
    fn entry_in_page(
        &mut self,
        runs: &sled::Tree,
        page: u64,
        index: u16,
    ) -> StoreResult<(Vec<u8>, Vec<u8>)> {
        if !self.opened.contains_key(&page) {
            let pending = self.queue_pages.iter().find(|(s, _)| *s == page);
            let bytes = match pending {
                Some((_, p)) => p.clone(),
                None => {
                    let key = queued::page_key(QUEUE, page);
                    match runs.get(key).map_err(db_err)? {
                        Some(v) => queued::open(&key, &v)?,
                        None => Vec::new(),
                    }
                }
            };
            self.opened.insert(page, bytes);
        }
        let bytes = &self.opened[&page];
        let entries = queued::entries(&queued::page_key(QUEUE, page), bytes)?;
        Ok(entries
            .get(usize::from(index))
            .map(|e| (e.head.to_vec(), e.input.to_vec()))
            .unwrap_or_default())
    }

    /// A run left queue page `page`: its new bitmap, or the page goes.
    fn left_page(&mut self, page: u64, complete: bool, done: Vec<u8>) {
        if complete {
            self.done.remove(&page);
            self.spent.push(page);
        } else {
            self.done.insert(page, done);
        }
    }

    /// Finishes a durable run: its queue bit set, or its own keys removed
    /// (after its finished record); returns its input for the finished
    /// page (empty if it has none).
    fn finish_durable(
        &mut self,
        runs: &sled::Tree,
        queued: &mut Queued,
        id: &Id,
    ) -> StoreResult<Vec<u8>> {
        if let Some(left) = queued.leave(id) {
            // It never saved progress: it was only in its page.
            let input = match &left.input {
                Some(input) => input.to_vec(),
                None => self.entry_in_page(runs, left.page, left.index)?.1,
            };
            self.left_page(left.page, left.complete, left.done);
            return Ok(input);
        }
        let mut keys = self.run_keys.remove(id).unwrap_or_default();
        for item in runs.scan_prefix(layout::run_prefix(id)) {
            let (k, _) = item.map_err(db_err)?;
            keys.push(k.to_vec());
        }
        keys.sort();
        keys.dedup();
        self.remove_after(layout::running_key(id).to_vec());
        if let Some(ms) = self.wake_of(runs, id)? {
            self.remove_after(layout::wake_key(ms, id).to_vec());
        }
        let mut input = Vec::new();
        for key in keys {
            if layout::kind_of(&key) == Some(HEAD) {
                if let Some(v) = self.read(runs, &key)? {
                    if let Ok(parts) = split_head(&key, &v) {
                        input = parts.input.to_vec();
                    }
                }
            }
            self.remove_after(key);
        }
        Ok(input)
    }

    /// The keys to write, in order.
    pub fn finish(self, seq: &mut u64) -> Turn {
        let mut ops = self.ops;
        for (q, page) in self.queue_pages {
            // A page whose runs all finished in this very turn is not written.
            if !self.spent.contains(&q) {
                ops.push((
                    queued::page_key(QUEUE, q).to_vec(),
                    Some(pages::seal(&page)),
                ));
            }
        }
        for (bucket, page) in self.full.into_iter().chain(self.pages) {
            *seq += 1;
            ops.push((
                pages::page_key(bucket, *seq).to_vec(),
                Some(pages::seal(&page)),
            ));
        }
        for (q, bits) in self.done {
            ops.push((queued::page_key(DONE, q).to_vec(), Some(bits)));
        }
        let mut after = self.after;
        for q in self.spent {
            after.push((queued::page_key(QUEUE, q).to_vec(), None));
            after.push((queued::page_key(DONE, q).to_vec(), None));
        }
        ops.extend(after);
        Turn {
            ops,
            atomic: self.atomic,
            woken: self.woken,
            quarantine: self.quarantine,
        }
    }
}
