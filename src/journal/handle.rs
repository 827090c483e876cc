//! [`JournalHandle`]: a hand-off's counters, its journal's size, and its recovery worker.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower_service::Service;

use super::error::JournalError;
use super::state::Shared;
use super::worker::{self, RecoveryHandle};

/// Reads a [`Handoff`](super::Handoff)'s counters and runs its recovery worker; cheap to
/// clone.
///
/// ```
/// use tower_wechat::journal::{Handoff, MemoryJournal};
///
/// let handle = Handoff::new(MemoryJournal::new()).handle();
/// let stats = handle.stats();
/// assert_eq!((stats.appended, stats.finished, stats.recovered), (0, 0, 0));
/// ```
#[derive(Clone)]
pub struct JournalHandle {
    shared: Arc<Shared>,
}

/// A snapshot of a hand-off's counters (all since start, this process only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalStats {
    /// Callbacks stored in the journal before their handler ran.
    pub appended: u64,
    /// Entries whose handler finished and that left the journal.
    pub finished: u64,
    /// Runs that ended without finishing their entry (error, 5xx, panic): retried after the
    /// lease.
    pub released: u64,
    /// Entries the recovery worker took from the journal to run again.
    pub recovered: u64,
    /// Recovered entries that the dedup store knew were processed already: reported as
    /// duplicate deliveries and finished without running the handler.
    pub duplicates: u64,
    /// Entries given up after the last delivery allowed, moved to the dead letters.
    pub dead_lettered: u64,
    /// Journal operations that failed or timed out.
    pub errors: u64,
    /// Callbacks run without a journal entry because the journal failed and the hand-off
    /// fails open.
    pub unjournaled: u64,
    /// Callbacks answered `503` because the journal failed and the hand-off fails closed.
    pub refused: u64,
}

impl JournalHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The counters now.
    pub fn stats(&self) -> JournalStats {
        let c = &self.shared.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        JournalStats {
            appended: read(&c.appended),
            finished: read(&c.finished),
            released: read(&c.released),
            recovered: read(&c.recovered),
            duplicates: read(&c.duplicates),
            dead_lettered: read(&c.dead_lettered),
            errors: read(&c.errors),
            unjournaled: read(&c.unjournaled),
            refused: read(&c.refused),
        }
    }

    /// How many entries this process runs now.
    pub fn running(&self) -> usize {
        self.shared.lock_running().len()
    }

    /// How many entries the journal holds now (all processes, for a shared journal).
    pub async fn pending(&self) -> Result<u64, JournalError> {
        self.shared.timed(self.shared.journal.pending()).await
    }

    /// Starts the recovery worker on the current tokio runtime: every
    /// [recovery interval](super::Handoff::recovery_interval) it reclaims entries nobody runs
    /// (left by a dead process, or released after a failed run) and sends each through
    /// `service` again — give it the whole app (your axum `Router`, with the
    /// [`CallbackLayer`](crate::CallbackLayer) in it), so each entry goes to its route and
    /// through the same layers as the first time: VerifyLayer takes it as verified (it was),
    /// DedupLayer answers it from the store if it was in fact processed (counted in
    /// [`JournalStats::duplicates`]), FastAck runs the handler under the existing entry.
    /// An entry past its last delivery is dead-lettered.
    ///
    /// For extra consumers without HTTP (a worker-only process), call this and serve
    /// nothing.
    ///
    /// ```no_run
    /// use axum::{Router, routing::post};
    /// use tower_wechat::journal::MemoryJournal;
    /// use tower_wechat::{CallbackLayer, Reply, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let stack = CallbackLayer::new(Token::new("mytoken").unwrap()).journal(MemoryJournal::new());
    /// let handle = stack.handle();
    /// let app = Router::new().route("/wechat", post(|| async { Reply::success() })).layer(stack);
    /// let recovery = handle.journal().unwrap().spawn_recovery(app.clone());
    /// // ... serve `app`; at shutdown:
    /// recovery.stop().await;
    /// # }
    /// ```
    pub fn spawn_recovery<S, B>(&self, service: S) -> RecoveryHandle
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: fmt::Display + Send + 'static,
        B: Send + 'static,
    {
        worker::spawn_recovery(self.shared.clone(), service)
    }
}

impl fmt::Debug for JournalHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JournalHandle").field(&self.stats()).finish()
    }
}
