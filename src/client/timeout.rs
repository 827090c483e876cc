//! [`TimeoutLayer`]: a per-attempt timeout that fails with [`ClientError::Timeout`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use super::ClientError;
use crate::macros::define_inner_service_accessors;

/// Applies [`Timeout`]: each call that takes longer than the timeout fails with
/// [`ClientError::Timeout`] (put it inside the retry layer to time each attempt).
///
/// It is tower's `timeout` with a typed error: the retry policy needs to tell a timeout
/// (the request may have been carried out) from a connect failure (it was not).
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::client::TimeoutLayer;
///
/// let layer = TimeoutLayer::new(Duration::from_secs(5));
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// A layer that gives each call `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// Times each call out; see [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Timeout<S> {
    /// Wraps `inner`, giving each call `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::service_fn;
    /// use tower_wechat::client::{ClientError, Timeout};
    ///
    /// let service = Timeout::new(
    ///     service_fn(|_: ()| async { Ok::<_, ClientError>(()) }),
    ///     Duration::from_secs(5),
    /// );
    /// # let _ = service;
    /// ```
    pub fn new(inner: S, timeout: Duration) -> Self {
        TimeoutLayer::new(timeout).layer(inner)
    }

    /// A [`TimeoutLayer`] giving each call `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_wechat::client::Timeout;
    ///
    /// let layer = Timeout::<()>::layer(Duration::from_secs(5));
    /// # let _ = layer;
    /// ```
    pub fn layer(timeout: Duration) -> TimeoutLayer {
        TimeoutLayer::new(timeout)
    }

    define_inner_service_accessors!();
}

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req>,
    S::Error: Into<ClientError>,
{
    type Response = S::Response;
    type Error = ClientError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
            sleep: tokio::time::sleep(self.timeout),
            timeout: self.timeout,
        }
    }
}

/// Response future of [`Timeout`].
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    #[pin]
    sleep: Sleep,
    timeout: Duration,
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<ClientError>,
{
    type Output = Result<T, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(ClientError::Timeout(*this.timeout))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn slow_calls_time_out_with_a_typed_error() {
        let slow = tower::service_fn(|delay: u64| async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok::<_, ClientError>(delay)
        });
        let service = TimeoutLayer::new(Duration::from_millis(50)).layer(slow);
        assert_eq!(service.clone().oneshot(0).await.unwrap(), 0);
        assert!(matches!(
            service.oneshot(60_000).await,
            Err(ClientError::Timeout(after)) if after == Duration::from_millis(50)
        ));
    }
}
