//! [`ClientError`], the error of every client layer, and [`ApiError`], WeChat's own.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// A shareable error source: the client's errors are `Clone`, so one failed token fetch can
/// be handed to every caller that waited for it.
pub type SharedError = Arc<dyn StdError + Send + Sync>;

/// WeChat answered with a non-zero `errcode`.
///
/// `errmsg` is WeChat's text as it came; it never holds the access_token or appsecret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// WeChat's error code, e.g. `40001` (invalid access_token) or `-1` (system busy).
    pub errcode: i64,
    /// WeChat's message for it.
    pub errmsg: String,
}

impl ApiError {
    /// `-1`: WeChat is busy; the call was not carried out and can be tried again.
    pub fn is_busy(&self) -> bool {
        self.errcode == -1
    }

    /// `40001`, `40014` or `42001`: the access_token was refused (invalid, malformed or
    /// expired).
    pub fn is_token_error(&self) -> bool {
        is_token_errcode(self.errcode)
    }

    /// What kind of refusal this is; see [`ErrorClass::of_errcode`].
    ///
    /// ```
    /// use tower_wechat::client::{ApiError, ErrorClass};
    ///
    /// let error = ApiError { errcode: 45009, errmsg: "reach max api daily quota limit".into() };
    /// assert_eq!(error.class(), ErrorClass::Quota);
    /// ```
    pub fn class(&self) -> ErrorClass {
        ErrorClass::of_errcode(self.errcode)
    }
}

/// What kind of failure a [`ClientError`] is, and so what to do about it.
///
/// | class | errcodes and errors | retried by [`RetryPolicy`](super::RetryPolicy) | counts for the [breaker](super::CircuitBreakerLayer) | what to do |
/// |---|---|---|---|---|
/// | `Unavailable` | `-1` (busy), HTTP 5xx, [`Connect`](ClientError::Connect), [`Transport`](ClientError::Transport), [`Timeout`](ClientError::Timeout) | yes¹ | yes | try again later |
/// | `Quota` | `45009` (daily API quota), `45011` (API minute quota), `45015` (past the 48 h reply window), `45033` (WeCom: too many concurrent calls), `45047` (customer-service messages: at most 5 within 48 h of the user's message) | no | no | wait for the quota to reset (`45009`: `/cgi-bin/clear_quota`), or wait for the user to write again |
/// | `Permission` | `48001` (API not authorized), `48004` (API banned), `50001` / `50002` (not authorized / limited), `60011` (WeCom: no privilege), `301002` (WeCom: the token's app may not act for that agentid), `82001` (WeCom: recipients out of the app's range) | no | no | grant the permission; not to be retried |
/// | `Configuration` | `40013` (invalid appid), `40125` (invalid appsecret), `41002` / `41004` (appid / secret missing), `40164` / `61004` (caller IP not whitelisted), `60020` (WeCom: IP not trusted), `40056` (WeCom: invalid agentid), `40037` (invalid template_id) | no | no | fix the configuration |
/// | `UserRefused` | `43101` (the user refused or used up the subscription), `43004` (the user does not follow the account), `43019` (the user is blacklisted) | no | no | permanent for that user until they act |
/// | `Token` | `40001` / `40014` / `42001` still refused after the one refresh, `41001`; [`ClientError::Token`] (no access_token could be had) | no² | no | see the inner error |
/// | `CircuitOpen` | [`ClientError::CircuitOpen`] | no | no³ | not sent: send later |
/// | `Rejected` | any other errcode (a bad openid, argument, page...), HTTP 4xx | no | no | fix the request |
/// | `InvalidInput` | [`ClientError::InvalidInput`]: refused before sending | no | no | fix the input |
/// | `InvalidResponse` | [`ClientError::InvalidResponse`]: an answer that is not WeChat's JSON | no | yes | a proxy or outage in the way |
/// | `Store` | [`ClientError::Store`]: the shared token store failed | no | no | not sent: send later |
///
/// ¹ Right away only when nothing was carried out (`-1`, 503, connect failures); after an
/// ambiguous failure (a timeout, a dropped connection, another 5xx) only for requests marked
/// [`Idempotent`](super::Idempotent). ² The token source retries its own fetches, and the
/// access-token layer replaces a refused token once. ³ Refused by the breaker itself.
///
/// A failed token fetch ([`ClientError::Token`]) takes the class of WeChat's answer to the
/// fetch when that is `Quota`, `Permission` or `Configuration`; errcode 40001 from a token
/// endpoint (a wrong appsecret or corpsecret) is `Configuration` too. WeChat's errcodes that say the call was not
/// understood at all and are not listed here fall in `Rejected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// WeChat could not take the call now (busy, 5xx, no connection, no answer).
    Unavailable,
    /// A quota or rate limit was reached.
    Quota,
    /// The account or app lacks the permission for this call.
    Permission,
    /// The account, app or server is set up wrongly (secret, appid, IP whitelist...).
    Configuration,
    /// The user refused the message, or cannot receive it.
    UserRefused,
    /// The access_token was refused, or none could be had.
    Token,
    /// The circuit breaker refused the call.
    CircuitOpen,
    /// WeChat refused the request as it is.
    Rejected,
    /// The client refused the input before sending.
    InvalidInput,
    /// WeChat's answer could not be understood.
    InvalidResponse,
    /// The shared token store failed.
    Store,
}

