//! [`Timing`]: the middleware service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::layer::Settings;
use super::{CallbackTiming, ResponseFuture, TimingLayer};

/// Middleware that times WeChat callbacks; see [`TimingLayer`] and the
/// [module docs](super).
///
/// For each request it opens the `wechat_callback` span, puts a [`CallbackTiming`] and a
/// [`BackgroundHook`](crate::background::BackgroundHook) in the request extensions, and
/// calls the inner service inside the span. Responses pass through untouched.
#[derive(Clone)]
pub struct Timing<S> {
    pub(crate) inner: S,
    pub(crate) settings: Arc<Settings>,
}

impl<S> Timing<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&TimingLayer::new(), inner)
    }

    /// A [`TimingLayer`] with the default settings.
    pub fn layer() -> TimingLayer {
        TimingLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timing<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let timing = CallbackTiming::start(&self.settings, &request);
        let extensions = request.extensions_mut();
        extensions.insert(timing.background_hook());
        extensions.insert(timing.clone());
        let inner = {
            let _entered = timing.span().enter();
            self.inner.call(request)
        };
        ResponseFuture::new(inner, timing)
    }
}

impl<S: fmt::Debug> fmt::Debug for Timing<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timing")
            .field("inner", &self.inner)
            .field("budget", &self.settings.budget)
            .field("deadline", &self.settings.deadline)
            .finish()
    }
}
