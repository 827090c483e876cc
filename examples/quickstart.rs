//! An axum echo bot for a WeChat Official Account, behind the whole inbound stack.
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
//! - `WECHAT_ALLOWED_IPS`: only these addresses and CIDR ranges may call, comma-separated
//!   (e.g. WeChat's published list, `101.226.103.0/25,101.226.62.0/26,…`); any other gets
//!   `403` before its body is read. Unset: no check.
//! - `WECHAT_TRUSTED_PROXIES`: CIDR ranges of your reverse proxies or load balancers (e.g.
//!   `127.0.0.1/32` for an nginx on this machine); from them, the client address is read
//!   from `X-Forwarded-For` (the right-most address that is not a trusted proxy). Only
//!   with `WECHAT_ALLOWED_IPS`.
//!
//! A bad value of any of these stops the start with an error naming the variable (and, for
//! the address lists, the bad entry).
//!
//! At start it prints curl lines, signed with the token (and in safe mode encrypted with the
//! key), to try the handshake and a message. The log (`RUST_LOG`, default `info`) has one
//! line per callback with its MsgId and latency.
//!
//! It is served by `tower_wechat::serve::Server`, with the timeouts a server facing the
//! internet needs: a request head must arrive within 5 s (also the idle keep-alive time), a
//! body within 3 s of its request (VerifyLayer, 408 past it), at most 512 connections at
//! once. Ctrl-C or SIGTERM stops taking callbacks, drains open connections (up to 5 s) and
//! lets running handlers finish (up to 10 s).

use std::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::post;
use tower_wechat::allow::IpSet;
use tower_wechat::crypto::{self, EncodingAesKey};
use tower_wechat::serve::Server;
use tower_wechat::signature::Signature;
use tower_wechat::verify::SafeMode;
use tower_wechat::{
    AllowLayer, CallbackLayer, Event, Message, MessageKind, Reply, ReplyContent, Token,
};

#[path = "support/log.rs"]
pub mod log;
pub use log::BufferedLog;

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
            let media_id = media_id.clone();
            return message.into_reply(ReplyContent::image(media_id));
        }
        MessageKind::Location { label, .. } => format!("You are at: {label}"),
        MessageKind::Link { title, url, .. } => format!("Link received: {title} ({url})"),
        MessageKind::Event(Event::Subscribe { .. }) => {
            "Welcome! Send me any text and I will echo it.".to_owned()
        }
        MessageKind::Event(Event::Click { event_key }) => format!("You clicked: {event_key}"),
        _ => return Reply::success(),
    };
    message.into_reply(ReplyContent::text(content))
}

/// The quick start's router: `/wechat` behind `stack` (Timing → Verify → Dedup → FastAck).
pub fn app(stack: CallbackLayer) -> Router {
    Router::new().route("/wechat", post(reply)).layer(stack)
}

/// Safe mode as the environment configures it, if it does.
pub fn safe_mode_from_env() -> Result<Option<SafeMode>, Box<dyn Error>> {
    let (key, app_id) = match (
        std::env::var("WECHAT_AES_KEY"),
        std::env::var("WECHAT_APPID"),
    ) {
        (Ok(key), Ok(app_id)) => (key, app_id),
        (Ok(_), Err(_)) => return Err("WECHAT_AES_KEY is set: set WECHAT_APPID too".into()),
        (Err(_), Ok(_)) => return Err("WECHAT_APPID is set: set WECHAT_AES_KEY too".into()),
        (Err(_), Err(_)) => return Ok(None),
    };
    // The errors name the variable and what is wrong with it, never its value.
    let key =
        EncodingAesKey::new(key.trim()).map_err(|error| format!("WECHAT_AES_KEY: {error}"))?;
    let app_id = app_id.trim();
    if app_id.is_empty() || !app_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(
            "WECHAT_APPID: expected the app id (wx…) or CorpID (ww…), letters and digits only"
                .into(),
        );
    }
    let mut safe_mode = SafeMode::new(key, app_id);
    if let Ok(previous) = std::env::var("WECHAT_PREVIOUS_AES_KEY") {
        let previous = EncodingAesKey::new(previous.trim())
            .map_err(|error| format!("WECHAT_PREVIOUS_AES_KEY: {error}"))?;
        safe_mode = safe_mode.previous_key(previous);
    }
    if std::env::var("WECHAT_ACCEPT_PLAIN").is_ok_and(|value| value == "1") {
        safe_mode = safe_mode.accept_plain_mode();
    }
    Ok(Some(safe_mode))
}

