//! [`CircuitBreakerLayer`]: stops calling WeChat while it keeps failing, and fails fast with
//! [`ClientError::CircuitOpen`] meanwhile.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use pin_project::{pin_project, pinned_drop};
use tower_layer::Layer;
use tower_service::Service;

use super::ClientError;
use super::read_body::answer_class;
use crate::macros::define_inner_service_accessors;

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls are refused with [`ClientError::CircuitOpen`] until the open period ends.
    Open,
    /// The open period ended: a limited number of probe calls go through; one success
    /// closes the breaker, one failure opens it again.
    HalfOpen,
}

/// Counters of a [`CircuitBreakerLayer`], shared by every service it built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The state now.
    pub state: BreakerState,
    /// Calls that went through and succeeded.
    pub successes: u64,
    /// Calls that went through and failed.
    pub failures: u64,
    /// Calls refused while open (or half-open with every probe slot taken).
    pub rejected: u64,
    /// How many times the breaker opened.
    pub opened: u64,
}

/// Applies [`CircuitBreaker`]: after `failure_threshold` consecutive failed calls the breaker
/// opens and refuses calls for `open_duration`; then it lets `half_open_probes` calls through,
/// closing on a success and opening again on a failure.
///
/// A failure is what [`ClientError::counts_for_breaker`] says: an HTTP 5xx, errcode `-1`
/// (WeChat busy), no connection, no answer, an answer that is not WeChat's. Other errcodes
/// are answers, not outages: one account's quota (45009, 45047), refused user (43101) or
/// untrusted IP (60020) never opens the breaker for the others. Errors that say nothing about WeChat's API — no access_token
/// ([`ClientError::Token`]: the token cache retries and shares its fetch's error on its
/// own), the shared token store ([`ClientError::Store`]), bad input — count neither way; a
/// probe that ends so frees its slot. Put it outside the retry layer: one call is the whole
/// retried sequence, so the breaker opens when retries no longer help.
///
/// Every change of state starts a new generation: an outcome of a call admitted under an
/// earlier one (a probe of an earlier half-open round, a call let through before the
/// breaker opened) is counted in the stats but does not move the breaker.
///
/// One layer is one breaker: every service it builds shares the state.
///
/// Defaults: 5 consecutive failures, open for 10 s, 1 probe.
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::client::{BreakerState, CircuitBreakerLayer};
///
/// let breaker = CircuitBreakerLayer::new()
///     .failure_threshold(3)
///     .open_duration(Duration::from_secs(30));
/// assert_eq!(breaker.stats().state, BreakerState::Closed);
/// ```
#[derive(Clone)]
#[must_use]
pub struct CircuitBreakerLayer {
    shared: Arc<Shared>,
}

struct Shared {
    failure_threshold: u32,
    open_duration: Duration,
    half_open_probes: u32,
    state: Mutex<State>,
    /// The `host` label of its metrics (set once by `WeChatClient`'s builder).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    label: std::sync::OnceLock<String>,
}

struct State {
    mode: Mode,
    /// Moves on every change of mode: an outcome admitted under an older one is counted but
    /// does not move the breaker (a probe of an earlier half-open round cannot close it or
    /// free a slot of this round; a call admitted before it opened cannot reopen it).
    generation: u64,
    consecutive_failures: u32,
    successes: u64,
    failures: u64,
    rejected: u64,
    opened: u64,
}

#[derive(Clone, Copy)]
enum Mode {
    Closed,
    Open { until: Instant },
    HalfOpen { probes: u32 },
}

impl CircuitBreakerLayer {
    /// Consecutive failures that open the breaker by default: 5.
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
    /// How long the breaker stays open by default: 10 s.
    pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(10);
    /// Probe calls let through when half-open by default: 1.
    pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;

    /// A closed breaker with the defaults.
    pub fn new() -> Self {
        Self::with_settings(
            Self::DEFAULT_FAILURE_THRESHOLD,
            Self::DEFAULT_OPEN_DURATION,
            Self::DEFAULT_HALF_OPEN_PROBES,
        )
    }

    /// Consecutive failures that open the breaker (at least 1).
    pub fn failure_threshold(self, failures: u32) -> Self {
        Self::with_settings(
            failures,
            self.shared.open_duration,
            self.shared.half_open_probes,
        )
    }

    /// How long the breaker stays open before probing.
    pub fn open_duration(self, duration: Duration) -> Self {
        Self::with_settings(
            self.shared.failure_threshold,
            duration,
            self.shared.half_open_probes,
        )
    }

    /// Calls let through at once while half-open (at least 1).
    pub fn half_open_probes(self, probes: u32) -> Self {
        Self::with_settings(
            self.shared.failure_threshold,
            self.shared.open_duration,
            probes,
        )
    }

