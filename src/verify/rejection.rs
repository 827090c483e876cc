//! Why [`Verify`](super::Verify) refused a request, and the response it sends for it.

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use crate::message::{Format, ParseError};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::redact::{LogBudget, Permit, Untrusted};

/// Why a callback was refused. Each maps to one status code; its `Display` is the short
/// plain-text body of the response and the `reason` field of the warning that is logged.
///
/// | rejection | status |
/// |---|---|
/// | missing, malformed or repeated query parameter, unreadable body, malformed XML or JSON, encrypted message without a key, no `Encrypt`, undecryptable `Encrypt` | 400 Bad Request |
/// | signature or `msg_signature` mismatch, timestamp outside the window, nonce reused, message for another receive id, `openid` not the sender | 403 Forbidden |
/// | method other than GET and POST | 405 Method Not Allowed |
/// | body over the limit | 413 Payload Too Large |
/// | body not read by its deadline ([`VerifyLayer::body_timeout`](super::VerifyLayer::body_timeout)) | 408 Request Timeout |
///
/// The response body is a fixed text per reason, never anything the request held. The
/// warning names the reason, the method and the path (cut to 64 bytes, control characters
/// escaped; left out when the current span already carries a `path`, as TimingLayer's does).
/// At most 10 warnings are logged per 10 s per layer; the rest are counted (see
/// [`VerifyHandle`](super::VerifyHandle)) and the next warning logged says how many were
/// left out (`suppressed`).
///
/// 403 rather than 401 because there is nothing a client could send in an
/// `Authorization` header: the request is signed or it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// A required query parameter is absent or empty.
    MissingParameter(&'static str),
    /// A query parameter does not have the shape WeChat gives it.
    InvalidParameter(&'static str),
    /// A query parameter appears more than once.
    DuplicateParameter(&'static str),
    /// No configured token produces the request's signature.
    SignatureMismatch,
    /// The timestamp is further from the server's clock than the replay window.
    StaleTimestamp,
    /// This timestamp and nonce were already accepted with another body.
    ReplayedNonce,
    /// The method is not GET (handshake) or POST (message).
    MethodNotAllowed,
    /// The body is larger than the configured limit (the limit in bytes).
    PayloadTooLarge(usize),
    /// The body could not be read to the end.
    BodyRead,
    /// The body was not read by its deadline, counted from the request's arrival.
    BodyTimeout,
    /// The body is not a WeChat XML message.
    MalformedXml(ParseError),
    /// The body (or the decrypted message) is JSON but not a WeChat JSON message.
    MalformedJson(ParseError),
    /// The message is encrypted (safe mode) and no EncodingAESKey is configured.
    EncryptedWithoutKey,
    /// An encrypted callback whose body has no `Encrypt` (`<Encrypt>` in XML, `"Encrypt"` in
    /// JSON).
    MissingEncrypt,
    /// No configured token produces the request's `msg_signature` over `Encrypt`.
    MessageSignatureMismatch,
    /// `Encrypt` could not be decrypted with any configured key.
    #[cfg(feature = "crypto")]
    Decrypt(crate::crypto::CryptoError),
    /// The decrypted message was encrypted for another app id / CorpID.
    WrongReceiveId,
    /// The `openid` query parameter is not the message's `FromUserName`.
    OpenidMismatch,
}

impl Rejection {
    /// [`MalformedXml`](Self::MalformedXml) or [`MalformedJson`](Self::MalformedJson), by
    /// the format of `body`, the bytes that did not parse.
    pub(crate) fn malformed(body: &[u8], error: ParseError) -> Self {
        match Format::detect(body) {
            Format::Xml => Self::MalformedXml(error),
            Format::Json => Self::MalformedJson(error),
        }
    }

    /// The status code sent for this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingParameter(_)
            | Self::InvalidParameter(_)
            | Self::DuplicateParameter(_)
            | Self::BodyRead
            | Self::MalformedXml(_)
            | Self::MalformedJson(_)
            | Self::EncryptedWithoutKey
            | Self::MissingEncrypt => StatusCode::BAD_REQUEST,
            #[cfg(feature = "crypto")]
            Self::Decrypt(_) => StatusCode::BAD_REQUEST,
            Self::SignatureMismatch
            | Self::MessageSignatureMismatch
            | Self::StaleTimestamp
            | Self::ReplayedNonce
            | Self::WrongReceiveId
            | Self::OpenidMismatch => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// A short, stable name for this kind of rejection, for counters and metric labels:
    /// `signature_mismatch`, `malformed_xml`, `body_timeout` …
    ///
    /// ```
    /// use tower_wechat::verify::Rejection;
    ///
    /// assert_eq!(Rejection::SignatureMismatch.code(), "signature_mismatch");
    /// ```
    pub fn code(&self) -> &'static str {
        CODES[self.index()]
    }

    /// The index of [`code`](Self::code) in [`CODES`].
    pub(crate) fn index(&self) -> usize {
        match self {
            Self::MissingParameter(_) => 0,
            Self::InvalidParameter(_) => 1,
            Self::DuplicateParameter(_) => 2,
            Self::SignatureMismatch => 3,
            Self::StaleTimestamp => 4,
            Self::ReplayedNonce => 5,
            Self::MethodNotAllowed => 6,
            Self::PayloadTooLarge(_) => 7,
            Self::BodyRead => 8,
            Self::BodyTimeout => 9,
            Self::MalformedXml(_) => 10,
            Self::EncryptedWithoutKey => 11,
            Self::MissingEncrypt => 12,
            Self::MessageSignatureMismatch => 13,
            #[cfg(feature = "crypto")]
            Self::Decrypt(_) => 14,
            Self::WrongReceiveId => 15,
            Self::OpenidMismatch => 16,
            Self::MalformedJson(_) => 17,
        }
    }

    /// Counts the rejection, logs it (within the layer's log budget) and turns it into a
    /// plain-text response.
    pub(crate) fn into_response(
        self,
        log: &RejectionLog,
        method: &Method,
        path: &str,
    ) -> Response<Full<Bytes>> {
        let status = self.status();
        if let Permit::Log { suppressed } = log.count(&self) {
            let method = Untrusted(method.as_str());
            let suppressed = (suppressed > 0).then_some(suppressed);
            // TimingLayer's span already names the path: say it once per line.
            if tracing::Span::current().field("path").is_some() {
                tracing::warn!(
                    %method,
                    status = status.as_u16(),
                    reason = %self,
                    suppressed,
                    "rejected WeChat callback"
                );
            } else {
                tracing::warn!(
                    %method,
                    path = %Untrusted(path),
                    status = status.as_u16(),
                    reason = %self,
                    suppressed,
                    "rejected WeChat callback"
                );
            }
        }
        let mut response = crate::body::plain_text(status, self.to_string());
        match self {
            Self::MethodNotAllowed => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            }
            // The rest of the body is still on the way: the connection cannot be reused.
            Self::BodyTimeout | Self::PayloadTooLarge(_) => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// Rejections counted per reason, and the budget of their log lines.
#[derive(Debug, Default)]
pub(crate) struct RejectionLog {
    pub(crate) by_reason: [AtomicU64; CODES.len()],
    budget: LogBudget,
    /// Lines left out since start.
    pub(crate) suppressed: AtomicU64,
}

impl RejectionLog {
    /// Counts `rejection`; says whether its line may be logged.
    pub(crate) fn count(&self, rejection: &Rejection) -> Permit {
        self.by_reason[rejection.index()].fetch_add(1, Relaxed);
        let permit = self.budget.permit();
        if permit == Permit::Suppress {
            self.suppressed.fetch_add(1, Relaxed);
        }
        permit
    }
}

/// [`Rejection::code`] of each kind, by [`Rejection::index`].
pub(crate) const CODES: [&str; 18] = [
    "missing_parameter",
    "invalid_parameter",
    "duplicate_parameter",
    "signature_mismatch",
    "stale_timestamp",
    "replayed_nonce",
    "method_not_allowed",
    "payload_too_large",
    "body_read",
    "body_timeout",
    "malformed_xml",
    "encrypted_without_key",
    "missing_encrypt",
    "message_signature_mismatch",
    "decrypt",
    "wrong_receive_id",
    "openid_mismatch",
    "malformed_json",
];

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingParameter(name) => write!(f, "missing query parameter `{name}`"),
            Self::InvalidParameter(name) => write!(f, "malformed query parameter `{name}`"),
            Self::DuplicateParameter(name) => write!(f, "query parameter `{name}` is repeated"),
            Self::SignatureMismatch => f.write_str("signature does not match"),
            Self::StaleTimestamp => f.write_str("timestamp is outside the accepted window"),
            Self::ReplayedNonce => {
                f.write_str("timestamp and nonce were already used for another request")
            }
            Self::MethodNotAllowed => f.write_str("only GET and POST are accepted"),
            Self::PayloadTooLarge(limit) => write!(f, "body is larger than {limit} bytes"),
            Self::BodyRead => f.write_str("request body could not be read"),
            Self::BodyTimeout => f.write_str("request body was not received in time"),
            Self::MalformedXml(error) => write!(f, "malformed XML: {error}"),
            Self::MalformedJson(error) => match error {
                ParseError::MissingField(name) => write!(f, "malformed JSON: missing `{name}`"),
                ParseError::InvalidField(name) => {
                    write!(f, "malformed JSON: `{name}` is not valid")
                }
                error => write!(f, "malformed JSON: {error}"),
            },
            Self::EncryptedWithoutKey => {
                f.write_str("message is encrypted (safe mode) but no EncodingAESKey is configured")
            }
            Self::MissingEncrypt => f.write_str("encrypted callback has no <Encrypt>"),
            Self::MessageSignatureMismatch => f.write_str("msg_signature does not match"),
            #[cfg(feature = "crypto")]
            Self::Decrypt(error) => write!(f, "cannot decrypt: {error}"),
            Self::WrongReceiveId => f.write_str("message is encrypted for another app id"),
            Self::OpenidMismatch => f.write_str("openid does not match FromUserName"),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MalformedXml(error) | Self::MalformedJson(error) => Some(error),
            #[cfg(feature = "crypto")]
            Self::Decrypt(error) => Some(error),
            _ => None,
        }
    }
}
