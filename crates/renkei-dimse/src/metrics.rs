//! Counters and a latency histogram of the DICOM side, rendered as Prometheus text by the
//! web crate. Plain atomics: a metrics crate plus exporter would add an HTTP stack we
//! already have and a build cost we do not want for six numbers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the store-latency histogram buckets.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// DICOM-side metrics, shared by every association.
#[derive(Debug)]
pub struct Metrics {
    /// Associations currently open.
    pub associations_active: AtomicU64,
    /// Associations accepted since start.
    pub associations_total: AtomicU64,
    /// Associations rejected since start.
    pub associations_rejected: AtomicU64,
    /// C-STORE requests answered with success (new, replaced or duplicate).
    pub stores_ok: AtomicU64,
    /// C-STORE requests that found the identical instance already stored.
    pub stores_duplicate: AtomicU64,
    /// C-STORE requests answered with a failure status.
    pub stores_failed: AtomicU64,
    /// Bytes received in C-STORE data sets.
    pub bytes_received: AtomicU64,
    /// C-ECHO requests answered.
    pub echoes: AtomicU64,
    buckets: Vec<AtomicU64>,
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            associations_active: AtomicU64::new(0),
            associations_total: AtomicU64::new(0),
            associations_rejected: AtomicU64::new(0),
            stores_ok: AtomicU64::new(0),
            stores_duplicate: AtomicU64::new(0),
            stores_failed: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            echoes: AtomicU64::new(0),
            buckets: LATENCY_BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            latency_count: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
        }
    }
}

/// A snapshot of the store-latency histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// (upper bound in seconds, cumulative count).
    pub buckets: Vec<(f64, u64)>,
    /// Total observations.
    pub count: u64,
    /// Sum of observations in seconds.
    pub sum_seconds: f64,
}

impl Metrics {
    /// Record how long one C-STORE took from its last fragment to its durable commit.
    pub fn observe_store(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The histogram with cumulative buckets, as Prometheus wants them.
    pub fn store_latency(&self) -> Histogram {
        let mut acc = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&b, c)| {
                acc += c.load(Ordering::Relaxed);
                (b, acc)
            })
            .collect();
        Histogram {
            buckets,
            count: self.latency_count.load(Ordering::Relaxed),
            sum_seconds: self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_store(Duration::from_micros(500));
        m.observe_store(Duration::from_millis(15));
        m.observe_store(Duration::from_secs(60));
        let h = m.store_latency();
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0], (0.001, 1));
        assert_eq!(h.buckets.last().unwrap().1, 2); // 60 s is above every bucket (+Inf only)
        assert!((h.sum_seconds - 60.0155).abs() < 1e-6);
    }
}
