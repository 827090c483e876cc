//! Dedup: process each WeChat callback once, however often WeChat delivers it.
//!
//! WeChat retries a callback it got no answer to within 5 seconds — three tries in all,
//! with the same `MsgId` (events: the same sender and `CreateTime`) and, as logs show, the
//! same signed query. [`DedupLayer`] keeps a key per callback in a [`DedupStore`]:
//!
//! - the first delivery claims the key and runs the handler; its response is stored;
//! - a retry that arrives while the first still runs waits for the first's response;
//! - a retry that arrives later gets the stored response again (a passive reply included);
//! - a first attempt that does not succeed (an error or any status outside 2xx) releases the
//!   key: the retry runs again, and only successes are ever replayed;
//! - keys include the request's path, so a layer on a whole router never replays another
//!   route's answer for the callback URL;
//! - whatever the store does, the layer answers within its [budget](DedupLayer::budget)
//!   (4.5 s from the callback's arrival); the in-memory store is bounded in bytes
//!   ([`MemoryStore::with_budget`], 16 MiB by default);
//! - a first attempt whose client hangs up (WeChat gives up after 5 s) is finished anyway in
//!   a task, and its result recorded, so a later retry is answered, not run again.
//!
//! [`MemoryStore`] serves one process; `RedisStore` (feature `redis`) lets several replicas
//! behind a load balancer share the keys. See [`DedupLayer`] for the defaults and for what
//! happens when the store is unreachable.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_wechat::{Token, VerifyLayer};
//! use tower_wechat::ack::FastAckLayer;
//! use tower_wechat::dedup::DedupLayer;
//! # async fn handler(_: http::Request<http_body_util::Full<bytes::Bytes>>)
//! #     -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
//! #     Ok(tower_wechat::Reply::success().into())
//! # }
//!
//! let service = ServiceBuilder::new()
//!     .layer(VerifyLayer::new(Token::new("mytoken").unwrap()))
//!     .layer(DedupLayer::new().ttl(Duration::from_secs(600)))
//!     .layer(FastAckLayer::new())
//!     .service_fn(handler);
//! ```

mod future;
mod handle;
mod key;
mod layer;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod state;
mod store;

pub use future::ResponseFuture;
pub use handle::{DedupHandle, DedupStats};
pub use key::default_key;
pub use layer::DedupLayer;
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
pub use service::Dedup;
pub use store::{Claim, DedupStore, LeaseId, StoreError, StoredResponse, Waited};

#[cfg(test)]
mod tests;
