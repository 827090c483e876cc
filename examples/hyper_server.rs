//! The quick start's echo bot on plain hyper, without axum, behind the same stack
//! (`CallbackLayer`: Timing → Verify → Dedup → FastAck).
//!
//! ```text
//! cargo run --example hyper_server
//! ```
//!
//! Environment: `WECHAT_ADDR` (default `127.0.0.1:3000`), `WECHAT_TOKEN` (default
//! `towerwechatdemo`), `WECHAT_TIMESTAMP_WINDOW` (seconds, `0` = off), `WECHAT_ALLOWED_IPS`
//! (comma-separated addresses and CIDR ranges that may call; unset = any); for safe mode,
//! see the quick start.
//! The server puts each connection's peer `SocketAddr` in its requests' extensions, which
//! is where the allow-list (`AllowLayer`) looks for the caller's address.
//! The callback path is `/wechat`; every other path is 404. Served by
//! `tower_wechat::serve::Server` (header read timeout, connection cap, bounded shutdown;
//! feature `server`). Ctrl-C or SIGTERM stops accepting connections, drains them (up to
//! 5 s) and lets running handlers finish (up to 10 s).

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_wechat::allow::IpSet;
use tower_wechat::serve::{ServeReport, Server};
use tower_wechat::{AllowLayer, CallbackLayer, Message, MessageKind, Reply, ReplyContent, Token};

/// The handler sees the verified body and finds the parsed message in the extensions.
async fn handle(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(message) = request.extensions().get::<Message>() else {
        // Unreachable behind the stack (VerifyLayer); a clear answer all the same.
        return Ok(status(StatusCode::INTERNAL_SERVER_ERROR));
    };
    let reply = match &message.kind {
        MessageKind::Text { content } => {
            message.reply(ReplyContent::text(format!("You said: {content}")))
        }
        _ => Reply::success(),
    };
    Ok(reply.into())
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::from(status.canonical_reason().unwrap_or_default()));
    *response.status_mut() = status;
    response
}

fn stack() -> Result<CallbackLayer, Box<dyn Error>> {
    let token = std::env::var("WECHAT_TOKEN").unwrap_or_else(|_| "towerwechatdemo".to_owned());
    let mut stack =
        CallbackLayer::new(Token::new(token).map_err(|e| format!("WECHAT_TOKEN: {e}"))?);
    if let Ok(list) = std::env::var("WECHAT_ALLOWED_IPS") {
        let list = IpSet::parse(&list).map_err(|e| format!("WECHAT_ALLOWED_IPS: {e}"))?;
        stack = stack.allow(|_| AllowLayer::new(list));
    }
    let window = match std::env::var("WECHAT_TIMESTAMP_WINDOW").ok() {
        None => return Ok(stack),
        Some(seconds) => seconds
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("WECHAT_TIMESTAMP_WINDOW must be seconds, got {seconds:?}"))?,
    };
    Ok(stack.verify(|verify| match window {
        0 => verify.disable_timestamp_window(),
        seconds => verify.timestamp_window(Duration::from_secs(seconds)),
    }))
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[allow(dead_code)] // the integration tests include this file for `serve`
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt::init();
    let addr: SocketAddr = std::env::var("WECHAT_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let stack = stack()?;
    let handle = stack.handle();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "WeChat callback URL: http://{}/wechat",
        listener.local_addr()?
    );
    let report = serve(listener, stack, shutdown_signal()).await?;
    println!("{report:?}");
    // Handlers that were acknowledged get up to 10 s to finish.
    handle.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// Serves `/wechat` behind `stack` with hyper's HTTP/1 until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stack: CallbackLayer,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<ServeReport> {
    let verified = ServiceBuilder::new().layer(stack).service_fn(handle);
    // Route by path before the stack, so only /wechat is verified.
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let verified = verified.clone();
        async move {
            if request.uri().path() != "/wechat" {
                return Ok::<_, Infallible>(status(StatusCode::NOT_FOUND).map(Either::Right));
            }
            let response = verified.oneshot(request).await?;
            Ok(response.map(Either::Left))
        }
    });
    Server::new(listener).serve(service, shutdown).await
}
