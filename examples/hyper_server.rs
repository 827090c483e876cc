//! The quick start's echo bot on plain hyper, without axum.
//!
//! ```text
//! cargo run --example hyper_server
//! ```
//!
//! Same environment as the quick start: `WECHAT_ADDR` (default `127.0.0.1:3000`),
//! `WECHAT_TOKEN` (default `towerwechatdemo`), `WECHAT_TIMESTAMP_WINDOW` (seconds, `0` = off).
//! The callback path is `/wechat`; every other path is 404.

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_wechat::{Message, MessageKind, Reply, ReplyContent, Token, VerifyLayer};

/// The handler sees the verified body and finds the parsed message in the extensions.
async fn handle(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(message) = request.extensions().get::<Message>() else {
        // Unreachable behind VerifyLayer; a clear answer all the same.
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

fn verify_layer() -> Result<VerifyLayer, Box<dyn Error>> {
    let token = std::env::var("WECHAT_TOKEN").unwrap_or_else(|_| "towerwechatdemo".to_owned());
    let layer = VerifyLayer::new(Token::new(token).map_err(|e| format!("WECHAT_TOKEN: {e}"))?);
    Ok(match std::env::var("WECHAT_TIMESTAMP_WINDOW").ok() {
        None => layer,
        Some(seconds) => match seconds.trim().parse::<u64>()? {
            0 => layer.disable_timestamp_window(),
            seconds => layer.timestamp_window(Duration::from_secs(seconds)),
        },
    })
}

#[allow(dead_code)] // the integration tests include this file for `serve`
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt::init();
    let addr: SocketAddr = std::env::var("WECHAT_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let verify = verify_layer()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "WeChat callback URL: http://{}/wechat",
        listener.local_addr()?
    );
    serve(listener, verify).await?;
    Ok(())
}

/// Accepts connections forever, serving `/wechat` behind `verify` with hyper's HTTP/1.
pub async fn serve(listener: tokio::net::TcpListener, verify: VerifyLayer) -> std::io::Result<()> {
    let verified = ServiceBuilder::new().layer(verify).service_fn(handle);
    loop {
        let (stream, _) = listener.accept().await?;
        let verified = verified.clone();
        // Route by path before VerifyLayer, so only /wechat is verified.
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
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            let service = TowerToHyperService::new(service);
            if let Err(error) = http1::Builder::new().serve_connection(io, service).await {
                tracing::debug!(%error, "connection closed with an error");
            }
        });
    }
}
