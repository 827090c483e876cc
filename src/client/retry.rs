//! [`RetryPolicy`]: a `tower::retry::Policy` with exponential backoff, full jitter, a cap on
//! delay and attempts, and a retry budget; it retries only what is safe to retry.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::retry::budget::{Budget, TpsBudget};

use super::read_body::{answer_class, errcode};
use super::{ClientError, ErrorClass};

/// Marks a request as safe to repeat even when WeChat may already have carried it out
/// (token fetches and GETs; template messages with a `client_msg_id`, which WeChat
/// de-duplicates; WeCom app messages with the duplicate check on, which WeCom de-duplicates).
/// Put it in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idempotent;

/// Retries what is safe to retry, with backoff, jitter and a budget.
///
/// Retried:
/// - errcode `-1` (WeChat documents it as "system busy, try again later": the call was not
///   carried out) and HTTP 503 (the service refused the request);
/// - connect failures (nothing was sent).
///
/// Retried only for [`Idempotent`] requests, because WeChat may have carried the first try
/// out and a repeat would deliver a message twice:
/// - timeouts, connections dropped after sending, and 5xx other than 503 — HTTP 502
///   included: a gateway can answer 502 after the request reached WeChat's backend (the
///   backend's answer was lost or malformed), so for a non-idempotent request (a
///   customer-service message, a template message without `client_msg_id`) a 502 comes back
///   to the caller as [`ClientError::Status`], whose
///   [`not_sent`](ClientError::not_sent) is `false`: it may have been delivered.
///
/// This is [`ErrorClass::is_retryable`] applied to each attempt's outcome: quota, permission,
/// configuration and user-refused errcodes (45009, 45047, 43101, 60020, ...) are never retried.
///
/// Never retried: any other errcode (token errors are handled by
/// [`AccessTokenLayer`](super::AccessTokenLayer)), 4xx, an open circuit, a failed token
/// fetch (the token source retries on its own).
///
/// The delay before retry *n* (1, 2, ...) is uniformly random in
/// `0 ..= min(max_delay, base_delay × 2ⁿ⁻¹)` ("full jitter"). Every first attempt deposits
/// into the [`TpsBudget`] and every retry withdraws from it, so when most calls fail the
/// retries stop instead of multiplying the load (a retry storm).
///
/// Defaults: 3 attempts in all, 100 ms base delay, 2 s maximum delay, a budget of 20 % of
/// calls plus 10 retries a second over a 10 s window.
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::client::RetryPolicy;
///
/// let policy = RetryPolicy::new()
///     .max_attempts(4)
///     .base_delay(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(1));
/// let service = tower::ServiceBuilder::new()
///     .retry(policy.clone())
///     .service(tower::service_fn(|_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
///         Ok::<_, tower_wechat::client::ClientError>(http::Response::new(bytes::Bytes::new()))
///     }));
/// # let _ = service;
/// assert_eq!(policy.stats().retries, 0);
/// ```
#[derive(Clone)]
#[must_use]
pub struct RetryPolicy {
    config: Arc<Config>,
    /// Retries made for the current request (the policy is cloned per request).
    retries: u32,
}

struct Config {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    budget: Arc<TpsBudget>,
    retries: AtomicU64,
    budget_refusals: AtomicU64,
}

/// What a [`RetryPolicy`] (and every clone of it) has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// Retries made.
    pub retries: u64,
    /// Retries that were due but refused by the budget.
    pub budget_refusals: u64,
}

