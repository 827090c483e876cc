//! [`Handoff`]: a journal and how FastAck and the recovery worker use it.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::entry::EntryId;
use super::handle::JournalHandle;
use super::store::Journal;

/// A [`Journal`] and how it is used: how long an entry may go without a sign of life before
/// another worker may run it again (the lease), how many deliveries an entry gets before it
/// is dead-lettered, and what to do when the journal cannot be reached.
///
/// Give it to [`CallbackLayer::journal`](crate::CallbackLayer::journal) (or
/// [`FastAckLayer::journal`](crate::FastAckLayer::journal)); any [`Journal`] converts into one
/// with the defaults. Each builder method returns a hand-off with fresh counters, so take
/// the [handle](Self::handle) after the last one.
///
/// Defaults: lease 30 s (entries running here are kept alive every 10 s), 5 deliveries,
/// journal operations bounded by 2 s, **fail closed** (see [`fail_open`](Self::fail_open)),
/// recovery of up to 16 entries at once, looked for every second.
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::journal::{Handoff, MemoryJournal};
///
/// let handoff = Handoff::new(MemoryJournal::new())
///     .lease(Duration::from_secs(60))
///     .max_deliveries(3);
/// let handle = handoff.handle();
/// assert_eq!(handle.stats().appended, 0);
/// ```
#[derive(Clone)]
#[must_use]
pub struct Handoff {
    pub(crate) shared: Arc<Shared>,
}

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

impl Handoff {
    /// `journal` with the default settings.
    pub fn new(journal: impl Journal) -> Self {
        Self::from_arc(Arc::new(journal))
    }

    /// A journal that is shared already (say, also read by an admin endpoint).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_wechat::journal::{Handoff, Journal, MemoryJournal};
    ///
    /// let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    /// let handoff = Handoff::from_arc(journal.clone());
    /// # let _ = handoff;
    /// ```
    pub fn from_arc(journal: Arc<dyn Journal>) -> Self {
        Self::build(journal, Settings::default())
    }

    /// How long an entry may go without a sign of life from the process running it before
    /// another worker may reclaim it (default 30 s). The process running an entry keeps it
    /// alive every third of the lease, so this bounds how late a dead replica's work is
    /// picked up; a released (failed) entry is retried after it too. Keep it well above a
    /// network blip to the journal.
    pub fn lease(self, lease: Duration) -> Self {
        self.with(|settings| settings.lease = lease)
    }

    /// Deliveries an entry gets — its first run included — before it is moved to the
    /// journal's dead letters with an ERROR line (default 5).
    pub fn max_deliveries(self, deliveries: u32) -> Self {
        self.with(|settings| settings.max_deliveries = deliveries.max(1))
    }

    /// When the journal cannot be reached (or is full), run the handler anyway, without a
    /// journal entry (logged and counted as `unjournaled`): the callback is acknowledged, so
    /// a crash before the handler finishes loses it, as without a journal.
    ///
    /// The default is the other way, **fail closed**: such a callback is answered `503`
    /// without running the handler, so WeChat delivers it again (up to three times in all)
    /// — nothing is acknowledged that is not stored, and a journal outage shows as errors
    /// rather than as silently lost messages. Choose fail open when an outage of the journal
    /// must not stop the bot.
    pub fn fail_open(self) -> Self {
        self.with(|settings| settings.fail_open = true)
    }

    /// The longest one journal operation may take before it counts as failed (default 2 s);
    /// an append is also bounded by what is left of the callback's deadline.
    pub fn operation_timeout(self, timeout: Duration) -> Self {
        self.with(|settings| settings.operation_timeout = timeout)
    }

    /// How many recovered entries the worker runs at once (default 16).
    pub fn recovery_concurrency(self, entries: usize) -> Self {
        self.with(|settings| settings.recovery_concurrency = entries.max(1))
    }

    /// How often the worker looks for entries to recover (default every second).
    pub fn recovery_interval(self, interval: Duration) -> Self {
        self.with(|settings| settings.recovery_interval = interval)
    }

    /// The handle: counters, the journal's size, and the recovery worker.
    pub fn handle(&self) -> JournalHandle {
        JournalHandle::new(self.shared.clone())
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings;
        change(&mut settings);
        Self::build(self.shared.journal.clone(), settings)
    }

    fn build(journal: Arc<dyn Journal>, settings: Settings) -> Self {
        Self {
            shared: Arc::new(Shared {
                journal,
                settings,
                counters: Counters::default(),
                running: Mutex::default(),
                keep_alive: OnceLock::new(),
            }),
        }
    }
}

impl<J: Journal> From<J> for Handoff {
    fn from(journal: J) -> Self {
        Self::new(journal)
    }
}

impl fmt::Debug for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoff")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Counts `id` as running here, and starts the keep-alive task with the first one.
    pub(crate) fn running(self: &Arc<Self>, id: &EntryId) {
        self.lock_running().insert(id.clone());
        self.keep_alive
            .get_or_init(|| super::worker::spawn_keep_alive(self.clone()));
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
    pub(crate) fn unjournaled(&self, label: &crate::label::Label, error: &super::JournalError) {
        Counters::bump(&self.counters.unjournaled, "unjournaled");
        Counters::bump(&self.counters.errors, "error");
        tracing::error!(msg = %label, %error, "journal: append failed; running the handler without an entry (fail open): a crash now would lose it");
    }

    /// The append failed and the hand-off fails closed: `503`, the handler does not run.
    pub(crate) fn refuse(&self, label: &crate::label::Label, error: &super::JournalError) {
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

    /// `operation`, failed with [`JournalError::Timeout`](super::JournalError::Timeout) after
    /// the operation timeout.
    pub(crate) async fn timed<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, super::JournalError>>,
    ) -> Result<T, super::JournalError> {
        self.timed_within(self.settings.operation_timeout, operation)
            .await
    }

    /// `operation`, failed with a timeout after `limit`.
    pub(crate) async fn timed_within<T>(
        &self,
        limit: Duration,
        operation: impl std::future::Future<Output = Result<T, super::JournalError>>,
    ) -> Result<T, super::JournalError> {
        tokio::time::timeout(limit, operation)
            .await
            .unwrap_or(Err(super::JournalError::Timeout))
    }
}
