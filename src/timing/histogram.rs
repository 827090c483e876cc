//! A lock-free log-linear latency histogram over microseconds.
//!
//! Values below 32 µs get one bucket each; above, every power of two is split into 32
//! buckets of equal width, so a bucket's width is at most 1/32 of its lower bound. A
//! percentile is reported as the upper bound of the bucket holding it (never above the
//! exact maximum), so it is at least the true value and at most 3.125 % above it. Values
//! from 2^27 µs (about 134 s) up share the last bucket, reported as the exact maximum.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// log2 of the buckets per power of two.
const SUB_BITS: u32 = 5;
/// Buckets per power of two.
const SUB: usize = 1 << SUB_BITS;
/// Values from 2^MAX_BITS µs up share the last bucket.
const MAX_BITS: u32 = 27;
/// How many buckets a histogram has: the exact ones, 32 per power of two up to 2^MAX_BITS,
/// and one open bucket above.
pub(crate) const BUCKETS: usize = (MAX_BITS - SUB_BITS + 1) as usize * SUB + 1;

/// The bucket holding `micros`.
pub(crate) fn bucket_index(micros: u64) -> usize {
    if micros < SUB as u64 {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    if exponent >= MAX_BITS {
        return BUCKETS - 1;
    }
    let shift = exponent - SUB_BITS;
    (shift as usize + 1) * SUB + ((micros >> shift) as usize - SUB)
}

/// The largest value (µs) bucket `index` holds; `u64::MAX` for the last, open bucket.
pub(crate) fn bucket_upper_bound(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    if index >= BUCKETS - 1 {
        return u64::MAX;
    }
    let shift = (index / SUB - 1) as u32;
    let lower = ((SUB + index % SUB) as u64) << shift;
    lower + (1 << shift) - 1
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Latencies recorded with atomic adds: no lock, one relaxed `fetch_add` per bucket and sum,
/// and a `fetch_max` when a new maximum is seen.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        let value = micros(latency);
        self.buckets[bucket_index(value)].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(value, Relaxed);
        if self.max_micros.load(Relaxed) < value {
            self.max_micros.fetch_max(value, Relaxed);
        }
    }

    /// A copy of the counts. Taken bucket by bucket without stopping writers, so under
    /// concurrent recording the sum and maximum may include a value the buckets do not yet.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Box<[u64]> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        HistogramSnapshot {
            count: buckets.iter().sum(),
            buckets,
            sum_micros: self.sum_micros.load(Relaxed),
            max_micros: self.max_micros.load(Relaxed),
            over_budget: 0,
            over_deadline: 0,
        }
    }
}

/// A point-in-time copy of one latency histogram: count, sum, maximum, percentiles.
///
/// Percentiles are the upper bound of the bucket that holds them, capped at the exact
/// maximum: never below the true value and at most 3.125 % above it (exact below 32 µs).
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::timing::{LatencyStats, MsgType};
///
/// let stats = LatencyStats::new();
/// for ms in 1..=100 {
///     stats.record_callback(MsgType::Text, Duration::from_millis(ms));
/// }
/// let text = stats.snapshot().callbacks(MsgType::Text).clone();
/// assert_eq!(text.count(), 100);
/// assert_eq!(text.max(), Some(Duration::from_millis(100)));
/// let p50 = text.p50().unwrap();
/// assert!(p50 >= Duration::from_millis(50) && p50 <= Duration::from_micros(51_563));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    buckets: Box<[u64]>,
    count: u64,
    sum_micros: u64,
    max_micros: u64,
    pub(crate) over_budget: u64,
    pub(crate) over_deadline: u64,
}

impl HistogramSnapshot {
    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the recorded latencies (µs resolution).
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros)
    }

    /// The largest latency recorded, exact to the microsecond; `None` when empty.
    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.max_micros))
    }

    /// The mean latency; `None` when empty.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.sum_micros / self.count))
    }

    /// How many callbacks took longer than the layer's budget (0 for background work).
    pub fn over_budget(&self) -> u64 {
        self.over_budget
    }

    /// How many callbacks took longer than WeChat's deadline (0 for background work).
    pub fn over_deadline(&self) -> u64 {
        self.over_deadline
    }

    /// The latency that a fraction `q` (0.0 to 1.0) of the recorded ones do not exceed, to
    /// the histogram's resolution; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let wanted = (q.clamp(0.0, 1.0) * self.count as f64 - 1e-9)
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0;
        for (index, &count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                let bound = bucket_upper_bound(index).min(self.max_micros);
                return Some(Duration::from_micros(bound));
            }
        }
        self.max()
    }

    /// The median.
    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.5)
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Option<Duration> {
        self.quantile(0.9)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }

    /// Adds `other`'s counts to this one, e.g. to sum several message types.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_micros += other.sum_micros;
        self.max_micros = self.max_micros.max(other.max_micros);
        self.over_budget += other.over_budget;
        self.over_deadline += other.over_deadline;
    }

    pub(crate) fn empty() -> Self {
        Self {
            buckets: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum_micros: 0,
            max_micros: 0,
            over_budget: 0,
            over_deadline: 0,
        }
    }
}

impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count)
            .field("p50", &self.p50())
            .field("p90", &self.p90())
            .field("p99", &self.p99())
            .field("max", &self.max())
            .field("over_budget", &self.over_budget)
            .field("over_deadline", &self.over_deadline)
            .finish()
    }
}

/// `count=3 p50=1.2ms p90=… p99=… max=…`, durations in milliseconds.
impl fmt::Display for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        write!(
            f,
            "count={} p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms over_budget={} over_deadline={}",
            self.count,
            ms(self.p50()),
            ms(self.p90()),
            ms(self.p99()),
            ms(self.max()),
            self.over_budget,
            self.over_deadline
        )
    }
}
