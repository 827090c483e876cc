//! [`Verify`]: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::future::ResponseFuture;
use super::query::RawQuery;
use super::rejection::Rejection;
use super::state::{Shared, Verified};
use crate::BoxError;
use crate::body::ResponseBody;
use crate::hook::Recovery;
use crate::macros::define_inner_service_accessors;
use crate::message::CallbackQuery;
use crate::redact::Untrusted;

/// Middleware that verifies WeChat callbacks; see [`VerifyLayer`](super::VerifyLayer) for
/// its settings.
///
/// - `GET` with `signature`, `timestamp`, `nonce` and `echostr`: the URL handshake. A valid
///   one is answered `200` with the `echostr`; the inner service is not called.
/// - `POST`: the signature, timestamp window and nonce are checked, the body is read (up to
///   the limit) and parsed once; the inner service gets the same bytes as a
///   `Request<Full<Bytes>>` with the [`Message`](crate::Message) and the
///   [`CallbackQuery`](super::CallbackQuery) in its extensions.
/// - Anything else is refused with a 4xx and a short plain-text reason (see [`Rejection`]),
///   and a `tracing` warning naming the reason. The error type stays `S::Error`, so axum needs
///   no `HandleErrorLayer`.
#[derive(Clone, Debug)]
pub struct Verify<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S> Verify<S> {
    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Verify<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ReqBody, S, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Run again from the journal: verified when it arrived (only this process can put a
        // `Recovery` in the extensions).
        if let Some(recovery) = request.extensions().get::<Recovery>().cloned() {
            let inner = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, inner);
            return ResponseFuture::recovered(inner, &self.shared, request, recovery);
        }
        let checked = match *request.method() {
            Method::GET => {
                return match self.handshake(&request) {
                    Ok(echo) => ResponseFuture::answered(echo),
                    Err(rejection) => ResponseFuture::rejected(rejection, &self.shared, &request),
                };
            }
            Method::POST => self.check_post(&request),
            _ => Err(Rejection::MethodNotAllowed),
        };
        match checked {
            Ok((query, verified)) => {
                // The clone goes back into `self`; the one that was polled ready is used.
                let inner = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, inner);
                ResponseFuture::read_body(inner, self.shared.clone(), request, query, verified)
            }
            Err(rejection) => ResponseFuture::rejected(rejection, &self.shared, &request),
        }
    }
}

impl<S> Verify<S> {
    /// Answers a verified URL handshake with its `echostr`; WeCom's encrypted `echostr`
    /// (signed by `msg_signature`) is answered decrypted.
    fn handshake<B>(&self, request: &Request<B>) -> Result<Response<Full<Bytes>>, Rejection> {
        let query = RawQuery::parse(request.uri().query().unwrap_or_default())?;
        let echostr = query
            .echostr
            .as_deref()
            .filter(|echostr| !echostr.is_empty())
            .ok_or(Rejection::MissingParameter("echostr"))?;
        let verified = self.shared.verify(&query)?;
        let nonce = query.signed_parts()?.nonce;
        let echo = match &verified.pending {
            None => Bytes::copy_from_slice(echostr.as_bytes()),
            Some(pending) => Bytes::from(self.shared.open(pending, nonce, echostr)?),
        };
        self.shared
            .remember(verified.timestamp, nonce, echostr.as_bytes())?;
        tracing::info!(
            path = %Untrusted(request.uri().path()),
            "answered WeChat URL handshake"
        );
        let mut response = Response::new(Full::new(echo));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        Ok(response)
    }

    /// Checks a message callback's query and declared length before its body is read.
    fn check_post<B: Body>(
        &self,
        request: &Request<B>,
    ) -> Result<(CallbackQuery, Verified), Rejection> {
        let query = RawQuery::parse(request.uri().query().unwrap_or_default())?;
        let verified = self.shared.verify(&query)?;
        if !verified.encrypted && self.shared.refuses_plain_messages() {
            return Err(Rejection::MissingParameter("msg_signature"));
        }
        let limit = self.shared.body_limit();
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
            .or(request.body().size_hint().exact());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(Rejection::PayloadTooLarge(limit));
        }
        Ok((query.into_callback_query(verified.timestamp), verified))
    }
}
