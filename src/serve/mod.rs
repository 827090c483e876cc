//! [`Server`]: hyper's HTTP/1 server with what a callback server facing the internet needs
//! (feature `server`).
//!
//! `axum::serve` and a bare `hyper` connection loop set no timer: a client that sends its
//! request head one byte a minute keeps its connection (and its buffer) forever, and a few
//! thousand of them use up the process's file descriptors so that WeChat's own callbacks
//! are no longer accepted. [`Server`] serves any tower service (an axum `Router` too) with:
//!
//! | setting | default | why |
//! |---|---|---|
//! | [`header_read_timeout`](Server::header_read_timeout) | 5 s | WeChat sends its request at once and waits 5 s for the answer: a head still incomplete after 5 s is not WeChat's. hyper starts this timer whenever a connection waits for a request head, so it is also how long an idle keep-alive connection is kept (5 s, as Node's default) |
//! | [`max_header_bytes`](Server::max_header_bytes) | 16 KiB | WeChat's request line and headers are under 1 KiB; larger heads get 431 |
//! | [`max_connections`](Server::max_connections) | 512 | below the usual `ulimit -n` of 1024, so the listener always has descriptors left; past it new connections are accepted and closed at once (see below) |
//! | [`shutdown_timeout`](Server::shutdown_timeout) | 5 s | callbacks in flight are answered within WeChat's 5 s; what is still open after that is a slow or idle client, and is dropped |
//!
//! The body is the other half: [`VerifyLayer::body_timeout`](crate::VerifyLayer::body_timeout)
//! (3 s from arrival, feature `body-timeout`) answers 408 to a body that trickles in, so
//! every server that runs the layer has it.
//!
//! **At the connection cap** the server keeps accepting and closes each new connection at
//! once, rather than leaving it in the kernel's backlog: the client learns immediately (WeChat
//! retries the callback later) instead of waiting out its own timeout, and the listener's queue
//! never fills with connections nobody will serve. A warning says so, at most 10 times per
//! 10 s, with the count of connections closed in between.
//!
//! **Shutdown.** When the `shutdown` future resolves the listener is closed, idle connections
//! are closed, requests in flight are answered (and their connections closed after them); at
//! the deadline the connections still open are dropped and their count logged. Then it
//! returns a [`ServeReport`].
//!
//! Each request gets the peer's address in its extensions as a [`std::net::SocketAddr`]
//! (axum: the `Extension<SocketAddr>` extractor). The crate does not depend on axum, so
//! axum's `ConnectInfo` is not set.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use tower_wechat::serve::Server;
//! use tower_wechat::{CallbackLayer, Message, Reply, Token};
//!
//! async fn handler(_message: Message) -> Reply {
//!     Reply::success()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = CallbackLayer::new(Token::new("mytoken")?);
//! let handle = stack.handle();
//! let app = Router::new().route("/wechat", post(handler)).layer(stack);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! let report = Server::new(listener)
//!     .serve(app, async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! println!("{report:?}");
//! handle.shutdown(Duration::from_secs(10)).await; // background handlers
//! # Ok(())
//! # }
//! ```
//!
//! HTTP/1.1 only: WeChat's callbacks are HTTP/1.1, and HTTP/2 would bring its own stream and
//! flow-control settings to bound.

mod server;

pub use server::{ServeReport, Server};
