//! [`ResponseFuture`] of [`Dedup`](super::Dedup).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

type Inner<E> = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, E>> + Send>>;

/// Response future of [`Dedup`](super::Dedup).
///
/// If it is dropped before it finishes — the client hung up, as WeChat does after 5 s — the
/// attempt is finished in a tokio task instead, so its key is always completed (or released)
/// and a retry finds the result rather than running the handler again.
pub struct ResponseFuture<E: 'static> {
    inner: Option<Inner<E>>,
}

impl<E: Send + 'static> ResponseFuture<E> {
    pub(crate) fn new(
        future: impl Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Some(Box::pin(future)),
        }
    }
}

impl<E: 'static> Future for ResponseFuture<E> {
    type Output = Result<Response<Full<Bytes>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut().expect("polled after completion");
        let output = std::task::ready!(inner.as_mut().poll(cx));
        self.inner = None;
        Poll::Ready(output)
    }
}

impl<E: 'static> Drop for ResponseFuture<E> {
    fn drop(&mut self) {
        let Some(unfinished) = self.inner.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::debug!("callback abandoned by the client; finishing its dedup attempt");
                runtime.spawn(async move {
                    let _ = unfinished.await;
                });
            }
            // No runtime (it is shutting down): the claim expires after its lease.
            Err(_) => drop(unfinished),
        }
    }
}

impl<E> fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}
