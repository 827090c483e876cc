//! [`HttpMetricsLayer`] (feature `metrics`): each HTTP attempt recorded under OpenTelemetry's
//! semantic-convention name `http.client.request.duration`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use metrics::{SharedString, histogram};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::ClientError;
use crate::macros::define_inner_service_accessors;

/// Histogram: seconds per HTTP attempt, under OpenTelemetry's HTTP semantic-convention name,
/// by `http.request.method`, `server.address`, `server.port` and
/// `http.response.status_code` (or `error.type`: the [`ErrorClass`](super::ErrorClass) of a
/// failed attempt). Recorded by [`HttpMetricsLayer`].
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http.client.request.duration";

/// Applies [`HttpMetrics`]: records each HTTP attempt (from the request to its body read)
/// as [`HTTP_CLIENT_REQUEST_DURATION`]. Where the crate's
/// [`wechat_client_call_duration_seconds`](super::metrics::CALL_DURATION_SECONDS) measures
/// one API call with its retries and token wait, this measures each request sent, as
/// OpenTelemetry's conventions do.
///
/// [`WeChatClientBuilder::semconv_metrics`](super::WeChatClientBuilder::semconv_metrics)
/// puts it right above [`ReadBodyLayer`](super::ReadBodyLayer); in a stack of your own:
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_wechat::client::{HttpMetricsLayer, ReadBodyLayer, http_client};
///
/// # fn main() -> Result<(), tower_wechat::client::ClientError> {
/// let http = ServiceBuilder::new()
///     .layer(HttpMetricsLayer::new())
///     .layer(ReadBodyLayer::new())
///     .service(http_client()?);
/// # let _ = http;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[must_use]
pub struct HttpMetricsLayer {
    _private: (),
}

impl HttpMetricsLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics { inner }
    }
}

/// Records each attempt's duration; see [`HttpMetricsLayer`].
#[derive(Clone, Debug)]
pub struct HttpMetrics<S> {
    inner: S,
}

impl<S> HttpMetrics<S> {
    define_inner_service_accessors!();

    /// Wraps `inner`.
    ///
    /// ```
    /// use tower_wechat::client::{HttpMetrics, ReadBody, http_client};
    ///
    /// let service = HttpMetrics::new(ReadBody::new(http_client().unwrap()));
    /// # let _ = service;
    /// ```
    pub fn new(inner: S) -> Self {
        HttpMetricsLayer::new().layer(inner)
    }
}

impl<S, B, T> Service<Request<B>> for HttpMetrics<S>
where
    S: Service<Request<B>, Response = Response<T>, Error = ClientError>,
{
    type Response = Response<T>;
    type Error = ClientError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let uri = request.uri();
        let secure = uri.scheme_str() == Some("https");
        let labels = Labels {
            method: crate::timing::metrics::method_label(request.method()),
            // The API's host: a handful of values (api.weixin.qq.com, qyapi.weixin.qq.com).
            address: SharedString::from(uri.host().unwrap_or_default().to_owned()),
            port: uri
                .port_u16()
                .unwrap_or(if secure { 443 } else { 80 })
                .to_string()
                .into(),
        };
        ResponseFuture {
            future: self.inner.call(request),
            started: Instant::now(),
            labels: Some(labels),
        }
    }
}

struct Labels {
    method: &'static str,
    address: SharedString,
    port: SharedString,
}

/// Response future of [`HttpMetrics`].
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    future: F,
    started: Instant,
    labels: Option<Labels>,
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<T>, ClientError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        if let Some(labels) = this.labels.take() {
            let (key, value): (&'static str, SharedString) = match &output {
                Ok(response) => (
                    "http.response.status_code",
                    response.status().as_str().to_owned().into(),
                ),
                Err(error) => ("error.type", error.class().as_str().into()),
            };
            histogram!(
                HTTP_CLIENT_REQUEST_DURATION,
                "http.request.method" => labels.method,
                "server.address" => labels.address,
                "server.port" => labels.port,
                key => value
            )
            .record(this.started.elapsed().as_secs_f64());
        }
        Poll::Ready(output)
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}
