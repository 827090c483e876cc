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
use http_body::Body;
use http_body_util::Full;
use pin_project::{pin_project, pinned_drop};
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tracing::Instrument;

use super::settle::{Failure, Finished, Settle, panicked};
use super::state::{Mode, State};
use super::task::{self, Work};
use crate::BoxError;
use crate::body::{ResponseBody, plain_text};
use crate::hook::{CallbackHook, Deferred};
use crate::journal::{BoxFuture, EntryId, JournalError, Shared as Journal};
use crate::label::Label;

/// Response future of [`FastAck`](super::FastAck): the handler's response if it arrives
/// before the deadline, else `success`.
///
/// The handler is polled here first: one that answers at once (most do) costs no task. One
/// that is not ready moves to a tracked tokio task, and this future waits for it up to the
/// deadline. With a journal, the callback is appended first, and the handler runs only once
/// it is stored.
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F, B, E> {
    #[pin]
    kind: Kind<F, B, E>,
}

/// The report of a handler's end, run here (or in a task if this future is dropped), with
/// the response to send as its output.
struct Settling<B, E> {
    run: Option<Report<B, E>>,
    /// Makes `run` a task's future that drops the response, for a drop before its end.
    detach: fn(Report<B, E>) -> BoxFuture<'static, ()>,
}

/// A report of a handler's end, with the response to send as its output.
type Report<B, E> = BoxFuture<'static, Result<Response<ResponseBody<B>>, E>>;

impl<B, E> Settling<B, E> {
    fn new(
        report: impl Future<Output = Result<Response<ResponseBody<B>>, E>> + Send + 'static,
    ) -> Self
    where
        B: Send + 'static,
        E: Send + 'static,
    {
        Self {
            run: Some(Box::pin(report)),
            detach: |run| {
                Box::pin(async move {
                    // Nobody waits for the response any more: only the report matters.
                    let _ = run.await;
                })
            },
        }
    }
}

#[pin_project(project = KindProj)]
enum Kind<F, B, E> {
    Answered(Option<Response<Full<Bytes>>>),
    /// Storing the callback in the journal before running the handler.
    Appending {
        append: BoxFuture<'static, Result<EntryId, JournalError>>,
        journal: Arc<Journal>,
        work: Option<Work<F>>,
        deadline: Duration,
    },
    Starting {
        work: Option<Work<F>>,
        deadline: Duration,
    },
    Waiting {
        receiver: Ending<B, E>,
        /// Boxed: only handlers that are not ready at once need it, and they already cost a
        /// task; the future stays small for the rest.
        deadline: Pin<Box<Sleep>>,
        work: WaitingFor,
    },
    /// The handler ended before the answer: reporting its end before answering.
    Settling(Settling<B, E>),
}

/// Where the task leaves a handler's end, with who must hear of it, for the waiting future.
type Ending<B, E> = oneshot::Receiver<(Finished<B, E>, Settle)>;

/// What the waiting future needs to report a move to the background.
struct WaitingFor {
    acked: Arc<AtomicBool>,
    state: Arc<State>,
    hook: Option<CallbackHook>,
    label: Label,
    /// Whether an outer layer waits to hear of the run's end (the answer is then marked
    /// [`Deferred`]).
    deferred: bool,
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn answered(response: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Answered(Some(response)),
        }
    }

    /// Runs `work` (polled here first in deadline mode, in the background at once in
    /// always-ack mode).
    pub(crate) fn start(work: Work<F>, deadline: Duration) -> Self
    where
        F: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        E: fmt::Display + Send + 'static,
    {
        Self {
            kind: start(work, deadline),
        }
    }

    pub(crate) fn appending(
        append: BoxFuture<'static, Result<EntryId, JournalError>>,
        journal: Arc<Journal>,
        work: Work<F>,
        deadline: Duration,
    ) -> Self {
        Self {
            kind: Kind::Appending {
                append,
                journal,
                work: Some(work),
                deadline,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
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
                KindProj::Appending {
                    append,
                    journal,
                    work,
                    deadline,
                } => {
                    let appended = ready!(append.as_mut().poll(cx));
                    let mut work = work.take().expect("polled after completion");
                    match appended {
                        Ok(id) => {
                            journal.appended(&id);
                            work.settle.entry = Some((journal.clone(), id));
                        }
                        Err(error) if journal.settings.fail_open => {
                            journal.unjournaled(&work.label, &error);
                        }
                        Err(error) => {
                            journal.refuse(&work.label, &error);
                            this.kind.set(Kind::Answered(Some(plain_text(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "journal unavailable, retry later",
                            ))));
                            continue;
                        }
                    }
                    let deadline = *deadline;
                    this.kind.set(start(work, deadline));
                }
                KindProj::Starting { work, deadline } => {
                    let slot = work.as_mut().expect("polled after completion");
                    if let Poll::Ready((_, finished)) = slot.poll_handler(cx) {
                        let work = work.take().expect("checked above");
                        if !work.settle.is_active() {
                            return Poll::Ready(answer(Some(finished)));
                        }
                        let settling = Settling::new(work.settle.answered(finished));
                        this.kind.set(Kind::Settling(settling));
                        continue;
                    }
                    // Not ready: finish it in a tracked task, in the current span.
                    let work = work.take().expect("checked above");
                    let until = work.started + *deadline;
                    let (receiver, waiting) = spawn(work, false);
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
                    if let Poll::Ready(received) = Pin::new(&mut *receiver).poll(cx) {
                        match received {
                            Ok((finished, settle)) if settle.is_active() => {
                                let settling = Settling::new(settle.answered(finished));
                                this.kind.set(Kind::Settling(settling));
                                continue;
                            }
                            Ok((finished, _)) => return Poll::Ready(answer(Some(finished))),
                            Err(_) => return Poll::Ready(answer(None)),
                        }
                    }
                    ready!(deadline.as_mut().poll(cx));
                    // The handler may have finished just now: close the channel, then look
                    // once more, so its response is either taken here or reported by the task.
                    work.acked.store(true, Ordering::Release);
                    receiver.close();
                    if let Ok((finished, settle)) = receiver.try_recv() {
                        if settle.is_active() {
                            let settling = Settling::new(settle.answered(finished));
                            this.kind.set(Kind::Settling(settling));
                            continue;
                        }
                        return Poll::Ready(answer(Some(finished)));
                    }
                    task::moved_to_background(&work.state, work.hook.as_ref(), &work.label, true);
                    return Poll::Ready(Ok(acknowledged(work.deferred).map(ResponseBody::own)));
                }
                KindProj::Settling(settling) => {
                    let run = settling.run.as_mut().expect("polled after completion");
                    let response = ready!(run.as_mut().poll(cx));
                    settling.run = None;
                    return Poll::Ready(response);
                }
            }
        }
    }
}

