//! What every request reads without changing a count another thread
//! changes: a cache line that two HTTP workers both write passes from core
//! to core on each request (docs/performance.md, "Shared counts off the
//! request path").
//!
//! [`Published`] is a value replaced now and then (the registry, the
//! scrubber) that each thread reads through its own copy; [`thread_lane`]
//! spreads a count over lanes, one per thread.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// The calling thread's lane among `lanes` (below it; threads past `lanes`
/// share): threads take numbers in the order they first ask.
pub fn thread_lane(lanes: usize) -> usize {
    thread_local! {
        static NUMBER: usize = {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            NEXT.fetch_add(1, Ordering::Relaxed)
        };
    }
    NUMBER.with(|n| *n) % lanes.max(1)
}

/// A value replaced now and then and read on every request. A thread reads
/// the shared one (a read lock and a count, both changed by every reader)
/// only when a new one was published since its last read.
#[derive(Debug, Default)]
pub struct Published<T> {
    current: RwLock<Arc<T>>,
    /// Bumped under the write lock after each new value: whoever reads the
    /// new value then sees the new number. It also names this value to
    /// the threads' copies, which hold it (its address is not reused).
    version: Arc<AtomicU64>,
}

/// A thread's copy: whose it is, at which version, and the value.
type Copy = (Arc<AtomicU64>, u64, Rc<dyn Any>);

/// Most copies a thread keeps (a server has two published values; tests
/// make many, one after another).
const COPIES: usize = 4;

thread_local! {
    /// This thread's copies, the latest used first.
    static COPIES_HELD: RefCell<Vec<Copy>> = const { RefCell::new(Vec::new()) };
}

impl<T: Send + Sync + 'static> Published<T> {
    /// Publishes `value` first.
    pub fn new(value: Arc<T>) -> Published<T> {
        Published {
            current: RwLock::new(value),
            version: Arc::default(),
        }
    }

    /// The current value, read from the shared one.
    pub fn shared(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the value.
    pub fn set(&self, value: Arc<T>) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        *current = value;
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The current value, as this thread last read it: read again from the
    /// shared one only when a new one was published since.
    pub fn local(&self) -> Rc<Arc<T>> {
        let version = self.version.load(Ordering::Acquire);
        let cached = COPIES_HELD.with(|held| {
            let held = held.try_borrow().ok()?;
            let (_, v, copy) = held
                .iter()
                .find(|(owner, _, _)| Arc::ptr_eq(owner, &self.version))?;
            if *v != version {
                return None;
            }
            copy.clone().downcast::<Arc<T>>().ok()
        });
        if let Some(copy) = cached {
            return copy;
        }
        let copy = Rc::new(self.shared());
        COPIES_HELD.with(|held| {
            if let Ok(mut held) = held.try_borrow_mut() {
                held.retain(|(owner, _, _)| !Arc::ptr_eq(owner, &self.version));
                held.insert(0, (self.version.clone(), version, copy.clone()));
                held.truncate(COPIES);
            }
        });
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread's copy follows every new value; values of different
    /// types and instances on one thread stay apart.
    #[test]
    fn a_thread_s_copy_follows_each_new_value() {
        let names = Published::new(Arc::new(String::from("first")));
        let numbers = Published::new(Arc::new(1u32));
        let others: Vec<_> = (0..COPIES * 2)
            .map(|i| Published::new(Arc::new(i)))
            .collect();
        assert_eq!(**names.local(), "first");
        assert_eq!(**numbers.local(), 1);
        assert_eq!(**names.local(), "first");
        names.set(Arc::new("second".into()));
        assert_eq!(**names.local(), "second");
        assert_eq!(**numbers.local(), 1);
        // More instances than a thread keeps copies of: each still reads its own.
        for (i, other) in others.iter().enumerate() {
            assert_eq!(**other.local(), i);
        }
        numbers.set(Arc::new(2));
        assert_eq!(**numbers.local(), 2);
        assert_eq!(**names.local(), "second");
        // Another thread reads the value published here.
        std::thread::scope(|scope| {
            scope.spawn(|| assert_eq!(**names.local(), "second"));
        });
    }

    #[test]
    fn lanes_are_below_their_number() {
        assert!(thread_lane(8) < 8);
        assert_eq!(thread_lane(1), 0);
        assert_eq!(thread_lane(0), 0);
        let here = thread_lane(1 << 20);
        let there = std::thread::scope(|scope| scope.spawn(|| thread_lane(1 << 20)).join());
        assert_ne!(Ok(here), there.map_err(|_| ()), "two threads, two lanes");
    }
}
