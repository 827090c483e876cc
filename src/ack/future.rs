//! [`ResponseFuture`] of [`FastAck`](super::FastAck).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use pin_project::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tracing::Instrument;

use super::state::State;
use super::task::{self, Failure, Finished, Work};
use crate::body::{ResponseBody, plain_text};
use crate::hook::CallbackHook;
use crate::label::Label;

/// Response future of [`FastAck`](super::FastAck): the handler's response if it arrives
/// before the deadline, else `success`.
///
/// The handler is polled here first: one that answers at once (most do) costs no task. One
/// that is not ready moves to a tracked tokio task, and this future waits for it up to the
/// deadline.
#[pin_project]
pub struct ResponseFuture<F, B, E> {
    #[pin]
    kind: Kind<F, B, E>,
}

#[pin_project(project = KindProj)]
enum Kind<F, B, E> {
    Answered(Option<Response<Full<Bytes>>>),
    Starting {
        work: Option<Work<F>>,
        deadline: Duration,
    },
    Waiting {
        receiver: oneshot::Receiver<Finished<B, E>>,
        /// Boxed: only handlers that are not ready at once need it, and they already cost a
        /// task; the future stays small for the rest.
        deadline: Pin<Box<Sleep>>,
        work: WaitingFor,
    },
}

/// What the waiting future needs to report a move to the background.
struct WaitingFor {
    acked: Arc<AtomicBool>,
    state: Arc<State>,
    hook: Option<CallbackHook>,
    label: Label,
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn answered(response: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Answered(Some(response)),
        }
    }

    pub(crate) fn starting(work: Work<F>, deadline: Duration) -> Self {
        Self {
            kind: Kind::Starting {
                work: Some(work),
                deadline,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Answered(response) => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::own)));
                }
                KindProj::Starting { work, deadline } => {
                    let slot = work.as_mut().expect("polled after completion");
                    if let Poll::Ready((_, finished)) = slot.poll_handler(cx) {
                        *work = None;
                        return Poll::Ready(answer(Some(finished)));
                    }
                    // Not ready: finish it in a tracked task, in the current span.
                    let work = work.take().expect("checked above");
                    let acked = Arc::new(AtomicBool::new(false));
                    let waiting = WaitingFor {
                        acked: acked.clone(),
                        state: work.state.clone(),
                        hook: work.hook.clone(),
                        label: work.label.clone(),
                    };
                    let until = work.started + *deadline;
                    let (sender, receiver) = oneshot::channel();
                    let task = task::run(work, sender, acked).instrument(tracing::Span::current());
                    waiting.state.tracker.spawn(task);
                    this.kind.set(Kind::Waiting {
                        receiver,
                        deadline: Box::pin(tokio::time::sleep_until(until)),
                        work: waiting,
                    });
                }
                KindProj::Waiting {
                    receiver,
                    deadline,
                    work,
                } => {
                    if let Poll::Ready(finished) = Pin::new(&mut *receiver).poll(cx) {
                        return Poll::Ready(answer(finished.ok()));
                    }
                    ready!(deadline.as_mut().poll(cx));
                    // The handler may have finished just now: close the channel, then look
                    // once more, so its response is either taken here or reported by the task.
                    work.acked.store(true, Ordering::Release);
                    receiver.close();
                    if let Ok(finished) = receiver.try_recv() {
                        return Poll::Ready(answer(Some(finished)));
                    }
                    task::moved_to_background(&work.state, work.hook.as_ref(), &work.label, true);
                    let success = Response::<Full<Bytes>>::from(crate::Reply::success());
                    return Poll::Ready(Ok(success.map(ResponseBody::own)));
                }
            }
        }
    }
}

/// The response for a handler that finished before the deadline.
fn answer<B, E>(finished: Option<Finished<B, E>>) -> Result<Response<ResponseBody<B>>, E> {
    match finished {
        Some(Ok(response)) => Ok(response.map(ResponseBody::service)),
        Some(Err(Failure::Error(error))) => Err(error),
        Some(Err(Failure::Panicked)) => Ok(plain_text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the handler panicked",
        )
        .map(ResponseBody::own)),
        // The task ended without a word: the runtime is shutting down.
        None => Ok(plain_text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the handler was cancelled, retry later",
        )
        .map(ResponseBody::own)),
    }
}
