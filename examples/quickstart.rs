//! An axum echo bot for a WeChat Official Account.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Environment (all optional):
//! - `WECHAT_ADDR`: where to listen (default `127.0.0.1:3000`); the callback URL is `/wechat`.
//! - `WECHAT_TOKEN`: the token set in the WeChat console (default `towerwechatdemo`, for
//!   local tries only).
//! - `WECHAT_TIMESTAMP_WINDOW`: seconds a timestamp may be off (default 300; `0` turns the
//!   check off, e.g. to replay WeChat's documented samples).
//! - `WECHAT_AES_KEY` and `WECHAT_APPID`: the EncodingAESKey and the app id (CorpID for
//!   WeCom). With both set it runs in safe mode: encrypted and compatibility-mode messages
//!   are decrypted, replies encrypted, and WeCom's encrypted handshake answered; plain-mode
//!   messages are refused unless `WECHAT_ACCEPT_PLAIN=1` (while switching the console's mode).
//!   `WECHAT_PREVIOUS_AES_KEY` keeps an old key for decryption during a key change.
//!
//! At start it prints curl lines, signed with the token, to try the handshake and a message.
//! The log (`RUST_LOG`, default `info,tower_wechat=debug`) has one line per callback with its
//! MsgId and latency, from `TimingLayer`.

use std::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::post;
use tower::ServiceBuilder;
use tower_wechat::ack::FastAckLayer;
use tower_wechat::crypto::EncodingAesKey;
use tower_wechat::dedup::DedupLayer;
use tower_wechat::signature::Signature;
use tower_wechat::timing::TimingLayer;
use tower_wechat::verify::SafeMode;
use tower_wechat::{Event, Message, MessageKind, Reply, ReplyContent, Token, VerifyLayer};

/// The token used when `WECHAT_TOKEN` is not set. Only for trying the example locally.
pub const DEMO_TOKEN: &str = "towerwechatdemo";

/// The bot's answer to each message.
pub async fn reply(message: Message) -> Reply {
    let content = match &message.kind {
        MessageKind::Text { content } => format!("You said: {content}"),
        MessageKind::Voice {
            recognition: Some(text),
            ..
        } => format!("You said (voice): {text}"),
        MessageKind::Image { media_id, .. } => {
            return message.reply(ReplyContent::image(media_id.clone()));
        }
        MessageKind::Location { label, .. } => format!("You are at: {label}"),
        MessageKind::Link { title, url, .. } => format!("Link received: {title} ({url})"),
        MessageKind::Event(Event::Subscribe { .. }) => {
            "Welcome! Send me any text and I will echo it.".to_owned()
        }
        MessageKind::Event(Event::Click { event_key }) => format!("You clicked: {event_key}"),
        _ => return Reply::success(),
    };
    message.reply(ReplyContent::text(content))
}

/// The quick start's router: `/wechat` behind [`TimingLayer`] (outermost: one log line per
/// callback with its MsgId and latency), [`VerifyLayer`], [`DedupLayer`] (WeChat's retries
/// answered once) and a default [`FastAckLayer`] (answers within 4 s).
pub fn app(verify: VerifyLayer) -> Router {
    app_with(verify, FastAckLayer::new())
}

/// [`app`] with the given [`FastAckLayer`], whose handle drains background work at shutdown.
pub fn app_with(verify: VerifyLayer, fast_ack: FastAckLayer) -> Router {
    Router::new().route("/wechat", post(reply)).layer(
        ServiceBuilder::new()
            .layer(TimingLayer::new())
            .layer(verify)
            .layer(DedupLayer::new())
            .layer(fast_ack),
    )
}

