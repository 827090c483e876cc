//! [`FastAck`]: the middleware service.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;

use super::future::ResponseFuture;
use super::settle::Settle;
use super::state::{Mode, State};
use super::task::Work;
use crate::BoxError;
use crate::body::{ResponseBody, plain_text};
use crate::hook::{Arrival, CallbackHook, Completion, DedupKey, Delivery, Recovery, VerifiedBody};
use crate::journal::{BoxFuture, EntryId, JournalEntry, JournalError, Shared as Journal};
use crate::label::Label;
use crate::macros::define_inner_service_accessors;
use crate::message::CallbackQuery;

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
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
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
        let deadline = match state.settings.mode {
            Mode::Deadline(deadline) => deadline.saturating_sub(spent),
            Mode::AlwaysAck => Duration::ZERO,
        };
        let mut settle = Settle {
            completion: request.extensions().get::<Completion>().cloned(),
            entry: None,
        };
        let append = match &state.settings.handoff {
            None => None,
            Some(handoff) => {
                let journal = &handoff.shared;
                match request.extensions().get::<Recovery>().cloned() {
                    // Run again from the journal: under its existing entry.
                    Some(recovery) => {
                        recovery.take();
                        journal.running(&recovery.id);
                        let delivery = Delivery::new(recovery.entry.attempt, true);
                        request.extensions_mut().insert(delivery);
                        settle.entry = Some((journal.clone(), recovery.id));
                        None
                    }
                    None => {
                        request.extensions_mut().insert(Delivery::new(1, false));
                        Some((journal.clone(), append(journal, &request, deadline)))
                    }
                }
            }
        };

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
            settle,
        };
        match append {
            Some((journal, append)) => ResponseFuture::appending(append, journal, work, deadline),
            None => ResponseFuture::start(work, deadline),
        }
    }
}

/// Stores the callback in the journal, within what is left of its deadline (and the
/// hand-off's operation timeout).
fn append<B>(
    journal: &Arc<Journal>,
    request: &Request<B>,
    deadline: Duration,
) -> BoxFuture<'static, Result<EntryId, JournalError>> {
    let Some(entry) = entry_of(request) else {
        return Box::pin(std::future::ready(Err(JournalError::Unavailable(
            "no verified body to store: put VerifyLayer outside FastAckLayer".to_owned(),
        ))));
    };
    let limit = match deadline {
        Duration::ZERO => journal.settings.operation_timeout,
        left => left.min(journal.settings.operation_timeout),
    };
    let journal = journal.clone();
    Box::pin(async move {
        journal
            .timed_within(limit, journal.journal.append(&entry))
            .await
    })
}

/// What the journal keeps of a verified callback.
fn entry_of<B>(request: &Request<B>) -> Option<JournalEntry> {
    let extensions = request.extensions();
    let body = extensions.get::<VerifiedBody>()?.0.clone();
    let query = extensions.get::<CallbackQuery>()?.clone();
    let arrived = SystemTime::now() - Arrival::elapsed_for(request);
    Some(JournalEntry {
        path: request.uri().path().to_owned(),
        query,
        body,
        key: extensions.get::<DedupKey>().map(|key| key.0.to_string()),
        arrival_unix_ms: arrived
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64),
        attempt: 1,
        // The callback's span (entered while FastAck is called), for the recovered run.
        #[cfg(feature = "otel")]
        trace_context: crate::otel::current_traceparent(),
        #[cfg(not(feature = "otel"))]
        trace_context: None,
    })
}
