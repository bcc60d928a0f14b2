//! Counts kept in lanes, one per thread (threads past [`LANES`] share):
//! every webhook request adds to its workflow's request and run counts,
//! and two HTTP workers adding to one atomic pass its cache line back and
//! forth on every request (3.5 % of a sync request's CPU, measured with
//! the counting switched off). A reader adds the lanes up. Gauges that
//! every run moves (`hookflow_runs{state="running"}`) are kept the same
//! way: a run counted in on one thread may be counted out on another, and
//! only the sum means anything.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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

/// One cache line of a gauge's lane.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct GaugeLine(AtomicI64);

/// A gauge kept in lanes; clones share it. Its value is the sum of the
/// lanes (each lane alone may be negative).
#[derive(Debug, Clone, Default)]
pub struct LaneGauge(Arc<[GaugeLine; LANES]>);

impl LaneGauge {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Takes one away.
    pub fn dec(&self) {
        self.inc_by(-1);
    }

    /// Adds `n` (negative to take away) in this thread's lane.
    pub fn inc_by(&self, n: i64) {
        if let Some(line) = self.0.get(lane()) {
            line.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sets the value: this thread's lane takes the difference. As with a
    /// single atomic, a change made by another thread meanwhile counts on
    /// top of it.
    pub fn set(&self, value: i64) {
        self.inc_by(value.wrapping_sub(self.get()));
    }

    /// The value: every lane's, added up.
    pub fn get(&self) -> i64 {
        self.0
            .iter()
            .map(|l| l.0.load(Ordering::Relaxed))
            .fold(0, i64::wrapping_add)
    }
}

impl TypedMetric for LaneGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for LaneGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads past the lanes: `LANES * 2 + 3`.
    const THREADS: usize = LANES * 2 + 3;

    /// Runs `each(thread number)` a thousand times on each of [`THREADS`] threads.
    fn on_many_threads(each: impl Fn(usize) + Sync) {
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let each = &each;
                scope.spawn(move || (0..1000).for_each(|_| each(t)));
            }
        });
    }

    /// A gauge moved up on some threads and down on others adds up.
    #[test]
    fn a_gauge_moved_on_many_threads_adds_up() {
        let gauge = LaneGauge::default();
        // Half through a clone: clones share the lanes.
        let clone = gauge.clone();
        on_many_threads(|t| {
            if t % 2 == 0 {
                clone.inc();
            } else {
                gauge.dec();
            }
        });
        // Of 19 threads (LANES = 8), the 10 of even number count up, 9 down.
        let up = THREADS.div_ceil(2) as i64;
        let down = THREADS as i64 - up;
        assert_eq!(gauge.get(), (up - down) * 1000);
        gauge.set(5);
        assert_eq!(gauge.get(), 5);
        std::thread::scope(|scope| {
            let gauge = gauge.clone();
            scope.spawn(move || gauge.set(-2));
        });
        assert_eq!(gauge.get(), -2, "set on another thread, in its own lane");
        gauge.inc_by(7);
        assert_eq!(gauge.get(), 5);
    }

    /// Counts added on more threads than lanes all count, once each.
    #[test]
    fn every_thread_s_count_is_in_the_total() {
        let counter = LaneCounter::default();
        let clone = counter.clone();
        on_many_threads(|t| {
            if t % 2 == 0 {
                clone.inc()
            } else {
                counter.inc()
            }
        });
        assert_eq!(counter.get(), THREADS as u64 * 1000);
    }

    #[test]
    fn a_lane_is_a_cache_line() {
        assert_eq!(std::mem::size_of::<Line>(), 64);
        assert_eq!(std::mem::align_of::<Line>(), 64);
    }
}
