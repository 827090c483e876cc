//! What the Verify-driving targets share: a service to call, a log that must stay clean.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_service::Service;
use tower_wechat::{Message, Reply, ReplyContent};

/// The handler: echoes text messages, as the quick start does.
#[derive(Clone)]
pub struct Echo;

impl Service<Request<Full<Bytes>>> for Echo {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let message = request
            .extensions()
            .get::<Message>()
            .expect("Verify puts the message in");
        let reply = message.reply(ReplyContent::text(format!("{:?}", message.kind)));
        std::future::ready(Ok(Reply::from(reply).into()))
    }
}

/// Polls a future that must be ready at once (every body here is buffered).
pub fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a buffered request did not finish at once"),
    }
}

/// Checks a response to input the fuzzer chose: never a 5xx, and a refusal's body is one
/// short fixed line of printable ASCII.
pub fn check_response<B>(response: Response<B>) -> (StatusCode, Bytes)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    assert!(!status.is_server_error(), "{status}");
    let body = now(response.into_body().collect()).unwrap().to_bytes();
    if status.is_client_error() {
        assert!(body.len() <= 100, "{status}: {} bytes", body.len());
        assert!(
            body.iter().all(|b| (0x20..0x7f).contains(b)),
            "{status}: {body:?}"
        );
    }
    (status, body)
}

/// A log writer that fails the run if a line carries a control character (other than its
/// final newline) or more than `MAX_LINE` bytes.
#[derive(Clone, Copy)]
pub struct CheckedLog;

pub const MAX_LINE: usize = 1_024;

impl io::Write for CheckedLog {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let line = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        assert!(line.len() <= MAX_LINE, "a {}-byte log line", line.len());
        assert!(
            !line.iter().any(|&b| b < 0x20 || b == 0x7f),
            "a control character in a log line: {:?}",
            String::from_utf8_lossy(line)
        );
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the checked log once, at TRACE level for the crate.
pub fn install_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| CheckedLog)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}
