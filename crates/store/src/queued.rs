//! Queue pages: the live entries of newly queued runs, many to one sled key.
//!
//! An async acknowledgement needs its run on disk. Written one key per run,
//! a run costs an insert when queued and a removal when it ends, and sled's
//! cost is per operation. Instead, the runs a writer turn queues share one
//! page under `q<seq>` (entries as in [`crate::pages`], the record part being
//! the live entry's), and the page is removed once every run in it has
//! finished. A run that later saves its position or waits gets a live entry
//! of its own (`e<id>`), which is newer than its queue entry and wins.
//!
//! [`Queued`] is the index of runs whose queue entry still counts: the writer
//! keeps it, readers use it to find a queued run's page. It also keeps the
//! inputs of such runs, so that finishing a run does not read its page back,
//! within a budget ([`KEPT_INPUT`], [`KEPT_INPUTS`]): a run whose input is not
//! kept has it read from its page when it finishes. After a restart the index
//! is rebuilt from the pages ([`Queued::rebuild`]).

use crate::pages::{self, corrupt, PAGE};
use crate::{db_err, StoreResult};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// The key prefix of queue pages.
pub(crate) const QUEUE: u8 = b'q';
/// The largest input kept in memory (bodies can be up to `max_body`).
pub(crate) const KEPT_INPUT: usize = 16 * 1024;
/// The most input bytes kept in memory in all.
pub(crate) const KEPT_INPUTS: usize = 8 * 1024 * 1024;

/// The key of a queue page.
pub(crate) fn queue_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = QUEUE;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of a queue page's key.
pub(crate) fn seq_of_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

/// A run whose live entry is in a queue page.
#[derive(Debug)]
pub(crate) struct QueuedRun {
    /// The page.
    pub page: u64,
    /// Its input, if kept (see [`KEPT_INPUTS`]), until the run finishes or has
    /// a live entry of its own (then it is there).
    input: Option<Vec<u8>>,
    /// The run has a live entry of its own, newer than its queue entry.
    pub own: bool,
    /// The run's final record is written (this turn); the entry goes after it.
    pub finished: bool,
}

/// The runs of queue pages that have not finished, and how many each page
/// still holds.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    /// By execution id.
    pub runs: HashMap<[u8; 16], QueuedRun>,
    /// Unfinished runs per page.
    pub open: HashMap<u64, usize>,
    /// The bytes of the inputs kept.
    kept: usize,
}

/// What finishing a queued run leaves to do.
#[derive(Debug, PartialEq)]
pub(crate) struct Finished {
    /// Its queue page.
    pub page: u64,
    /// It has a live entry of its own, to remove.
    pub own: bool,
    /// Its page holds no unfinished run any more: remove it.
    pub empty: bool,
    /// Its input, when kept.
    pub input: Option<Vec<u8>>,
}

impl Queued {
    /// Adds a run queued in `page`, keeping its input if the budget allows.
    pub fn add(&mut self, id: [u8; 16], page: u64, input: Vec<u8>) {
        let keep = input.len() <= KEPT_INPUT && self.kept + input.len() <= KEPT_INPUTS;
        if keep {
            self.kept += input.len();
        }
        let previous = self.runs.insert(
            id,
            QueuedRun {
                page,
                input: keep.then_some(input),
                own: false,
                finished: false,
            },
        );
        if let Some(old) = previous {
            self.release(old.input);
        }
        *self.open.entry(page).or_default() += 1;
    }

    /// Takes a kept input out of the budget.
    fn release(&mut self, input: Option<Vec<u8>>) -> Option<Vec<u8>> {
        if let Some(i) = &input {
            self.kept = self.kept.saturating_sub(i.len());
        }
        input
    }

    /// Hands over a queued run's kept input; `None` when it was not kept
    /// (it is then in the queue page).
    pub fn take_input(&mut self, id: &[u8; 16]) -> Option<Vec<u8>> {
        let input = self.runs.get_mut(id)?.input.take();
        self.release(input)
    }

    /// Marks a queued run as having its own live entry, newer than its
    /// queue entry (which holds its input too): the kept input goes.
    pub fn own(&mut self, id: &[u8; 16]) {
        self.take_input(id);
        if let Some(run) = self.runs.get_mut(id) {
            run.own = true;
        }
    }

    /// Marks a run finished, if it is queued here and not finished yet.
    pub fn finish(&mut self, id: &[u8; 16]) -> Option<Finished> {
        let run = self.runs.get_mut(id).filter(|r| !r.finished)?;
        run.finished = true;
        let (page, own, input) = (run.page, run.own, run.input.take());
        let left = self.open.get_mut(&page).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        let empty = left == Some(0);
        if empty {
            self.open.remove(&page);
        }
        Some(Finished {
            page,
            own,
            empty,
            input: self.release(input),
        })
    }

