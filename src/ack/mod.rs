//! Fast ack: answer every callback inside WeChat's 5 seconds, finish slow handlers in the
//! background.
//!
//! [`FastAckLayer`] runs the handler in a tracked tokio task and waits for it up to a
//! deadline (4 s by default, a margin under WeChat's 5 s for the network and the layers
//! outside). A handler that finishes in time has its response returned as it is, so passive
//! replies keep working. One that does not is acknowledged with `success` (WeChat then stops
//! retrying and shows the user nothing) and keeps running in the background; its late reply
//! is dropped, since WeChat no longer listens (send it with the customer-service API instead).
//!
//! Background work is
//! - **bounded**: at most [`FastAckLayer::max_in_flight`] handlers run at once. A callback
//!   that arrives when all slots are taken is answered `503` — never `success`, which would
//!   acknowledge a message nobody will process — so WeChat retries it later;
//! - **tracked**: [`FastAckHandle::shutdown`] stops taking new callbacks (`503`), waits for
//!   running handlers up to a grace period and reports how many did not finish;
//! - **panic-isolated**: a panicking handler is caught, logged with its `MsgId` and counted;
//!   the server keeps serving. Before the deadline the callback is answered `500` (the
//!   message was not processed, so WeChat may retry); after it, the panic is only logged;
//! - **observable**: [`FastAckHandle::stats`] gives the counters; the background task runs
//!   in the tracing span that was current when the callback arrived, and a
//!   [`CallbackHook`](crate::hook::CallbackHook) in the request extensions is told
//!   when the work moves to the background and when it ends.
//!
//! Put it inside [`VerifyLayer`](crate::VerifyLayer) (so rejected requests never take a
//! slot) and inside [`DedupLayer`](crate::dedup::DedupLayer) (so WeChat's retries never run
//! the handler twice).
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use tower::ServiceBuilder;
//! use tower_wechat::{Message, Reply, Token, VerifyLayer};
//! use tower_wechat::ack::FastAckLayer;
//! use tower_wechat::dedup::DedupLayer;
//!
//! async fn slow(message: Message) -> Reply {
//!     tokio::time::sleep(Duration::from_secs(6)).await; // a slow database, say
//!     Reply::success()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fast_ack = FastAckLayer::new().max_in_flight(512);
//! let handle = fast_ack.handle();
//! let app = Router::new().route("/wechat", post(slow)).layer(
//!     ServiceBuilder::new()
//!         .layer(VerifyLayer::new(Token::new("mytoken")?))
//!         .layer(DedupLayer::new())
//!         .layer(fast_ack),
//! );
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap() })
//!     .await?;
//! // The HTTP server has stopped; let background handlers finish.
//! let report = handle.shutdown(Duration::from_secs(10)).await;
//! println!("{} handlers did not finish", report.unfinished);
//! # Ok(())
//! # }
//! ```

mod future;
mod handle;
mod layer;
mod service;
mod settle;
mod state;
mod task;

pub use future::ResponseFuture;
pub use handle::{FastAckHandle, FastAckStats, ShutdownReport};
pub use layer::FastAckLayer;
pub use service::FastAck;

#[cfg(test)]
mod tests;