/// The layer as the environment configures it.
pub fn verify_layer_from_env() -> Result<VerifyLayer, Box<dyn Error>> {
    let token = std::env::var("WECHAT_TOKEN").unwrap_or_else(|_| DEMO_TOKEN.to_owned());
    let token = Token::new(token).map_err(|error| format!("WECHAT_TOKEN: {error}"))?;
    let mut layer = VerifyLayer::new(token);
    match (
        std::env::var("WECHAT_AES_KEY"),
        std::env::var("WECHAT_APPID"),
    ) {
        (Ok(key), Ok(app_id)) => {
            let key = EncodingAesKey::new(key.trim())
                .map_err(|error| format!("WECHAT_AES_KEY: {error}"))?;
            let mut safe_mode = SafeMode::new(key, app_id.trim());
            if let Ok(previous) = std::env::var("WECHAT_PREVIOUS_AES_KEY") {
                let previous = EncodingAesKey::new(previous.trim())
                    .map_err(|error| format!("WECHAT_PREVIOUS_AES_KEY: {error}"))?;
                safe_mode = safe_mode.previous_key(previous);
            }
            if std::env::var("WECHAT_ACCEPT_PLAIN").is_ok_and(|value| value == "1") {
                safe_mode = safe_mode.accept_plain_mode();
            }
            layer = layer.safe_mode(safe_mode);
        }
        (Ok(_), Err(_)) => return Err("WECHAT_AES_KEY is set: set WECHAT_APPID too".into()),
        (Err(_), Ok(_)) => return Err("WECHAT_APPID is set: set WECHAT_AES_KEY too".into()),
        (Err(_), Err(_)) => {}
    }
    Ok(match std::env::var("WECHAT_TIMESTAMP_WINDOW") {
        Err(_) => layer,
        Ok(seconds) => match seconds.trim().parse::<u64>() {
            Ok(0) => layer.disable_timestamp_window(),
            Ok(seconds) => layer.timestamp_window(Duration::from_secs(seconds)),
            Err(_) => {
                return Err(format!(
                    "WECHAT_TIMESTAMP_WINDOW must be a whole number of seconds, got {seconds:?}"
                )
                .into());
            }
        },
    })
}

/// Logs to stdout at `RUST_LOG` (default `info`), in colour only on a terminal.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// `WECHAT_ADDR`, or `127.0.0.1:3000`.
pub fn listen_addr() -> Result<SocketAddr, Box<dyn Error>> {
    let addr = std::env::var("WECHAT_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    Ok(addr
        .parse()
        .map_err(|error| format!("WECHAT_ADDR: {error}"))?)
}

#[allow(dead_code)] // the integration tests include this file for `app`
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    init_tracing();
    let addr = listen_addr()?;
    let verify = verify_layer_from_env()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    print_how_to_try(listener.local_addr()?);

    let fast_ack = FastAckLayer::new();
    let background = fast_ack.handle();
    axum::serve(listener, app_with(verify, fast_ack))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // No new callbacks now; let handlers still running in the background finish.
    background.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// Prints signed curl lines for the handshake and a text message, each with its own nonce
/// (a timestamp + nonce pair is accepted for one request only).
pub fn print_how_to_try(addr: SocketAddr) {
    let token_text = std::env::var("WECHAT_TOKEN").unwrap_or_else(|_| DEMO_TOKEN.to_owned());
    let Ok(token) = Token::new(token_text) else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let timestamp = now.as_secs().to_string();
    let signed_url = |nonce: u32| {
        let nonce = nonce.to_string();
        let signature = Signature::plain(&token, &timestamp, &nonce);
        format!("http://{addr}/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}")
    };
    let nonce = now.subsec_nanos();
    let using = if std::env::var("WECHAT_TOKEN").is_ok() {
        "the token from WECHAT_TOKEN"
    } else {
        "the demo token (set WECHAT_TOKEN to use yours)"
    };
    let mode = if std::env::var("WECHAT_AES_KEY").is_ok() {
        "safe mode"
    } else {
        "plain mode"
    };
    println!("WeChat callback URL: http://{addr}/wechat, {mode}, signed with {using}");
    println!("Try the handshake (prints hello):");
    println!("  curl '{}&echostr=hello'", signed_url(nonce));
    println!("Try a text message (for the next 5 minutes):");
    println!(
        "  curl '{}&openid=oUser' -H 'Content-Type: text/xml' --data \
         '<xml><ToUserName><![CDATA[gh_demo]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
         <CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[hello]]></Content><MsgId>1</MsgId></xml>'",
        signed_url(nonce.wrapping_add(1))
    );
}
