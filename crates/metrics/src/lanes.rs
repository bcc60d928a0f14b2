//! Counts kept in lanes, one per thread (threads past [`LANES`] share):
//! every webhook request adds to its workflow's request and run counts,
//! and two HTTP workers adding to one atomic pass its cache line back and
//! forth on every request (3.5 % of a sync request's CPU, measured with
//! the counting switched off). A reader adds the lanes up.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Lanes of each count.
pub(crate) const LANES: usize = 8;

/// Atomics in one cache line.
pub(crate) const PER_LINE: usize = 8;

/// One cache line of counts: a lane starts on a line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Line(pub [AtomicU64; PER_LINE]);

/// The calling thread's lane, below [`LANES`].
pub(crate) fn lane() -> usize {
    hookflow_model::published::thread_lane(LANES)
}

/// A counter kept in lanes; clones share it.
#[derive(Debug, Clone, Default)]
pub struct LaneCounter(Arc<[Line; LANES]>);

impl LaneCounter {
    /// Adds one in this thread's lane.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n` in this thread's lane.
    pub fn inc_by(&self, n: u64) {
        if let Some(line) = self.0.get(lane()) {
            line.0[0].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The count: every lane's, added up.
    pub fn get(&self) -> u64 {
        self.0
            .iter()
            .map(|l| l.0[0].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl TypedMetric for LaneCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for LaneCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts added on more threads than lanes all count, once each.
    #[test]
    fn every_thread_s_count_is_in_the_total() {
        let counter = LaneCounter::default();
        std::thread::scope(|scope| {
            for _ in 0..LANES * 2 + 3 {
                let counter = counter.clone();
                scope.spawn(move || {
                    for _ in 0..1000 {
                        counter.inc();
                    }
                });
            }
        });
        assert_eq!(counter.get(), (LANES as u64 * 2 + 3) * 1000);
    }

    #[test]
    fn a_lane_is_a_cache_line() {
        assert_eq!(std::mem::size_of::<Line>(), 64);
        assert_eq!(std::mem::align_of::<Line>(), 64);
    }
}
