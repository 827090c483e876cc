//! [`ResponseFuture`]: reads the body, calls the inner service, and in safe mode encrypts
//! the reply (in the envelope of the callback's format); a reply to a JSON callback goes out
//! as JSON.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header, request, response};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use pin_project::pin_project;
use tower_service::Service;

use crate::message::{Format, Message, ParseError, Reply, encrypt_field};

use super::deadline::BodyDeadline;
use super::rejection::Rejection;
use super::state::{PendingSignature, Shared, Verified};
use crate::BoxError;
use crate::body::{CollectReply, ResponseBody};
use crate::hook::{Arrival, CallbackHook, Recovery, VerifiedBody};
use crate::message::CallbackQuery;

/// Response future of [`Verify`](super::Verify).
#[pin_project]
pub struct ResponseFuture<B, S, ResBody>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    #[pin]
    state: State<B, S, ResBody>,
}

#[pin_project(project = StateProj)]
#[expect(
    clippy::large_enum_variant,
    reason = "the future is pinned once per request; boxing the request parts would add an allocation per callback"
)]
enum State<B, S, ResBody>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    /// Answered without the inner service: handshake or rejection.
    Answered(Option<Response<Full<Bytes>>>),
    /// Reading a POST body.
    Reading {
        #[pin]
        body: Collect<Limited<B>>,
        deadline: BodyDeadline,
        next: Option<Next<S>>,
    },
    /// Waiting for the inner service; `outgoing` when its reply must be read (safe mode, or
    /// a JSON callback).
    Calling {
        #[pin]
        future: S::Future,
        outgoing: Option<Outgoing>,
    },
    /// Reading the reply to encrypt it, or to make it the callback's format.
    Sealing {
        #[pin]
        body: CollectReply<ResBody>,
        parts: Option<response::Parts>,
        outgoing: Outgoing,
    },
}

/// What becomes of a reply on its way out.
struct Outgoing {
    shared: Arc<Shared>,
    /// The callback's format, which its answer takes.
    format: Format,
    /// The callback came encrypted: the answer is sealed.
    encrypt: bool,
}

/// The body-read deadline passed.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body-read deadline passed")
    }
}

impl std::error::Error for BodyTimedOut {}

/// The inner call under way, and what becomes of its reply.
type Called<S> = (
    <S as Service<Request<Full<Bytes>>>>::Future,
    Option<Outgoing>,
);

/// What the inner call needs once the body is read.
struct Next<S> {
    inner: S,
    shared: Arc<Shared>,
    parts: request::Parts,
    query: CallbackQuery,
    verified: Verified,
    limit: usize,
}

impl<B, S, ResBody> ResponseFuture<B, S, ResBody>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    pub(crate) fn answered(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Answered(Some(response)),
        }
    }

    /// A callback the journal's recovery worker runs again: it was verified when it arrived,
    /// so it is taken as it was stored — the message parsed again from the stored body, the
    /// stored query facts — and its answer goes to the worker, not to WeChat (no sealing).
    pub(crate) fn recovered(
        mut inner: S,
        shared: &Shared,
        mut request: Request<B>,
        recovery: Recovery,
    ) -> Self {
        let entry = &recovery.entry;
        let message = match Message::parse(&entry.body) {
            Ok(message) => message,
            Err(error) => {
                let rejection = Rejection::malformed(&entry.body, error);
                return Self::rejected(rejection, shared, &request);
            }
        };
        if let Some(hook) = request.extensions().get::<CallbackHook>() {
            hook.message_parsed(&message);
        }
        let body = entry.body.clone();
        let extensions = request.extensions_mut();
        extensions.insert(entry.query.clone());
        extensions.insert(message);
        extensions.insert(VerifiedBody(body.clone()));
        let (parts, _) = request.into_parts();
        let future = inner.call(Request::from_parts(parts, Full::new(body)));
        Self {
            state: State::Calling {
                future,
                outgoing: None,
            },
        }
    }

    /// Answered with `rejection`'s response (and its log line).
    pub(crate) fn rejected<T>(rejection: Rejection, shared: &Shared, request: &Request<T>) -> Self {
        Self::answered(rejection.into_response(
            &shared.rejections,
            request.method(),
            request.uri().path(),
        ))
    }

    pub(crate) fn read_body(
        inner: S,
        shared: Arc<Shared>,
        mut request: Request<B>,
        query: CallbackQuery,
        verified: Verified,
    ) -> Self {
        Arrival::insert_if_absent(&mut request);
        let deadline = shared.body_timeout().and_then(|timeout| {
            let arrival = request.extensions().get::<Arrival>()?;
            arrival.0.checked_add(timeout)
        });
        let (parts, body) = request.into_parts();
        let limit = shared.body_limit();
        let next = Next {
            inner,
            shared,
            parts,
            query,
            verified,
            limit,
        };
        Self {
            state: State::Reading {
                body: Limited::new(body, limit).collect(),
                deadline: BodyDeadline::new(deadline),
                next: Some(next),
            },
        }
    }
}

