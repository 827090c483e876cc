//! [`DedupLayer`]: the settings and builder of [`Dedup`], and its `Layer` impl.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::handle::DedupHandle;
use super::memory::MemoryStore;
use super::service::Dedup;
use super::state::{Settings, State};
use crate::Message;

/// Processes each WeChat callback once, however many times WeChat delivers it.
///
/// The first delivery of a key (see [`default_key`](super::default_key)) claims it in the
/// store and runs the inner service; its response is stored for [`ttl`](Self::ttl) and
/// replayed to later deliveries. A delivery that arrives while the first is still running
/// waits for the first's response (up to [`wait_timeout`](Self::wait_timeout)) instead of
/// running the inner service again. A first attempt that does not succeed (an error or any
/// status outside 2xx) releases the key, so WeChat's retry runs the handler again; only
/// successes are stored and replayed.
///
/// Keys include the request's path (`/wechat|gh_account:msg:42`; a path over 128 bytes by
/// its SHA-1), so a layer on a router with several routes never replays one route's answer
/// for another.
///
/// Needs the [`Message`] that [`VerifyLayer`](crate::VerifyLayer) puts in the request
/// extensions: place it inside `VerifyLayer` and outside
/// [`FastAckLayer`](crate::ack::FastAckLayer). Requests without a `Message` (or for which the
/// key function returns `None`) pass through unchanged.
///
/// The response is read whole to be stored, up to [`REPLY_LIMIT`](crate::body::REPLY_LIMIT)
/// (64 KiB; a larger or failing reply body is answered `500` and frees the key), and the
/// layer's response body is a `Full<Bytes>`.
///
/// # Store failures
///
/// Fail open by default: when the store cannot be reached (or does not answer within
/// [`store_timeout`](Self::store_timeout)), the callback is processed without dedup and an
/// error is logged — a retry might then run twice, but no message is lost. With
/// [`fail_closed`](Self::fail_closed) it is answered `503` instead, so WeChat retries later
/// (after its third try the message is lost).
///
/// Each builder method returns a layer with fresh counters, so take the
/// [handle](Self::handle) after the last one.
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::DedupLayer;
///
/// let layer = DedupLayer::new().ttl(Duration::from_secs(600));
/// let handle = layer.handle();
/// # let _ = handle;
/// ```
#[must_use]
pub struct DedupLayer<St = MemoryStore> {
    store: Arc<St>,
    state: Arc<State>,
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
    ///
    /// ```
    /// use tower_wechat::dedup::{DedupLayer, MemoryStore};
    ///
    /// let layer = DedupLayer::with_store(MemoryStore::with_capacity(10_000));
    /// # let _ = layer;
    /// ```
    pub fn with_store(store: St) -> Self {
        Self {
            store: Arc::new(store),
            state: Arc::new(State::new(Settings::default())),
        }
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.state.settings.clone();
        change(&mut settings);
        Self {
            store: self.store,
            state: Arc::new(State::new(settings)),
        }
    }

    /// Keys callbacks with `key` instead of [`default_key`](super::default_key); `None`
    /// lets a callback through without dedup.
    pub fn key(self, key: impl Fn(&Message) -> Option<String> + Send + Sync + 'static) -> Self {
        self.with(|c| c.key = Arc::new(key))
    }

    /// How long a processed callback's response is kept for replay (5 minutes by default;
    /// WeChat's three tries span about 15 seconds).
    pub fn ttl(self, ttl: Duration) -> Self {
        self.with(|c| c.ttl = ttl)
    }

    /// How long a claim lasts if its attempt neither completes nor fails — a crashed replica
    /// (10 s by default). Keep it longer than the inner service takes to answer: with
    /// [`FastAckLayer`](crate::ack::FastAckLayer) inside, that is its deadline.
    pub fn lease(self, lease: Duration) -> Self {
        self.with(|c| c.lease = lease)
    }

    /// How long a retry waits for the first attempt's response, counted from the retry's
    /// arrival (4 s by default, and never past the [`budget`](Self::budget)). When it runs
    /// out the retry is answered `503`, so WeChat tries once more later.
    pub fn wait_timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.wait_timeout = timeout)
    }

    /// How long one store operation may take before it counts as a store failure (1 s by
    /// default, and never past the [`budget`](Self::budget)).
    pub fn store_timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.store_timeout = timeout)
    }

    /// By when, counted from the callback's [`Arrival`](crate::hook::Arrival), the layer
    /// answers whatever its store does (4.5 s by default: WeChat gives up at 5 s).
    ///
    /// Claims and waits are cut at the budget (a claim cut short counts as a store failure:
    /// fail open or closed as set). Storing or releasing after the inner service answered
    /// does not hold the answer past it: the answer goes out and the store operation
    /// finishes in a task, within the store timeout. With a hung store and
    /// [`FastAckLayer`](crate::ack::FastAckLayer) inside (4 s from arrival), every callback
    /// is answered by 4.5 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_wechat::DedupLayer;
    ///
    /// let layer = DedupLayer::new().budget(Duration::from_millis(4_800));
    /// # let _ = layer;
    /// ```
    pub fn budget(self, budget: Duration) -> Self {
        self.with(|c| c.budget = budget)
    }

    /// Answers `503` when the store fails, instead of processing the callback without dedup.
    pub fn fail_closed(self) -> Self {
        self.with(|c| c.fail_closed = true)
    }

    /// The counters of this layer's services.
    pub fn handle(&self) -> DedupHandle {
        DedupHandle::new(self.state.clone())
    }
}

impl<St> Clone for DedupLayer<St> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S, St> Layer<S> for DedupLayer<St> {
    type Service = Dedup<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Dedup {
            inner,
            store: self.store.clone(),
            state: self.state.clone(),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for DedupLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.state.settings;
        f.debug_struct("DedupLayer")
            .field("store", &self.store)
            .field("ttl", &settings.ttl)
            .field("lease", &settings.lease)
            .field("wait_timeout", &settings.wait_timeout)
            .field("store_timeout", &settings.store_timeout)
            .field("budget", &settings.budget)
            .field("fail_closed", &settings.fail_closed)
            .finish_non_exhaustive()
    }
}

impl<S> Dedup<S, MemoryStore> {
    /// Wraps `inner`, de-duplicating in this process's memory with the default settings
    /// (its handle is out of reach; use [`DedupLayer`] to keep one).
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_wechat::dedup::Dedup;
    ///
    /// let service = Dedup::new(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
    /// }));
    /// # let _ = service;
    /// ```
    pub fn new(inner: S) -> Self {
        DedupLayer::new().layer(inner)
    }

    /// A [`DedupLayer`] with the in-memory store and the default settings.
    ///
    /// ```
    /// use tower_wechat::dedup::Dedup;
    ///
    /// let layer = Dedup::<(), _>::layer();
    /// # let _ = layer;
    /// ```
    pub fn layer() -> DedupLayer {
        DedupLayer::new()
    }
}
