//! The state every service of one [`DedupLayer`](super::DedupLayer) shares: its settings
//! and counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::key::default_key;
use crate::Message;
use crate::label::OrderCheck;

/// How a callback's dedup key is made.
pub(crate) type KeyFn = dyn Fn(&Message) -> Option<String> + Send + Sync;

/// What the builder sets.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) key: Arc<KeyFn>,
    pub(crate) ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) budget: Duration,
    pub(crate) fail_closed: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            key: Arc::new(default_key),
            ttl: Duration::from_secs(300),
            lease: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(4),
            store_timeout: Duration::from_secs(1),
            budget: Duration::from_millis(4_500),
            fail_closed: false,
        }
    }
}

/// Settings, counters and the order check, shared by a layer, its services and its handle.
pub(crate) struct State {
    pub(crate) settings: Settings,
    pub(crate) counters: Counters,
    pub(crate) order: OrderCheck,
}

impl State {
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            settings,
            counters: Counters::default(),
            order: OrderCheck::new("DedupLayer"),
        }
    }
}

/// Counters of a [`DedupLayer`](super::DedupLayer); see [`DedupStats`](super::DedupStats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) processed: AtomicU64,
    pub(crate) deferred: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) unkeyed: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
