//! [`Allow`]: the middleware service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::state::Shared;
use crate::body::ResponseBody;
use crate::macros::define_inner_service_accessors;

/// Middleware that lets through only requests from allowed addresses; see
/// [`AllowLayer`](super::AllowLayer) and the [module docs](super).
///
/// A refused request is answered `403` with a short plain-text reason before the inner
/// service is called and before its body is read; the error type stays `S::Error`, so axum
/// needs no `HandleErrorLayer`. With the check off
/// ([`AllowLayer::off`](super::AllowLayer::off)) every request passes untouched.
#[derive(Clone)]
pub struct Allow<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S> Allow<S> {
    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Allow<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !self.shared.settings.enabled {
            return ResponseFuture::inner(self.inner.call(request));
        }
        match self.shared.check(&request) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(refusal) => ResponseFuture::refused(refusal.response()),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Allow<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Allow")
            .field("inner", &self.inner)
            .field("settings", &self.shared)
            .finish()
    }
}