/// `WECHAT_TOKEN`, or the demo token.
pub fn token_from_env() -> Result<Token, Box<dyn Error>> {
    let token = std::env::var("WECHAT_TOKEN").unwrap_or_else(|_| DEMO_TOKEN.to_owned());
    Ok(Token::new(token.trim()).map_err(|error| format!("WECHAT_TOKEN: {error}"))?)
}

/// The allow-list as `WECHAT_ALLOWED_IPS` and `WECHAT_TRUSTED_PROXIES` configure it; `None`
/// when `WECHAT_ALLOWED_IPS` is unset (or empty): no check.
pub fn allow_from_env() -> Result<Option<AllowLayer>, Box<dyn Error>> {
    let allowed = std::env::var("WECHAT_ALLOWED_IPS").ok();
    let trusted = std::env::var("WECHAT_TRUSTED_PROXIES").ok();
    Ok(allow_from(allowed.as_deref(), trusted.as_deref())?)
}

/// The allow-list from the two variables' values; errors name the variable and the bad
/// entry (addresses are not secrets).
pub fn allow_from(
    allowed: Option<&str>,
    trusted: Option<&str>,
) -> Result<Option<AllowLayer>, String> {
    let allowed = allowed.filter(|value| !value.trim().is_empty());
    let trusted = trusted.filter(|value| !value.trim().is_empty());
    let Some(allowed) = allowed else {
        if trusted.is_some() {
            return Err(
                "WECHAT_TRUSTED_PROXIES is set but WECHAT_ALLOWED_IPS is not: the \
                        proxies' forwarded addresses are checked against the allowed ones, \
                        so set both or neither"
                    .into(),
            );
        }
        return Ok(None);
    };
    let list = IpSet::parse(allowed).map_err(|error| format!("WECHAT_ALLOWED_IPS: {error}"))?;
    if list.is_empty() {
        return Err("WECHAT_ALLOWED_IPS lists no address (unset it to turn the check off)".into());
    }
    let mut layer = AllowLayer::new(list);
    if let Some(trusted) = trusted {
        let proxies =
            IpSet::parse(trusted).map_err(|error| format!("WECHAT_TRUSTED_PROXIES: {error}"))?;
        layer = layer.trusted_proxies(proxies);
    }
    Ok(Some(layer))
}

/// The stack as the environment configures it.
pub fn stack_from_env() -> Result<CallbackLayer, Box<dyn Error>> {
    let mut stack = CallbackLayer::new(token_from_env()?);
    if let Some(safe_mode) = safe_mode_from_env()? {
        stack = stack.safe_mode(safe_mode);
    }
    if let Ok(seconds) = std::env::var("WECHAT_TIMESTAMP_WINDOW") {
        let window = match seconds.trim().parse::<u64>() {
            Ok(window) => window,
            Err(_) => {
                return Err(format!(
                    "WECHAT_TIMESTAMP_WINDOW must be a whole number of seconds, got {seconds:?}"
                )
                .into());
            }
        };
        stack = stack.verify(|verify| match window {
            0 => verify.disable_timestamp_window(),
            seconds => verify.timestamp_window(Duration::from_secs(seconds)),
        });
    }
    if let Some(allow) = allow_from_env()? {
        stack = stack.allow(|_| allow);
    }
    Ok(stack)
}

/// Logs to stdout at `RUST_LOG` (default `info`), in colour only on a terminal.
///
/// On a terminal every line is written at once. Otherwise (a file, a pipe, a log
/// collector) lines go through [`BufferedLog`]: one `write` for many access lines instead of
/// one per callback, which under load was most of what the line cost the server; and their
/// lines, fields and time are written by [`log::AccessFormat`], [`log::AccessFields`] and
/// [`log::CachedTime`], the default format's text made with less work. A process
/// killed with SIGKILL loses the INFO lines of its last 100 ms (never a warning or an
/// error); use [`init_tracing_line_by_line`] where every line must reach stdout at once.
pub fn init_tracing() {
    let filter = env_filter();
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(log::AccessFields)
            .event_format(log::AccessFormat::default())
            .with_env_filter(filter)
            .with_writer(BufferedLog::start())
            .init();
    }
}

