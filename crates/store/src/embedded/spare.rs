//! Buffers for finished records, used again.
//!
//! A finished run's record is encoded on the thread that ran it (an HTTP
//! worker) and copied into a page on the writer's thread, which then let
//! it go. Freed on another thread than the one that allocated it, every
//! record's buffer went back through the allocator's cross-thread path,
//! and the workers' pages of that size emptied and were handed back to the
//! system and faulted in again (`perf`: two thirds of the server's
//! `madvise` calls, 0.05 page faults a sync request). The writer hands the
//! buffers back here instead, and the next records are encoded into them.
//!
//! Each thread keeps a few ([`HELD`]) and trades with one shared stack a
//! handful at a time, so that a record takes no lock of its own. What is
//! kept is bounded: buffers larger than [`KEEP_BYTES`] are let go, the
//! shared stack holds at most [`SHARED`], a thread fewer than twice [`HELD`].

use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};

/// A buffer that grew past this (a large record) is let go, not kept.
pub(crate) const KEEP_BYTES: usize = 4096;
/// Buffers kept between threads: more than a writer's turn hands back at
/// the benchmark's rate (a few hundred), at most 2 MiB.
pub(crate) const SHARED: usize = 512;
/// Buffers a thread takes from (or gives to) the shared stack at once.
pub(crate) const HELD: usize = 32;

/// The shared stack of one process (a store's writer and the threads that
/// run its records; two stores in one process share it harmlessly).
static SHARED_STACK: Spares = Spares::new();

thread_local! {
    static THIS_THREAD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer to encode a record into: one handed back before, or a new one.
pub(crate) fn take() -> Vec<u8> {
    THIS_THREAD
        .try_with(|held| Some(SHARED_STACK.take(&mut *held.try_borrow_mut().ok()?)))
        .ok()
        .flatten()
        .unwrap_or_else(super::codec::fresh)
}

/// `buffer` with its spare room let go when more than half of it is unused:
/// what waits in the writer's backlog then weighs at most about twice its
/// bytes (a W1 record of ~500 bytes in a fresh 1 KiB buffer, 8,192 of them
/// in a disk stall, held 4 MiB of room no record used). The allocation
/// shrinks in place when it can; the buffer handed back keeps the new size.
pub(crate) fn fitted(mut buffer: Vec<u8>) -> Vec<u8> {
    if buffer.capacity() > 2 * buffer.len() {
        buffer.shrink_to_fit();
    }
    buffer
}

/// Hands a buffer back once its bytes are copied; kept (emptied) if it is
/// small and there is room, let go otherwise.
pub(crate) fn give_back(buffer: Vec<u8>) {
    // A thread being torn down keeps nothing (the buffer is dropped).
    let _ = THIS_THREAD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            SHARED_STACK.give_back(&mut held, buffer);
        }
    });
}

/// Buffers shared between threads; each thread holds some of its own.
pub(crate) struct Spares(Mutex<Vec<Vec<u8>>>);

