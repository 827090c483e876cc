//! [`Dedup`]: the middleware service.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;
use tokio::time::Instant;
use tower_service::Service;

use super::future::ResponseFuture;
use super::state::{Counters, State};
use super::store::{Claim, DedupStore, LeaseId, StoreError, StoredResponse, Waited};
use crate::body::{CollectReply, plain_text};
use crate::hook::{
    Arrival, Completion, CompletionObserver, DedupKey, Deferred, Recorded, Recovery, RunOutcome,
};
use crate::label::Label;
use crate::macros::define_inner_service_accessors;
use crate::{BoxError, Message};

/// Middleware that processes each callback once; see [`DedupLayer`](super::DedupLayer).
pub struct Dedup<S, St> {
    pub(crate) inner: S,
    pub(crate) store: Arc<St>,
    pub(crate) state: Arc<State>,
}

impl<S: Clone, St> Clone for Dedup<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            store: self.store.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S: fmt::Debug, St: fmt::Debug> fmt::Debug for Dedup<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedup")
            .field("inner", &self.inner)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<S, St> Dedup<S, St> {
    define_inner_service_accessors!();
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for Dedup<S, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    St: DedupStore,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone is ready only if `poll_ready` said so of the original: swap them.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.state.order.has_message(&request);
        // The route is part of the key: another path's answer is never replayed here.
        let key = request
            .extensions()
            .get::<Message>()
            .and_then(|message| (self.state.settings.key)(message))
            .map(|key| route_key(request.uri().path(), &key));
        let arrival = request
            .extensions()
            .get::<Arrival>()
            .map_or_else(Instant::now, |arrival| Instant::from_std(arrival.0));
        let attempt = Attempt {
            store: self.store.clone(),
            state: self.state.clone(),
            label: Label::of(&request),
            deadline: arrival + self.state.settings.budget,
            recovered: request.extensions().get::<Recovery>().is_some(),
        };
        ResponseFuture::new(attempt.run(inner, request, key))
    }
}

/// A route longer than this is keyed by its SHA-1 instead.
const MAX_ROUTE_IN_KEY: usize = 128;

/// `key` for the route `path`: `path|key`. A path longer than [`MAX_ROUTE_IN_KEY`] bytes is
/// replaced by `sha1:` and its digest, so a key's length does not grow with the path.
fn route_key(path: &str, key: &str) -> String {
    let joined = |route: &str| {
        let mut joined = String::with_capacity(route.len() + 1 + key.len());
        joined.push_str(route);
        joined.push('|');
        joined.push_str(key);
        joined
    };
    if path.len() <= MAX_ROUTE_IN_KEY {
        return joined(path);
    }
    let digest = crate::signature::Signature::compute(&[path]);
    joined(&format!("sha1:{digest}"))
}

#[cfg(test)]
pub(crate) fn route_key_for_tests(path: &str, key: &str) -> String {
    route_key(path, key)
}

/// One delivery of a keyed callback.
struct Attempt<St> {
    store: Arc<St>,
    state: Arc<State>,
    label: Label,
    /// Arrival + the layer's budget: no store operation keeps the answer past it.
    deadline: Instant,
    /// Run again by the journal's recovery worker: an acknowledged claim is taken over.
    recovered: bool,
}

/// What a delivery does after asking the store.
enum Decision {
    /// Run the inner service; with the lease to complete, or without dedup (store failed).
    Run(Option<LeaseId>),
    Answer(Response<Full<Bytes>>),
}

impl<St: DedupStore> Attempt<St> {
    async fn run<S, ReqBody, ResBody>(
        self,
        inner: S,
        mut request: Request<ReqBody>,
        key: Option<String>,
    ) -> Result<Response<Full<Bytes>>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body<Data = Bytes>,
        ResBody::Error: Into<BoxError>,
    {
        let Some(key) = key else {
            Counters::bump(&self.state.counters.unkeyed);
            return forward(inner, request).await.map(|(response, _)| response);
        };
        let lease = match self.decide(&key).await {
            Decision::Answer(response) => return Ok(response),
            Decision::Run(lease) => lease,
        };
        let Some(lease) = lease else {
            // The store failed and the layer fails open: no dedup for this one.
            return forward(inner, request).await.map(|(response, _)| response);
        };
        let recorder = Arc::new(Recorder {
            attempt: self,
            key: Arc::from(key),
            lease,
        });
        let extensions = request.extensions_mut();
        // One copy of the key, shared by the extension, the recorder and the settling.
        extensions.insert(DedupKey(recorder.key.clone()));
        extensions.insert(Completion::from_arc(recorder.clone()));
        let result = forward(inner, request).await;
        let outcome = match &result {
            // The layer that ran the handler reported the run's end itself.
            Ok((response, _)) if response.extensions().get::<Recorded>().is_some() => None,
            // Answered before the handler finished; it reports the end when it comes. Until
            // then repeats get this answer replayed, and the claim stays held.
            Ok((response, Some(answered))) if response.extensions().get::<Deferred>().is_some() => {
                recorder.acknowledge(answered).await;
                None
            }
            // Only a success is kept for replay: a 4xx or 5xx (or an error) frees the key.
            Ok((response, Some(stored))) if response.status().is_success() => {
                Some(RunOutcome::Completed {
                    answered: stored.clone(),
                })
            }
            _ => Some(RunOutcome::Failed),
        };
        if let Some(outcome) = outcome {
            recorder.record_outcome(outcome).await;
        }
        result.map(|(response, _)| response)
    }