impl RetryPolicy {
    /// Attempts in all by default: 3.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// The default base delay: 100 ms.
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);
    /// The default maximum delay: 2 s.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(2);

    /// A policy with the defaults.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
                base_delay: Self::DEFAULT_BASE_DELAY,
                max_delay: Self::DEFAULT_MAX_DELAY,
                budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
                retries: AtomicU64::new(0),
                budget_refusals: AtomicU64::new(0),
            }),
            retries: 0,
        }
    }

    /// Attempts in all, the first included (at least 1; 1 turns retries off).
    pub fn max_attempts(self, attempts: u32) -> Self {
        self.with(|config| config.max_attempts = attempts.max(1))
    }

    /// The delay scale: retry *n* waits up to `base × 2ⁿ⁻¹`.
    pub fn base_delay(self, delay: Duration) -> Self {
        self.with(|config| config.base_delay = delay)
    }

    /// The longest wait before a retry.
    pub fn max_delay(self, delay: Duration) -> Self {
        self.with(|config| config.max_delay = delay)
    }

    /// Replaces the retry budget; see [`TpsBudget::new`].
    pub fn budget(self, budget: TpsBudget) -> Self {
        self.with(|config| config.budget = Arc::new(budget))
    }

    /// What this policy and its clones have done so far.
    pub fn stats(&self) -> RetryStats {
        RetryStats {
            retries: self.config.retries.load(Ordering::Relaxed),
            budget_refusals: self.config.budget_refusals.load(Ordering::Relaxed),
        }
    }

    /// The wait before retry `retry` (1 for the first retry): uniformly random in
    /// `0 ..= min(max_delay, base_delay × 2^(retry-1))`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let config = &self.config;
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let ceiling = config
            .base_delay
            .saturating_mul(factor)
            .min(config.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let config = &self.config;
        let mut new = Config {
            max_attempts: config.max_attempts,
            base_delay: config.base_delay,
            max_delay: config.max_delay,
            budget: config.budget.clone(),
            retries: AtomicU64::new(0),
            budget_refusals: AtomicU64::new(0),
        };
        change(&mut new);
        Self {
            config: Arc::new(new),
            retries: 0,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether an outcome may be retried, given whether the request is idempotent: only the
/// [`ErrorClass::Unavailable`] class ([`ErrorClass::is_retryable`]), and of it only what
/// WeChat did not carry out (-1, 503, connect failures) unless the request is idempotent.
pub(crate) fn retryable(idempotent: bool, result: &Result<Response<Bytes>, ClientError>) -> bool {
    match result {
        Ok(response) => {
            if !answer_class(response).is_some_and(ErrorClass::is_retryable) {
                return false;
            }
            // 502 included among the ambiguous: the gateway may have passed the request on
            // before failing.
            let not_carried_out = response.status() == StatusCode::SERVICE_UNAVAILABLE
                || (!response.status().is_server_error() && errcode(response) == Some(-1));
            idempotent || not_carried_out
        }
        Err(error) => error.is_retryable() && (idempotent || error.not_sent()),
    }
}

impl tower::retry::Policy<Request<Full<Bytes>>, Response<Bytes>, ClientError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<Bytes>, ClientError>,
    ) -> Option<Self::Future> {
        let config = &self.config;
        if self.retries == 0 {
            config.budget.deposit();
        }
        let idempotent = request.extensions().get::<Idempotent>().is_some();
        if !retryable(idempotent, result) || self.retries + 1 >= config.max_attempts {
            return None;
        }
        if !config.budget.withdraw() {
            config.budget_refusals.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            super::metrics::record_budget_refusal();
            tracing::warn!("retry budget exhausted: not retrying a failed WeChat call");
            return None;
        }
        self.retries += 1;
        config.retries.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        super::metrics::record_retry();
        let delay = self.backoff(self.retries);
        tracing::debug!(retry = self.retries, ?delay, "retrying a WeChat call");
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, request: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        Some(request.clone())
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.config.max_attempts)
            .field("base_delay", &self.config.base_delay)
            .field("max_delay", &self.config.max_delay)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        let policy = RetryPolicy::new()
            .base_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(50));
        for retry in 1..=10 {
            let ceiling =
                Duration::from_millis(10 * 2u64.pow(retry - 1)).min(Duration::from_millis(50));
            let samples: Vec<Duration> = (0..2_000).map(|_| policy.backoff(retry)).collect();
            assert!(
                samples.iter().all(|delay| *delay <= ceiling),
                "retry {retry}"
            );
            // Full jitter: spread over the whole range, not bunched at the ceiling.
            assert!(
                samples.iter().any(|delay| *delay < ceiling / 4),
                "retry {retry}"
            );
            assert!(
                samples.iter().any(|delay| *delay > ceiling * 3 / 4),
                "retry {retry}"
            );
        }
        // Huge retry numbers saturate instead of overflowing.
        assert!(policy.backoff(u32::MAX) <= Duration::from_millis(50));
    }

    fn answer(status: u16, body: &str) -> Result<Response<Bytes>, ClientError> {
        let mut response = Response::new(Bytes::copy_from_slice(body.as_bytes()));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(response)
    }

    #[test]
    fn only_safe_outcomes_are_retried() {
        let io = || std::io::Error::other("reset");
        for idempotent in [false, true] {
            assert!(retryable(
                idempotent,
                &answer(200, r#"{"errcode":-1,"errmsg":"system error"}"#)
            ));
            assert!(retryable(idempotent, &answer(503, "")));
            assert!(retryable(idempotent, &Err(ClientError::connect(io()))));
            assert!(!retryable(
                idempotent,
                &answer(200, r#"{"errcode":0,"errmsg":"ok"}"#)
            ));
            assert!(!retryable(
                idempotent,
                &answer(200, r#"{"errcode":40001,"errmsg":"x"}"#)
            ));
            assert!(!retryable(
                idempotent,
                &answer(200, r#"{"errcode":45009,"errmsg":"limit"}"#)
            ));
            assert!(!retryable(idempotent, &answer(404, "")));
            assert!(!retryable(idempotent, &Err(ClientError::CircuitOpen)));
            assert!(!retryable(
                idempotent,
                &Err(ClientError::Token(Box::new(ClientError::CircuitOpen)))
            ));
            // Ambiguous: WeChat may have carried the request out.
            assert_eq!(retryable(idempotent, &answer(500, "")), idempotent);
            assert_eq!(retryable(idempotent, &answer(502, "")), idempotent);
            assert_eq!(retryable(idempotent, &answer(504, "")), idempotent);
            assert_eq!(
                retryable(
                    idempotent,
                    &Err(ClientError::Timeout(Duration::from_secs(1)))
                ),
                idempotent
            );
            assert_eq!(
                retryable(idempotent, &Err(ClientError::transport(io()))),
                idempotent
            );
        }
    }
}
