//! The durable hand-off: a callback acknowledged to WeChat survives a crash, and any replica
//! can finish it.
//!
//! Once a callback is answered — `success` at the deadline, or a passive reply — WeChat
//! never sends it again. Without a journal, a callback whose handler still runs in the
//! background lives only in this process's memory: a crash, an OOM kill or a deploy that
//! outlasts the shutdown grace loses it. With a journal, [`FastAckLayer`](crate::FastAckLayer)
//! stores each verified callback **before it runs the handler** (so before anything goes back
//! to WeChat), and the entry leaves the journal only when a handler has finished it. What a
//! dead process left is run again by the recovery worker: by the same node when it restarts
//! (a [`FileJournal`] on its disk) or by any live replica (`RedisJournal`, feature `redis`).
//!
//! # Use
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use tower_wechat::journal::{FileJournal, Handoff};
//! use tower_wechat::{CallbackLayer, Message, Reply, Token};
//!
//! async fn slow(message: Message) -> Reply {
//!     let _ = message; // ... 30 s of work; a redelivery must be harmless (see below)
//!     Reply::success()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let journal = FileJournal::open("/var/lib/mybot/journal")?; // or RedisJournal::open(url)?
//! let stack = CallbackLayer::new(Token::new("mytoken")?)
//!     .journal(Handoff::new(journal).max_deliveries(5));
//! let handle = stack.handle();
//! let app = Router::new().route("/wechat", post(slow)).layer(stack);
//! // Runs what a crash (or a failed run) left in the journal, through the same app.
//! let recovery = handle.journal().unwrap().spawn_recovery(app.clone());
//! // ... serve `app`; at shutdown:
//! recovery.stop_within(Duration::from_secs(2)).await;
//! handle.shutdown(Duration::from_secs(10)).await; // what is left stays in the journal
//! # Ok(())
//! # }
//! ```
//!
//! # What is guaranteed, and what is left to the handler
//!
//! - **Stored before acknowledged.** FastAck appends the verified callback (its decrypted
//!   body, the signed query facts, path, dedup key, arrival, attempt) before it runs the
//!   handler. If the journal cannot be reached, the callback is answered `503` and the
//!   handler does not run, so WeChat delivers it again — unless the hand-off was told to
//!   [`fail_open`](Handoff::fail_open) (then it runs unjournaled, logged and counted).
//! - **At least once.** An entry leaves the journal only when a handler finished it (a
//!   response that is not a 5xx). A run that fails (an error, a 5xx, a panic) or a process
//!   that dies leaves the entry, and the recovery worker runs it again — after the
//!   [lease](Handoff::lease) — up to [`max_deliveries`](Handoff::max_deliveries) times, then
//!   moves it to the journal's dead letters with an ERROR line and a counter. What a
//!   process still ran at shutdown (past the grace period) stays in the journal too.
//! - **Exactly once where the dedup store can tell.** When a run ends, FastAck first tells
//!   [`DedupLayer`](crate::DedupLayer) (which records the callback as processed), then
//!   marks the journal entry done. A crash between the two finds the entry again, and the
//!   dedup store answers it as a duplicate delivery ([`JournalStats::duplicates`]) instead
//!   of running the handler twice. A crash *during* the handler's side effects, before it
//!   returned, cannot be told apart from one before them: that run is repeated. So make
//!   side effects idempotent — key them on the `MsgId` (or the dedup key), and look at the
//!   [`Delivery`](crate::hook::Delivery) in the request extensions (`attempt`,
//!   `recovered`). With the in-memory dedup store, a restart forgets what was processed; a
//!   [`RedisStore`](crate::dedup) shared by the replicas does not.
//! - **WeChat's retries** of a callback answered `success` while its handler still runs
//!   get that `success` again at once, and never run the handler a second time (the dedup
//!   claim is held until the handler ends).
//!
//! # Which journal
//!
//! | journal | durable against | shared by replicas | notes |
//! |---|---|---|---|
//! | none (the default) | nothing: a background handler lives in memory | no | today's behaviour |
//! | [`MemoryJournal`] | nothing (a crash loses it) | no | retries failed runs and dead-letters poison messages; bounded in bytes |
//! | [`FileJournal`] | a process crash, `kill -9` (each append fsync'd, group commit) | no: one node, replayed at start | segmented log on local disk; bounded in bytes |
//! | `RedisJournal` (feature `redis`) | a replica's crash; Redis's own durability per its persistence (AOF `appendfsync always` for every ack) | yes: any live replica reclaims a dead one's entries after the lease | Redis ≥ 6.2 Streams, consumer group, `XAUTOCLAIM`; bounded in entries |
//!
//! Figures (this crate's 2-core test VM, `cargo run --release --all-features --example
//! load_fast_ack` with `LOAD_JOURNAL=…`, 64 concurrent callbacks, 3 s handlers): no journal
//! 24.9 k callbacks/s; memory 22.5 k/s; file 19.3 k/s with every append fsync'd before its
//! callback was answered (p99 time-to-answer 6.6 ms); Redis on loopback 17.2 k/s (AOF
//! `everysec`), 16.5 k/s (`always`, p99 9.0 ms).
//!
mod entry;
mod error;
#[cfg(all(feature = "fast-ack", any(unix, windows)))]
mod file;
#[cfg(feature = "fast-ack")]
mod handle;
#[cfg(feature = "fast-ack")]
mod handoff;
#[cfg(feature = "fast-ack")]
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "fast-ack")]
mod state;
mod store;
#[cfg(feature = "fast-ack")]
mod worker;

pub use entry::{EntryId, JournalEntry};
pub use error::JournalError;
#[cfg(all(feature = "fast-ack", any(unix, windows)))]
pub use file::{DeadLetter, FileJournal, FileJournalOptions, FileJournalStats};
#[cfg(feature = "fast-ack")]
pub use handle::{JournalHandle, JournalStats};
#[cfg(feature = "fast-ack")]
pub use handoff::Handoff;
#[cfg(feature = "fast-ack")]
pub use memory::MemoryJournal;
#[cfg(feature = "redis")]
pub use redis::{RedisDeadLetter, RedisJournal, RedisJournalStats};
#[cfg(feature = "fast-ack")]
pub use state::JOURNAL_EVENTS_TOTAL;
#[cfg(feature = "fast-ack")]
pub(crate) use state::Shared;
pub use store::{BoxFuture, Journal, Reclaimed};
#[cfg(feature = "fast-ack")]
pub use worker::RecoveryHandle;