impl<B, S, ResBody> Future for ResponseFuture<B, S, ResBody>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
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
                StateProj::Reading {
                    body,
                    deadline,
                    next,
                } => {
                    let collected = match body.poll(cx) {
                        Poll::Ready(collected) => collected.map(|c| c.to_bytes()),
                        Poll::Pending => {
                            ready!(deadline.poll_expired(cx));
                            Err(BoxError::from(BodyTimedOut))
                        }
                    };
                    let next = next.take().expect("polled after completion");
                    match next.call(collected) {
                        Ok((future, outgoing)) => state.set(State::Calling { future, outgoing }),
                        Err(response) => state.set(State::Answered(Some(response))),
                    }
                }
                StateProj::Calling { future, outgoing } => {
                    let response = ready!(future.poll(cx))?;
                    match outgoing.take() {
                        Some(outgoing) if response.status().is_success() => {
                            let (parts, body) = response.into_parts();
                            state.set(State::Sealing {
                                body: CollectReply::new(body),
                                parts: Some(parts),
                                outgoing,
                            });
                        }
                        _ => return Poll::Ready(Ok(response.map(ResponseBody::service))),
                    }
                }
                StateProj::Sealing {
                    body,
                    parts,
                    outgoing,
                } => {
                    let collected = ready!(body.poll(cx));
                    let parts = parts.take().expect("polled after completion");
                    return Poll::Ready(Ok(seal_response(outgoing, parts, collected)));
                }
            }
        }
    }
}

/// Puts a passive reply in the callback's format and, in safe mode, encrypts it into
/// WeChat's envelope of that format; `success` and empty answers go out as they are.
///
/// A reply written in the other format (`Reply::new`, which is XML, answering a JSON
/// callback) is rewritten when it is a reply this crate can read ([`Reply::parse`]);
/// anything else is passed on (sealed, in safe mode) as the handler wrote it.
fn seal_response<B>(
    outgoing: &Outgoing,
    mut parts: response::Parts,
    collected: Result<Bytes, Response<Full<Bytes>>>,
) -> Response<ResponseBody<B>> {
    let reply = match collected {
        Ok(reply) => reply,
        Err(failed) => return failed.map(ResponseBody::own),
    };
    let trimmed = reply.trim_ascii();
    if trimmed.is_empty() || trimmed == b"success" {
        return with_length(parts, reply);
    }
    let mut reply = reply;
    let mut content_type = None;
    if Format::detect(&reply) != outgoing.format
        && let Ok(parsed) = Reply::parse(&reply)
    {
        let parsed = parsed.with_format(outgoing.format);
        reply = parsed.to_bytes();
        content_type = Some(parsed.content_type());
    }
    if outgoing.encrypt
        && let Some(envelope) = outgoing.shared.seal(&reply, outgoing.format)
    {
        reply = Bytes::from(envelope);
        content_type = Some(outgoing.format.content_type());
    }
    if let Some(content_type) = content_type {
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    with_length(parts, reply)
}

/// The response with `body` and its `Content-Length`.
fn with_length<B>(mut parts: response::Parts, body: Bytes) -> Response<ResponseBody<B>> {
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, ResponseBody::own(Full::new(body)))
}

