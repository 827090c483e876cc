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