impl ErrorClass {
    /// The class of WeChat's (or WeCom's) `errcode`; see the table on [`ErrorClass`].
    /// `0` is not an error and maps to `Rejected` only because it must map to something.
    ///
    /// ```
    /// use tower_wechat::client::ErrorClass;
    ///
    /// assert_eq!(ErrorClass::of_errcode(-1), ErrorClass::Unavailable);
    /// assert_eq!(ErrorClass::of_errcode(43101), ErrorClass::UserRefused);
    /// assert_eq!(ErrorClass::of_errcode(60020), ErrorClass::Configuration);
    /// assert_eq!(ErrorClass::of_errcode(47003), ErrorClass::Rejected);
    /// ```
    pub fn of_errcode(errcode: i64) -> Self {
        match errcode {
            -1 => Self::Unavailable,
            45009 | 45011 | 45015 | 45033 | 45047 => Self::Quota,
            48001 | 48004 | 50001 | 50002 | 60011 | 82001 | 301002 => Self::Permission,
            40013 | 40125 | 41002 | 41004 | 40164 | 61004 | 60020 | 40056 | 40037 => {
                Self::Configuration
            }
            43101 | 43004 | 43019 => Self::UserRefused,
            40001 | 40014 | 42001 | 41001 => Self::Token,
            _ => Self::Rejected,
        }
    }

    /// Whether the [`RetryPolicy`](super::RetryPolicy) may try the call again: only
    /// `Unavailable` (and then, after an ambiguous failure, only an idempotent request).
    ///
    /// ```
    /// use tower_wechat::client::ErrorClass;
    ///
    /// assert!(ErrorClass::Unavailable.is_retryable());
    /// assert!(!ErrorClass::Quota.is_retryable());
    /// ```
    pub fn is_retryable(self) -> bool {
        self == Self::Unavailable
    }

    /// Whether the failure counts against WeChat's health in the circuit breaker: only
    /// `Unavailable` and `InvalidResponse`. A quota, permission, configuration or user error
    /// of one account says nothing about the API, so it never opens the breaker for the
    /// others.
    ///
    /// ```
    /// use tower_wechat::client::ErrorClass;
    ///
    /// assert!(ErrorClass::Unavailable.counts_for_breaker());
    /// assert!(!ErrorClass::Configuration.counts_for_breaker());
    /// ```
    pub fn counts_for_breaker(self) -> bool {
        matches!(self, Self::Unavailable | Self::InvalidResponse)
    }

    /// A short lowercase name (`quota`, `user_refused`, ...), e.g. a metrics label.
    ///
    /// ```
    /// use tower_wechat::client::ErrorClass;
    ///
    /// assert_eq!(ErrorClass::UserRefused.as_str(), "user_refused");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Quota => "quota",
            Self::Permission => "permission",
            Self::Configuration => "configuration",
            Self::UserRefused => "user_refused",
            Self::Token => "token",
            Self::CircuitOpen => "circuit_open",
            Self::Rejected => "rejected",
            Self::InvalidInput => "invalid_input",
            Self::InvalidResponse => "invalid_response",
            Self::Store => "store",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `40001` (invalid credential), `40014` (invalid access_token), `42001` (expired).
pub(crate) fn is_token_errcode(errcode: i64) -> bool {
    matches!(errcode, 40001 | 40014 | 42001)
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeChat API error {}: {}", self.errcode, self.errmsg)
    }
}

impl StdError for ApiError {}

/// What went wrong with a call to WeChat's API.
///
/// No variant holds the appsecret, the access_token or a request URL (which would carry
/// them); `Display` and `Debug` are safe to log.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// WeChat answered with a non-zero `errcode`.
    Api(ApiError),
    /// An HTTP status other than 2xx, without an `errcode` in the body.
    Status(StatusCode),
    /// The connection could not be made; the request was not sent.
    Connect(SharedError),
    /// The exchange failed after the request may have been sent (connection dropped,
    /// body unreadable): WeChat may or may not have carried it out.
    Transport(SharedError),
    /// No answer within the per-attempt timeout; WeChat may or may not have carried the
    /// request out.
    Timeout(Duration),
    /// The circuit breaker is open: the call was refused without being sent.
    CircuitOpen,
    /// The access_token could not be had; the call was not sent.
    Token(Box<ClientError>),
    /// The shared token store (Redis) failed.
    Store(SharedError),
    /// WeChat's answer could not be understood (not JSON, missing fields, too large).
    InvalidResponse(String),
    /// The input was refused before anything was sent (a bad base URL, an unencodable
    /// request).
    InvalidInput(String),
}

