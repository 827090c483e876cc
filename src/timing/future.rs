//! [`ResponseFuture`]: polls the inner service inside the callback's span and logs the
//! callback when its response is ready (or when it is dropped unanswered).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project::{pin_project, pinned_drop};

use super::callback::{CallbackTiming, Ending};
use crate::hook::Summarized;

/// Response future of [`Timing`](super::Timing).
///
/// Polls the inner future inside the callback's span. When it is ready, the latency is
/// recorded and the access line logged; if it is dropped before (the client went away),
/// the callback is logged as cancelled.
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    timing: Option<CallbackTiming>,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, timing: CallbackTiming) -> Self {
        Self {
            inner,
            timing: Some(timing),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let timing = this.timing.as_ref().expect("polled after completion");
            let _entered = timing.span().enter();
            ready!(this.inner.poll(cx))
        };
        if let Some(timing) = this.timing.take() {
            let ending = match &result {
                Ok(response) if response.extensions().get::<Summarized>().is_some() => {
                    Ending::Summarized(response.status())
                }
                Ok(response) => Ending::Answered(response.status()),
                Err(_) => Ending::Failed,
            };
            timing.finish(ending);
        }
        Poll::Ready(result)
    }
}

#[pinned_drop]
impl<F> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(timing) = self.project().timing.take() {
            timing.finish(Ending::Cancelled);
        }
    }
}
