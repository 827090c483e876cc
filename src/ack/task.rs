//! The background task that runs one handler, and what it reports.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::Response;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use super::settle::{Failure, Finished, Settle};
use super::state::State;
use crate::BoxError;
use crate::body::StoredResponse;
use crate::hook::{BackgroundOutcome, CallbackHook};
use crate::label::Label;

/// A handler call in progress, with what its end must be reported to.
pub(crate) struct Work<F> {
    pub(crate) handler: Pin<Box<F>>,
    pub(crate) permit: OwnedSemaphorePermit,
    pub(crate) state: Arc<State>,
    pub(crate) hook: Option<CallbackHook>,
    pub(crate) label: Label,
    pub(crate) started: Instant,
    /// Who must hear of the run's end (dedup layer, journal).
    pub(crate) settle: Settle,
}

impl<F, B, E> Work<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    /// Polls the handler once, catching a panic; on its end counts the outcome and frees
    /// the slot.
    pub(crate) fn poll_handler(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(BackgroundOutcome, Finished<B, E>)> {
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| self.handler.as_mut().poll(cx)));
        let (outcome, finished) = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(response))) if response.status().is_server_error() => {
                (BackgroundOutcome::Failed, Ok(response))
            }
            Ok(Poll::Ready(Ok(response))) => (BackgroundOutcome::Completed, Ok(response)),
            Ok(Poll::Ready(Err(error))) => (BackgroundOutcome::Failed, Err(Failure::Error(error))),
            Err(panic) => {
                tracing::error!(
                    msg = %self.label,
                    panic = panic_message(panic.as_ref()),
                    "the WeChat handler panicked"
                );
                (BackgroundOutcome::Panicked, Err(Failure::Panicked))
            }
        };
        self.state.count(outcome);
        Poll::Ready((outcome, finished))
    }
}

/// Runs `work` to its end in a task, and hands the result to the response future if it
/// still waits; otherwise the work ran in the background, and its end is logged and
/// reported to the hook.
///
/// `acked` tells whether the response future answered `success` before the handler ended;
/// if it did not, the caller went away (the client hung up) before any answer.
pub(crate) async fn run<F, B, E>(
    mut work: Work<F>,
    sender: oneshot::Sender<(Finished<B, E>, Settle)>,
    acked: Arc<AtomicBool>,
) where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
    E: fmt::Display,
{
    let (outcome, finished) = std::future::poll_fn(|cx| work.poll_handler(cx)).await;
    let Work {
        permit,
        hook,
        label,
        started,
        state,
        settle,
        ..
    } = work;
    drop(permit);
    let elapsed = started.elapsed();
    let Err((finished, settle)) = sender.send((finished, settle)) else {
        return; // answered in time: the response future settles the run
    };
    let elapsed_ms = elapsed.as_millis() as u64;
    if !acked.load(Ordering::Acquire) {
        // No answer was sent: the caller went away while the handler ran.
        state.counters.abandoned.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            msg = %label,
            elapsed_ms,
            outcome = outcome.as_str(),
            "the client went away before an answer; the handler finished without one"
        );
        if let Some(hook) = &hook {
            hook.background_started();
        }
    }
    match &finished {
        Ok(_) if !acked.load(Ordering::Relaxed) => {}
        Ok(response) if outcome == BackgroundOutcome::Completed => tracing::debug!(
            msg = %label,
            elapsed_ms,
            status = response.status().as_u16(),
            "background handler finished (its reply was not sent: the callback was already acknowledged)"
        ),
        Ok(response) => tracing::error!(
            msg = %label,
            elapsed_ms,
            status = response.status().as_u16(),
            "background handler failed"
        ),
        Err(Failure::Error(error)) => tracing::error!(
            msg = %label,
            elapsed_ms,
            %error,
            "background handler failed"
        ),
        Err(Failure::Panicked) => {}
    }
    if acked.load(Ordering::Relaxed) {
        settle.in_background(outcome, &acknowledgement()).await;
    } else {
        // Nothing was answered: what the handler returned is the run's answer.
        let _ = settle.answered(finished).await;
    }
    if let Some(hook) = hook {
        hook.background_finished(outcome, elapsed);
    }
}

/// What WeChat got for a callback acknowledged before its handler finished: `success`.
pub(crate) fn acknowledgement() -> StoredResponse {
    let response = success();
    StoredResponse {
        status: response.status(),
        content_type: response.headers().get(http::header::CONTENT_TYPE).cloned(),
        body: bytes::Bytes::from_static(b"success"),
    }
}

/// The `success` acknowledgement.
pub(crate) fn success() -> Response<http_body_util::Full<bytes::Bytes>> {
    crate::Reply::success().into()
}

/// Records that a callback was acknowledged before its handler finished.
pub(crate) fn moved_to_background(
    state: &State,
    hook: Option<&CallbackHook>,
    label: &Label,
    missed_deadline: bool,
) {
    state.counters.acked_early.fetch_add(1, Ordering::Relaxed);
    if missed_deadline {
        tracing::debug!(
            msg = %label,
            "deadline passed: acknowledged with success, the handler continues in the background"
        );
    }
    if let Some(hook) = hook {
        hook.background_started();
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "non-string panic payload"
    }
}
