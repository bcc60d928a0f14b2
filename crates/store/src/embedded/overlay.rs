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
    woken: Mutex<Woken>,
    /// Held by a scan of the wake keys and the claims it leads to: one at
    /// a time, so that the applied wake-ups a scan may still see are known.
    scanning: Mutex<()>,
}

/// Waiting runs taken by the timer.
#[derive(Default)]
struct Woken {
    /// Taken; the writer has not applied the wake-up yet (its wake key is
    /// still there).
    pending: HashSet<Id>,
    /// Applied, with the number of the application. A scan of sled's tree
    /// works on copies of its nodes, so a scan begun before the wake key
    /// went may still meet it: the run stays hidden from such scans.
    applied: HashMap<Id, u64>,
    /// Wake-ups applied so far.
    count: u64,
}

/// A scan of the wake keys under way ([`Overlay::begin_scan`]).
pub(crate) struct WakeScan<'a> {
    _one_at_a_time: MutexGuard<'a, ()>,
    /// Wake-ups applied before the scan began.
    since: u64,
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
        lock(&self.woken).pending.insert(id);
    }

    /// The writer applied a wake-up (its wake key is gone from the tree).
    pub fn woke_written(&self, id: &Id) {
        let mut woken = lock(&self.woken);
        woken.pending.remove(id);
        woken.count += 1;
        let n = woken.count;
        woken.applied.insert(*id, n);
    }

    /// True while a wake-up waits for the writer.
    pub fn is_woken(&self, id: &Id) -> bool {
        lock(&self.woken).pending.contains(id)
    }

    /// Starts a scan of the wake keys: waits for the one under way, and
    /// forgets the wake-ups applied before this one begins (no scan can
    /// meet their keys any more).
    pub fn begin_scan(&self) -> WakeScan<'_> {
        let guard = lock(&self.scanning);
        let mut woken = lock(&self.woken);
        let since = woken.count;
        woken.applied.clear();
        WakeScan {
            _one_at_a_time: guard,
            since,
        }
    }

    /// True when the scan `scan` must pass over the wake key of `id`: its
    /// run was taken, and the key is gone or about to go.
    pub fn taken(&self, scan: &WakeScan<'_>, id: &Id) -> bool {
        let woken = lock(&self.woken);
        woken.pending.contains(id) || woken.applied.get(id).is_some_and(|n| *n > scan.since)
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

    /// A scan that began before a wake-up was applied may meet its key in
    /// a copy of a tree node: the run stays hidden from it, and from no
    /// scan after.
    #[test]
    fn a_scan_begun_before_a_wake_up_was_applied_passes_its_run_over() {
        let o = Overlay::default();
        let id = [3u8; 16];
        let early = o.begin_scan();
        assert!(!o.taken(&early, &id));
        o.woke(id);
        assert!(o.taken(&early, &id));
        o.woke_written(&id);
        assert!(!o.is_woken(&id));
        assert!(o.taken(&early, &id), "the scan may still meet its key");
        drop(early);
        let later = o.begin_scan();
        assert!(!o.taken(&later, &id), "gone from the tree before this scan");
    }
}
