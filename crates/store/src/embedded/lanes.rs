//! Finished sync runs' records on their way to the writer, one lane per
//! thread.
//!
//! A sync run's record went to the writer as an event of its own: a
//! buffer, a box, room taken in the backlog's shared byte count and a slot
//! in its shared channel. Three cache lines passed between the HTTP
//! workers and the writer on every request, and the buffers came back
//! from the writer's core to be filled again (`perf`: 100–280 ns a
//! request in the backlog's send alone, more as the two cores sat further
//! apart). A worker now packs the record as a page entry straight into
//! its thread's lane, a buffer under a lock only the writer shares, once a
//! turn; the first entry of a turn wakes the writer ([`Job::Lanes`]).
//!
//! The writer takes every lane after the jobs of its turn, so a read that
//! waits for the writer to catch up, or a flush, sees every record kept
//! before it was asked for. A lane holds at most [`LANE_BYTES`] (and one
//! more record); a record that finds it full, a retry (its link is a key of
//! its own) and a record of a stopped writer take the backlog's path, with
//! its bounds and its waits.
//!
//! [`Job::Lanes`]: super::writer::Job::Lanes

use super::backlog::Alone;
use super::layout::{id_bytes, Id};
use super::pages;
use crate::record::ExecutionRecord;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lanes; threads past them share (a lane is a lock, not a thread's own).
pub(crate) const LANES: usize = 8;

/// Most bytes a lane holds before records take the backlog's path: under
/// W1 at 44 k requests a second a lane held at most 149 KiB when its turn
/// took it, and no record went past it (a 20 s run, counted).
pub(crate) const LANE_BYTES: usize = 256 * 1024;

/// Every thread's lane of page entries.
#[derive(Debug, Default)]
pub(crate) struct Lanes([Alone<Mutex<Vec<u8>>>; LANES]);

fn lock(lane: &Mutex<Vec<u8>>) -> MutexGuard<'_, Vec<u8>> {
    // A lane is whole entries whatever panicked: an entry is appended by
    // code that does not panic.
    lane.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lanes {
    /// Packs `record` into this thread's lane, if it can go there: its id,
    /// and whether the lane was empty (the writer is to be woken).
    pub(crate) fn keep(&self, record: &ExecutionRecord) -> Option<(Id, bool)> {
        if record.retry_of.is_some() {
            return None;
        }
        let id = id_bytes(&record.id)?;
        let lane = self.0.get(hookflow_model::published::thread_lane(LANES))?;
        let mut entries = lock(lane);
        if entries.len() >= LANE_BYTES {
            return None;
        }
        let first = entries.is_empty();
        pages::push_record(&mut entries, &id, record);
        Some((id, first))
    }

    /// Takes every lane's entries: each lane gets back the buffer `spares`
    /// holds for it (emptied; a new one if a large record grew it past
    /// twice a lane's bytes), and `spares` holds what the lanes had.
    pub(crate) fn take(&self, spares: &mut [Vec<u8>; LANES]) {
        for (lane, spare) in self.0.iter().zip(spares.iter_mut()) {
            spare.clear();
            if spare.capacity() > 2 * LANE_BYTES {
                *spare = Vec::new();
            }
            let mut entries = lock(lane);
            if !entries.is_empty() {
                std::mem::swap(&mut *entries, spare);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ExecutionRecord {
        let mut record = super::super::tests::a_run().record;
        record.id = id.into();
        record.status = crate::record::RunStatus::Resolved;
        record.finished_at = Some(hookflow_model::time::Timestamp(record.started_ms + 5));
        record
    }

    /// What a lane holds reads back as the page entries of its records.
    #[test]
    fn kept_records_come_out_as_page_entries() {
        let lanes = Lanes::default();
        let ids = [
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
        ];
        let records: Vec<ExecutionRecord> = ids.iter().map(|id| record(id)).collect();
        let mut firsts = Vec::new();
        for record in &records {
            let (_, first) = lanes.keep(record).expect("a record of a known run is kept");
            firsts.push(first);
        }
        assert_eq!(
            firsts,
            [true, false],
            "only the first of a turn wakes the writer"
        );
        let mut spares: [Vec<u8>; LANES] = Default::default();
        lanes.take(&mut spares);
        let taken: Vec<u8> = spares.iter().flatten().copied().collect();
        let entries: Vec<_> = pages::entries(&taken)
            .collect::<Result<_, _>>()
            .expect("whole entries");
        assert_eq!(entries.len(), 2);
        for (entry, expected) in entries.iter().zip(records) {
            assert_eq!(entry.id, id_bytes(&expected.id).expect("an id"));
            assert_eq!(entry.started_ms, expected.started_ms);
            assert_eq!(entry.finished_ms, expected.started_ms + 5);
            assert_eq!(entry.workflow, expected.workflow.as_bytes());
            assert!(entry.input.is_empty());
            let read: ExecutionRecord = rmp_serde::from_slice(entry.record).expect("a record");
            assert_eq!(read, expected);
        }
        // Taken: the next record is the first of a turn again.
        let again = lanes.keep(&record(&uuid::Uuid::now_v7().to_string()));
        assert!(matches!(again, Some((_, true))));
    }

    /// A retry, a record without a run's id and a full lane go the
    /// backlog's way.
    #[test]
    fn what_a_lane_does_not_take_comes_back() {
        let lanes = Lanes::default();
        let mut retry = record(&uuid::Uuid::now_v7().to_string());
        retry.retry_of = Some(uuid::Uuid::now_v7().to_string());
        assert!(lanes.keep(&retry).is_none());
        assert!(lanes.keep(&record("not-an-id")).is_none());
        let mut large = record(&uuid::Uuid::now_v7().to_string());
        large.error = Some("e".repeat(3 * LANE_BYTES));
        assert!(
            lanes.keep(&large).is_some(),
            "one record past the bound fits an empty lane"
        );
        assert!(
            lanes
                .keep(&record(&uuid::Uuid::now_v7().to_string()))
                .is_none(),
            "nothing more"
        );
        let mut spares: [Vec<u8>; LANES] = Default::default();
        lanes.take(&mut spares);
        assert!(matches!(
            lanes.keep(&record(&uuid::Uuid::now_v7().to_string())),
            Some((_, true))
        ));
        // The buffer the large record grew is let go, not handed to a
        // lane again (where it would come back out the turn after).
        assert!(
            spares.iter().any(|b| b.capacity() > 2 * LANE_BYTES),
            "the large record grew a buffer"
        );
        lanes.take(&mut spares);
        assert!(lanes
            .keep(&record(&uuid::Uuid::now_v7().to_string()))
            .is_some());
        lanes.take(&mut spares);
        assert!(
            spares.iter().all(|b| b.capacity() <= 2 * LANE_BYTES),
            "no buffer past twice a lane's bytes is kept"
        );
    }
}
