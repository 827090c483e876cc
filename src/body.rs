//! Response bodies: [`ResponseBody`], the body of this crate's layers — the inner service's
//! body, or a short one the layer wrote itself (a handshake answer, a rejection, an ack, a
//! replayed reply) — and how a layer reads a handler's reply whole when it must (to store
//! it for replay, to encrypt it): at most [`REPLY_LIMIT`] bytes, one policy for a reply that
//! cannot be read.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use pin_project::pin_project;
use std::fmt;

use crate::BoxError;

/// The largest reply a layer reads whole: 64 KiB.
///
/// [`DedupLayer`](crate::DedupLayer) reads the handler's reply to store it for WeChat's
/// retries, and [`VerifyLayer`](crate::VerifyLayer) in safe mode reads it to encrypt it.
/// WeChat's passive replies are a few KiB at most (a text reply's content is limited to
/// 2 048 bytes, a news reply to 8 articles). A reply that is larger, or whose body fails
/// while being read, is a fault of the handler: the layer logs one ERROR line and answers
/// `500` (so WeChat retries, and Dedup frees the key for that retry).
///
/// ```
/// assert_eq!(tower_wechat::body::REPLY_LIMIT, 64 * 1024);
/// ```
pub const REPLY_LIMIT: usize = 64 * 1024;

/// Response body of this crate's layers: the inner service's body, or a short body the layer
/// wrote itself (a handshake answer, a rejection, an ack, a replayed reply).
#[pin_project]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    inner: Inner<B>,
}

#[pin_project(project = InnerProj)]
#[derive(Debug)]
enum Inner<B> {
    Own(#[pin] Full<Bytes>),
    Service(#[pin] B),
}

impl<B> ResponseBody<B> {
    pub(crate) fn own(body: Full<Bytes>) -> Self {
        Self {
            inner: Inner::Own(body),
        }
    }

    pub(crate) fn service(body: B) -> Self {
        Self {
            inner: Inner::Service(body),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().inner.project() {
            InnerProj::Own(body) => body.poll_frame(cx).map_err(|never| match never {}),
            InnerProj::Service(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Own(body) => body.is_end_stream(),
            Inner::Service(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Own(body) => body.size_hint(),
            Inner::Service(body) => body.size_hint(),
        }
    }
}

/// A short plain-text answer written by a layer (a rejection, a "busy" 503).
pub(crate) fn plain_text(status: StatusCode, text: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Reads a reply body whole, up to [`REPLY_LIMIT`] bytes; see there for the policy.
#[pin_project]
pub(crate) struct CollectReply<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    #[pin]
    inner: Collect<Limited<B>>,
}

impl<B> CollectReply<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(body: B) -> Self {
        Self {
            inner: Limited::new(body, REPLY_LIMIT).collect(),
        }
    }
}

impl<B> Future for CollectReply<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    /// The body, or the `500` to answer instead (already logged).
    type Output = Result<Bytes, Response<Full<Bytes>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().inner.poll(cx)) {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<LengthLimitError>() => {
                tracing::error!(
                    limit = REPLY_LIMIT,
                    "the handler's reply is larger than the limit; answering 500"
                );
                Err(plain_text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "reply too large",
                ))
            }
            Err(error) => {
                tracing::error!(%error, "the handler's reply body failed; answering 500");
                Err(plain_text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "reply body failed",
                ))
            }
        })
    }
}

/// A processed callback's response as stored: status, content type and body.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status code.
    pub status: StatusCode,
    /// The `Content-Type`, if it had one.
    pub content_type: Option<HeaderValue>,
    /// The body.
    pub body: Bytes,
}

impl StoredResponse {
    /// The response to replay.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body.clone()));
        *response.status_mut() = self.status;
        if let Some(content_type) = &self.content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type.clone());
        }
        response
    }

    /// Serialises for a byte store: `status`, `\n`, content type, `\n`, body.
    pub fn encode(&self) -> Vec<u8> {
        let content_type = self
            .content_type
            .as_ref()
            .map_or(&b""[..], |v| v.as_bytes());
        let mut out = Vec::with_capacity(5 + content_type.len() + self.body.len());
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(content_type);
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads what [`encode`](Self::encode) wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptResponse> {
        let corrupt = || CorruptResponse;
        let (status, rest) = split_line(bytes).ok_or_else(corrupt)?;
        let (content_type, body) = split_line(rest).ok_or_else(corrupt)?;
        Ok(Self {
            status: StatusCode::from_bytes(status).map_err(|_| corrupt())?,
            content_type: match content_type {
                [] => None,
                value => Some(HeaderValue::from_bytes(value).map_err(|_| corrupt())?),
            },
            body: Bytes::copy_from_slice(body),
        })
    }
}

fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == b'\n')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

impl fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body is a reply to a user: its length, not its words.
        f.debug_struct("StoredResponse")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Bytes that are not an encoded [`StoredResponse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptResponse;

impl fmt::Display for CorruptResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an encoded response")
    }
}

impl std::error::Error for CorruptResponse {}
