//! Outbound WeChat API client (feature `client`): access_token, retries with backoff,
//! circuit breaker; template, customer-service and subscribe messages for Official Accounts
//! and Mini Programs, and WeCom (企业微信) app messages.
//!
//! [`WeChatClient`] is the one-call way in. It is assembled from tower layers that can be
//! used (and rearranged) on their own, outermost first:
//!
//! ```text
//! call ─► CircuitBreaker ─► Retry(backoff+jitter, budget) ─► AccessToken ─► Timeout(per attempt) ─► ReadBody ─► HTTP client
//! ```
//!
//! - [`CircuitBreakerLayer`]: fails fast with [`ClientError::CircuitOpen`] while WeChat keeps
//!   failing.
//! - [`RetryPolicy`]: a `tower::retry::Policy` with exponential backoff, full jitter, a cap
//!   and a budget.
//! - [`AccessTokenLayer`]: the cached token, refreshed ahead of expiry, one fetch at a time;
//!   a refused token (40001 / 40014 / 42001) is replaced once and the call retried once.
//!   The wait for a token is bounded on its own and fails as [`ClientError::Token`]
//!   (not sent); the token goes only to the base URL's scheme, host and port.
//! - [`TimeoutLayer`]: each attempt's time limit, on the HTTP exchange alone, so that a
//!   [`ClientError::Timeout`] always means "sent, outcome unknown".
//! - [`ReadBodyLayer`]: buffers answers and types the HTTP client's errors.
//! - [`http_client`]: hyper-util's pooled client with rustls (ring, Mozilla's roots).
//!
//! ```no_run
//! use tower_wechat::client::{AppSecret, CustomMessage, TemplateMessage, WeChatClient};
//!
//! # async fn run() -> Result<(), tower_wechat::client::ClientError> {
//! let client = WeChatClient::builder("wx1234567890abcdef", AppSecret::new("appsecret"))
//!     .base_url("https://api.weixin.qq.com") // the default; point tests at a stand-in
//!     .build()?;
//! let message = TemplateMessage::new("oUser1234", "TEMPLATE_ID")
//!     .data("thing1", "Your order has shipped")
//!     .client_msg_id("order-42-shipped"); // WeChat de-duplicates: safe to retry after a timeout
//! let msgid = client.send_template_message(&message).await?;
//! client.send_custom_message(&CustomMessage::text("oUser1234", "Thanks!")).await?;
//! # let _ = msgid;
//! # Ok(())
//! # }
//! ```
//!
//! Or assemble the layers yourself over any tower HTTP client:
//!
//! ```no_run
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_wechat::client::{
//!     AccessTokenLayer, AppSecret, CircuitBreakerLayer, ReadBodyLayer, RetryPolicy, TimeoutLayer,
//!     WECHAT_API_BASE, WeChatTokenSource, http_client,
//! };
//!
//! # fn main() -> Result<(), tower_wechat::client::ClientError> {
//! let http = ServiceBuilder::new().layer(ReadBodyLayer::new()).service(http_client()?);
//! let source = WeChatTokenSource::new(http.clone(), WECHAT_API_BASE, "wx1234", AppSecret::new("s"))?;
//! let service = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new())
//!     .retry(RetryPolicy::new())
//!     .layer(AccessTokenLayer::new(source).base_url(WECHAT_API_BASE)?)
//!     .layer(TimeoutLayer::new(Duration::from_secs(5)))
//!     .service(http);
//! # let _ = service;
//! # Ok(())
//! # }
//! ```
//!
//! # Messages
//!
//! | send | endpoint | answer | retried after an ambiguous failure |
//! |---|---|---|---|
//! | [`send_template_message`](WeChatClient::send_template_message) | `/cgi-bin/message/template/send` | `msgid` | only with a [`client_msg_id`](TemplateMessage::client_msg_id) |
//! | [`send_custom_message`](WeChatClient::send_custom_message) | `/cgi-bin/message/custom/send` | — | no |
//! | [`send_subscribe_message`](WeChatClient::send_subscribe_message) (Mini Program) | `/cgi-bin/message/subscribe/send` | `msgid` if given | no |
//! | [`send_biz_subscribe_message`](WeChatClient::send_biz_subscribe_message) (Official Account) | `/cgi-bin/message/subscribe/bizsend` | — | no |
//! | [`send_wecom_message`](WeChatClient::send_wecom_message) (WeCom app) | `/cgi-bin/message/send` on [`WECOM_API_BASE`] | [`WeComSent`]: `msgid`, recipients not reached | yes, with WeCom's duplicate check (on by default) |
//! | [`get_json`](WeChatClient::get_json) | any GET | your type | yes (a GET changes nothing) |
//!
//! # Delivered once
//!
//! A retry must not send a message twice. errcode `-1` (WeChat: "system busy, try again
//! later"), HTTP 503 and connect failures mean WeChat did not take the request, so they are
//! always retried. A timeout, a dropped connection, a 502 (a gateway may answer it after the
//! request reached WeChat's backend) or another 5xx leaves it unknown whether WeChat sent
//! the message, so those are retried only for requests marked [`Idempotent`]:
//!
//! - token fetches and [`get_json`](WeChatClient::get_json) calls: they change nothing;
//! - template messages with a [`client_msg_id`](TemplateMessage::client_msg_id): WeChat
//!   sends one message per openid + id within 10 minutes;
//! - WeCom app messages with the duplicate check on (the default): WeCom does not deliver a
//!   message with the same request JSON again within `duplicate_check_interval` (1800 s);
//!   the retry carries the very same bytes, seconds later.
//!
//! Customer-service and subscribe messages have no such id (and a repeated subscribe
//! message could use up another of the user's one-time subscriptions): their ambiguous
//! failures come back as errors for the caller to judge ([`ClientError::not_sent`] is
//! `false` for them). Such a message was delivered at most once; whether it was is unknown.
//!
//! # Errors by class
//!
//! [`ClientError::class`] sorts every failure into an [`ErrorClass`]: `Quota` (45009 daily
//! quota, 45047 customer-service quota, ...), `Permission`, `Configuration` (60020 untrusted
//! IP, wrong secret, ...), `UserRefused` (43101), `Unavailable` (-1, 5xx, no connection, no
//! answer), and a few more; the table with every errcode is on [`ErrorClass`]. The retry
//! policy retries only what [`ErrorClass::is_retryable`] allows, and the circuit breaker
//! counts only what [`ErrorClass::counts_for_breaker`] says: one account's quota, refused
//! user or untrusted IP is neither retried nor opens the breaker for the other accounts.
//!
//! # Several accounts, WeCom apps
//!
//! [`WeChatClient::builder`] is for an Official Account or Mini Program (appid + appsecret,
//! [`WECHAT_API_BASE`]); [`WeChatClient::wecom`] for a WeCom app (corp id + **the app's**
//! secret, [`WECOM_API_BASE`], tokens from `/cgi-bin/gettoken`). [`WeChatClient::account`]
//! opens another account on the same client — an [`Account`] handle sharing the connection
//! pool, settings, retry policy and its host's breaker, with its own token cache keyed by
//! kind, API base, id and secret. Each WeCom app has its own token: two apps of one corp
//! never share a cache (nor, with Redis, a key), so one app's token never goes with
//! another's agentid.
//!
//! # Metrics
//!
//! With the `metrics` feature the client records calls by outcome class, token fetches per
//! account, retries, the breaker's state and the background sender's queue through the
//! `metrics` facade; the names are in the `client::metrics` module (`wechat_client_*`,
//! beside the inbound `wechat_callback_*` of `timing::metrics`).
//!
//! # Defaults
//!
//! | what | default |
//! |---|---|
//! | token refresh | 5 min before expiry (at most half the lifetime), in the background |
//! | per-attempt timeout | 5 s (the HTTP exchange only) |
//! | wait for an access_token | the per-attempt timeout |
//! | retries | 3 attempts, 100 ms base, 2 s cap, full jitter; budget 20 % of calls + 10/s over 10 s |
//! | circuit breaker | opens after 5 consecutive failed calls, 10 s open, 1 probe |
//! | answer body limit | 1 MiB |
//! | WeCom duplicate check | on, 1800 s |
//!
//! # Several replicas
//!
//! Each [`WeChatClient`] fetches its own token by default. Replicas of one app must share
//! one: use `/cgi-bin/stable_token` ([`WeChatClientBuilder::stable_token`]), a central
//! [`TokenSource`], or (feature `redis`) the `RedisTokenStore`: one replica refreshes under a
//! Redis lock and the others read its token. When Redis is unreachable, fetches fail with
//! [`ClientError::Store`] instead of fetching on their own (which would invalidate the
//! other replicas' tokens); tokens already cached keep working until they expire.
//!
//! # Secrets
//!
//! The appsecret, corpsecret and the access_token are kept in [`AppSecret`] and
//! [`ApiToken`], whose `Debug` prints `***`; errors never carry them or a request URL;
//! openids and WeCom userids are shortened in `Debug` output of messages and answers; the
//! metrics' `account` label is the appid or corp id / agentid, never a secret.

mod api;
mod breaker;
mod error;
mod http;
#[cfg(feature = "metrics")]
mod http_metrics;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "otel")]
mod otel;
mod outgoing;
mod read_body;
#[cfg(feature = "redis")]
mod redis_store;
mod retry;
mod secret;
mod sender;
mod source;
mod span;
mod timeout;
mod token;
mod url;
mod wecom;

