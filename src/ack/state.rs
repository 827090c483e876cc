//! The state every service of one [`FastAckLayer`](super::FastAckLayer) shares: settings, the
//! bound on handlers in flight, the task tracker and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::hook::BackgroundOutcome;
use crate::journal::Handoff;
use crate::label::OrderCheck;

/// Default deadline: a margin under WeChat's 5 s for the network and the outer layers.
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(4);
/// Default bound on handlers running at once.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// When the callback is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// With the handler's response if it is ready within the deadline, else `success`.
    Deadline(Duration),
    /// With `success` at once; the handler always runs in the background.
    AlwaysAck,
}

/// What the builder sets.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    pub(crate) max_in_flight: usize,
    /// The durable hand-off, if a journal is configured.
    pub(crate) handoff: Option<Handoff>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Deadline(DEFAULT_DEADLINE),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            handoff: None,
        }
    }
}

/// Shared by a layer, its services and its handle.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) settings: Settings,
    pub(crate) tracker: TaskTracker,
    pub(crate) permits: Arc<Semaphore>,
    /// The bound now (the handle can change it while running).
    limit: AtomicUsize,
    pub(crate) closing: AtomicBool,
    pub(crate) counters: Counters,
    pub(crate) order: OrderCheck,
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
    pub(crate) fn new(settings: Settings) -> Self {
        let limit = settings.max_in_flight.min(Semaphore::MAX_PERMITS);
        Self {
            settings,
            tracker: TaskTracker::new(),
            permits: Arc::new(Semaphore::new(limit)),
            limit: AtomicUsize::new(limit),
            closing: AtomicBool::new(false),
            counters: Counters::default(),
            order: OrderCheck::new("FastAckLayer"),
        }
    }

    /// Changes the bound for every service of the layer, including handlers running now:
    /// raising it frees slots at once; lowering it takes slots out of circulation as
    /// running handlers return them.
    pub(crate) fn set_limit(&self, limit: usize) {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        let old = self.limit.swap(limit, Ordering::AcqRel);
        if limit > old {
            self.permits.add_permits(limit - old);
        } else {
            let mut owed = old - limit;
            owed -= self.permits.forget_permits(owed);
            if owed > 0 {
                forget_as_released(self.permits.clone(), owed);
            }
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
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

/// Takes `owed` permits out of circulation as they are released. Without a runtime the
/// permits that are free were taken already and the rest are left.
fn forget_as_released(permits: Arc<Semaphore>, owed: usize) {
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
