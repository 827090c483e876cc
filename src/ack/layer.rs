//! [`FastAckLayer`]: settings and the state its services share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tower_layer::Layer;

use super::handle::FastAckHandle;
use super::service::FastAck;
use crate::background::BackgroundOutcome;

/// Default deadline: a margin under WeChat's 5 s for the network and the outer layers.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(4);
/// Default bound on handlers running at once.
const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// When the callback is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// With the handler's response if it is ready within the deadline, else `success`.
    Deadline(Duration),
    /// With `success` at once; the handler always runs in the background.
    AlwaysAck,
}

/// Answers each callback within a deadline and finishes slow handlers in the background;
/// see the [module docs](super) for the behaviour and an example.
///
/// All services made by one layer (and its clones) share one bound, one set of counters and
/// one [`FastAckHandle`].
///
/// Needs a tokio runtime: handlers are spawned as tokio tasks.
#[derive(Clone, Debug)]
pub struct FastAckLayer {
    pub(crate) mode: Mode,
    pub(crate) state: Arc<State>,
}

impl FastAckLayer {
    /// Deadline mode with a 4 s deadline and at most 1024 handlers in flight.
    pub fn new() -> Self {
        Self {
            mode: Mode::Deadline(DEFAULT_DEADLINE),
            state: Arc::new(State::new(DEFAULT_MAX_IN_FLIGHT)),
        }
    }

    /// Answers with the handler's response if it is ready within `deadline`, else with
    /// `success` while the handler keeps running (the default mode, 4 s).
    ///
    /// Keep it under WeChat's 5 s with room for the network and the layers outside.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.mode = Mode::Deadline(deadline);
        self
    }

    /// Answers `success` at once and always runs the handler in the background (no passive
    /// replies).
    #[must_use]
    pub fn always_ack(mut self) -> Self {
        self.mode = Mode::AlwaysAck;
        self
    }

    /// At most `max` handlers run at once (1024 by default); a callback beyond that is
    /// answered `503` so WeChat retries it later. Applies to every service of this layer,
    /// including ones already made.
    #[must_use]
    pub fn max_in_flight(self, max: usize) -> Self {
        self.state.set_limit(max);
        self
    }

    /// The handle for counters and graceful shutdown of this layer's background work.
    pub fn handle(&self) -> FastAckHandle {
        FastAckHandle::new(self.state.clone())
    }
}

impl Default for FastAckLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for FastAckLayer {
    type Service = FastAck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FastAck {
            inner,
            mode: self.mode,
            state: self.state.clone(),
        }
    }
}

/// Shared by a layer, its services and its handle.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) tracker: TaskTracker,
    pub(crate) permits: Arc<Semaphore>,
    limit: AtomicUsize,
    pub(crate) closing: AtomicBool,
    pub(crate) counters: Counters,
}

/// Monotonic counters; see [`FastAckStats`](super::FastAckStats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) refused_full: AtomicU64,
    pub(crate) refused_closing: AtomicU64,
    pub(crate) acked_early: AtomicU64,
    pub(crate) abandoned: AtomicU64,
}

impl State {
    fn new(limit: usize) -> Self {
        Self {
            tracker: TaskTracker::new(),
            permits: Arc::new(Semaphore::new(limit)),
            limit: AtomicUsize::new(limit),
            closing: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    fn set_limit(&self, limit: usize) {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        let old = self.limit.swap(limit, Ordering::AcqRel);
        if limit > old {
            self.permits.add_permits(limit - old);
        } else {
            // Permits held by running handlers are forgotten as they come back.
            let mut owed = old - limit;
            owed -= self.permits.forget_permits(owed);
            if owed > 0 {
                let permits = self.permits.clone();
                // Forget the rest as running handlers return theirs.
                tokio_spawn_forget(permits, owed);
            }
        }
    }

    pub(crate) fn count(&self, outcome: BackgroundOutcome) {
        let counter = match outcome {
            BackgroundOutcome::Completed => &self.counters.completed,
            BackgroundOutcome::Failed => &self.counters.failed,
            BackgroundOutcome::Panicked => &self.counters.panicked,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes `owed` permits out of circulation as they are released. Without a runtime (a
/// layer configured outside one) the permits are taken at once when free, else left.
fn tokio_spawn_forget(permits: Arc<Semaphore>, owed: usize) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let owed = u32::try_from(owed).unwrap_or(u32::MAX);
    runtime.spawn(async move {
        if let Ok(taken) = permits.acquire_many(owed).await {
            taken.forget();
        }
    });
}
