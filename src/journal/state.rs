//! The state a [`Handoff`](super::Handoff) shares with FastAck's services, the recovery
//! worker and the handle: the journal, the settings, the counters, the entries running here,
//! and the task that keeps them alive.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::entry::EntryId;
use super::error::JournalError;
use super::store::Journal;

/// Shared by FastAck's services, the recovery worker and the handle.
pub(crate) struct Shared {
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) settings: Settings,
    pub(crate) counters: Counters,
    /// Entries this process runs now (kept alive in a shared journal).
    pub(crate) running: Mutex<HashSet<EntryId>>,
    /// The keep-alive task, started with the first entry.
    pub(crate) keep_alive: OnceLock<()>,
}

/// What the builder sets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) lease: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) fail_open: bool,
    pub(crate) operation_timeout: Duration,
    pub(crate) recovery_concurrency: usize,
    pub(crate) recovery_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            fail_open: false,
            operation_timeout: Duration::from_secs(2),
            recovery_concurrency: 16,
            recovery_interval: Duration::from_secs(1),
        }
    }
}

/// Monotonic counters; see [`JournalStats`](super::JournalStats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) appended: AtomicU64,
    pub(crate) finished: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) recovered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) unjournaled: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl Counters {
    /// Counts one `event` (also as `wechat_journal_events_total{event}` with the `metrics`
    /// feature).
    pub(crate) fn bump(counter: &AtomicU64, event: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(JOURNAL_EVENTS_TOTAL, "event" => event).increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = event;
    }
}

/// Counter (feature `metrics`): the durable hand-off's events, by `event`: `appended`,
/// `finished`, `released`, `recovered`, `duplicate`, `dead_lettered`, `error`,
/// `unjournaled`, `refused` — the same as [`JournalStats`](super::JournalStats).
pub const JOURNAL_EVENTS_TOTAL: &str = "wechat_journal_events_total";

impl Shared {
    /// Counts `id` as running here, and starts the keep-alive task with the first one.
    pub(crate) fn running(self: &Arc<Self>, id: &EntryId) {
        self.lock_running().insert(id.clone());
        self.keep_alive
            .get_or_init(|| spawn_keep_alive(self.clone()));
    }

    /// `id` no longer runs here.
    pub(crate) fn stopped(&self, id: &EntryId) {
        self.lock_running().remove(id);
    }

    pub(crate) fn lock_running(&self) -> std::sync::MutexGuard<'_, HashSet<EntryId>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shared {
    /// An append succeeded: counted, and the entry runs here now.
    pub(crate) fn appended(self: &Arc<Self>, id: &EntryId) {
        Counters::bump(&self.counters.appended, "appended");
        self.running(id);
    }

    /// The append failed and the hand-off fails open: the handler runs without an entry.
    pub(crate) fn unjournaled(&self, label: &crate::label::Label, error: &JournalError) {
        Counters::bump(&self.counters.unjournaled, "unjournaled");
        Counters::bump(&self.counters.errors, "error");
        tracing::error!(msg = %label, %error, "journal: append failed; running the handler without an entry (fail open): a crash now would lose it");
    }

    /// The append failed and the hand-off fails closed: `503`, the handler does not run.
    pub(crate) fn refuse(&self, label: &crate::label::Label, error: &JournalError) {
        Counters::bump(&self.counters.refused, "refused");
        Counters::bump(&self.counters.errors, "error");
        tracing::error!(msg = %label, %error, "journal: append failed; answering 503 so WeChat delivers the callback again");
    }

    /// The handler finished entry `id`: it leaves the journal. A failure is logged and
    /// counted; the entry is then run again after the lease (at least once).
    pub(crate) async fn finish(&self, id: &EntryId) {
        self.stopped(id);
        match self.timed(self.journal.finish(id)).await {
            Ok(()) => Counters::bump(&self.counters.finished, "finished"),
            Err(error) => {
                Counters::bump(&self.counters.errors, "error");
                tracing::error!(entry = %id, %error, "journal: could not mark an entry done; it will run again after the lease");
            }
        }
    }

    /// The handler's run of `id` ended without finishing it: retried after the lease.
    pub(crate) async fn release(&self, id: &EntryId) {
        self.stopped(id);
        Counters::bump(&self.counters.released, "released");
        if let Err(error) = self.timed(self.journal.release(id)).await {
            Counters::bump(&self.counters.errors, "error");
            tracing::error!(entry = %id, %error, "journal: could not release an entry; it is retried after the lease");
        }
    }

    /// `operation`, failed with [`JournalError::Timeout`](JournalError::Timeout) after
    /// the operation timeout.
    pub(crate) async fn timed<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, JournalError>>,
    ) -> Result<T, JournalError> {
        self.timed_within(self.settings.operation_timeout, operation)
            .await
    }

    /// `operation`, failed with a timeout after `limit`.
    pub(crate) async fn timed_within<T>(
        &self,
        limit: Duration,
        operation: impl std::future::Future<Output = Result<T, JournalError>>,
    ) -> Result<T, JournalError> {
        tokio::time::timeout(limit, operation)
            .await
            .unwrap_or(Err(JournalError::Timeout))
    }
}

/// Keeps the entries running in this process alive every third of the lease, for as long
/// as the hand-off exists.
pub(crate) fn spawn_keep_alive(shared: Arc<Shared>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every = (shared.settings.lease / 3).max(Duration::from_millis(10));
    let weak: Weak<Shared> = Arc::downgrade(&shared);
    drop(shared);
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let ids: Vec<EntryId> = shared.lock_running().iter().cloned().collect();
            if ids.is_empty() {
                continue;
            }
            match shared.timed(shared.journal.keep_alive(&ids)).await {
                Ok(()) => failing = false,
                Err(error) => {
                    Counters::bump(&shared.counters.errors, "error");
                    if !failing {
                        tracing::error!(%error, running = ids.len(), "journal: could not keep running entries alive; another replica may run them again after the lease");
                    }
                    failing = true;
                }
            }
        }
    });
}
