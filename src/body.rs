//! [`ResponseBody`]: the response body of this crate's layers — the inner service's body,
//! or a short one the layer wrote itself (a handshake answer, a rejection, an ack, a replayed
//! reply).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project::pin_project;

/// Response body of this crate's layers: the inner service's body, or a short body the layer
/// wrote itself (a handshake answer, a rejection, an ack, a replayed reply).
#[pin_project]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    inner: Inner<B>,
}

#[pin_project(project = InnerProj)]
#[derive(Debug)]
enum Inner<B> {
    Own(#[pin] Full<Bytes>),
    Service(#[pin] B),
}

impl<B> ResponseBody<B> {
    pub(crate) fn own(body: Full<Bytes>) -> Self {
        Self {
            inner: Inner::Own(body),
        }
    }

    pub(crate) fn service(body: B) -> Self {
        Self {
            inner: Inner::Service(body),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().inner.project() {
            InnerProj::Own(body) => body.poll_frame(cx).map_err(|never| match never {}),
            InnerProj::Service(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Own(body) => body.is_end_stream(),
            Inner::Service(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Own(body) => body.size_hint(),
            Inner::Service(body) => body.size_hint(),
        }
    }
}

/// A short plain-text answer written by a layer (a rejection, a "busy" 503).
pub(crate) fn plain_text(status: StatusCode, text: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
