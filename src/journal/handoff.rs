//! [`Handoff`]: a journal and how FastAck and the recovery worker use it.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::handle::JournalHandle;
use super::state::{Counters, Settings, Shared};
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
