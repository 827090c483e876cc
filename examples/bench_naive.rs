//! The two servers the full stack is compared with by `benches/compare.sh`: a naive,
//! hand-written WeChat handler, and the floor. Not a model to follow: it checks far less
//! than the stack (no replay window, no nonce memory, no de-duplication, no deadline, no
//! log line, no body bound beyond axum's default).
//!
//! ```text
//! cargo run --release --example bench_naive            # naive handler on 127.0.0.1:8201
//! cargo run --release --example bench_naive -- floor   # the floor on 127.0.0.1:8202
//! ```
//!
//! - `naive`: `POST /wechat` checks the `signature` (SHA-1 over the sorted token, timestamp
//!   and nonce), pulls `ToUserName`, `FromUserName`, `MsgType` and `Content` out with a
//!   quick-xml walk, and answers a `format!`-built text reply echoing the content (`success`
//!   for other types). What a first version written by hand usually is.
//! - `floor`: any request to any path is answered `success`, nothing checked: the cost of
//!   axum, hyper and the load generator alone.
//!
//! Environment: `BENCH_ADDR` (default `127.0.0.1:8201`, `127.0.0.1:8202` for the floor),
//! `WECHAT_TOKEN` (default `towerwechatdemo`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use bytes::Bytes;
use quick_xml::Reader;
use quick_xml::events::Event;
use sha1::{Digest, Sha1};

/// The signed query parameters, as sent.
#[derive(Default)]
struct Signed {
    signature: String,
    timestamp: String,
    nonce: String,
}

fn signed(query: &str) -> Signed {
    let mut signed = Signed::default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "signature" => signed.signature = value.into_owned(),
            "timestamp" => signed.timestamp = value.into_owned(),
            "nonce" => signed.nonce = value.into_owned(),
            _ => {}
        }
    }
    signed
}

fn verify(token: &str, query: &Signed) -> bool {
    let mut parts = [token, query.timestamp.as_str(), query.nonce.as_str()];
    parts.sort_unstable();
    let digest = Sha1::digest(parts.concat().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex == query.signature
}

#[derive(Default)]
struct Msg {
    to: String,
    from: String,
    msg_type: String,
    content: String,
}

fn parse(xml: &str) -> Result<Msg, quick_xml::Error> {
    let mut reader = Reader::from_str(xml);
    let mut msg = Msg::default();
    let mut field: Option<&'static str> = None;
    loop {
        match reader.read_event()? {
            Event::Start(start) => {
                field = match start.name().as_ref() {
                    b"ToUserName" => Some("to"),
                    b"FromUserName" => Some("from"),
                    b"MsgType" => Some("type"),
                    b"Content" => Some("content"),
                    _ => None,
                }
            }
            Event::CData(text) => set(&mut msg, field, &String::from_utf8_lossy(&text)),
            Event::Text(text) => set(&mut msg, field, &text.unescape()?),
            Event::End(_) => field = None,
            Event::Eof => return Ok(msg),
            _ => {}
        }
    }
}

fn set(msg: &mut Msg, field: Option<&str>, value: &str) {
    let slot = match field {
        Some("to") => &mut msg.to,
        Some("from") => &mut msg.from,
        Some("type") => &mut msg.msg_type,
        Some("content") => &mut msg.content,
        _ => return,
    };
    slot.push_str(value);
}

fn cdata(text: &str) -> String {
    text.replace("]]>", "]]]]><![CDATA[>")
}

async fn message(
    State(token): State<Arc<str>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = signed(query.as_deref().unwrap_or_default());
    if !verify(&token, &query) {
        return (StatusCode::FORBIDDEN, "invalid signature").into_response();
    }
    let Ok(body) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "not UTF-8").into_response();
    };
    let msg = match parse(body) {
        Ok(msg) => msg,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad xml").into_response(),
    };
    if msg.msg_type != "text" {
        return "success".into_response();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let reply = format!(
        "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{}]]></FromUserName>\
         <CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[You said: {}]]></Content></xml>",
        cdata(&msg.from),
        cdata(&msg.to),
        cdata(&msg.content)
    );
    ([(header::CONTENT_TYPE, "application/xml")], reply).into_response()
}

/// The naive handler's router: `POST /wechat`.
pub fn naive_app(token: Arc<str>) -> Router {
    Router::new()
        .route("/wechat", post(message))
        .with_state(token)
}

/// The floor's router: `success` to anything.
pub fn floor_app() -> Router {
    Router::new().fallback(any(|| async { "success" }))
}

#[allow(dead_code)] // examples/bench_layers.rs includes this file for its routers
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let floor = std::env::args().nth(1).is_some_and(|mode| mode == "floor");
    let default_addr = if floor {
        "127.0.0.1:8202"
    } else {
        "127.0.0.1:8201"
    };
    let addr = std::env::var("BENCH_ADDR").unwrap_or_else(|_| default_addr.to_owned());
    let token: Arc<str> = std::env::var("WECHAT_TOKEN")
        .unwrap_or_else(|_| "towerwechatdemo".to_owned())
        .into();
    let app = if floor { floor_app() } else { naive_app(token) };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let mode = if floor { "floor" } else { "naive" };
    eprintln!("bench_naive ({mode}) listening on {addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