    /// The state and counters now.
    pub fn stats(&self) -> BreakerStats {
        let state = self.shared.lock();
        let state_now = match state.mode {
            Mode::Closed => BreakerState::Closed,
            Mode::Open { until } if Instant::now() < until => BreakerState::Open,
            Mode::Open { .. } | Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        BreakerStats {
            state: state_now,
            successes: state.successes,
            failures: state.failures,
            rejected: state.rejected,
            opened: state.opened,
        }
    }

    /// How long the breaker stays open from now; `None` unless it is open.
    pub(crate) fn open_for(&self) -> Option<Duration> {
        self.shared.open_for()
    }

    /// A new, closed breaker with the same settings (for another API host).
    pub(crate) fn fresh(&self) -> Self {
        Self::with_settings(
            self.shared.failure_threshold,
            self.shared.open_duration,
            self.shared.half_open_probes,
        )
    }

    /// Names the breaker's `host` metrics label, unless it already has one.
    pub(crate) fn name(&self, host: &str) {
        let _ = self.shared.label.set(host.to_owned());
    }

    fn with_settings(failure_threshold: u32, open_duration: Duration, probes: u32) -> Self {
        Self {
            shared: Arc::new(Shared {
                failure_threshold: failure_threshold.max(1),
                open_duration,
                half_open_probes: probes.max(1),
                state: Mutex::new(State {
                    mode: Mode::Closed,
                    generation: 0,
                    consecutive_failures: 0,
                    successes: 0,
                    failures: 0,
                    rejected: 0,
                    opened: 0,
                }),
                label: std::sync::OnceLock::new(),
            }),
        }
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("failure_threshold", &self.shared.failure_threshold)
            .field("open_duration", &self.shared.open_duration)
            .field("half_open_probes", &self.shared.half_open_probes)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// How a call was let through, and in which generation of the breaker's state.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Admission {
    kind: Kind,
    generation: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Probe,
}

/// What a call's outcome says about WeChat's health.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Success,
    Failure,
    /// Nothing: the call did not reach WeChat for reasons of its own (no token, bad input).
    Neutral,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters, valid after any panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn admit(&self) -> Option<Admission> {
        let mut state = self.lock();
        if let Mode::Open { until } = state.mode {
            if Instant::now() < until {
                state.rejected += 1;
                self.record_rejected();
                return None;
            }
            state.set_mode(Mode::HalfOpen { probes: 0 });
            self.record_state(BreakerState::HalfOpen);
        }
        let kind = match state.mode {
            Mode::HalfOpen { probes } if probes < self.half_open_probes => {
                // The same round: the generation stays.
                state.mode = Mode::HalfOpen { probes: probes + 1 };
                Kind::Probe
            }
            Mode::HalfOpen { .. } | Mode::Open { .. } => {
                state.rejected += 1;
                self.record_rejected();
                return None;
            }
            Mode::Closed => Kind::Normal,
        };
        Some(Admission {
            kind,
            generation: state.generation,
        })
    }

    fn record(&self, admission: Admission, outcome: Outcome) {
        let mut state = self.lock();
        match outcome {
            Outcome::Success => state.successes += 1,
            Outcome::Failure => state.failures += 1,
            Outcome::Neutral => {}
        }
        if admission.generation != state.generation {
            // Admitted under an earlier state (an earlier half-open round, or before the
            // breaker opened): counted, but it does not move the breaker.
            return;
        }
        match (state.mode, admission.kind, outcome) {
            (Mode::HalfOpen { .. }, Kind::Probe, Outcome::Success) => {
                state.set_mode(Mode::Closed);
                state.consecutive_failures = 0;
                self.record_state(BreakerState::Closed);
                tracing::info!("circuit breaker closed: WeChat answered a probe");
            }
            (Mode::HalfOpen { .. }, Kind::Probe, Outcome::Failure) => self.open(&mut state),
            // A probe that says nothing frees its slot for another.
            (Mode::HalfOpen { probes }, Kind::Probe, Outcome::Neutral) => {
                state.mode = Mode::HalfOpen {
                    probes: probes.saturating_sub(1),
                };
            }
            (Mode::Closed, _, Outcome::Success) => state.consecutive_failures = 0,
            (Mode::Closed, _, Outcome::Failure) => {
                state.consecutive_failures += 1;
                if state.consecutive_failures >= self.failure_threshold {
                    self.open(&mut state);
                }
            }
            _ => {}
        }
    }

    /// A probe that ended without an outcome (its future was dropped) frees its slot, if
    /// its round is still on.
    fn abandon(&self, admission: Admission) {
        let mut state = self.lock();
        if admission.generation != state.generation {
            return;
        }
        if let (Mode::HalfOpen { probes }, Kind::Probe) = (state.mode, admission.kind) {
            state.mode = Mode::HalfOpen {
                probes: probes.saturating_sub(1),
            };
        }
    }

    #[cfg(feature = "metrics")]
    fn label(&self) -> &str {
        self.label.get().map_or("api", String::as_str)
    }

    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    fn record_rejected(&self) {
        #[cfg(feature = "metrics")]
        super::metrics::record_breaker_rejected(self.label());
    }

    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    fn record_state(&self, state: BreakerState) {
        #[cfg(feature = "metrics")]
        super::metrics::record_breaker_state(
            self.label(),
            match state {
                BreakerState::Closed => 0.0,
                BreakerState::HalfOpen => 1.0,
                BreakerState::Open => 2.0,
            },
        );
        #[cfg(not(feature = "metrics"))]
        let _ = state;
    }

    /// How long the breaker stays open from now; `None` unless it is open.
    fn open_for(&self) -> Option<Duration> {
        match self.lock().mode {
            Mode::Open { until } => until.checked_duration_since(Instant::now()),
            Mode::Closed | Mode::HalfOpen { .. } => None,
        }
    }

    fn open(&self, state: &mut State) {
        let until = Instant::now()
            .checked_add(self.open_duration)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        state.set_mode(Mode::Open { until });
        state.consecutive_failures = 0;
        state.opened += 1;
        self.record_state(BreakerState::Open);
        #[cfg(feature = "metrics")]
        super::metrics::record_breaker_opened(self.label());
        tracing::warn!(
            open_for = ?self.open_duration,
            "circuit breaker opened: WeChat calls fail fast"
        );
    }
}

impl State {
    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        self.generation = self.generation.wrapping_add(1);
    }
}