    /// Completes or releases the key; if the store is still busy at the deadline, the answer
    /// goes out and the store operation finishes in a task (within the store timeout).
    async fn settle(&self, key: Arc<str>, lease: LeaseId, settle: Settle) {
        let store = self.store.clone();
        let state = self.state.clone();
        let label = self.label.clone();
        let operation = async move {
            let store_timeout = state.settings.store_timeout;
            match settle {
                Settle::Complete(stored) => {
                    let ttl = state.settings.ttl;
                    match timeout(store_timeout, store.complete(&key, lease, &stored, ttl)).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            msg = %label,
                            "dedup claim expired before the response was stored; raise the lease"
                        ),
                        Err(error) => store_failed(&state, &label, &error, "storing the response"),
                    }
                }
                Settle::Release => {
                    tracing::warn!(
                        msg = %label,
                        "the first attempt failed; releasing its dedup key so a retry runs again"
                    );
                    if let Err(error) = timeout(store_timeout, store.release(&key, lease)).await {
                        // The claim expires after its lease.
                        store_failed(&state, &label, &error, "releasing the key");
                    }
                }
            }
        };
        let mut operation = Box::pin(operation);
        let first = std::future::poll_fn(|cx| Poll::Ready(operation.as_mut().poll(cx))).await;
        if first.is_ready() {
            return;
        }
        if Instant::now() >= self.deadline {
            // Told of a run's end after the answer went out (a handler that finished in the
            // background): nothing waits on this but the journal, which must not forget the
            // callback before the store knows it was processed. Bounded by the store timeout.
            operation.await;
            return;
        }
        let deadline = tokio::time::sleep_until(self.deadline);
        tokio::select! {
            () = &mut operation => {}
            () = deadline => {
                tracing::warn!(
                    msg = %self.label,
                    "dedup store still busy at the callback's deadline; answering now and \
                     finishing the store operation in the background"
                );
                tokio::spawn(operation);
            }
        }
    }

    async fn decide(&self, key: &str) -> Decision {
        // Read the clock only if a wait begins.
        let mut deadline = None;
        loop {
            let lease = self.state.settings.lease;
            let claimed = if self.recovered {
                self.timed(self.store.take_over(key, lease)).await
            } else {
                self.timed(self.store.claim(key, lease)).await
            };
            let claim = match claimed {
                Ok(claim) => claim,
                Err(error) => return self.on_store_failure(&error),
            };
            let stored = match claim {
                Claim::Claimed(lease) => return Decision::Run(Some(lease)),
                Claim::Done(stored) => {
                    Counters::bump(&self.state.counters.replayed);
                    tracing::debug!(msg = %self.label, "repeat delivery: replaying the stored response");
                    return Decision::Answer(stored.to_response());
                }
                Claim::InProgress => {
                    // Counted from arrival, and never past the budget.
                    let deadline = *deadline.get_or_insert_with(|| {
                        (self.deadline - self.state.settings.budget
                            + self.state.settings.wait_timeout)
                            .min(self.deadline)
                    });
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let budget = self.deadline.saturating_duration_since(Instant::now());
                    let waited = Box::pin(tokio::time::timeout(
                        (remaining + self.state.settings.store_timeout).min(budget),
                        self.store.wait(key, remaining),
                    ))
                    .await
                    .unwrap_or(Err(StoreError::Timeout));
                    match waited {
                        Ok(Waited::Done(stored)) => stored,
                        Ok(Waited::Released) if Instant::now() < deadline => continue,
                        Ok(Waited::Released | Waited::StillInProgress) => {
                            Counters::bump(&self.state.counters.busy);
                            tracing::warn!(
                                msg = %self.label,
                                "repeat delivery while the first is still running; answering 503"
                            );
                            return Decision::Answer(plain_text(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "this message is still being processed, retry later",
                            ));
                        }
                        Err(error) => return self.on_store_failure(&error),
                    }
                }
            };
            Counters::bump(&self.state.counters.coalesced);
            tracing::debug!(msg = %self.label, "repeat delivery: answered with the first attempt's response");
            return Decision::Answer(stored.to_response());
        }
    }

    /// `operation` within the store timeout and the callback's remaining budget.
    async fn timed<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let budget = self.deadline.saturating_duration_since(Instant::now());
        timeout(self.state.settings.store_timeout.min(budget), operation).await
    }

    fn on_store_failure(&self, error: &StoreError) -> Decision {
        self.store_failed(error, "claiming the key");
        if self.state.settings.fail_closed {
            Decision::Answer(plain_text(
                StatusCode::SERVICE_UNAVAILABLE,
                "dedup store unavailable, retry later",
            ))
        } else {
            Decision::Run(None)
        }
    }

    fn store_failed(&self, error: &StoreError, doing: &str) {
        store_failed(&self.state, &self.label, error, doing);
    }
}