pub use api::{Account, ClientService, WeChatClient, WeChatClientBuilder};
pub use breaker::{BreakerState, BreakerStats, CircuitBreaker, CircuitBreakerLayer};
pub use error::{ApiError, ClientError, ErrorClass, SharedError};
pub use http::{HttpClient, http_client};
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use http_metrics::{
    HTTP_CLIENT_REQUEST_DURATION, HttpMetrics, HttpMetricsLayer,
    ResponseFuture as HttpMetricsFuture,
};
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use otel::{TraceContext, TraceContextLayer};
pub use outgoing::{
    BizSubscribeMessage, CustomMessage, MiniProgramState, SubscribeMessage, TemplateMessage,
    TemplateWarning,
};
pub use read_body::{ErrCode, ReadBody, ReadBodyLayer, errcode};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::{RedisTokenStore, RedisTokenStoreBuilder};
pub use retry::{Idempotent, RetryPolicy, RetryStats};
pub use secret::{ApiToken, AppSecret};
pub use sender::{
    BackgroundSender, Outgoing, QueueError, SenderReport, SenderRetry, SenderShutdown, Unsent,
};
pub use source::{Endpoint, IssuedToken, TokenRequest, TokenSource, WeChatTokenSource};
pub use timeout::{Timeout, TimeoutLayer};
pub use token::{AccessToken, AccessTokenLayer};
pub use url::{WECHAT_API_BASE, WECOM_API_BASE};
pub use wecom::{WeComArticle, WeComMessage, WeComSent};

/// Response futures of the client layers.
pub mod future {
    pub use super::breaker::ResponseFuture as CircuitBreakerFuture;
    pub use super::read_body::ResponseFuture as ReadBodyFuture;
    pub use super::timeout::ResponseFuture as TimeoutFuture;
    pub use super::token::ResponseFuture as AccessTokenFuture;
}
