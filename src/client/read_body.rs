//! [`ReadBodyLayer`]: turns any tower HTTP client into the buffered, typed-error service the
//! other client layers work on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project::pin_project;
use serde::Deserialize;
use tower_layer::Layer;
use tower_service::Service;

use super::{ClientError, ErrorClass};
use crate::BoxError;
use crate::macros::define_inner_service_accessors;

/// WeChat's `errcode` of a buffered answer, put in its extensions by [`ReadBody`] so later
/// layers need not parse the body again. Absent when the body has no `errcode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrCode(pub i64);

/// The answer's `errcode`: from [`ErrCode`] when [`ReadBody`] put it there, otherwise read
/// from the JSON body. `None` when there is none (token answers and most successes).
pub fn errcode(response: &Response<Bytes>) -> Option<i64> {
    match response.extensions().get::<ErrCode>() {
        Some(ErrCode(code)) => Some(*code),
        None => parse_errcode(response.body()),
    }
}

/// The failure class of a buffered answer: `None` for a success, the status's class for a
/// non-2xx status (checked first: a gateway's page is no answer of WeChat's), otherwise the
/// errcode's.
pub(crate) fn answer_class(response: &Response<Bytes>) -> Option<ErrorClass> {
    let status = response.status();
    if status.is_server_error() {
        return Some(ErrorClass::Unavailable);
    }
    if let Some(code) = errcode(response).filter(|code| *code != 0) {
        return Some(ErrorClass::of_errcode(code));
    }
    if !status.is_success() {
        return Some(ErrorClass::Rejected);
    }
    None
}

fn parse_errcode(body: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Probe {
        errcode: Option<i64>,
    }
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<Probe>(body).ok()?.errcode
}

/// Applies [`ReadBody`]: reads each answer's body (up to a limit) into [`Bytes`], notes its
/// `errcode` in an [`ErrCode`] extension, and turns the HTTP client's errors into
/// [`ClientError`] (`Connect` when nothing was sent, `Transport` otherwise).
///
/// ```
/// use tower_wechat::client::{ReadBodyLayer, http_client};
///
/// let service = tower::ServiceBuilder::new()
///     .layer(ReadBodyLayer::new())
///     .service(http_client().unwrap());
/// # let _ = service;
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct ReadBodyLayer {
    limit: usize,
}

impl ReadBodyLayer {
    /// The default limit on an answer's body: 1 MiB. WeChat's JSON answers are far smaller.
    pub const DEFAULT_LIMIT: usize = 1024 * 1024;

    /// A layer with the default body limit.
    pub fn new() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
        }
    }

    /// The largest body read, in bytes; a larger one is a [`ClientError::InvalidResponse`].
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }
}

impl Default for ReadBodyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ReadBodyLayer {
    type Service = ReadBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadBody {
            inner,
            limit: self.limit,
        }
    }
}

/// Reads answers into [`Bytes`]; see [`ReadBodyLayer`].
#[derive(Clone, Debug)]
pub struct ReadBody<S> {
    inner: S,
    limit: usize,
}

impl<S> ReadBody<S> {
    /// Wraps `inner` with the default body limit.
    ///
    /// ```
    /// use tower_wechat::client::{ReadBody, http_client};
    ///
    /// let service = ReadBody::new(http_client().unwrap());
    /// # let _ = service;
    /// ```
    pub fn new(inner: S) -> Self {
        ReadBodyLayer::new().layer(inner)
    }

    /// A [`ReadBodyLayer`] with the default body limit.
    ///
    /// ```
    /// use tower_wechat::client::ReadBody;
    ///
    /// let layer = ReadBody::<()>::layer();
    /// # let _ = layer;
    /// ```
    pub fn layer() -> ReadBodyLayer {
        ReadBodyLayer::new()
    }

    define_inner_service_accessors!();
}

impl<S, Req, B> Service<Req> for ReadBody<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<Bytes>;
    type Error = ClientError;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| ClientError::from_http(error.into()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture {
            state: State::Calling {
                future: self.inner.call(request),
                limit: self.limit,
            },
        }
    }
}

/// Response future of [`ReadBody`].
#[pin_project]
pub struct ResponseFuture<F, B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    #[pin]
    state: State<F, B>,
}

#[pin_project(project = StateProj)]
#[expect(
    clippy::large_enum_variant,
    reason = "pinned once per call; boxing the response head would add an allocation per call"
)]
enum State<F, B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    Calling {
        #[pin]
        future: F,
        limit: usize,
    },
    Reading {
        #[pin]
        body: Collect<Limited<B>>,
        parts: Option<http::response::Parts>,
        limit: usize,
    },
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Bytes>, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Calling { future, limit } => {
                    let response = ready!(future.poll(cx))
                        .map_err(|error| ClientError::from_http(error.into()))?;
                    let limit = *limit;
                    let (parts, body) = response.into_parts();
                    state.set(State::Reading {
                        body: Limited::new(body, limit).collect(),
                        parts: Some(parts),
                        limit,
                    });
                }
                StateProj::Reading { body, parts, limit } => {
                    let collected = ready!(body.poll(cx));
                    let parts = parts.take().expect("polled after completion");
                    let bytes = match collected {
                        Ok(collected) => collected.to_bytes(),
                        Err(error) if error.is::<LengthLimitError>() => {
                            return Poll::Ready(Err(ClientError::InvalidResponse(format!(
                                "body over {limit} bytes"
                            ))));
                        }
                        Err(error) => return Poll::Ready(Err(ClientError::from_http(error))),
                    };
                    let mut response = Response::from_parts(parts, bytes);
                    if let Some(code) = parse_errcode(response.body()) {
                        response.extensions_mut().insert(ErrCode(code));
                    }
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcode_is_read_from_json_only() {
        assert_eq!(
            parse_errcode(br#"{"errcode":40001,"errmsg":"x"}"#),
            Some(40001)
        );
        assert_eq!(parse_errcode(br#" {"errmsg":"ok","errcode":-1}"#), Some(-1));
        assert_eq!(
            parse_errcode(br#"{"access_token":"t","expires_in":7200}"#),
            None
        );
        assert_eq!(parse_errcode(b"<html>502</html>"), None);
        assert_eq!(parse_errcode(br#"{"errcode":"#), None);
        assert_eq!(parse_errcode(b""), None);
    }
}
