//! Why [`Verify`](super::Verify) refused a request, and the response it sends for it.

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use crate::message::ParseError;

/// Why a callback was refused. Each maps to one status code; its `Display` is the short
/// plain-text body of the response and the `reason` field of the warning that is logged.
///
/// | rejection | status |
/// |---|---|
/// | missing, malformed or repeated query parameter, unreadable body, malformed XML, encrypted message without a key, no `<Encrypt>`, undecryptable `Encrypt` | 400 Bad Request |
/// | signature or `msg_signature` mismatch, timestamp outside the window, nonce reused, message for another receive id, `openid` not the sender | 403 Forbidden |
/// | method other than GET and POST | 405 Method Not Allowed |
/// | body over the limit | 413 Payload Too Large |
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
    /// The body is not a WeChat XML message.
    MalformedXml(ParseError),
    /// The message is encrypted (safe mode) and no EncodingAESKey is configured.
    EncryptedWithoutKey,
    /// An encrypted callback whose body has no `<Encrypt>`.
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
    /// The status code sent for this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingParameter(_)
            | Self::InvalidParameter(_)
            | Self::DuplicateParameter(_)
            | Self::BodyRead
            | Self::MalformedXml(_)
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
        }
    }

    /// Logs the rejection and turns it into a plain-text response.
    pub(crate) fn into_response(self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let status = self.status();
        tracing::warn!(
            %method,
            path,
            status = status.as_u16(),
            reason = %self,
            "rejected WeChat callback"
        );
        let mut response = crate::body::plain_text(status, self.to_string());
        if self == Self::MethodNotAllowed {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        }
        response
    }
}

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
            Self::MalformedXml(error) => write!(f, "malformed XML: {error}"),
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
            Self::MalformedXml(error) => Some(error),
            #[cfg(feature = "crypto")]
            Self::Decrypt(error) => Some(error),
            _ => None,
        }
    }
}
