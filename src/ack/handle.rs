//! [`FastAckHandle`]: counters and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::state::State;

/// Reads a [`FastAckLayer`](super::FastAckLayer)'s counters and shuts its background work
/// down; cheap to clone.
#[derive(Clone, Debug)]
pub struct FastAckHandle {
    state: Arc<State>,
}

/// A snapshot of a [`FastAckLayer`](super::FastAckLayer)'s counters (all since start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FastAckStats {
    /// Handlers running in background tasks now (answered or not; a handler still in its
    /// first poll, on the request's own task, is not counted).
    pub in_flight: usize,
    /// Handlers that returned a response that is not a server error.
    pub completed: u64,
    /// Handlers that returned an error or a 5xx response.
    pub failed: u64,
    /// Handlers that panicked.
    pub panicked: u64,
    /// Callbacks answered `success` before their handler finished.
    pub acked_early: u64,
    /// Callbacks whose client went away before any answer; their handlers ran to the end
    /// (with [`DedupLayer`](crate::dedup::DedupLayer) outside, this stays 0: it finishes
    /// abandoned attempts itself and records their result).
    pub abandoned: u64,
    /// Callbacks answered `503` because `max_in_flight` handlers were running.
    pub refused_full: u64,
    /// Callbacks answered `503` because shutdown had begun.
    pub refused_closing: u64,
}

/// What [`FastAckHandle::shutdown`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Handlers that were running when shutdown began and finished within the grace period.
    pub finished: usize,
    /// Handlers still running when the grace period ended. They are dropped with the
    /// runtime; with a [journal](crate::journal) their callbacks stay in it and run again
    /// (at the next start, or on another replica), so "unfinished" does not mean "lost".
    pub unfinished: usize,
}

impl FastAckHandle {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// The counters now.
    pub fn stats(&self) -> FastAckStats {
        let counters = &self.state.counters;
        FastAckStats {
            in_flight: self.state.tracker.len(),
            completed: counters.completed.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            panicked: counters.panicked.load(Ordering::Relaxed),
            acked_early: counters.acked_early.load(Ordering::Relaxed),
            abandoned: counters.abandoned.load(Ordering::Relaxed),
            refused_full: counters.refused_full.load(Ordering::Relaxed),
            refused_closing: counters.refused_closing.load(Ordering::Relaxed),
        }
    }

    /// The bound on handlers in flight now.
    ///
    /// ```
    /// use tower_wechat::FastAckLayer;
    ///
    /// let handle = FastAckLayer::new().max_in_flight(64).handle();
    /// assert_eq!(handle.max_in_flight(), 64);
    /// ```
    pub fn max_in_flight(&self) -> usize {
        self.state.limit()
    }

    /// Changes the bound on handlers in flight while the server runs, for every service of
    /// the layer. Raising it frees slots at once; lowering it takes slots out of circulation
    /// as running handlers return them (none is cancelled), so the number in flight may
    /// stay above the new bound until enough of them finish.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tower_wechat::FastAckLayer;
    ///
    /// let handle = FastAckLayer::new().handle();
    /// handle.set_max_in_flight(16); // say, while the database is degraded
    /// assert_eq!(handle.max_in_flight(), 16);
    /// # }
    /// ```
    pub fn set_max_in_flight(&self, max: usize) {
        self.state.set_limit(max);
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_closing(&self) -> bool {
        self.state.closing.load(Ordering::Acquire)
    }

    /// Stops taking new callbacks (they are answered `503`, so WeChat retries them on
    /// another replica or after a restart), then waits up to `grace` for the handlers that
    /// are running. Handlers still running after `grace` are left to the runtime (which
    /// drops them when it shuts down) and counted in [`ShutdownReport::unfinished`].
    ///
    /// Call it after the HTTP server has stopped (for axum, after
    /// `serve(..).with_graceful_shutdown(..)` returns), so no callback is refused while
    /// the server still accepts them.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.state.closing.store(true, Ordering::Release);
        let tracker = &self.state.tracker;
        tracker.close();
        let running = tracker.len();
        let unfinished = match tokio::time::timeout(grace, tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => tracker.len(),
        };
        let report = ShutdownReport {
            finished: running.saturating_sub(unfinished),
            unfinished,
        };
        if unfinished == 0 {
            tracing::info!(
                finished = report.finished,
                "fast ack: background work drained"
            );
        } else {
            tracing::warn!(
                finished = report.finished,
                unfinished,
                grace_ms = grace.as_millis() as u64,
                "fast ack: grace period over with handlers still running"
            );
        }
        report
    }
}