/// Fails fast while WeChat keeps failing; see [`CircuitBreakerLayer`].
#[derive(Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in a closed breaker with the defaults.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_wechat::client::{CircuitBreaker, ClientError};
    ///
    /// let service = CircuitBreaker::new(service_fn(|_: ()| async {
    ///     Ok::<_, ClientError>(http::Response::new(bytes::Bytes::new()))
    /// }));
    /// # let _ = service;
    /// ```
    pub fn new(inner: S) -> Self {
        CircuitBreakerLayer::new().layer(inner)
    }

    /// A [`CircuitBreakerLayer`] with the defaults.
    ///
    /// ```
    /// use tower_wechat::client::CircuitBreaker;
    ///
    /// let layer = CircuitBreaker::<()>::layer();
    /// # let _ = layer;
    /// ```
    pub fn layer() -> CircuitBreakerLayer {
        CircuitBreakerLayer::new()
    }

    define_inner_service_accessors!();
}

impl<S> fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker").finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for CircuitBreaker<S>
where
    S: Service<Req, Response = Response<Bytes>>,
    S::Error: Into<ClientError>,
{
    type Response = Response<Bytes>;
    type Error = ClientError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.shared.admit() {
            Some(admission) => ResponseFuture {
                inner: Some(self.inner.call(request)),
                shared: Some((self.shared.clone(), admission)),
            },
            None => ResponseFuture {
                inner: None,
                shared: None,
            },
        }
    }
}

/// What an outcome says about WeChat's health: [`ErrorClass::counts_for_breaker`] decides.
/// Any other answer of WeChat's (45009, 43101, 60020, ... included) shows the API is up; an
/// error without an answer that does not count (no access_token: its source retries and
/// shares its errors on its own; the shared store; bad input) says nothing.
fn outcome(result: &Result<Response<Bytes>, ClientError>) -> Outcome {
    match result {
        Ok(response) => match answer_class(response) {
            Some(class) if class.counts_for_breaker() => Outcome::Failure,
            _ => Outcome::Success,
        },
        Err(error) if error.counts_for_breaker() => Outcome::Failure,
        Err(ClientError::Api(_) | ClientError::Status(_)) => Outcome::Success,
        Err(_) => Outcome::Neutral,
    }
}

/// Response future of [`CircuitBreaker`].
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: Option<F>,
    /// Where to record the outcome; `None` once recorded, or when refused.
    shared: Option<(Arc<Shared>, Admission)>,
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Bytes>, E>>,
    E: Into<ClientError>,
{
    type Output = Result<Response<Bytes>, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(ClientError::CircuitOpen));
        };
        let result = match inner.poll(cx) {
            Poll::Ready(result) => result.map_err(Into::into),
            Poll::Pending => return Poll::Pending,
        };
        if let Some((shared, admission)) = this.shared.take() {
            shared.record(admission, outcome(&result));
        }
        Poll::Ready(result)
    }
}

