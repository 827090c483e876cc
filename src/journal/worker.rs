//! The recovery worker, and the task that keeps entries running here alive.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use super::state::{Counters, Shared};
use super::store::Reclaimed;
use crate::hook::{Arrival, Recovery};

/// The running recovery worker of a [`JournalHandle`](super::JournalHandle); stop it at
/// shutdown.
///
/// ```no_run
/// # async fn run(recovery: tower_wechat::journal::RecoveryHandle) {
/// use std::time::Duration;
///
/// // After the HTTP server stopped: no new recoveries; wait for running ones up to 10 s.
/// let unfinished = recovery.stop_within(Duration::from_secs(10)).await;
/// # let _ = unfinished;
/// # }
/// ```
pub struct RecoveryHandle {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl RecoveryHandle {
    /// Stops looking for entries and waits for the recovered runs in progress (their
    /// handlers may go on in the background under FastAck, which drains them at its own
    /// shutdown).
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// [`stop`](Self::stop), waiting at most `grace`; returns how many recovered runs were
    /// still in progress (they stay in the journal and run again later).
    pub async fn stop_within(self, grace: Duration) -> usize {
        self.cancel.cancel();
        self.tracker.close();
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tracker.len(),
        }
    }
}

impl fmt::Debug for RecoveryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryHandle")
            .field("running", &self.tracker.len())
            .finish()
    }
}

pub(crate) fn spawn_recovery<S, B>(shared: Arc<Shared>, service: S) -> RecoveryHandle
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: fmt::Display + Send + 'static,
    B: Send + 'static,
{
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let handle = RecoveryHandle {
        cancel: cancel.clone(),
        tracker: tracker.clone(),
    };
    let runs = tracker.clone();
    tracker.spawn(async move {
        let slots = Arc::new(Semaphore::new(shared.settings.recovery_concurrency));
        let mut failing = false;
        loop {
            let free = slots.available_permits();
            if free > 0 {
                let lease = shared.settings.lease;
                match shared.timed(shared.journal.reclaim(lease, free)).await {
                    Ok(reclaimed) => {
                        failing = false;
                        for reclaimed in reclaimed {
                            let Ok(slot) = slots.clone().try_acquire_owned() else {
                                // More than asked for: leave it to be reclaimed again.
                                shared.release(&reclaimed.id).await;
                                continue;
                            };
                            if give_up(&shared, &reclaimed).await {
                                continue;
                            }
                            let shared = shared.clone();
                            let service = service.clone();
                            runs.spawn(async move {
                                run_again(&shared, service, reclaimed).await;
                                drop(slot);
                            });
                        }
                    }
                    Err(error) => {
                        Counters::bump(&shared.counters.errors, "error");
                        if !failing {
                            tracing::error!(%error, "journal: could not look for entries to recover; trying again");
                        }
                        failing = true;
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(shared.settings.recovery_interval) => {}
            }
        }
    });
    handle
}

/// Dead-letters an entry past its last delivery; `true` if it did.
async fn give_up(shared: &Shared, reclaimed: &Reclaimed) -> bool {
    let entry = &reclaimed.entry;
    let allowed = shared.settings.max_deliveries;
    if entry.attempt <= allowed {
        return false;
    }
    let reason = format!("failed {allowed} deliveries");
    match shared
        .timed(shared.journal.dead_letter(&reclaimed.id, entry, &reason))
        .await
    {
        Ok(()) => {
            Counters::bump(&shared.counters.dead_lettered, "dead_lettered");
            tracing::error!(
                entry = %reclaimed.id,
                key = entry.key.as_deref().map(crate::label::bounded),
                deliveries = allowed,
                "journal: a callback failed every delivery; moved to the dead letters"
            );
        }
        Err(error) => {
            Counters::bump(&shared.counters.errors, "error");
            tracing::error!(entry = %reclaimed.id, %error, "journal: could not dead-letter an entry");
        }
    }
    true
}

/// Sends a reclaimed entry through the app again; settles it if no layer took it in charge.
async fn run_again<S, B>(shared: &Shared, mut service: S, reclaimed: Reclaimed)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: fmt::Display,
{
    Counters::bump(&shared.counters.recovered, "recovered");
    let Reclaimed { id, entry } = reclaimed;
    let key = entry.key.clone();
    let recovery = Recovery::new(id.clone(), entry);
    let mut request = Request::new(Full::new(recovery.entry.body.clone()));
    *request.method_mut() = Method::POST;
    match recovery.entry.path.parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => {
            dead_letter(shared, &recovery, "the stored path is not a URI").await;
            return;
        }
    }
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/xml"),
    );
    let extensions = request.extensions_mut();
    extensions.insert(Arrival::now());
    extensions.insert(recovery.clone());
    tracing::info!(
        entry = %id,
        attempt = recovery.entry.attempt,
        key = key.as_deref().map(crate::label::bounded),
        "journal: running a recovered callback again"
    );
    let status = match std::future::poll_fn(|cx| service.poll_ready(cx)).await {
        Ok(()) => service
            .call(request)
            .await
            .map(|response| response.status()),
        Err(error) => Err(error),
    };
    if recovery.taken() {
        return; // FastAck runs it and settles the entry when the handler ends.
    }
    match status {
        Ok(status) if status.is_success() => {
            // The dedup store knew it was processed: the crash came between the handler's
            // effect and the journal's mark.
            Counters::bump(&shared.counters.duplicates, "duplicate");
            tracing::info!(entry = %id, "journal: the recovered callback was processed already; reported as a duplicate delivery");
            shared.finish(&id).await;
        }
        Ok(status) if status.is_client_error() => {
            let reason = format!("refused with {status} when run again");
            dead_letter(shared, &recovery, &reason).await;
        }
        Ok(status) => {
            debug_assert!(status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE);
            tracing::warn!(entry = %id, status = status.as_u16(), "journal: the recovered callback was not run; retrying after the lease");
            shared.release(&id).await;
        }
        Err(error) => {
            tracing::warn!(entry = %id, %error, "journal: the recovered callback failed; retrying after the lease");
            shared.release(&id).await;
        }
    }
}

async fn dead_letter(shared: &Shared, recovery: &Recovery, reason: &str) {
    shared.stopped(&recovery.id);
    match shared
        .timed(
            shared
                .journal
                .dead_letter(&recovery.id, &recovery.entry, reason),
        )
        .await
    {
        Ok(()) => {
            Counters::bump(&shared.counters.dead_lettered, "dead_lettered");
            tracing::error!(entry = %recovery.id, reason, "journal: moved a callback to the dead letters");
        }
        Err(error) => {
            Counters::bump(&shared.counters.errors, "error");
            tracing::error!(entry = %recovery.id, %error, "journal: could not dead-letter an entry");
        }
    }
}
