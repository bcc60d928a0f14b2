//! One writer turn: events in, the keys to write out.
//!
//! Saved state first, then the pages of runs finished in the turn, then the
//! removals finishing implies; a turn that touches a durable run is applied
//! atomically, so a finished run's page never exists without the removal of
//! its saved state (which would resume it: a second run of a finished run).

use super::codec::{decode, encode, RunState};
use super::layout::{self, Id, HEAD, INPUT, JOB, PART, STACK, STATE};
use super::overlay::Unwritten;
use super::pages::{self, Header};
use super::writer::{Event, KeyWrite};
use crate::record::RunStatus;
use crate::{db_err, StoreResult};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A page is closed once its entries hold this much, before compression.
/// sled's CPU is per insert and its resident memory grows with the bytes it
/// is given (measured under the benchmark: uncompressed pages of 1 KiB peak
/// ~46 MiB, of 16 KiB ~155 MiB; compressed 16 KiB pages ~36 MiB), so pages
/// are large and compressed ([`pages::seal`]): ~16 records of a kilobyte
/// cost one insert.
pub(crate) const PAGE_BYTES: usize = 16 * 1024;

type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The keys of one turn, in the order they are applied.
#[derive(Default)]
pub(crate) struct Batch {
    ops: Ops,
    /// The latest value this turn gives a key (`None`: removed), for reads
    /// within the turn.
    latest: HashMap<Vec<u8>, Option<usize>>,
    /// Keys of runs' jobs and parts written this turn, by run.
    parts: HashMap<Id, Vec<Vec<u8>>>,
    /// The page being filled, per second.
    pages: BTreeMap<u64, Vec<u8>>,
    /// Pages already full.
    full: Vec<(u64, Vec<u8>)>,
    after: Ops,
    atomic: bool,
    written: Vec<(Id, Arc<Unwritten>)>,
    woken: Vec<Id>,
    quarantine: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A turn ready to apply.
pub(crate) struct Turn {
    pub ops: Ops,
    /// Apply all or nothing.
    pub atomic: bool,
    /// Records the overlay may let go of once applied.
    pub written: Vec<(Id, Arc<Unwritten>)>,
    /// Wake-ups applied.
    pub woken: Vec<Id>,
    /// Damaged entries (key, value) to keep in the quarantine tree.
    pub quarantine: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.latest.insert(key.clone(), Some(self.ops.len()));
        self.ops.push((key, Some(value)));
    }

    fn remove_after(&mut self, key: Vec<u8>) {
        self.after.push((key, None));
    }

    /// A key's value as this turn or the tree has it.
    fn read(&self, runs: &sled::Tree, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        match self.latest.get(key) {
            Some(Some(i)) => Ok(self.ops[*i].1.clone()),
            Some(None) => Ok(None),
            None => Ok(runs.get(key).map_err(db_err)?.map(|v| v.to_vec())),
        }
    }

    /// Adds one event.
    pub fn add(&mut self, runs: &sled::Tree, event: Event) -> StoreResult<()> {
        match event {
            Event::Accept {
                id,
                head,
                input,
                key,
            } => {
                self.atomic = true;
                self.put(layout::run_key(HEAD, &id).to_vec(), head);
                self.put(layout::run_key(INPUT, &id).to_vec(), input);
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
                for (index, job) in jobs {
                    let key = layout::job_key(&id, index).to_vec();
                    self.parts.entry(id).or_default().push(key.clone());
                    self.put(key, job);
                }
                for (name, value) in parts {
                    let key = layout::part_key(&id, &name);
                    self.parts.entry(id).or_default().push(key.clone());
                    self.put(key, value);
                }
                self.put(layout::run_key(STACK, &id).to_vec(), frames);
                self.put(layout::run_key(STATE, &id).to_vec(), state);
                if let Some(ms) = wake_at {
                    self.put(layout::wake_key(ms, &id).to_vec(), Vec::new());
                }
            }
            Event::Woke { id } => {
                self.atomic = true;
                self.woken.push(id);
                let key = layout::run_key(STATE, &id);
                if let Some(ms) = self.wake_of(runs, &key)? {
                    self.ops.push((layout::wake_key(ms, &id).to_vec(), None));
                }
                let running = RunState {
                    status: RunStatus::Running,
                    wake_at: None,
                };
                self.put(key.to_vec(), encode(&running)?);
            }
            Event::Finish { id, header, record } => {
                let input = if record.durable {
                    self.atomic = true;
                    self.finish_durable(runs, &id)?
                } else {
                    Vec::new()
                };
                let bucket = pages::bucket_of(&id);
                let page = self.pages.entry(bucket).or_default();
                if page.len() >= PAGE_BYTES {
                    self.full.push((bucket, std::mem::take(page)));
                }
                let head = Header {
                    id,
                    started_ms: header.started_ms,
                    finished_ms: header.finished_ms,
                    status: header.status,
                    workflow: &header.workflow,
                };
                pages::push_entry(page, &head, &record.record, &input);
                self.written.push((id, record));
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
        }
        Ok(())
    }

    fn key(&mut self, key: KeyWrite) {
        let expiry = layout::expiry_key(key.expires_ms, &key.key);
        self.put(key.key, key.entry);
        self.put(expiry, Vec::new());
    }

    /// The wake time a run's `t` entry holds.
    fn wake_of(&self, runs: &sled::Tree, key: &[u8]) -> StoreResult<Option<u64>> {
        match self.read(runs, key)? {
            Some(v) => Ok(decode::<RunState>(key, &v)
                .map(|s| s.wake_at)
                .unwrap_or(None)),
            None => Ok(None),
        }
    }

    /// Removes a durable run's saved state (after its page); returns its
    /// input for the page (empty if it has none).
    fn finish_durable(&mut self, runs: &sled::Tree, id: &Id) -> StoreResult<Vec<u8>> {
        let input = self
            .read(runs, &layout::run_key(INPUT, id))?
            .unwrap_or_default();
        let state = layout::run_key(STATE, id);
        if let Some(ms) = self.wake_of(runs, &state)? {
            self.remove_after(layout::wake_key(ms, id).to_vec());
        }
        for prefix in [HEAD, INPUT, STATE, STACK] {
            self.remove_after(layout::run_key(prefix, id).to_vec());
        }
        for prefix in [JOB, PART] {
            for item in runs.scan_prefix(layout::run_key(prefix, id)) {
                let (k, _) = item.map_err(db_err)?;
                self.remove_after(k.to_vec());
            }
        }
        if let Some(keys) = self.parts.remove(id) {
            for k in keys {
                self.remove_after(k);
            }
        }
        Ok(input)
    }

    /// The keys to write, in order.
    pub fn finish(self, seq: &mut u64) -> Turn {
        let mut ops = self.ops;
        for (bucket, page) in self.full.into_iter().chain(self.pages) {
            *seq += 1;
            ops.push((
                pages::page_key(bucket, *seq).to_vec(),
                Some(pages::seal(&page)),
            ));
        }
        ops.extend(self.after);
        Turn {
            ops,
            atomic: self.atomic,
            written: self.written,
            woken: self.woken,
            quarantine: self.quarantine,
        }
    }
}