#[pinned_drop]
impl<F> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        if let Some((shared, admission)) = self.project().shared.take() {
            shared.abandon(admission);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn service(
        layer: &CircuitBreakerLayer,
    ) -> impl Service<u16, Response = Response<Bytes>, Error = ClientError, Future: Send> + Clone
    {
        layer.layer(tower::service_fn(|status: u16| async move {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok::<_, ClientError>(response)
        }))
    }

    #[tokio::test]
    async fn opens_fails_fast_half_opens_and_closes() {
        let layer = CircuitBreakerLayer::new()
            .failure_threshold(2)
            .open_duration(Duration::from_millis(50));
        let service = service(&layer);
        service.clone().oneshot(500).await.unwrap();
        service.clone().oneshot(200).await.unwrap(); // resets the count
        service.clone().oneshot(500).await.unwrap();
        assert_eq!(layer.stats().state, BreakerState::Closed);
        service.clone().oneshot(500).await.unwrap();
        assert_eq!(layer.stats().state, BreakerState::Open);
        assert!(matches!(
            service.clone().oneshot(200).await,
            Err(ClientError::CircuitOpen)
        ));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(layer.stats().state, BreakerState::HalfOpen);
        // A failed probe opens it again.
        service.clone().oneshot(502).await.unwrap();
        assert_eq!(layer.stats().state, BreakerState::Open);
        tokio::time::sleep(Duration::from_millis(60)).await;
        service.clone().oneshot(200).await.unwrap();
        let stats = layer.stats();
        assert_eq!(stats.state, BreakerState::Closed);
        assert_eq!(
            (
                stats.opened,
                stats.rejected,
                stats.successes,
                stats.failures
            ),
            (2, 1, 2, 4)
        );
    }

    #[tokio::test]
    async fn a_probe_of_an_earlier_half_open_round_does_not_move_the_breaker() {
        let layer = CircuitBreakerLayer::new()
            .failure_threshold(1)
            .open_duration(Duration::from_millis(10))
            .half_open_probes(3);
        let service = service(&layer);
        service.clone().oneshot(503).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Round 1: three probes admitted; the failing one reopens the breaker.
        let mut held = service.clone();
        let slow_success = held.call(200);
        let slow_abandoned = held.call(200);
        held.call(500).await.unwrap();
        assert_eq!(layer.stats().state, BreakerState::Open);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Round 2: every slot taken by new probes.
        let probe_a = held.call(500);
        let probe_b = held.call(200);
        let probe_c = held.call(200);
        assert!(matches!(
            service.clone().oneshot(200).await,
            Err(ClientError::CircuitOpen)
        ));
        // Round 1's success does not close the breaker...
        slow_success.await.unwrap();
        assert_eq!(layer.stats().state, BreakerState::HalfOpen);
        // ...and its abandoned probe does not free a slot of round 2.
        drop(slow_abandoned);
        assert!(matches!(
            service.clone().oneshot(200).await,
            Err(ClientError::CircuitOpen)
        ));
        // Round 2's own outcome decides.
        probe_a.await.unwrap();
        assert_eq!(layer.stats().state, BreakerState::Open);
        drop((probe_b, probe_c));
        let stats = layer.stats();
        assert_eq!((stats.opened, stats.successes), (3, 1), "{stats:?}");
    }

    #[tokio::test]
    async fn errors_that_say_nothing_about_wechat_do_not_move_the_breaker() {
        let layer = CircuitBreakerLayer::new()
            .failure_threshold(1)
            .open_duration(Duration::from_millis(10));
        let refusing = layer.layer(tower::service_fn(|error: u8| async move {
            Err::<Response<Bytes>, _>(match error {
                0 => ClientError::Token(Box::new(ClientError::Timeout(Duration::from_secs(1)))),
                _ => ClientError::InvalidInput("x".into()),
            })
        }));
        for error in [0, 1, 0] {
            refusing.clone().oneshot(error).await.unwrap_err();
        }
        assert_eq!(layer.stats().state, BreakerState::Closed);
        assert_eq!(layer.stats().failures, 0);
    }

    #[tokio::test]
    async fn half_open_admits_only_the_probes_and_frees_abandoned_ones() {
        let layer = CircuitBreakerLayer::new()
            .failure_threshold(1)
            .open_duration(Duration::from_millis(10));
        let service = service(&layer);
        service.clone().oneshot(503).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut held = service.clone();
        let probe = held.call(200); // admitted as the one probe, not polled yet
        assert!(matches!(
            service.clone().oneshot(200).await,
            Err(ClientError::CircuitOpen)
        ));
        drop(probe);
        service.clone().oneshot(200).await.unwrap();
        assert_eq!(layer.stats().state, BreakerState::Closed);
    }
}