impl ClientError {
    /// WeChat's errcode, when this is an [`ApiError`] (also one met while fetching a token).
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api(error) => Some(error.errcode),
            Self::Token(inner) => inner.errcode(),
            _ => None,
        }
    }

    /// Whether the request certainly did not reach WeChat (refused by the breaker, no
    /// connection, no token, bad input).
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            Self::Connect(_)
                | Self::CircuitOpen
                | Self::Token(_)
                | Self::Store(_)
                | Self::InvalidInput(_)
        )
    }

    /// What kind of failure this is; see [`ErrorClass`] for the table.
    ///
    /// ```
    /// use tower_wechat::client::{ApiError, ClientError, ErrorClass};
    ///
    /// let quota = ClientError::Api(ApiError { errcode: 45047, errmsg: "out of limit".into() });
    /// assert_eq!(quota.class(), ErrorClass::Quota);
    /// assert!(!quota.is_retryable() && !quota.counts_for_breaker());
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api(error) => error.class(),
            Self::Status(status) if status.is_server_error() => ErrorClass::Unavailable,
            Self::Status(_) => ErrorClass::Rejected,
            Self::Connect(_) | Self::Transport(_) | Self::Timeout(_) => ErrorClass::Unavailable,
            Self::CircuitOpen => ErrorClass::CircuitOpen,
            // 40001 from a token endpoint: the appsecret (WeChat) or corpsecret (WeCom) is
            // wrong.
            Self::Token(inner) if inner.errcode() == Some(40001) => ErrorClass::Configuration,
            Self::Token(inner) => match inner.class() {
                class
                @ (ErrorClass::Quota | ErrorClass::Permission | ErrorClass::Configuration) => class,
                _ => ErrorClass::Token,
            },
            Self::Store(_) => ErrorClass::Store,
            Self::InvalidResponse(_) => ErrorClass::InvalidResponse,
            Self::InvalidInput(_) => ErrorClass::InvalidInput,
        }
    }

    /// Whether trying again soon may succeed ([`ErrorClass::is_retryable`]). When
    /// [`not_sent`](Self::not_sent) is `false` the first attempt may have been carried out:
    /// repeat only a request that WeChat de-duplicates.
    pub fn is_retryable(&self) -> bool {
        self.class().is_retryable()
    }

    /// Whether this failure counts against WeChat's health in the circuit breaker
    /// ([`ErrorClass::counts_for_breaker`]).
    pub fn counts_for_breaker(&self) -> bool {
        self.class().counts_for_breaker()
    }

    #[cfg(test)]
    pub(crate) fn connect(error: impl StdError + Send + Sync + 'static) -> Self {
        Self::Connect(Arc::new(error))
    }

    #[cfg(test)]
    pub(crate) fn transport(error: impl StdError + Send + Sync + 'static) -> Self {
        Self::Transport(Arc::new(error))
    }

    /// Sorts an HTTP client's error: connect failures (hyper-util's legacy client) are
    /// known not to have sent anything; everything else may have.
    pub(crate) fn from_http(error: Box<dyn StdError + Send + Sync>) -> Self {
        let not_connected = error
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect);
        match error.downcast::<ClientError>() {
            Ok(error) => *error,
            Err(error) if not_connected => Self::Connect(Arc::from(error)),
            Err(error) => Self::Transport(Arc::from(error)),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api(error) => error.fmt(f),
            Self::Status(status) => write!(f, "WeChat answered HTTP {status}"),
            Self::Connect(error) => write!(f, "could not connect to WeChat: {error}"),
            Self::Transport(error) => write!(f, "the exchange with WeChat failed: {error}"),
            Self::Timeout(after) => write!(f, "no answer from WeChat within {after:?}"),
            Self::CircuitOpen => f.write_str("circuit breaker open: call refused without sending"),
            Self::Token(error) => write!(f, "could not get an access_token: {error}"),
            Self::Store(error) => write!(f, "the shared token store failed: {error}"),
            Self::InvalidResponse(why) => write!(f, "unexpected answer from WeChat: {why}"),
            Self::InvalidInput(why) => write!(f, "invalid input: {why}"),
        }
    }
}

impl StdError for ClientError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Api(error) => Some(error),
            Self::Connect(error) | Self::Transport(error) | Self::Store(error) => Some(&**error),
            Self::Token(error) => Some(&**error),
            _ => None,
        }
    }
}

impl From<ApiError> for ClientError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}