    /// Forgets runs whose final record has been written.
    pub fn forget(&mut self, ids: &[[u8; 16]]) {
        for id in ids {
            if self.runs.get(id).is_some_and(|r| r.finished) {
                if let Some(run) = self.runs.remove(id) {
                    self.release(run.input);
                }
            }
        }
    }

    /// The index of a database just opened: every queue entry whose run has
    /// no finished record. Returns it and the pages left with no such run
    /// (a crash came between a run's final record and its page's removal).
    pub fn rebuild(runs: &sled::Tree, live: u8) -> StoreResult<(Queued, Vec<Vec<u8>>)> {
        let mut index = Queued::default();
        let mut empty = Vec::new();
        let mut finished: HashMap<u64, HashSet<[u8; 16]>> = HashMap::new();
        for item in runs.scan_prefix([QUEUE]) {
            let (k, v) = item.map_err(db_err)?;
            let seq = seq_of_key(&k).ok_or_else(|| corrupt(&k))?;
            let page = pages::open(&v).map_err(|()| corrupt(&k))?;
            let mut kept = 0;
            for e in pages::entries(&page) {
                let e = e.map_err(|()| corrupt(&k))?;
                let bucket = pages::bucket_of(&e.id);
                let done = match finished.entry(bucket) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => v.insert(finished_in(runs, bucket)?),
                };
                if done.contains(&e.id) {
                    continue;
                }
                let mut own_key = [live; 17];
                own_key[1..].copy_from_slice(&e.id);
                let own = runs.contains_key(own_key).map_err(db_err)?;
                index.add(e.id, seq, if own { Vec::new() } else { e.input.to_vec() });
                if own {
                    index.own(&e.id);
                }
                kept += 1;
            }
            if kept == 0 {
                empty.push(k.to_vec());
            }
        }
        Ok((index, empty))
    }
}

/// The ids with a finished record among the pages of one second.
fn finished_in(runs: &sled::Tree, bucket: u64) -> StoreResult<HashSet<[u8; 16]>> {
    let mut ids = HashSet::new();
    for item in runs.scan_prefix(pages::bucket_prefix(bucket)) {
        let (k, v) = item.map_err(db_err)?;
        debug_assert_eq!(k.first(), Some(&PAGE));
        let page = pages::open(&v).map_err(|()| corrupt(&k))?;
        for e in pages::entries(&page) {
            ids.insert(e.map_err(|()| corrupt(&k))?.id);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_empty_when_their_last_run_finishes() {
        let mut q = Queued::default();
        q.add([1; 16], 7, b"in".to_vec());
        q.add([2; 16], 7, Vec::new());
        q.add([3; 16], 8, b"three".to_vec());
        assert_eq!(
            q.finish(&[1; 16]),
            Some(Finished {
                page: 7,
                own: false,
                empty: false,
                input: Some(b"in".to_vec())
            })
        );
        assert!(q.finish(&[1; 16]).is_none(), "a run finishes once");
        assert!(q.finish(&[2; 16]).is_some_and(|f| f.empty));
        assert!(q.finish(&[9; 16]).is_none(), "not queued here");
        assert_eq!(q.take_input(&[3; 16]), Some(b"three".to_vec()));
        assert_eq!(q.take_input(&[3; 16]), None);
        q.own(&[3; 16]);
        assert_eq!(
            q.finish(&[3; 16]).map(|f| (f.own, f.input)),
            Some((true, None))
        );
        q.forget(&[[1; 16], [2; 16]]);
        assert_eq!(q.runs.keys().collect::<Vec<_>>(), vec![&[3; 16]]);
        assert_eq!(q.kept, 0);
        assert_eq!(seq_of_key(&queue_key(42)), Some(42));
    }

    #[test]
    fn kept_inputs_stay_within_their_budget() {
        let mut q = Queued::default();
        q.add([1; 16], 1, vec![0; KEPT_INPUT + 1]);
        assert_eq!(
            q.kept, 0,
            "a large input is read back from its page instead"
        );
        let n = KEPT_INPUTS / KEPT_INPUT;
        for i in 0..n + 3 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64 + 2).to_le_bytes());
            q.add(id, 2, vec![1; KEPT_INPUT]);
        }
        assert_eq!(q.kept, n * KEPT_INPUT);
        let kept = q.runs.values().filter(|r| r.input.is_some()).count();
        assert_eq!(kept, n);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&2u64.to_le_bytes());
        assert!(q.finish(&id).is_some_and(|f| f.input.is_some()));
        assert_eq!(
            q.kept,
            (n - 1) * KEPT_INPUT,
            "finishing releases the budget"
        );
    }
}
