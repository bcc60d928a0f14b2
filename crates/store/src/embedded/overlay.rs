//! What readers see before the writer has applied it: sync runs announced
//! before they finish (their id was sent while they go on), and waiting runs
//! taken by the timer (hidden from `due` at once).
//!
//! A finished run needs nothing here: a read that misses waits for the
//! writer to apply what was submitted before it ([`super::SledStore`]'s
//! catch-up), so the hot path pays nothing for read-your-writes.

use super::layout::Id;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// An announced record, encoded, and the run it retries.
type Announced = (Vec<u8>, Option<Id>);

#[derive(Default)]
pub(crate) struct Overlay {
    /// Announced records, by run.
    announced: Mutex<HashMap<Id, Announced>>,
    /// How many are announced (read without the lock on the hot path).
    count: AtomicUsize,
    woken: Mutex<HashSet<Id>>,
}

/// A lock whose data stays valid if a holder panicked (single inserts and removals).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Overlay {
    /// Makes a running sync run's record readable until it finishes.
    pub fn announce(&self, id: Id, record: Vec<u8>, retry_of: Option<Id>) {
        let mut map = lock(&self.announced);
        map.insert(id, (record, retry_of));
        self.count.store(map.len(), Ordering::SeqCst);
    }

    /// The run finished: its own record replaces the announced one.
    pub fn finished(&self, id: &Id) {
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut map = lock(&self.announced);
        map.remove(id);
        self.count.store(map.len(), Ordering::SeqCst);
    }

    /// An announced record.
    pub fn get(&self, id: &Id) -> Option<Vec<u8>> {
        lock(&self.announced).get(id).map(|(r, _)| r.clone())
    }

    /// Announced retries of run `of`.
    pub fn retries_of(&self, of: &Id) -> Vec<Id> {
        lock(&self.announced)
            .iter()
            .filter(|(_, (_, retry_of))| retry_of.as_ref() == Some(of))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every announced record.
    pub fn all(&self) -> Vec<(Id, Vec<u8>)> {
        lock(&self.announced)
            .iter()
            .map(|(id, (r, _))| (*id, r.clone()))
            .collect()
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
    fn announced_records_go_when_their_run_finishes() {
        let o = Overlay::default();
        let id = [7u8; 16];
        o.finished(&id);
        o.announce(id, vec![1], Some([8u8; 16]));
        assert_eq!(o.get(&id), Some(vec![1]));
        assert_eq!(o.all().len(), 1);
        assert_eq!(o.retries_of(&[8u8; 16]), vec![id]);
        assert!(o.retries_of(&id).is_empty());
        o.finished(&id);
        assert!(o.get(&id).is_none());
        o.woke(id);
        assert!(o.is_woken(&id));
        o.woke_written(&id);
        assert!(!o.is_woken(&id));
    }
}
