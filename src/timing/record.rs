//! [`RecordMessageLayer`]: tells the callback's [`CallbackTiming`] which message it carries.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::message::Message;

use super::CallbackTiming;

/// Records the verified [`Message`] into the callback's [`CallbackTiming`], so the span,
/// the access line and the statistics name its type, `MsgId` and event.
///
/// Put it inside [`VerifyLayer`](crate::VerifyLayer) (which puts the `Message` in the
/// request extensions), anywhere before the handler. Recording is idempotent: if an outer
/// layer already recorded the message, this does nothing.
///
/// ```
/// use axum::{Router, routing::post};
/// use tower::ServiceBuilder;
/// use tower_wechat::timing::{RecordMessageLayer, TimingLayer};
/// use tower_wechat::{Reply, Token, VerifyLayer};
///
/// let app: Router = Router::new().route("/wechat", post(|| async { Reply::success() })).layer(
///     ServiceBuilder::new()
///         .layer(TimingLayer::new())
///         .layer(VerifyLayer::new(Token::new("mytoken").unwrap()))
///         .layer(RecordMessageLayer),
/// );
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordMessageLayer;

impl<S> Layer<S> for RecordMessageLayer {
    type Service = RecordMessage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordMessage { inner }
    }
}

/// The service of [`RecordMessageLayer`]: records, then calls the inner service.
#[derive(Clone, Debug)]
pub struct RecordMessage<S> {
    inner: S,
}

impl<S> RecordMessage<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for RecordMessage<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let extensions = request.extensions();
        if let (Some(timing), Some(message)) = (
            extensions.get::<CallbackTiming>(),
            extensions.get::<Message>(),
        ) {
            timing.record_message(message);
        }
        self.inner.call(request)
    }
}
