//! The [`Journal`] trait: where an acknowledged callback waits until its handler finished.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::entry::{EntryId, JournalEntry};
use super::error::JournalError;

/// A boxed future, so [`Journal`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a verified callback waits between its acknowledgement and the end of its handler.
///
/// [`FastAckLayer`](crate::FastAckLayer) appends each callback before it runs the handler
/// (so before anything — `success` or a passive reply — goes back to WeChat), and finishes
/// the entry when the handler has finished it. An entry that is never finished — the
/// process died, or the handler failed — is handed out again by [`reclaim`](Self::reclaim)
/// to the recovery worker of this process or of another replica sharing the journal.
///
/// Implementations: [`MemoryJournal`](super::MemoryJournal) (one process, not durable),
/// [`FileJournal`](super::FileJournal) (one node, fsync'd), `RedisJournal` (feature
/// `redis`: Redis Streams, shared by replicas). Every operation's error is a
/// [`JournalError`]; none may panic on bad data.
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::journal::{Journal, JournalEntry, MemoryJournal};
/// # use tower_wechat::message::CallbackQuery;
/// # async fn run() -> Result<(), tower_wechat::journal::JournalError> {
/// # let entry = JournalEntry { path: "/wechat".into(), query: CallbackQuery { timestamp: 1,
/// #     nonce: "1".into(), openid: None, encrypted: false, redelivered: false },
/// #     body: bytes::Bytes::new(), key: None, arrival_unix_ms: 0, attempt: 1, trace_context: None };
/// let journal = MemoryJournal::new();
/// let id = journal.append(&entry).await?;   // before the ack
/// // ... the handler runs and fails: leave it for a retry after the lease
/// journal.release(&id).await?;
/// let again = journal.reclaim(Duration::ZERO, 10).await?;
/// assert_eq!(again[0].entry.attempt, 2);
/// journal.finish(&again[0].id).await?;      // the retry succeeded
/// assert_eq!(journal.pending().await?, 0);
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
/// ```
pub trait Journal: Send + Sync + 'static {
    /// Stores `entry` (with `attempt` 1) durably and returns its id; the entry counts as
    /// running in this process until it is finished or released.
    fn append<'a>(
        &'a self,
        entry: &'a JournalEntry,
    ) -> BoxFuture<'a, Result<EntryId, JournalError>>;

    /// The handler finished the entry: it is never handed out again.
    fn finish<'a>(&'a self, id: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>>;

    /// The handler's run ended without finishing the entry (an error, a 5xx, a panic): it is
    /// handed out again by [`reclaim`](Self::reclaim) once `lease` has passed.
    fn release<'a>(&'a self, id: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>>;

    /// Up to `max` entries that nobody is running: released ones, ones whose runner stopped
    /// keeping them alive for longer than `lease` (a dead process or replica), and — for a
    /// journal of one node — those a previous run of the process left. They now count as
    /// running here, and each comes back with `attempt` counting this delivery.
    fn reclaim(
        &self,
        lease: Duration,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Reclaimed>, JournalError>>;

    /// Tells the journal these entries are still running here, so other replicas do not
    /// reclaim them (for a journal shared by replicas; the others need not do anything).
    fn keep_alive<'a>(&'a self, ids: &'a [EntryId]) -> BoxFuture<'a, Result<(), JournalError>> {
        let _ = ids;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Moves the entry out of the journal into its dead letters (kept for an operator to
    /// look at; never run again), with why.
    fn dead_letter<'a>(
        &'a self,
        id: &'a EntryId,
        entry: &'a JournalEntry,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), JournalError>>;

    /// How many entries are in the journal now (appended, neither finished nor dead).
    fn pending(&self) -> BoxFuture<'_, Result<u64, JournalError>>;
}

/// An entry handed out again by [`Journal::reclaim`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reclaimed {
    /// Its id.
    pub id: EntryId,
    /// The callback, with `attempt` counting this delivery.
    pub entry: JournalEntry,
}

impl Reclaimed {
    /// An entry handed out again (for journals implemented outside this crate).
    ///
    /// ```
    /// use tower_wechat::journal::{EntryId, Reclaimed};
    /// # let entry = tower_wechat::journal::JournalEntry { path: "/wechat".into(),
    /// #     query: tower_wechat::message::CallbackQuery { timestamp: 1, nonce: "1".into(),
    /// #     openid: None, encrypted: false, redelivered: false }, body: bytes::Bytes::new(),
    /// #     key: None, arrival_unix_ms: 0, attempt: 2, trace_context: None };
    /// let again = Reclaimed::new(EntryId::new("7"), entry);
    /// assert_eq!(again.entry.attempt, 2);
    /// ```
    pub fn new(id: EntryId, entry: JournalEntry) -> Self {
        Self { id, entry }
    }
}
