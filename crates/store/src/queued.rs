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
//! keeps it, readers use it to find a queued run's page. It holds each such
//! run's input until the run has an entry of its own (so that finishing a
//! run does not read its page back), so it is bounded by the queue and the
//! running runs. After a restart it is rebuilt from the pages
//! ([`Queued::rebuild`]).

use crate::pages::{self, PAGE};
use crate::{StoreError, StoreResult};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// The key prefix of queue pages.
pub(crate) const QUEUE: u8 = b'q';

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
    /// Its input, until the run has a live entry of its own (then it is there).
    pub input: Option<Vec<u8>>,
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
}

impl Queued {
    /// Adds a run queued in `page`.
    pub fn add(&mut self, id: [u8; 16], page: u64, input: Vec<u8>) {
        self.runs.insert(
            id,
            QueuedRun {
                page,
                input: Some(input),
                own: false,
                finished: false,
            },
        );
        *self.open.entry(page).or_default() += 1;
    }

    /// Marks a run finished; returns its entry and whether its page is now
    /// empty (to be removed).
    pub fn finish(&mut self, id: &[u8; 16]) -> Option<(&mut QueuedRun, bool)> {
        let run = self.runs.get_mut(id).filter(|r| !r.finished)?;
        run.finished = true;
        let left = self.open.get_mut(&run.page).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        let empty = left == Some(0);
        if empty {
            self.open.remove(&run.page);
        }
        Some((run, empty))
    }

    /// Forgets runs whose final record has been written.
    pub fn forget(&mut self, ids: &[[u8; 16]]) {
        for id in ids {
            if self.runs.get(id).is_some_and(|r| r.finished) {
                self.runs.remove(id);
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
                index.add(e.id, seq, e.input.to_vec());
                if let Some(run) = index.runs.get_mut(&e.id) {
                    if own {
                        run.own = true;
                        run.input = None;
                    }
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

fn db_err(e: sled::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// A damaged page.
pub(crate) fn corrupt(key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        key: format!("page {key:02x?}"),
        message: "not a page of records".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_empty_when_their_last_run_finishes() {
        let mut q = Queued::default();
        q.add([1; 16], 7, b"in".to_vec());
        q.add([2; 16], 7, Vec::new());
        q.add([3; 16], 8, Vec::new());
        let (run, empty) = q.finish(&[1; 16]).expect("queued");
        assert_eq!(
            (run.page, run.input.take(), empty),
            (7, Some(b"in".to_vec()), false)
        );
        assert!(q.finish(&[1; 16]).is_none(), "a run finishes once");
        assert!(q.finish(&[2; 16]).is_some_and(|(_, empty)| empty));
        assert!(q.finish(&[9; 16]).is_none(), "not queued here");
        q.forget(&[[1; 16], [2; 16], [3; 16]]);
        assert_eq!(q.runs.keys().collect::<Vec<_>>(), vec![&[3; 16]]);
        assert_eq!(q.open.get(&8), Some(&1));
        assert_eq!(seq_of_key(&queue_key(42)), Some(42));
    }
}
