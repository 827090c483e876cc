//! [`DedupLayer`]: settings, counters and the store its services share.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tower_layer::Layer;

use super::key::default_key;
use super::memory::MemoryStore;
use super::service::Dedup;
use crate::Message;

type KeyFn = dyn Fn(&Message) -> Option<String> + Send + Sync;

/// Processes each WeChat callback once, however many times WeChat delivers it.
///
/// The first delivery of a key (see [`default_key`](super::default_key)) claims it in the
/// store and runs the inner service; its response is stored for [`ttl`](Self::ttl) and
/// replayed to later deliveries. A delivery that arrives while the first is still running
/// waits for the first's response (up to [`wait_timeout`](Self::wait_timeout)) instead of
/// running the inner service again. A first attempt that fails (an error or a 5xx response)
/// releases the key, so WeChat's retry runs the handler again.
///
/// Needs the [`Message`] that [`VerifyLayer`](crate::VerifyLayer) puts in the request
/// extensions: place it inside `VerifyLayer` and outside
/// [`FastAckLayer`](crate::ack::FastAckLayer). Requests without a `Message` (or for which the
/// key function returns `None`) pass through unchanged.
///
/// The response is read whole to be stored (replies are small; a body over 64 KiB is
/// passed on but stored as `success`), and the layer's response body is a
/// `Full<Bytes>`.
///
/// # Store failures
///
/// Fail open by default: when the store cannot be reached (or does not answer within
/// [`store_timeout`](Self::store_timeout)), the callback is processed without dedup and an
/// error is logged — a retry might then run twice, but no message is lost. With
/// [`fail_closed`](Self::fail_closed) it is answered `503` instead, so WeChat retries later
/// (after its third try the message is lost).
pub struct DedupLayer<St = MemoryStore> {
    pub(crate) store: Arc<St>,
    pub(crate) config: Arc<Config>,
    pub(crate) counters: Arc<Counters>,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) key: Arc<KeyFn>,
    pub(crate) ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) fail_closed: bool,
}

impl DedupLayer<MemoryStore> {
    /// Dedup in this process's memory (a [`MemoryStore`] of 100 000 keys).
    pub fn new() -> Self {
        Self::with_store(MemoryStore::new())
    }
}

impl Default for DedupLayer<MemoryStore> {
    fn default() -> Self {
        Self::new()
    }
}

impl<St> DedupLayer<St> {
    /// Dedup in `store` (for several replicas: `RedisStore`, feature `redis`).
    pub fn with_store(store: St) -> Self {
        Self {
            store: Arc::new(store),
            config: Arc::new(Config {
                key: Arc::new(default_key),
                ttl: Duration::from_secs(300),
                lease: Duration::from_secs(10),
                wait_timeout: Duration::from_secs(4),
                store_timeout: Duration::from_secs(1),
                fail_closed: false,
            }),
            counters: Arc::default(),
        }
    }

    fn config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(Arc::make_mut(&mut self.config));
        self
    }

    /// Keys callbacks with `key` instead of [`default_key`](super::default_key); `None`
    /// lets a callback through without dedup.
    #[must_use]
    pub fn key(self, key: impl Fn(&Message) -> Option<String> + Send + Sync + 'static) -> Self {
        self.config(|c| c.key = Arc::new(key))
    }

    /// How long a processed callback's response is kept for replay (5 minutes by default;
    /// WeChat's three tries span about 15 seconds).
    #[must_use]
    pub fn ttl(self, ttl: Duration) -> Self {
        self.config(|c| c.ttl = ttl)
    }

    /// How long a claim lasts if its attempt neither completes nor fails — a crashed replica
    /// (10 s by default). Keep it longer than the inner service takes to answer: with
    /// [`FastAckLayer`](crate::ack::FastAckLayer) inside, that is its deadline.
    #[must_use]
    pub fn lease(self, lease: Duration) -> Self {
        self.config(|c| c.lease = lease)
    }

    /// How long a retry waits for the first attempt's response (4 s by default). When it
    /// runs out the retry is answered `503`, so WeChat tries once more later.
    #[must_use]
    pub fn wait_timeout(self, timeout: Duration) -> Self {
        self.config(|c| c.wait_timeout = timeout)
    }

    /// How long one store operation may take before it counts as a store failure (1 s by
    /// default).
    #[must_use]
    pub fn store_timeout(self, timeout: Duration) -> Self {
        self.config(|c| c.store_timeout = timeout)
    }

    /// Answers `503` when the store fails, instead of processing the callback without dedup.
    #[must_use]
    pub fn fail_closed(self) -> Self {
        self.config(|c| c.fail_closed = true)
    }

    /// The counters of this layer's services.
    pub fn handle(&self) -> DedupHandle {
        DedupHandle {
            counters: self.counters.clone(),
        }
    }
}

impl<St> Clone for DedupLayer<St> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            config: self.config.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<S, St> Layer<S> for DedupLayer<St> {
    type Service = Dedup<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Dedup {
            inner,
            store: self.store.clone(),
            config: self.config.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for DedupLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedupLayer")
            .field("store", &self.store)
            .field("ttl", &self.config.ttl)
            .field("lease", &self.config.lease)
            .field("wait_timeout", &self.config.wait_timeout)
            .field("store_timeout", &self.config.store_timeout)
            .field("fail_closed", &self.config.fail_closed)
            .finish_non_exhaustive()
    }
}

/// Counters of a [`DedupLayer`]; see [`DedupStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) processed: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) unkeyed: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads a [`DedupLayer`]'s counters; cheap to clone.
#[derive(Clone, Debug)]
pub struct DedupHandle {
    counters: Arc<Counters>,
}

/// A snapshot of a [`DedupLayer`]'s counters (all since start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DedupStats {
    /// First deliveries that ran the inner service (and stored its response).
    pub processed: u64,
    /// Repeat deliveries answered with the stored response.
    pub replayed: u64,
    /// Repeat deliveries that waited for the first attempt and got its response.
    pub coalesced: u64,
    /// First attempts that failed and released their key for a retry.
    pub released: u64,
    /// Repeat deliveries answered `503` because the first attempt was still running.
    pub busy: u64,
    /// Store operations that failed or timed out.
    pub store_errors: u64,
    /// Requests passed through without a key (no `Message`, or the key function said no).
    pub unkeyed: u64,
}

impl DedupHandle {
    /// The counters now.
    pub fn stats(&self) -> DedupStats {
        let c = &self.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        DedupStats {
            processed: read(&c.processed),
            replayed: read(&c.replayed),
            coalesced: read(&c.coalesced),
            released: read(&c.released),
            busy: read(&c.busy),
            store_errors: read(&c.store_errors),
            unkeyed: read(&c.unkeyed),
        }
    }
}
