//! A small HDR-like histogram: log buckets with 64 linear sub-buckets per power of two, so every
//! recorded value is kept within 1/64 (1.6 %) of its true value from 1 ns to u64::MAX, in a fixed
//! 3,776 counters. [`AtomicHistogram`] is shared by many tasks without locks; [`Histogram`] is its
//! snapshot, which answers percentiles and merges (workers send theirs to the parent).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two (as bits); values below `2 << SUB_BITS` are counted exactly.
const SUB_BITS: u32 = 6;
/// Number of buckets covering the whole u64 range.
const BUCKETS: usize = ((64 - SUB_BITS as usize) << SUB_BITS) + (1 << SUB_BITS);

/// The bucket index of a value.
fn index(v: u64) -> usize {
    let msb = 63 - (v | 1).leading_zeros();
    if msb <= SUB_BITS {
        return v as usize;
    }
    let shift = msb - SUB_BITS;
    ((shift as usize) << SUB_BITS) + (v >> shift) as usize
}

/// The range `[low, high]` of values counted in a bucket.
fn bucket_range(idx: usize) -> (u64, u64) {
    if idx < (2 << SUB_BITS) {
        return (idx as u64, idx as u64);
    }
    let shift = (idx >> SUB_BITS) as u32 - 1;
    let m = (idx - ((shift as usize) << SUB_BITS)) as u64;
    let low = m << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// A histogram many tasks record into concurrently.
pub struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn record(&self, v: u64) {
        self.counts[index(v)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        // Read first: a read-modify-write on every record would bounce the line between cores.
        if v < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(v, Ordering::Relaxed);
        }
        if v > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// A consistent-enough copy (recording may continue meanwhile).
    pub fn snapshot(&self) -> Histogram {
        let mut h = Histogram::default();
        for (i, c) in self.counts.iter().enumerate() {
            let c = c.load(Ordering::Relaxed);
            if c > 0 {
                h.buckets.push((i as u32, c));
                h.count += c;
            }
        }
        h.sum = self.sum.load(Ordering::Relaxed);
        h.min = if h.count == 0 { 0 } else { self.min.load(Ordering::Relaxed) };
        h.max = self.max.load(Ordering::Relaxed);
        h
    }
}

/// A sparse, serializable histogram: `(bucket, count)` pairs in bucket order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    buckets: Vec<(u32, u64)>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Histogram {
    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest recorded value, exact.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean, exact up to u64 wrap of the sum.
    pub fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum as f64 / self.count as f64 }
    }

    /// The value at quantile `q` (0..=1), within 1.6 %; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(idx, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                let (low, high) = bucket_range(idx as usize);
                // The bucket's middle, but never beyond what was really seen.
                return (low + (high - low) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Adds another histogram's values into this one.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (self.buckets.iter().peekable(), other.buckets.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(ia, ca)), Some(&&(ib, cb))) => {
                    if ia == ib {
                        merged.push((ia, ca + cb));
                        a.next();
                        b.next();
                    } else if ia < ib {
                        merged.push((ia, ca));
                        a.next();
                    } else {
                        merged.push((ib, cb));
                        b.next();
                    }
                }
                (Some(&&x), None) => {
                    merged.push(x);
                    a.next();
                }
                (None, Some(&&x)) => {
                    merged.push(x);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.min = if self.count == 0 { other.min } else { self.min.min(other.min) };
        self.buckets = merged;
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        self.max = self.max.max(other.max);
    }

    /// The usual latency figures, converting nanoseconds to milliseconds.
    pub fn summary_ms(&self) -> LatencySummary {
        let ms = |ns: u64| ns as f64 / 1e6;
        LatencySummary {
            count: self.count,
            mean_ms: self.mean() / 1e6,
            p50_ms: ms(self.quantile(0.50)),
            p99_ms: ms(self.quantile(0.99)),
            p999_ms: ms(self.quantile(0.999)),
            max_ms: ms(self.max),
        }
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_range_agree_everywhere() {
        let mut probes: Vec<u64> = (0..5000).collect();
        for shift in 0..64 {
            let p = 1u64 << shift;
            probes.extend([p - 1, p, p + 1, p.saturating_mul(3) / 2]);
        }
        probes.push(u64::MAX);
        for v in probes {
            let i = index(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            let (low, high) = bucket_range(i);
            assert!(low <= v && v <= high, "{v} not in bucket {i} = [{low}, {high}]");
            assert!((high - low) as f64 <= low as f64 / 64.0 + 1.0, "bucket {i} too wide");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_within_precision() {
        let h = AtomicHistogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 100_000);
        assert_eq!(s.max(), 100_000_000);
        for (q, want) in [(0.5, 50_000_000f64), (0.99, 99_000_000.0), (0.999, 99_900_000.0)] {
            let got = s.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(s.quantile(1.0), 100_000_000);
        assert!((s.mean() - 50_000_500.0).abs() < 1.0);
    }

    #[test]
    fn empty_and_single() {
        let s = AtomicHistogram::new().snapshot();
        assert_eq!((s.count(), s.quantile(0.5), s.max()), (0, 0, 0));
        let h = AtomicHistogram::new();
        h.record(1234);
        let s = h.snapshot();
        assert_eq!(s.quantile(0.0), 1234);
        assert_eq!(s.quantile(0.999), 1234);
    }

    #[test]
    fn merge_equals_recording_together() {
        let (a, b, both) = (AtomicHistogram::new(), AtomicHistogram::new(), AtomicHistogram::new());
        for v in 0..3000u64 {
            let x = v * v * 7 + 3;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            both.record(x);
        }
        let mut m = a.snapshot();
        m.merge(&b.snapshot());
        assert_eq!(m, both.snapshot());
        let mut e = Histogram::default();
        e.merge(&m);
        assert_eq!(e, m);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Histogram>(&json).unwrap(), m);
    }
}
