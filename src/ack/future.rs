//! [`ResponseFuture`] of [`FastAck`](super::FastAck).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use pin_project::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::layer::State;
use super::task::{self, Failure, Finished};
use crate::background::BackgroundHook;
use crate::body::{ResponseBody, plain_text};
use crate::label::Label;

/// Response future of [`FastAck`](super::FastAck): the handler's response if it arrives
/// before the deadline, else `success`.
#[pin_project]
pub struct ResponseFuture<B, E> {
    #[pin]
    kind: Kind<B, E>,
}

#[pin_project(project = KindProj)]
enum Kind<B, E> {
    Answered(Option<Response<Full<Bytes>>>),
    Waiting {
        receiver: oneshot::Receiver<Finished<B, E>>,
        #[pin]
        deadline: Sleep,
        state: Arc<State>,
        hook: Option<BackgroundHook>,
        label: Label,
    },
}

impl<B, E> ResponseFuture<B, E> {
    pub(crate) fn answered(response: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Answered(Some(response)),
        }
    }

    pub(crate) fn waiting(
        receiver: oneshot::Receiver<Finished<B, E>>,
        deadline: Duration,
        state: Arc<State>,
        hook: Option<BackgroundHook>,
        label: Label,
    ) -> Self {
        Self {
            kind: Kind::Waiting {
                receiver,
                deadline: tokio::time::sleep(deadline),
                state,
                hook,
                label,
            },
        }
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Answered(response) => {
                let response = response.take().expect("polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::own)))
            }
            KindProj::Waiting {
                receiver,
                deadline,
                state,
                hook,
                label,
            } => {
                if let Poll::Ready(finished) = Pin::new(&mut *receiver).poll(cx) {
                    return Poll::Ready(answer(finished.ok()));
                }
                ready!(deadline.poll(cx));
                // The handler may have finished just now: close the channel, then look once
                // more, so its response is either taken here or reported by the task.
                receiver.close();
                if let Ok(finished) = receiver.try_recv() {
                    return Poll::Ready(answer(Some(finished)));
                }
                task::moved_to_background(state, hook.as_ref(), label, true);
                Poll::Ready(Ok(
                    Response::<Full<Bytes>>::from(crate::Reply::success()).map(ResponseBody::own)
                ))
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
