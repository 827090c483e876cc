//! The settings every service of one [`TimingLayer`](super::TimingLayer) shares.

use std::time::Duration;

use super::stats::LatencyStats;

/// Budget, deadline and the statistics to record into.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) budget: Duration,
    pub(crate) deadline: Duration,
    pub(crate) stats: LatencyStats,
}