impl<S> Next<S>
where
    S: Service<Request<Full<Bytes>>>,
{
    /// Checks the nonce (and, in safe mode, `msg_signature` and decryption), parses the
    /// message and calls the inner service; or answers with the rejection.
    #[expect(
        clippy::result_large_err,
        reason = "the rejection response becomes the future's output as it is"
    )]
    fn call(self, body: Result<Bytes, BoxError>) -> Result<Called<S>, Response<Full<Bytes>>> {
        let Self {
            mut inner,
            shared,
            mut parts,
            mut query,
            verified,
            limit,
        } = self;
        let body = match body {
            Ok(bytes) => Ok(bytes),
            Err(error) if error.is::<LengthLimitError>() => Err(Rejection::PayloadTooLarge(limit)),
            Err(error) if error.is::<BodyTimedOut>() => Err(Rejection::BodyTimeout),
            Err(_) => Err(Rejection::BodyRead),
        };
        let opened = body
            .and_then(|bytes| match &verified.pending {
                None => plain(&shared, &mut query, &verified, bytes),
                Some(pending) => encrypted(&shared, &mut query, pending, bytes),
            })
            .and_then(|(message, plaintext, format)| {
                // The query is not signed; the sender named in the (in safe mode, signed)
                // message is the one to believe.
                match &query.openid {
                    Some(openid) if *openid != message.from_user_name => {
                        Err(Rejection::OpenidMismatch)
                    }
                    _ => Ok((message, plaintext, format)),
                }
            });
        match opened {
            Ok((message, plaintext, format)) => {
                // Safe mode seals the reply; a JSON callback's reply is checked for format.
                let outgoing = (query.encrypted || format == Format::Json).then(|| Outgoing {
                    shared: shared.clone(),
                    format,
                    encrypt: query.encrypted,
                });
                // Tells an outer layer (TimingLayer names the message in its span and line).
                if let Some(hook) = parts.extensions.get::<CallbackHook>() {
                    hook.message_parsed(&message);
                }
                parts.extensions.insert(query);
                parts.extensions.insert(message);
                parts.extensions.insert(VerifiedBody(plaintext.clone()));
                let request = Request::from_parts(parts, Full::new(plaintext));
                Ok((inner.call(request), outgoing))
            }
            Err(rejection) => {
                Err(rejection.into_response(&shared.rejections, &parts.method, parts.uri.path()))
            }
        }
    }
}

/// A verified callback: its message, the bytes the handler gets, and the format of the body
/// as it came (which the answer takes).
type Opened = (Message, Bytes, Format);

/// Plain mode (or compatibility mode without a key): the body is the message.
fn plain(
    shared: &Shared,
    query: &mut CallbackQuery,
    verified: &Verified,
    bytes: Bytes,
) -> Result<Opened, Rejection> {
    query.redelivered = shared.remember(query.timestamp, &query.nonce, &bytes)?;
    let message = Message::parse(&bytes).map_err(|error| match error {
        ParseError::MissingField(_) if verified.encrypted => Rejection::EncryptedWithoutKey,
        error => Rejection::malformed(&bytes, error),
    })?;
    let format = message.format;
    Ok((message, bytes, format))
}

/// Safe or compatibility mode: `Encrypt` (an XML element or a JSON field) is checked and
/// decrypted, and only it is trusted.
fn encrypted(
    shared: &Shared,
    query: &mut CallbackQuery,
    pending: &PendingSignature,
    bytes: Bytes,
) -> Result<Opened, Rejection> {
    let format = Format::detect(&bytes);
    let encrypt = encrypt_field(&bytes)
        .map_err(|error| Rejection::malformed(&bytes, error))?
        .ok_or(Rejection::MissingEncrypt)?;
    let plaintext = shared.open(pending, &query.nonce, &encrypt)?;
    query.redelivered = shared.remember(query.timestamp, &query.nonce, &bytes)?;
    query.encrypted = true;
    let message =
        Message::parse(&plaintext).map_err(|error| Rejection::malformed(&plaintext, error))?;
    Ok((message, Bytes::from(plaintext), format))
}
