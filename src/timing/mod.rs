//! Timing of WeChat callbacks: a span and one access-log line per callback, latency
//! statistics per message type, and warnings long before WeChat's 5 s deadline.
//!
//! [`TimingLayer`] sits outermost, before [`VerifyLayer`](crate::VerifyLayer):
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use tower::ServiceBuilder;
//! use tower_wechat::timing::TimingLayer;
//! use tower_wechat::{Message, Reply, Token, VerifyLayer};
//!
//! async fn handler(_message: Message) -> Reply {
//!     Reply::success()
//! }
//!
//! let timing = TimingLayer::new().budget(Duration::from_millis(800));
//! let stats = timing.stats();
//! let app: Router = Router::new().route("/wechat", post(handler)).layer(
//!     ServiceBuilder::new()
//!         .layer(timing)
//!         .layer(VerifyLayer::new(Token::new("mytoken").unwrap())),
//! );
//! // Later: percentiles per message type.
//! println!("{}", stats.snapshot());
//! ```
//!
//! # What is logged
//!
//! Everything under the target `tower_wechat::timing`.
//!
//! - **A span** `wechat_callback` (INFO) per callback, with `method` and `path` (never the
//!   query: it holds the signature and the openid). `msg_type`, `msg_id`, `event`,
//!   `event_key` and `openid` (masked: first 4 and last 2 characters) are recorded when the
//!   message is known; `status` and `latency_ms` when the response is. The inner services
//!   are called and polled inside it, so the handler's own events are under it too.
//! - **One line per callback** when its response head is ready (the body is not waited
//!   for): `callback answered`, with `msg_type`, `msg_id` (or `event` and `event_key`),
//!   `status` and `latency_ms`, at INFO; at WARN (`callback answered over budget`, with
//!   `budget_ms`) past the [budget](TimingLayer::budget) (default 1 s); at ERROR past
//!   WeChat's 5 s [deadline](TimingLayer::deadline). A callback whose future is dropped
//!   unanswered (the client went away) gets `callback dropped unanswered` at WARN (ERROR
//!   past the deadline); an inner error without a response, ERROR. A response marked
//!   [`Summarized`](crate::hook::Summarized) (a refusal by
//!   [`AllowLayer`](crate::AllowLayer), which logs those in a summary) gets its line at
//!   DEBUG, so a flood from elsewhere does not flood the log; it is still counted.
//!   A request refused with a
//!   4xx before any message was parsed (a bad signature, malformed XML …) gets its line at
//!   DEBUG (`callback refused`): VerifyLayer already logged why, in one bounded and
//!   rate-limited warning, so a flood of bad requests does not cost two lines each.
//! - **Background work.** [`Timing`] puts a [`CallbackHook`](crate::hook::CallbackHook) in the
//!   request extensions; when FastAck moves a slow handler to the background and it ends,
//!   one line `background work finished` is logged under the callback's span with
//!   `outcome` and `background_ms` (INFO when completed, WARN when failed or panicked), and
//!   the duration recorded per outcome. The access line of such a callback has
//!   `background=true`. A callback the journal's recovery worker runs again (see
//!   [`journal`](crate::journal)) is logged like any other, with `recovered=true` and its
//!   `attempt`.
//!
//! No token, key, signature, query or message content is ever logged; body-derived names
//! (unknown types, event keys) and the path are cut to 64 bytes with control characters
//! escaped, and body-derived names are logged quoted.
//!
//! The line carries the message's fields itself, not only through the span, so it still
//! names the message where the INFO span is filtered out (say `RUST_LOG=warn`, to see only
//! slow callbacks). With `tracing_subscriber::fmt()`, a callback looks like:
//!
//! ```text
//! INFO wechat_callback{method=POST path=/wechat msg_type="text" msg_id=24567890123456789 openid="oia2****Lw"}: tower_wechat::timing: callback answered msg_type="text" msg_id=24567890123456789 status=200 latency_ms=0.412
//! ```
//!
//! # Where the message fields come from
//!
//! TimingLayer only sees the raw request. It puts a [`CallbackHook`](crate::hook::CallbackHook)
//! in the request extensions, which travel inward with the request; whoever holds the
//! parsed [`Message`](crate::Message) tells it
//! ([`message_parsed`](crate::hook::CallbackHook::message_parsed)):
//! [`VerifyLayer`](crate::VerifyLayer) does, as soon as it has parsed the message, without
//! knowing anything of timing (see [`hook`](crate::hook)). For a stack where the message
//! comes from elsewhere, [`RecordMessageLayer`] placed inside that source tells the hook
//! from the request extensions. A [`CallbackTiming`] is in the extensions too, for handlers
//! that want the callback's span or elapsed time. Until a message is
//! recorded, statistics file the callback under [`MsgType::NoMessage`] (`none`), as they do
//! handshakes and rejected requests.
//!
//! # Statistics
//!
//! [`LatencyStats`] keeps one lock-free histogram per [`MsgType`] and per background
//! outcome (atomic bucket counters; recording takes no lock and allocates nothing).
//! [`LatencyStats::snapshot`] gives count, sum, max, over-budget and over-deadline counts,
//! and any percentile. Resolution: exact below 32 µs, then 32 buckets per power of two, so
//! a reported percentile is at most 3.125 % above the true value (and never below it).
//!
//! With the feature `metrics`, the same is recorded through the `metrics` facade under the
//! names listed in the `metrics` submodule.
//!
//! # With tower-http's `TraceLayer`
//!
//! `TraceLayer` logs its request and response events at DEBUG by default (failures, i.e.
//! 5xx, at ERROR), so the two compose without double logging: TimingLayer writes the INFO
//! line, and its `wechat_callback` span is a child of TraceLayer's `request` span when
//! TraceLayer is outside it. Do not raise TraceLayer's response event to INFO (the usual
//! tower-http access-log setup, `DefaultOnResponse::new().level(Level::INFO)`): every
//! callback would be logged twice. Mind that TraceLayer's default span records the whole
//! URI, query included (`signature`, `openid`); give it a span with the path only:
//!
//! ```
//! use axum::{Router, routing::post};
//! use http::Request;
//! use tower::ServiceBuilder;
//! use tower_http::trace::TraceLayer;
//! use tower_wechat::timing::TimingLayer;
//! use tower_wechat::{Reply, Token, VerifyLayer};
//!
//! let app: Router = Router::new().route("/wechat", post(|| async { Reply::success() })).layer(
//!     ServiceBuilder::new()
//!         .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
//!             tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
//!         }))
//!         .layer(TimingLayer::new())
//!         .layer(VerifyLayer::new(Token::new("mytoken").unwrap())),
//! );
//! ```
//!
//! `tests/timing.rs` checks both: one INFO line per callback with this setup, two with
//! TraceLayer's response event at INFO.

mod callback;
mod future;
mod histogram;
mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "otel")]
mod otel;
mod record;
mod service;
mod state;
mod stats;

pub use callback::CallbackTiming;
pub use future::ResponseFuture;
pub use histogram::HistogramSnapshot;
pub use layer::TimingLayer;
pub use record::{RecordMessage, RecordMessageLayer};
pub use service::Timing;
pub use stats::{LatencyStats, MsgType, StatsSnapshot};

#[cfg(test)]
mod tests;
