//! [`LatencyStats`]: latency histograms per message type and per background outcome.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::hook::BackgroundOutcome;
use crate::message::{Message, MessageKind};

use super::histogram::{Histogram, HistogramSnapshot};

/// The message types statistics are kept for: WeChat's documented `MsgType`s, `info` for
/// `InfoType` pushes, `other` for any other `MsgType`, and `none` for callbacks without a
/// parsed message (handshakes, rejected requests).
///
/// A fixed set, so a sender cannot grow the number of histograms or metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MsgType {
    /// `text`.
    Text,
    /// `image`.
    Image,
    /// `voice`.
    Voice,
    /// `video`.
    Video,
    /// `shortvideo`.
    ShortVideo,
    /// `location`.
    Location,
    /// `link`.
    Link,
    /// `event`.
    Event,
    /// An `InfoType` push (third-party platform, WeCom suite).
    Info,
    /// A `MsgType` not listed here.
    Other,
    /// No message was parsed: a handshake, a rejected request, or no
    /// [`CallbackTiming::record_message`](super::CallbackTiming::record_message) call.
    NoMessage,
}

impl MsgType {
    /// Every type, in the order of [`StatsSnapshot::iter`].
    pub const ALL: [MsgType; 11] = [
        Self::Text,
        Self::Image,
        Self::Voice,
        Self::Video,
        Self::ShortVideo,
        Self::Location,
        Self::Link,
        Self::Event,
        Self::Info,
        Self::Other,
        Self::NoMessage,
    ];

    /// The type of `message`.
    pub fn of(message: &Message) -> Self {
        match &message.kind {
            MessageKind::Text { .. } => Self::Text,
            MessageKind::Image { .. } => Self::Image,
            MessageKind::Voice { .. } => Self::Voice,
            MessageKind::Video { .. } => Self::Video,
            MessageKind::ShortVideo { .. } => Self::ShortVideo,
            MessageKind::Location { .. } => Self::Location,
            MessageKind::Link { .. } => Self::Link,
            MessageKind::Event(_) => Self::Event,
            MessageKind::Info { .. } | MessageKind::SuiteChangeContact { .. } => Self::Info,
            MessageKind::Unknown { .. } => Self::Other,
        }
    }

    /// The label used in logs and metrics: `text`, `image`, `voice`, `video`, `shortvideo`,
    /// `location`, `link`, `event`, `info`, `other`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Voice => "voice",
            Self::Video => "video",
            Self::ShortVideo => "shortvideo",
            Self::Location => "location",
            Self::Link => "link",
            Self::Event => "event",
            Self::Info => "info",
            Self::Other => "other",
            Self::NoMessage => "none",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const OUTCOMES: [BackgroundOutcome; 3] = [
    BackgroundOutcome::Completed,
    BackgroundOutcome::Failed,
    BackgroundOutcome::Panicked,
];

fn outcome_index(outcome: BackgroundOutcome) -> usize {
    match outcome {
        BackgroundOutcome::Completed => 0,
        BackgroundOutcome::Failed => 1,
        BackgroundOutcome::Panicked => 2,
    }
}

struct Callbacks {
    latency: Histogram,
    over_budget: AtomicU64,
    over_deadline: AtomicU64,
}

struct Inner {
    callbacks: [Callbacks; MsgType::ALL.len()],
    background: [Histogram; OUTCOMES.len()],
    background_started: AtomicU64,
}

/// Callback latencies per [`MsgType`] and background-work durations per
/// [`BackgroundOutcome`], recorded by [`TimingLayer`](super::TimingLayer).
///
/// Cheap to clone (one `Arc`); every clone records into the same histograms. Recording is a
/// handful of relaxed atomic adds on the histogram of the message's type: no lock, no
/// allocation. [`snapshot`](Self::snapshot) copies the counts to compute percentiles; see
/// [`HistogramSnapshot`] for the resolution.
///
/// ```
/// use tower_wechat::timing::{MsgType, TimingLayer};
///
/// let layer = TimingLayer::new();
/// let stats = layer.stats(); // keep a handle before the layer goes into the router
/// // ... later, e.g. in an admin endpoint:
/// let snapshot = stats.snapshot();
/// println!("text: {}", snapshot.callbacks(MsgType::Text));
/// println!("all:  {}", snapshot.all_callbacks());
/// ```
#[derive(Clone)]
pub struct LatencyStats {
    inner: Arc<Inner>,
}

impl LatencyStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                callbacks: std::array::from_fn(|_| Callbacks {
                    latency: Histogram::new(),
                    over_budget: AtomicU64::new(0),
                    over_deadline: AtomicU64::new(0),
                }),
                background: std::array::from_fn(|_| Histogram::new()),
                background_started: AtomicU64::new(0),
            }),
        }
    }

    /// Records one callback's latency (what [`TimingLayer`](super::TimingLayer) does; also
    /// useful to feed statistics from elsewhere).
    pub fn record_callback(&self, msg_type: MsgType, latency: Duration) {
        self.inner.callbacks[msg_type.index()]
            .latency
            .record(latency);
    }

    /// Records a callback and whether it passed the budget and the deadline.
    pub(crate) fn record_timed(
        &self,
        msg_type: MsgType,
        latency: Duration,
        over_budget: bool,
        over_deadline: bool,
    ) {
        let callbacks = &self.inner.callbacks[msg_type.index()];
        callbacks.latency.record(latency);
        if over_budget {
            callbacks.over_budget.fetch_add(1, Relaxed);
        }
        if over_deadline {
            callbacks.over_deadline.fetch_add(1, Relaxed);
        }
    }

    /// Records that a handler moved to the background.
    pub(crate) fn record_background_started(&self) {
        self.inner.background_started.fetch_add(1, Relaxed);
    }

    /// Records background work that ended with `outcome` after `elapsed`.
    pub fn record_background(&self, outcome: BackgroundOutcome, elapsed: Duration) {
        self.inner.background[outcome_index(outcome)].record(elapsed);
    }

    /// A copy of every histogram, to read percentiles from.
    pub fn snapshot(&self) -> StatsSnapshot {
        let callbacks = self.inner.callbacks.each_ref().map(|callbacks| {
            let mut snapshot = callbacks.latency.snapshot();
            snapshot.over_budget = callbacks.over_budget.load(Relaxed);
            snapshot.over_deadline = callbacks.over_deadline.load(Relaxed);
            snapshot
        });
        StatsSnapshot {
            callbacks,
            background: self.inner.background.each_ref().map(Histogram::snapshot),
            background_started: self.inner.background_started.load(Relaxed),
        }
    }
}