/// What becomes of a claimed key once the inner service answered.
enum Settle {
    Complete(StoredResponse),
    Release,
}

fn store_failed(state: &State, label: &Label, error: &StoreError, doing: &str) {
    Counters::bump(&state.counters.store_errors);
    let then = match (doing, state.settings.fail_closed) {
        ("claiming the key", false) => "; processing without dedup (fail open)",
        ("claiming the key", true) => "; answering 503 (fail closed)",
        _ => "",
    };
    tracing::error!(msg = %label, %error, "dedup store failed while {doing}{then}");
}

/// `operation`, failed with [`StoreError::Timeout`] if it takes longer than `limit`. The
/// timer starts only if the first poll finds it not ready, so a store that answers at once
/// (the memory store) costs no clock read.
async fn timeout<T>(
    limit: Duration,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let mut operation = std::pin::pin!(operation);
    let first = std::future::poll_fn(|cx| Poll::Ready(operation.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(result) => result,
        // Boxed: the rare path stays out of every request's future.
        Poll::Pending => Box::pin(tokio::time::timeout(limit, operation))
            .await
            .unwrap_or(Err(StoreError::Timeout)),
    }
}

/// Calls the inner service and reads its response body; also returns what to store, unless
/// the body failed.
async fn forward<S, ReqBody, ResBody>(
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<(Response<Full<Bytes>>, Option<StoredResponse>), S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let response = inner.call(request).await?;
    let (parts, body) = response.into_parts();
    let body = match CollectReply::new(body).await {
        Ok(body) => body,
        Err(failed) => return Ok((failed, None)),
    };
    let stored = StoredResponse {
        status: parts.status,
        content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
        body: body.clone(),
    };
    Ok((Response::from_parts(parts, Full::new(body)), Some(stored)))
}

/// The attempt that claimed a callback, told how the handler's run ended: by this layer when
/// the inner service answered with the run's end, or through the request's [`Completion`]
/// by the layer that ran the handler (FastAck), when the run ended — for a handler that
/// went on in the background, long after the answer. So `processed` counts handlers that
/// finished, not acknowledgements.
struct Recorder<St> {
    attempt: Attempt<St>,
    key: Arc<str>,
    lease: LeaseId,
}

impl<St: DedupStore> Recorder<St> {
    /// The callback was answered before its handler finished.
    async fn acknowledge(&self, answered: &StoredResponse) {
        let attempt = &self.attempt;
        Counters::bump(&attempt.state.counters.deferred);
        let hold = attempt.state.settings.ttl;
        let acknowledged = attempt
            .timed(
                attempt
                    .store
                    .acknowledge(&self.key, self.lease, answered, hold),
            )
            .await;
        if let Err(error) = acknowledged {
            attempt.store_failed(&error, "recording the acknowledgement");
        }
    }

    /// Stores the answer for repeats (the handler finished), or frees the key (it failed).
    async fn record_outcome(&self, outcome: RunOutcome) {
        let counters = &self.attempt.state.counters;
        let settle = match outcome {
            RunOutcome::Completed { answered } if answered.status.is_success() => {
                Counters::bump(&counters.processed);
                Settle::Complete(answered)
            }
            _ => {
                Counters::bump(&counters.released);
                Settle::Release
            }
        };
        self.attempt
            .settle(self.key.clone(), self.lease, settle)
            .await;
    }
}

impl<St: DedupStore> CompletionObserver for Recorder<St> {
    fn record(
        self: Arc<Self>,
        outcome: RunOutcome,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { self.record_outcome(outcome).await })
    }
}
