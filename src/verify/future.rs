//! [`ResponseFuture`]: reads the body, then calls the inner service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, request};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use pin_project::pin_project;
use tower_service::Service;

use crate::message::{Message, ParseError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

use super::body::ResponseBody;
use super::layer::Shared;
use super::query::CallbackQuery;
use super::rejection::Rejection;

/// Response future of [`Verify`](super::Verify).
#[pin_project]
pub struct ResponseFuture<B, S>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>>,
{
    #[pin]
    state: State<B, S>,
}

#[pin_project(project = StateProj)]
#[expect(
    clippy::large_enum_variant,
    reason = "the future is pinned once per request; boxing the request parts would add an allocation per callback"
)]
enum State<B, S>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>>,
{
    /// Answered without the inner service: handshake or rejection.
    Answered(Option<Response<Full<Bytes>>>),
    /// Reading a POST body.
    Reading {
        #[pin]
        body: Collect<Limited<B>>,
        next: Option<Next<S>>,
    },
    /// Waiting for the inner service.
    Calling(#[pin] S::Future),
}

/// What the inner call needs once the body is read.
struct Next<S> {
    inner: S,
    shared: Arc<Shared>,
    parts: request::Parts,
    query: CallbackQuery,
    encrypted: bool,
    limit: usize,
}

impl<B, S> ResponseFuture<B, S>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>>,
{
    pub(crate) fn answered(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Answered(Some(response)),
        }
    }

    pub(crate) fn read_body(
        inner: S,
        shared: Arc<Shared>,
        request: Request<B>,
        query: CallbackQuery,
        encrypted: bool,
    ) -> Self {
        let (parts, body) = request.into_parts();
        let limit = shared.body_limit();
        let next = Next {
            inner,
            shared,
            parts,
            query,
            encrypted,
            limit,
        };
        Self {
            state: State::Reading {
                body: Limited::new(body, limit).collect(),
                next: Some(next),
            },
        }
    }
}

impl<B, S, ResBody> Future for ResponseFuture<B, S>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Answered(response) => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::own)));
                }
                StateProj::Reading { body, next } => {
                    let collected = ready!(body.poll(cx));
                    let next = next.take().expect("polled after completion");
                    match next.call(collected.map(|c| c.to_bytes())) {
                        Ok(future) => state.set(State::Calling(future)),
                        Err(response) => state.set(State::Answered(Some(response))),
                    }
                }
                StateProj::Calling(future) => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::service)));
                }
            }
        }
    }
}

impl<S> Next<S>
where
    S: Service<Request<Full<Bytes>>>,
{
    /// Checks the nonce, parses the body and calls the inner service, or answers with the
    /// rejection.
    #[expect(
        clippy::result_large_err,
        reason = "the rejection response becomes the future's output as it is"
    )]
    fn call(self, body: Result<Bytes, BoxError>) -> Result<S::Future, Response<Full<Bytes>>> {
        let Self {
            mut inner,
            shared,
            mut parts,
            mut query,
            encrypted,
            limit,
        } = self;
        let parsed = match body {
            Ok(bytes) => shared
                .remember(query.timestamp, &query.nonce, &bytes)
                .and_then(|redelivered| {
                    query.redelivered = redelivered;
                    let message = Message::parse(&bytes).map_err(|error| match error {
                        ParseError::MissingField(_) if encrypted => Rejection::EncryptedWithoutKey,
                        error => Rejection::MalformedXml(error),
                    })?;
                    Ok((message, bytes))
                }),
            Err(error) if error.is::<LengthLimitError>() => Err(Rejection::PayloadTooLarge(limit)),
            Err(_) => Err(Rejection::BodyRead),
        };
        match parsed {
            Ok((message, bytes)) => {
                parts.extensions.insert(query);
                parts.extensions.insert(message);
                Ok(inner.call(Request::from_parts(parts, Full::new(bytes))))
            }
            Err(rejection) => Err(rejection.into_response(&parts.method, parts.uri.path())),
        }
    }
}