impl Default for LatencyStats {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencyStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// A point-in-time copy of [`LatencyStats`].
///
/// Its `Display` is a small table: one line per message type seen, then the background
/// work, for a log line or an admin page.
#[derive(Clone)]
pub struct StatsSnapshot {
    callbacks: [HistogramSnapshot; MsgType::ALL.len()],
    background: [HistogramSnapshot; OUTCOMES.len()],
    background_started: u64,
}

impl StatsSnapshot {
    /// The latencies of callbacks of `msg_type`.
    pub fn callbacks(&self, msg_type: MsgType) -> &HistogramSnapshot {
        &self.callbacks[msg_type.index()]
    }

    /// The latencies of every callback, all types together.
    pub fn all_callbacks(&self) -> HistogramSnapshot {
        let mut all = HistogramSnapshot::empty();
        for callbacks in &self.callbacks {
            all.merge(callbacks);
        }
        all
    }

    /// The message types with at least one callback, with their latencies.
    pub fn iter(&self) -> impl Iterator<Item = (MsgType, &HistogramSnapshot)> {
        MsgType::ALL
            .into_iter()
            .zip(self.callbacks.iter())
            .filter(|(_, callbacks)| callbacks.count() > 0)
    }

    /// How long background work that ended with `outcome` ran (the whole run of the
    /// handler, from its call).
    pub fn background(&self, outcome: BackgroundOutcome) -> &HistogramSnapshot {
        &self.background[outcome_index(outcome)]
    }

    /// How many handlers moved to the background.
    pub fn background_started(&self) -> u64 {
        self.background_started
    }
}

impl fmt::Debug for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (msg_type, callbacks) in self.iter() {
            map.entry(&msg_type.as_str(), callbacks);
        }
        map.entry(&"background_started", &self.background_started);
        for (outcome, background) in OUTCOMES.iter().zip(&self.background) {
            if background.count() > 0 {
                map.entry(&outcome.as_str(), background);
            }
        }
        map.finish()
    }
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (msg_type, callbacks) in self.iter() {
            writeln!(f, "{:<10} {callbacks}", msg_type.as_str())?;
        }
        writeln!(f, "background started={}", self.background_started)?;
        for (outcome, background) in OUTCOMES.iter().zip(&self.background) {
            if background.count() > 0 {
                writeln!(f, "background {:<9} {background}", outcome.as_str())?;
            }
        }
        Ok(())
    }
}
