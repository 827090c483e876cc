//! Tower middleware for WeChat callback servers (Official Accounts, WeCom, Mini Programs
//! that push XML), for axum and plain hyper, and (feature `client`) a reliable client for
//! the WeChat API calls those servers make.
//!
//! WeChat POSTs every user message to your URL and waits 5 seconds; a late or wrong answer
//! means retries, duplicate processing and "该公众号暂时无法提供服务" for the user.
//! [`CallbackLayer`] makes that URL safe, typed and fast with one `.layer(...)`:
//!
//! ```text
//! request ─► TimingLayer ─► AllowLayer ─► VerifyLayer ─► DedupLayer ─► FastAckLayer ─► handler
//! ```
//!
//! - [`TimingLayer`]: a `tracing` span and one log line per callback (MsgId, status,
//!   latency), latency percentiles per message type;
//! - [`AllowLayer`]: (off by default) only WeChat's published addresses may call, checked
//!   before the body is read, proxy-aware, refreshed from WeChat with feature `client`;
//!   see [`allow`];
//! - [`VerifyLayer`]: answers the GET handshake, checks every POST's signature against your
//!   token, refuses replays and oversized bodies, decrypts safe-mode messages, and parses
//!   the XML once into a [`Message`]; the handler answers with a typed [`Reply`];
//! - [`DedupLayer`]: WeChat's retries run the handler once (feature `dedup`);
//! - [`FastAckLayer`]: every callback is answered inside WeChat's deadline while slow
//!   handlers finish in the background (feature `fast-ack`).
//!
//! # Quick start (axum)
//!
//! ```toml
//! [dependencies]
//! tower-wechat = { version = "0.1", features = ["server"] }
//! axum = "0.8"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "signal"] }
//! ```
//!
#![cfg_attr(feature = "server", doc = "```no_run")]
#![cfg_attr(not(feature = "server"), doc = "```ignore")]
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use tower_wechat::serve::Server;
//! use tower_wechat::{CallbackLayer, Message, MessageKind, Reply, ReplyContent, Token};
//!
//! async fn echo(message: Message) -> Reply {
//!     match &message.kind {
//!         MessageKind::Text { content } => message.reply(ReplyContent::text(content.clone())),
//!         _ => Reply::success(),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = CallbackLayer::new(Token::new(std::env::var("WECHAT_TOKEN")?)?);
//! let handle = stack.handle();
//! let app = Router::new().route("/wechat", post(echo)).layer(stack);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! // Header read timeout, connection cap, bounded graceful shutdown (feature `server`).
//! Server::new(listener)
//!     .serve(app, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! handle.shutdown(Duration::from_secs(10)).await; // let background handlers finish
//! # Ok(())
//! # }
//! ```
//!
//! `axum::serve` works too, but sets no timeout at all: a client that sends its request
//! slowly keeps its connection forever. [`serve::Server`] (feature `server`) is hyper's
//! HTTP/1 server with a 5 s header read timeout (also the idle keep-alive time), 16 KiB
//! request heads, at most 512 connections and a shutdown that gives up on open connections
//! after 5 s; [`VerifyLayer`] adds a 3 s body-read deadline whatever the server.
//!
//! The GET handshake never reaches `echo`: the stack answers it. Put the stack on the
//! callback route only (on a router that holds just that route, or with
//! `MethodRouter::layer`), since it refuses every request that WeChat did not sign.
//!
//! The layers can be assembled by hand too (to leave one out, or to put others between
//! them): list them in this order in a `tower::ServiceBuilder`, which applies them
//! outermost first. `Router::layer(a).layer(b)` does the reverse (`b` ends up outside
//! `a`); a stack in an order that cannot work says so in one warning (see [`stack`]).
//!
//! # Plain hyper
//!
//! Each layer's service is an ordinary tower service; serve it with
//! `hyper_util::service::TowerToHyperService`. The handler receives the verified body as a
//! `Request<Full<Bytes>>` and finds the [`Message`] in its extensions; a [`Reply`] converts
//! into `http::Response<Full<Bytes>>`:
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_wechat::{CallbackLayer, Message, Reply, Token};
//!
//! async fn handle(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     let message = request.extensions().get::<Message>().expect("behind VerifyLayer");
//!     let _ = message.msg_id;
//!     Ok(Reply::success().into())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(CallbackLayer::new(Token::new("mytoken").unwrap()))
//!     .service_fn(handle);
//! // An unsigned request is refused by the stack, never reaching `handle`.
//! let response = service
//!     .oneshot(Request::post("/wechat").body(Full::<Bytes>::default()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(response.status(), 400);
//! // Serve it: hyper::server::conn::http1::Builder::new()
//! //     .serve_connection(io, hyper_util::service::TowerToHyperService::new(service))
//! # }
//! ```
//!
//! # Choices worth knowing
//!
//! - **Statuses.** Missing or malformed query parameters, unreadable bodies, malformed XML
//!   and undecryptable `Encrypt` get 400; a wrong `signature` or `msg_signature`, a timestamp
//!   outside the window, a reused nonce, a message for another app id, or an `openid` that
//!   is not the sender get 403; other
//!   methods 405; bodies over the limit 413; a body not received 3 s after its request
//!   arrived 408 ([`VerifyLayer::body_timeout`]). Each with a short fixed plain-text
//!   reason, never anything the request held. See [`verify::Rejection`].
//! - **Logs.** One warning per refused request, with the path once, cut to 64 bytes, its
//!   control characters escaped; at most 10 such warnings per 10 s, the rest counted
//!   ([`verify::VerifyHandle`]) and summed up in the next one. No text from a request
//!   reaches a log line unescaped or unbounded: parse errors are fixed texts, names from a
//!   body are cut and escaped.
//! - **Replays.** Timestamps more than 300 s from the server's clock are refused (see
//!   [`VerifyLayer::timestamp_window`]). A timestamp + nonce pair is remembered with a
//!   fingerprint of its body: the same pair with another body is refused, while a
//!   byte-identical repeat, which is what WeChat's own retries look like, passes with
//!   [`CallbackQuery::redelivered`] set. Memory is bounded (4 MiB by default); see
//!   [`VerifyLayer::nonce_cache_bytes`].
//! - **Body.** Capped at 64 KiB by default ([`VerifyLayer::body_limit`]); read once, parsed
//!   once, handed on unchanged.
//! - **Messages.** Unknown message and event types are kept with all their fields, never
//!   refused; see [`message`].
//! - **Safe mode** (feature `crypto`). [`VerifyLayer::safe_mode`] with a
//!   [`verify::SafeMode`] (EncodingAESKey + app id / CorpID) checks `msg_signature` over
//!   `Encrypt` — only the encrypted part is trusted, also in compatibility mode — decrypts,
//!   checks the receive id, hands the handler the plaintext XML and the same [`Message`] as
//!   plain mode, and encrypts its passive reply (not `success` or an empty answer, which
//!   WeChat takes as they are). WeCom's encrypted handshake is answered decrypted. Plain-mode
//!   messages are refused unless [`verify::SafeMode::accept_plain_mode`]. In safe mode a
//!   callback is not authenticated until its body is read, so the body limit (and the
//!   parser's bounds on names and element counts) is what bounds the work an unsigned
//!   request can cause.
//! - **`openid`.** The query is not signed; a callback whose `openid` is not the message's
//!   `FromUserName` is refused (403).
//! - **Layer order**, outermost first: `TimingLayer → AllowLayer → VerifyLayer → DedupLayer →
//!   FastAckLayer → handler`, which [`CallbackLayer`] builds. Dedup needs the [`Message`]
//!   that `VerifyLayer` puts in the extensions; putting it outside FastAck lets retries be
//!   answered without a slot. Layers do not import each other: what one tells another goes
//!   through a [`hook::CallbackHook`] in the request extensions.
//! - **Replies read whole** (to store them for retries, to encrypt them) are capped at
//!   [`body::REPLY_LIMIT`] (64 KiB); a larger or failing reply body is answered 500.
//! - **Fast ack.** Deadline 4 s by default; a late handler's callback is answered `success`
//!   and its reply dropped. A full bound (1024 handlers) answers 503, never `success`. See
//!   [`ack`].
//! - **Dedup.** Keyed by path + account + `MsgId` (events: sender + `CreateTime` + event);
//!   replies kept 5 minutes; only a 2xx answer is kept, anything else (or an error) frees the
//!   key for the retry. The in-memory store holds at most 16 MiB (keys and replies, see
//!   [`dedup::MemoryStore::with_budget`]). With an unreachable store the layer fails open
//!   (processes without dedup) unless [`dedup::DedupLayer::fail_closed`]; whatever the
//!   store does, it answers within 4.5 s of the callback's arrival
//!   ([`dedup::DedupLayer::budget`]). See [`dedup`].
//!
//! # Timing
//!
//! [`TimingLayer`], outermost, opens a `tracing` span per callback, logs one line per
//! callback with its `MsgId` (or event) and latency (WARN past a budget, ERROR past WeChat's
//! 5 s deadline), times background work, and keeps latency percentiles per message type; see
//! [`timing`].
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | [`Message`] and [`CallbackQuery`] extractors, `IntoResponse` for [`Reply`] |
//! | `crypto` | yes | safe mode: the [`crypto`] module (RustCrypto `aes` + `cbc`) and [`VerifyLayer::safe_mode`] |
//! | `fast-ack` | yes | [`ack::FastAckLayer`] (tokio tasks and timers) and the durable hand-off: [`journal`] (memory, file) and its recovery worker |
//! | `dedup` | yes | [`dedup::DedupLayer`] and its in-memory store |
//! | `body-timeout` | yes | [`VerifyLayer`]'s body-read deadline (`VerifyLayer::body_timeout`, a tokio timer) |
//! | `server` | no | `serve::Server`: hyper's HTTP/1 server with header read timeout, connection cap and bounded graceful shutdown |
//! | `tokio` | no | both of the above (kept as an alias: the one feature these two were before) |
//! | `redis` | no | `dedup::RedisStore`, a dedup store shared by several replicas; `journal::RedisJournal`, a journal they share |
//! | `client` | no | the outbound API client: `client::WeChatClient`, access_token cache, retry, circuit breaker (hyper-util + rustls); `allow::CallbackIps`, the allow-list refreshed from WeChat's published addresses |
//! | `otel` | no | OpenTelemetry trace context (module `otel`, the `opentelemetry` API crate only): the callback span continues an incoming `traceparent`, journal entries keep it for their recovered runs, the client sends it |
//! | `metrics` | no | [`TimingLayer`]'s histograms and counters through the `metrics` facade (`timing::metrics`), and [`AllowLayer`]'s list size, age and refusals (`allow::metrics`) |
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(fuzzing)]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
#[cfg(feature = "fast-ack")]
#[cfg_attr(docsrs, doc(cfg(feature = "fast-ack")))]
pub mod ack;
pub mod allow;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod body;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
mod clock;
#[cfg(feature = "crypto")]
#[cfg_attr(docsrs, doc(cfg(feature = "crypto")))]
pub mod crypto;
#[cfg(feature = "dedup")]
#[cfg_attr(docsrs, doc(cfg(feature = "dedup")))]
pub mod dedup;
mod hashed;
pub mod hook;
pub mod journal;
#[cfg(any(feature = "fast-ack", feature = "dedup"))]
mod label;
mod macros;
pub mod message;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
mod redact;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod serve;
pub mod signature;
#[cfg(all(feature = "fast-ack", feature = "dedup"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "fast-ack", feature = "dedup"))))]
pub mod stack;
pub mod timing;
pub mod verify;

pub use message::{Event, Message, MessageKind, Reply, ReplyContent};

/// The boxed error type the crate's body and service bounds convert into.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub use allow::AllowLayer;
pub use signature::Token;
pub use timing::TimingLayer;
pub use verify::{CallbackQuery, Verify, VerifyLayer};

#[cfg(feature = "fast-ack")]
pub use ack::FastAckLayer;
#[cfg(feature = "dedup")]
pub use dedup::DedupLayer;
#[cfg(all(feature = "fast-ack", feature = "dedup"))]
pub use stack::{CallbackHandle, CallbackLayer, CallbackService};

/// The README's Rust examples, compiled as doc tests.
#[cfg(all(
    doctest,
    feature = "axum",
    feature = "crypto",
    feature = "fast-ack",
    feature = "dedup",
    feature = "server"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
