//! Only WeChat may call: an allow-list of source addresses, proxy-aware, kept fresh from
//! WeChat's published callback addresses.
//!
//! WeChat publishes the addresses its callbacks come from (`GET /cgi-bin/getcallbackip`).
//! [`AllowLayer`] refuses every request from elsewhere with `403` **before its body is
//! read and before any signature work**, so forged traffic, floods and slow senders from
//! other addresses cost one lookup. It sits right after [`TimingLayer`](crate::TimingLayer):
//!
//! ```text
//! request ─► TimingLayer ─► AllowLayer ─► VerifyLayer ─► DedupLayer ─► FastAckLayer ─► handler
//! ```
//!
//! [`CallbackLayer`](crate::CallbackLayer) builds it there, off by default (one branch per
//! request); turn it on with [`CallbackLayer::allow`](crate::CallbackLayer::allow):
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{Router, routing::post};
//! use tower_wechat::allow::IpSet;
//! use tower_wechat::{AllowLayer, CallbackLayer, Message, Reply, Token};
//!
//! async fn handler(_message: Message) -> Reply {
//!     Reply::success()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let allowed = IpSet::parse("101.226.103.0/25, 101.226.62.0/26, 127.0.0.1")?;
//! let stack = CallbackLayer::new(Token::new("mytoken")?)
//!     .allow(|_| AllowLayer::new(allowed).trusted_proxies(IpSet::loopback()));
//! let handle = stack.handle();
//! let app = Router::new().route("/wechat", post(handler)).layer(stack);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! // The peer address must reach the layer: serve with connect info.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! println!("{:?}", handle.allow().stats());
//! # Ok(())
//! # }
//! ```
//!
//! # Where the client address comes from
//!
//! From the connection's peer address, which the server puts in each request's extensions:
//!
//! - **axum**: serve with `app.into_make_service_with_connect_info::<SocketAddr>()`; the
//!   layer reads axum's `ConnectInfo<SocketAddr>` (feature `axum`).
//! - **hyper**: insert the peer's `std::net::SocketAddr` into each request's extensions
//!   when you accept the connection (`examples/hyper_server.rs` does).
//!
//! A request without either is refused (`403 client address unknown`: the check fails
//! closed), and one WARN, logged once, names the fix. IPv4-mapped IPv6 peers
//! (`::ffff:a.b.c.d`, from a dual-stack socket) count as their IPv4 address.
//!
//! # Behind a reverse proxy or load balancer
//!
//! Then every peer is the proxy, and the client's address is in a header the proxy sets,
//! `X-Forwarded-For` by default. Anyone can send that header, so it is believed only from
//! the peers you list in [`AllowLayer::trusted_proxies`]. The client is then the
//! **right-most address in the header that is not a trusted proxy**: each proxy appends
//! the address it was connected from, so whatever lies left of that was written by the
//! client and proves nothing. If every address in the header is a trusted proxy, the
//! left-most decides; without the header, the peer. At most 16 hops and 1024 bytes are read
//! from the right; a header that gives no readable address within them (a hop that is not
//! an IP address, with an optional port, or more trusted hops than that) is refused:
//! `403 forwarded address unreadable`.
//!
//! **nginx** in front, on the same machine:
//!
//! ```text
//! location /wechat {
//!     proxy_pass http://127.0.0.1:3000;
//!     proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;  # appends $remote_addr
//!     proxy_set_header X-Real-IP $remote_addr;                      # overwrites
//! }
//! ```
//!
//! with `.trusted_proxies(IpSet::loopback())` (or `WECHAT_TRUSTED_PROXIES=127.0.0.1/32` in
//! the quick start). `$proxy_add_x_forwarded_for` appends to whatever the client sent,
//! which the right-most-untrusted rule handles; to read `X-Real-IP` instead (one address,
//! overwritten by nginx), set
//! [`forwarded_header`](AllowLayer::forwarded_header)`(HeaderName::from_static("x-real-ip"))`.
//! Never pick a header your proxy passes through untouched: its value is the client's word.
//!
//! **A cloud load balancer** (Tencent Cloud CLB, Alibaba Cloud SLB/ALB, AWS ALB, …) appends
//! the client address to `X-Forwarded-For` too (on some, a listener option such as "get
//! client IP" must be on; layer-4 listeners pass the client's own address through instead,
//! and then no proxy is to be trusted). Trust the addresses it connects from: its private
//! subnet (e.g. `WECHAT_TRUSTED_PROXIES=10.0.0.0/8`, narrower if you can), and make sure
//! nothing else in that subnet can reach your server. With nginx behind the load balancer,
//! trust both: the header then ends `…, <client>, <load balancer>`, and both trusted hops
//! are skipped.
//!
//! # Refusals
//!
//! | refusal | status, body |
//! |---|---|
//! | the client address is not on the list | `403 address not allowed` |
//! | no peer address in the request extensions | `403 client address unknown` |
//! | a trusted proxy's forwarded header gives no readable address | `403 forwarded address unreadable` |
//!
//! Refusals are counted ([`AllowStats`]) and logged at WARN under the target
//! `tower_wechat::allow`, **at most one line per 10 s**
//! ([`AllowLayer::log_interval`]) naming the refused address (and the proxy it came
//! through) and how many requests were refused since the line before; the others are
//! only counted. The response carries a [`Summarized`](crate::hook::Summarized) mark, so
//! [`TimingLayer`](crate::TimingLayer) logs its access line at DEBUG, not INFO: a flood
//! from elsewhere does not flood the log. No request content is logged, only addresses.
//!
//! # The live list (feature `client`)
//!
//! `CallbackIps` fetches WeChat's list (`{"ip_list": ["101.226.103.0/25", …]}`) through a
//! `WeChatClient`, token, retries and circuit breaker included. `AllowHandle::refresh`
//! replaces the list once; `AllowHandle::spawn_refresh`
//! keeps it fresh on an interval (an hour is plenty) and keeps the last good list when a
//! refresh fails. An answer with a bad entry, no entry or more than 4096 entries is a
//! failed refresh, never a half list. A static list ([`AllowLayer::new`],
//! [`AllowHandle::replace`]) needs no client. WeChat's other list, `get_api_domain_ip`, is
//! the addresses of its API servers (for your egress firewall), not of callbacks.
//!
//! [`AllowStats`] gives the list's size and age (time since it was last set) and the
//! counters; with feature `metrics` they are exported too (see `allow::metrics`).

mod cidr;
mod forwarded;
mod future;
mod handle;
mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "client")]
mod refresh;
mod service;
mod state;

pub use crate::body::ResponseBody;
pub use cidr::{IpNet, IpParseError, IpSet};
pub use future::ResponseFuture;
pub use handle::{AllowHandle, AllowStats};
pub use layer::AllowLayer;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub use refresh::{CallbackIps, MAX_REFRESHED_ENTRIES, RefreshTask};
pub use service::Allow;

#[cfg(test)]
mod tests;