/// Like [`init_tracing`], but every line is written to stdout as it is logged (one `write`
/// each): for a process whose last lines must survive a SIGKILL (the fast-ack example, whose
/// crash test counts its `processed` lines).
#[allow(dead_code)] // used by the fast-ack example, which includes this file
pub fn init_tracing_line_by_line() {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(env_filter())
        .init();
}

fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}

/// `WECHAT_ADDR`, or `127.0.0.1:3000`.
pub fn listen_addr() -> Result<SocketAddr, Box<dyn Error>> {
    let addr = std::env::var("WECHAT_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    Ok(addr
        .parse()
        .map_err(|error| format!("WECHAT_ADDR: {error}"))?)
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what orchestrators send before killing).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
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
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: no new connections; running handlers may finish");
}

#[allow(dead_code)] // the integration tests include this file for `app`
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    init_tracing();
    let served = serve().await;
    BufferedLog::flush();
    served
}

/// Serves until Ctrl-C or SIGTERM, then lets running handlers finish.
async fn serve() -> Result<(), Box<dyn Error>> {
    let addr = listen_addr()?;
    let stack = stack_from_env()?;
    let handle = stack.handle();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    print_how_to_try(listener.local_addr()?);
    match handle.allow().stats().enabled {
        true => println!("Only these addresses may call: {}", handle.allow().list()),
        false => println!("Any address may call (set WECHAT_ALLOWED_IPS to allow only WeChat's)"),
    }

    let report = Server::new(listener)
        .serve(app(stack), shutdown_signal())
        .await?;
    tracing::info!(?report, "server stopped");
    // No new callbacks now; let handlers still running in the background finish.
    handle.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// Prints signed curl lines for the handshake and a text message, each with its own nonce
/// (a timestamp + nonce pair is accepted for one request only). In safe mode the message is
/// encrypted and signed with `msg_signature`, as WeChat sends it.
pub fn print_how_to_try(addr: SocketAddr) {
    let (Ok(token), Ok(safe_mode)) = (token_from_env(), safe_mode_from_env()) else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let timestamp = now.as_secs().to_string();
    let nonce = now.subsec_nanos();
    let signed_url = |nonce: u32| {
        let nonce = nonce.to_string();
        let signature = Signature::plain(&token, &timestamp, &nonce);
        format!("http://{addr}/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}")
    };
    let using = if std::env::var("WECHAT_TOKEN").is_ok() {
        "the token from WECHAT_TOKEN"
    } else {
        "the demo token (set WECHAT_TOKEN to use yours)"
    };
    let mode = if safe_mode.is_some() {
        "safe mode"
    } else {
        "plain mode"
    };
    println!("WeChat callback URL: http://{addr}/wechat, {mode}, signed with {using}");
    println!("Try the handshake (prints hello):");
    println!("  curl '{}&echostr=hello'", signed_url(nonce));
    let message = format!(
        "<xml><ToUserName><![CDATA[gh_demo]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\
         <CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[hello]]></Content><MsgId>1</MsgId></xml>"
    );
    println!("Try a text message (for the next 5 minutes):");
    let message_nonce = nonce.wrapping_add(1);
    match std::env::var("WECHAT_AES_KEY") {
        // Safe mode: the message goes encrypted, signed by msg_signature over `Encrypt`.
        Ok(key) if safe_mode.is_some() => {
            let (Ok(key), Ok(app_id)) = (
                EncodingAesKey::new(key.trim()),
                std::env::var("WECHAT_APPID"),
            ) else {
                return;
            };
            let encrypted = crypto::encrypt(&key, message.as_bytes(), app_id.trim());
            let nonce = message_nonce.to_string();
            let msg_signature = Signature::message(&token, &timestamp, &nonce, &encrypted);
            let signature = Signature::plain(&token, &timestamp, &nonce);
            println!(
                "  curl 'http://{addr}/wechat?signature={signature}&msg_signature={msg_signature}\
                 &timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&openid=oUser' \
                 -H 'Content-Type: text/xml' --data \
                 '<xml><ToUserName><![CDATA[gh_demo]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>'"
            );
            println!("  (the answer is encrypted too; tests/peer/wechat_peer.py decrypts it)");
        }
        _ => println!(
            "  curl '{}&openid=oUser' -H 'Content-Type: text/xml' --data '{message}'",
            signed_url(message_nonce)
        ),
    }
}
