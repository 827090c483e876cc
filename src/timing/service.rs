//! [`Timing`]: the middleware service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::callback::CallbackTiming;
use super::future::ResponseFuture;
use super::state::Settings;
use crate::hook::Arrival;
use crate::macros::define_inner_service_accessors;

/// Middleware that times WeChat callbacks; see [`TimingLayer`](super::TimingLayer) and the
/// [module docs](super).
///
/// For each request it opens the `wechat_callback` span, puts a [`CallbackTiming`] and a
/// [`CallbackHook`](crate::hook::CallbackHook) in the request extensions, and calls the
/// inner service inside the span. Responses pass through untouched.
#[derive(Clone)]
pub struct Timing<S> {
    pub(crate) inner: S,
    pub(crate) settings: Arc<Settings>,
}

impl<S> Timing<S> {
    define_inner_service_accessors!();
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
        self.settings.check_order(&request);
        let timing = CallbackTiming::start(&self.settings, &request);
        let extensions = request.extensions_mut();
        extensions.insert(timing.hook());
        extensions.insert(Arrival(timing.started()));
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
