//! Read-your-writes: what was submitted but the writer has not applied yet.
//!
//! Finished and announced records wait for the writer encoded; until it has
//! written them they are read from here, so a record is there from the
//! moment its id was sent to anyone (a sync answer goes out before its
//! record is on disk). Woken runs are hidden from `due` the same way.

use super::layout::Id;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Shards of the record map: sync runs of every HTTP worker pass through it.
const SHARDS: usize = 16;

/// A record on its way to the writer.
#[derive(Debug)]
pub(crate) struct Unwritten {
    /// The record, encoded.
    pub record: Vec<u8>,
    /// Whether the run was durable (its input is kept apart from the record).
    pub durable: bool,
}

#[derive(Default)]
pub(crate) struct Overlay {
    records: [Mutex<HashMap<Id, Arc<Unwritten>>>; SHARDS],
    woken: Mutex<HashSet<Id>>,
}

/// A lock whose data stays valid if a holder panicked (single inserts and removals).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shard(id: &Id) -> usize {
    // The low bits of a UUID v7 are random.
    usize::from(id[15]) % SHARDS
}

impl Overlay {
    /// Makes a record readable until [`Overlay::written`].
    pub fn insert(&self, id: Id, entry: Arc<Unwritten>) {
        lock(&self.records[shard(&id)]).insert(id, entry);
    }

    /// The writer wrote `entry`: reads go to the store again (unless a newer
    /// entry replaced it meanwhile).
    pub fn written(&self, id: &Id, entry: &Arc<Unwritten>) {
        let mut map = lock(&self.records[shard(id)]);
        if map.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(id);
        }
    }

    /// A record not written yet.
    pub fn get(&self, id: &Id) -> Option<Arc<Unwritten>> {
        lock(&self.records[shard(id)]).get(id).cloned()
    }

    /// Every record not written yet.
    pub fn all(&self) -> Vec<(Id, Arc<Unwritten>)> {
        let mut out = Vec::new();
        for s in &self.records {
            out.extend(lock(s).iter().map(|(id, e)| (*id, e.clone())));
        }
        out
    }

    /// A waiting run was taken: `due` no longer lists it.
    pub fn woke(&self, id: Id) {
        lock(&self.woken).insert(id);
    }

    /// The writer applied a wake-up.
    pub fn woke_written(&self, id: &Id) {
        lock(&self.woken).remove(id);
    }

    /// True while a wake-up waits for the writer.
    pub fn is_woken(&self, id: &Id) -> bool {
        lock(&self.woken).contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_goes_once_written_unless_replaced() {
        let o = Overlay::default();
        let id = [7u8; 16];
        let first = Arc::new(Unwritten {
            record: vec![1],
            durable: false,
        });
        o.insert(id, first.clone());
        assert_eq!(o.get(&id).map(|e| e.record.clone()), Some(vec![1]));
        let second = Arc::new(Unwritten {
            record: vec![2],
            durable: false,
        });
        o.insert(id, second.clone());
        o.written(&id, &first);
        assert_eq!(o.get(&id).map(|e| e.record.clone()), Some(vec![2]));
        assert_eq!(o.all().len(), 1);
        o.written(&id, &second);
        assert!(o.get(&id).is_none());
        o.woke(id);
        assert!(o.is_woken(&id));
        o.woke_written(&id);
        assert!(!o.is_woken(&id));
    }
}
