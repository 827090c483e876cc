//! [`RecordMessageLayer`]: tells the callback's [`CallbackHook`] which message it carries.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::hook::CallbackHook;
use crate::macros::define_inner_service_accessors;
use crate::message::Message;

/// Tells the callback's [`CallbackHook`] (TimingLayer's, when it is outside) which
/// [`Message`] it carries, so the span, the access line and the statistics name its type,
/// `MsgId` and event. Only needed when the message comes from something other than
/// [`VerifyLayer`](crate::VerifyLayer), which tells the hook itself.
///
/// Put it inside whatever puts the `Message` in the request extensions, anywhere before the
/// handler. TimingLayer records the first message it is told of; later calls do nothing.
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
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_wechat::timing::RecordMessage;
    ///
    /// let service = RecordMessage::new(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// }));
    /// # let _ = service;
    /// ```
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The layer, [`RecordMessageLayer`].
    ///
    /// ```
    /// use tower_wechat::timing::RecordMessage;
    ///
    /// let layer = RecordMessage::<()>::layer();
    /// # let _ = layer;
    /// ```
    pub fn layer() -> RecordMessageLayer {
        RecordMessageLayer
    }

    define_inner_service_accessors!();
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
        if let (Some(hook), Some(message)) = (
            extensions.get::<CallbackHook>(),
            extensions.get::<Message>(),
        ) {
            hook.message_parsed(message);
        }
        self.inner.call(request)
    }
}