impl Spares {
    pub(crate) const fn new() -> Spares {
        Spares(Mutex::new(Vec::new()))
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A buffer from `held`, which takes up to [`HELD`] from the shared
    /// stack when it is empty; a new one when there is none.
    pub(crate) fn take(&self, held: &mut Vec<Vec<u8>>) -> Vec<u8> {
        if held.is_empty() {
            let mut shared = self.shared();
            let from = shared.len().saturating_sub(HELD);
            held.extend(shared.drain(from..));
        }
        held.pop().unwrap_or_else(super::codec::fresh)
    }

    /// Keeps `buffer`, emptied, in `held` unless it is large; a thread
    /// holding twice [`HELD`] passes its oldest [`HELD`] to the shared
    /// stack, as many as fit.
    pub(crate) fn give_back(&self, held: &mut Vec<Vec<u8>>, mut buffer: Vec<u8>) {
        if buffer.capacity() > KEEP_BYTES || buffer.capacity() == 0 {
            return;
        }
        buffer.clear();
        held.push(buffer);
        if held.len() >= 2 * HELD {
            let mut shared = self.shared();
            let room = SHARED.saturating_sub(shared.len()).min(HELD);
            // The oldest go; what does not fit is let go.
            shared.extend(held.drain(..HELD).take(room));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer handed back is the next one taken, emptied, with its allocation.
    #[test]
    fn a_buffer_handed_back_is_taken_again_emptied() {
        let spares = Spares::new();
        let mut held = Vec::new();
        let mut buffer = spares.take(&mut held);
        buffer.extend_from_slice(b"a record");
        let at = buffer.as_ptr();
        spares.give_back(&mut held, buffer);
        let again = spares.take(&mut held);
        assert_eq!(again.as_ptr(), at, "the same allocation comes back");
        assert!(again.is_empty());
        assert!(again.capacity() >= b"a record".len());
        // The same through this thread's own buffers and the process's stack.
        let mut buffer = take();
        buffer.push(1);
        let at = buffer.as_ptr();
        give_back(buffer);
        let again = take();
        assert_eq!(again.as_ptr(), at);
    }

    /// A buffer more than half empty is cut to its bytes; one at least half
    /// full keeps its room.
    #[test]
    fn a_mostly_empty_buffer_is_cut_to_its_bytes() {
        let mut buffer = Vec::with_capacity(1024);
        buffer.extend_from_slice(&[7; 495]);
        let buffer = fitted(buffer);
        assert_eq!(buffer.capacity(), 495);
        assert_eq!(buffer, vec![7; 495]);
        let mut half = Vec::with_capacity(1024);
        half.extend_from_slice(&[7; 512]);
        assert_eq!(fitted(half).capacity(), 1024);
        assert_eq!(fitted(Vec::new()).capacity(), 0);
    }

    /// Large buffers are let go; what a thread and the shared stack keep
    /// stays bounded however many buffers come back.
    #[test]
    fn what_is_kept_is_bounded() {
        let spares = Spares::new();
        let mut held = Vec::new();
        spares.give_back(&mut held, Vec::with_capacity(KEEP_BYTES + 1));
        spares.give_back(&mut held, Vec::new());
        assert!(held.is_empty(), "a large buffer (or none) is not kept");
        for _ in 0..(SHARED + 10 * HELD) {
            spares.give_back(&mut held, Vec::with_capacity(64));
            assert!(held.len() < 2 * HELD, "a thread keeps under twice HELD");
            assert!(
                spares.shared().len() <= SHARED,
                "the shared stack stays bounded"
            );
        }
        assert_eq!(spares.shared().len(), SHARED, "the shared stack fills up");
    }

    /// Buffers handed back on one thread (the writer) reach another (a
    /// worker) through the shared stack, the oldest first.
    #[test]
    fn buffers_handed_back_on_one_thread_reach_another() {
        let spares = Spares::new();
        let (given, kept) = std::thread::scope(|s| {
            s.spawn(|| {
                let mut held = Vec::new();
                let buffers: Vec<Vec<u8>> =
                    (0..2 * HELD).map(|_| Vec::with_capacity(777)).collect();
                let at: Vec<usize> = buffers.iter().map(|b| b.as_ptr() as usize).collect();
                for b in buffers {
                    spares.give_back(&mut held, b);
                }
                (at[..HELD].to_vec(), held.len())
            })
            .join()
            .expect("the giving thread")
        });
        assert_eq!(kept, HELD, "the giving thread keeps the newest");
        let taken: Vec<Vec<u8>> = std::thread::scope(|s| {
            s.spawn(|| {
                let mut held = Vec::new();
                (0..HELD).map(|_| spares.take(&mut held)).collect()
            })
            .join()
            .expect("the taking thread")
        });
        let mut taken: Vec<usize> = taken.iter().map(|b| b.as_ptr() as usize).collect();
        taken.sort_unstable();
        let mut given = given;
        given.sort_unstable();
        assert_eq!(
            taken, given,
            "the oldest buffers handed back are taken elsewhere"
        );
    }
}