/// After the append (or without a journal): polls the handler in deadline mode, or hands it
/// to the background at once in always-ack mode.
fn start<F, B, E>(work: Work<F>, deadline: Duration) -> Kind<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: fmt::Display + Send + 'static,
{
    match work.state.settings.mode {
        Mode::Deadline(_) => Kind::Starting {
            work: Some(work),
            deadline,
        },
        Mode::AlwaysAck => {
            let (_, waiting) = spawn(work, true);
            task::moved_to_background(&waiting.state, waiting.hook.as_ref(), &waiting.label, false);
            Kind::Answered(Some(acknowledged(waiting.deferred)))
        }
    }
}

/// Moves `work` to a tracked task in the current span; `acked` if the callback is answered
/// `success` already.
fn spawn<F, B, E>(work: Work<F>, acked: bool) -> (Ending<B, E>, WaitingFor)
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: fmt::Display + Send + 'static,
{
    let acked = Arc::new(AtomicBool::new(acked));
    let waiting = WaitingFor {
        acked: acked.clone(),
        state: work.state.clone(),
        hook: work.hook.clone(),
        label: work.label.clone(),
        deferred: work.settle.completion.is_some(),
    };
    let (sender, receiver) = oneshot::channel();
    let task = task::run(work, sender, acked).instrument(tracing::Span::current());
    waiting.state.tracker.spawn(task);
    (receiver, waiting)
}

/// `success`, marked [`Deferred`] when an outer layer waits to hear of the run's end.
fn acknowledged(deferred: bool) -> Response<Full<Bytes>> {
    let mut success = task::success();
    if deferred {
        success.extensions_mut().insert(Deferred);
    }
    success
}

/// The response for a handler that finished before the deadline, when nobody needs to hear
/// of it.
fn answer<B, E>(finished: Option<Finished<B, E>>) -> Result<Response<ResponseBody<B>>, E> {
    match finished {
        Some(Ok(response)) => Ok(response.map(ResponseBody::service)),
        Some(Err(Failure::Error(error))) => Err(error),
        Some(Err(Failure::Panicked)) => Ok(panicked().map(ResponseBody::own)),
        // The task ended without a word: the runtime is shutting down.
        None => Ok(plain_text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the handler was cancelled, retry later",
        )
        .map(ResponseBody::own)),
    }
}

#[pinned_drop]
impl<F, B, E> PinnedDrop for ResponseFuture<F, B, E> {
    /// Dropped before the end (the client went away): what was stored in the journal or
    /// promised to the dedup layer is settled in a task, so nothing is left running here
    /// forever.
    fn drop(self: Pin<&mut Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match self.project().kind.project() {
            KindProj::Appending {
                append,
                journal,
                work,
                ..
            } => {
                let append = std::mem::replace(append, Box::pin(std::future::pending()));
                let journal = journal.clone();
                let settle = work.take().map(|work| work.settle).unwrap_or_default();
                runtime.spawn(async move {
                    if let Ok(id) = append.await {
                        journal.appended(&id);
                        Settle {
                            entry: Some((journal, id)),
                            ..settle
                        }
                        .abandoned()
                        .await;
                    } else {
                        settle.abandoned().await;
                    }
                });
            }
            KindProj::Starting { work, .. } => {
                if let Some(work) = work.take()
                    && work.settle.is_active()
                {
                    runtime.spawn(work.settle.abandoned());
                }
            }
            KindProj::Settling(settling) => {
                if let Some(run) = settling.run.take() {
                    runtime.spawn((settling.detach)(run));
                }
            }
            KindProj::Answered(_) | KindProj::Waiting { .. } => {}
        }
    }
}
