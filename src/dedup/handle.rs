//! [`DedupHandle`]: a [`DedupLayer`](super::DedupLayer)'s counters.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::state::State;

/// Reads a [`DedupLayer`](super::DedupLayer)'s counters; cheap to clone.
///
/// ```
/// use tower_wechat::DedupLayer;
///
/// let layer = DedupLayer::new();
/// let handle = layer.handle(); // after the last builder call
/// assert_eq!(handle.stats().processed, 0);
/// ```
#[derive(Clone)]
pub struct DedupHandle {
    state: Arc<State>,
}

/// A snapshot of a [`DedupLayer`](super::DedupLayer)'s counters (all since start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DedupStats {
    /// Handlers that finished a run with a success (its answer stored for repeats),
    /// counted when the run ended — for a callback answered early, when the handler finished
    /// in the background, not when `success` went out.
    pub processed: u64,
    /// First deliveries answered before their handler finished (FastAck's `success`); each
    /// counts in `processed` (or `released`) when the handler ends.
    pub deferred: u64,
    /// Repeat deliveries answered with the stored response.
    pub replayed: u64,
    /// Repeat deliveries that waited for the first attempt and got its response.
    pub coalesced: u64,
    /// First attempts that failed and released their key for a retry.
    pub released: u64,
    /// Repeat deliveries answered `503` because the first attempt was still running.
    pub busy: u64,
    /// Store operations that failed or timed out.
    pub store_errors: u64,
    /// Requests passed through without a key (no `Message`, or the key function said no).
    pub unkeyed: u64,
}

impl DedupHandle {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// The counters now.
    pub fn stats(&self) -> DedupStats {
        let c = &self.state.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        DedupStats {
            processed: read(&c.processed),
            deferred: read(&c.deferred),
            replayed: read(&c.replayed),
            coalesced: read(&c.coalesced),
            released: read(&c.released),
            busy: read(&c.busy),
            store_errors: read(&c.store_errors),
            unkeyed: read(&c.unkeyed),
        }
    }
}

impl fmt::Debug for DedupHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DedupHandle").field(&self.stats()).finish()
    }
}
