//! A histogram of durations observed with two relaxed atomic additions (its
//! bucket and the sum, in the thread's lane), no lock, and encoded by prometheus-client's encoder
//! (the text format is the crate's, not ours). The crate's own histogram
//! takes a mutex per observation; this one is on every webhook request.
//!
//! [`Listed`] keeps a family in the output before it has a member: its
//! `# HELP` and `# TYPE` lines are there from the start (SPEC §7).

use crate::lanes::{lane, Line, LANES, PER_LINE};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of a webhook request's duration (seconds).
pub const REQUEST_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of a run's duration (seconds): runs may wait for hours.
pub const RUN_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0,
];

/// Upper bounds of a sync of the store's disk (seconds).
pub const COMMIT_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A histogram of durations; clones share it. Its counts are kept in
/// lanes ([`crate::lanes`]): each lane holds a count per bucket and the
/// sum, on cache lines of its own.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds in seconds, ascending.
    bounds: &'static [f64],
    /// The same in nanoseconds, for the comparison on each observation.
    bounds_ns: Box<[u64]>,
    /// Cache lines a lane takes.
    stride: usize,
    /// Lane after lane: one count per bound, then the `+Inf` bucket (not
    /// cumulative), then the sum of the observations in nanoseconds.
    lines: Box<[Line]>,
}

impl Inner {
    /// The atomic at `index` of lane `lane`.
    fn at(&self, lane: usize, index: usize) -> Option<&AtomicU64> {
        self.lines
            .get(lane * self.stride + index / PER_LINE)
            .and_then(|l| l.0.get(index % PER_LINE))
    }

    /// The atomic at `index` added up over the lanes.
    fn total(&self, index: usize) -> u64 {
        (0..LANES)
            .filter_map(|lane| self.at(lane, index))
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Where the sum is in a lane.
    fn sum_index(&self) -> usize {
        self.bounds.len() + 1
    }
}

impl AtomicHistogram {
    /// An empty histogram with these upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        // The buckets, `+Inf` and the sum.
        let stride = (bounds.len() + 2).div_ceil(PER_LINE);
        AtomicHistogram {
            inner: Arc::new(Inner {
                bounds,
                bounds_ns: bounds.iter().map(|b| (b * 1e9) as u64).collect(),
                stride,
                lines: (0..stride * LANES).map(|_| Line::default()).collect(),
            }),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        self.observe_many(took, 1);
    }

    /// Counts `n` observations of the same duration.
    pub fn observe_many(&self, took: Duration, n: u64) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let inner = &*self.inner;
        let index = inner
            .bounds_ns
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(inner.bounds_ns.len());
        let lane = lane();
        if let Some(c) = inner.at(lane, index) {
            c.fetch_add(n, Ordering::Relaxed);
        }
        if let Some(sum) = inner.at(lane, inner.sum_index()) {
            sum.fetch_add(ns.saturating_mul(n), Ordering::Relaxed);
        }
    }

    /// How many observations so far.
    pub fn count(&self) -> u64 {
        (0..=self.inner.bounds.len())
            .map(|i| self.inner.total(i))
            .fold(0, u64::wrapping_add)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(i, bound)| (bound, inner.total(i)))
            .collect();
        // The count is the buckets' total, so `+Inf` and `_count` agree
        // whatever observations land meanwhile.
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = inner.total(inner.sum_index()) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A metric (a family) that is listed even before it has a member.
#[derive(Debug)]
pub struct Listed<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn observations_land_in_their_bucket_and_encode_cumulatively() {
        let h = AtomicHistogram::new(&[0.001, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(2));
        assert_eq!(h.count(), 4);
        let mut registry = Registry::default();
        registry.register("t_seconds", "A test", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        assert!(
            text.contains("t_seconds_bucket{le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_bucket{le=\"0.1\"} 3\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("t_seconds_sum 2.0515\n"), "{text}");
        assert!(text.contains("t_seconds_count 4\n"), "{text}");
    }
}
