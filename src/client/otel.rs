//! [`TraceContextLayer`] (feature `otel`): each outgoing request carries the W3C
//! `traceparent` and `tracestate` of the current span.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::macros::define_inner_service_accessors;

/// Applies [`TraceContext`]: every request gets the `traceparent` (and `tracestate`) of the
/// current OpenTelemetry context — with `tracing-opentelemetry`, the entered `tracing`
/// span's — unless it has a `traceparent` already. Without a current span it is sent as it
/// is. See [`otel`](crate::otel).
///
/// [`WeChatClient`](super::WeChatClient) puts it right above the HTTP client, so each
/// attempt (retries and token fetches too) carries the context of the call's `wechat_api`
/// span. Put it there in a stack of your own:
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_wechat::client::{ReadBodyLayer, TraceContextLayer, http_client};
///
/// # fn main() -> Result<(), tower_wechat::client::ClientError> {
/// let http = ServiceBuilder::new()
///     .layer(TraceContextLayer::new())
///     .layer(ReadBodyLayer::new())
///     .service(http_client()?);
/// # let _ = http;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextLayer {
    _private: (),
}

impl TraceContextLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContext { inner }
    }
}

/// Adds `traceparent` and `tracestate` to each request; see [`TraceContextLayer`].
#[derive(Clone, Debug)]
pub struct TraceContext<S> {
    inner: S,
}

impl<S> TraceContext<S> {
    define_inner_service_accessors!();

    /// Wraps `inner`.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_wechat::client::TraceContext;
    ///
    /// let service = TraceContext::new(service_fn(|request: http::Request<()>| async move {
    ///     Ok::<_, std::convert::Infallible>(request.headers().contains_key("traceparent"))
    /// }));
    /// # let _ = service;
    /// ```
    pub fn new(inner: S) -> Self {
        TraceContextLayer::new().layer(inner)
    }
}

impl<S, B> Service<Request<B>> for TraceContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if !request.headers().contains_key(crate::otel::TRACEPARENT)
            && let Some(span) = crate::otel::current()
        {
            crate::otel::inject(&span, request.headers_mut());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::HeaderMap;
    use opentelemetry::Context;
    use opentelemetry::trace::TraceContextExt;
    use tower::{ServiceExt, service_fn};

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    async fn headers_sent(request: Request<()>) -> HeaderMap {
        let service = TraceContext::new(service_fn(|request: Request<()>| async move {
            Ok::<_, Infallible>(request.headers().clone())
        }));
        service.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn the_current_context_goes_out_and_a_caller_s_own_header_stays() {
        assert!(headers_sent(Request::new(())).await.is_empty());

        let remote = crate::otel::parse(PARENT, Some("a=1")).unwrap();
        let _attached = Context::current().with_remote_span_context(remote).attach();
        let sent = headers_sent(Request::new(())).await;
        assert_eq!(sent["traceparent"], PARENT);
        assert_eq!(sent["tracestate"], "a=1");

        let own = "00-11111111111111111111111111111111-2222222222222222-00";
        let request = Request::builder()
            .header("traceparent", own)
            .body(())
            .unwrap();
        assert_eq!(headers_sent(request).await["traceparent"], own);
    }
}
