//! [`FastAck`]: the middleware service.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower_service::Service;
use tracing::Instrument;

use super::future::ResponseFuture;
use super::state::{Mode, State};
use super::task::{self, Work};
use crate::body::{ResponseBody, plain_text};
use crate::hook::{Arrival, CallbackHook};
use crate::label::Label;
use crate::macros::define_inner_service_accessors;

/// Middleware that answers callbacks within a deadline; see
/// [`FastAckLayer`](super::FastAckLayer).
#[derive(Clone, Debug)]
pub struct FastAck<S> {
    pub(crate) inner: S,
    pub(crate) state: Arc<State>,
}

impl<S> FastAck<S> {
    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for FastAck<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Future: Send + 'static,
    S::Error: fmt::Display + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let state = &self.state;
        state.order.has_message(&request);
        let label = Label::of(&request);
        if state.closing.load(Ordering::Acquire) {
            state
                .counters
                .refused_closing
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(msg = %label, "shutting down; answering 503 so WeChat retries");
            return ResponseFuture::answered(plain_text(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down, retry later",
            ));
        }
        let Ok(permit) = state.permits.clone().try_acquire_owned() else {
            state.counters.refused_full.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                msg = %label,
                "too many handlers in flight; answering 503 so WeChat retries"
            );
            return ResponseFuture::answered(plain_text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many callbacks in flight, retry later",
            ));
        };
        let hook = request.extensions().get::<CallbackHook>().cloned();
        // The deadline counts from the callback's arrival, not from here.
        let spent = Arrival::elapsed_for(&request);

        // The clone is ready only if `poll_ready` said so of the original: swap them.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let work = Work {
            handler: Box::pin(inner.call(request)),
            permit,
            state: state.clone(),
            hook,
            label,
            started: Instant::now(),
        };
        match state.settings.mode {
            Mode::Deadline(deadline) => {
                ResponseFuture::starting(work, deadline.saturating_sub(spent))
            }
            Mode::AlwaysAck => {
                task::moved_to_background(state, work.hook.as_ref(), &work.label, false);
                let (sender, _) = tokio::sync::oneshot::channel();
                let acked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
                let task = task::run(work, sender, acked).instrument(tracing::Span::current());
                state.tracker.spawn(task);
                ResponseFuture::answered(crate::Reply::success().into())
            }
        }
    }
}
