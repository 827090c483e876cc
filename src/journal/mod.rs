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
//! This module holds the data ([`JournalEntry`], [`EntryId`]) and the [`Journal`] trait;
//! the implementations and the recovery worker need the `fast-ack` feature.
//!
//! ```
//! use tower_wechat::journal::{JournalEntry, EntryId};
//! # let _ = EntryId::new("1");
//! ```

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
