//! [`MemoryStore`]: a bounded, expiring in-process [`DedupStore`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::store::{Claim, DedupStore, LeaseId, StoreError, StoredResponse, Waited};

/// Shards keep concurrent callbacks from queueing on one lock.
const SHARDS: usize = 16;
/// Default bound on remembered keys.
const DEFAULT_CAPACITY: usize = 100_000;

/// The default [`DedupStore`]: keys in this process's memory, for one replica.
///
/// Bounded: at most `capacity` keys (100 000 by default, a few MB); expired keys are dropped
/// as new ones arrive, and when the bound is reached the oldest key is forgotten (a warning
/// is logged once), so memory never grows without limit. Waiting retries are woken as soon
/// as the first attempt completes.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    next_lease: AtomicU64,
    warned_full: AtomicBool,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Box<str>, Entry>,
    /// Keys in the order they were written, with the expiry written; an item whose expiry
    /// no longer matches its entry is stale and skipped.
    order: VecDeque<(Instant, Box<str>)>,
}

enum Entry {
    Pending {
        lease: LeaseId,
        expires: Instant,
        notify: Arc<Notify>,
    },
    Done {
        response: StoredResponse,
        expires: Instant,
    },
}

impl Entry {
    fn expires(&self) -> Instant {
        match self {
            Self::Pending { expires, .. } | Self::Done { expires, .. } => *expires,
        }
    }
}

impl MemoryStore {
    /// A store for up to 100 000 keys.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A store for up to `capacity` keys (at least one per shard).
    pub fn with_capacity(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                per_shard,
                hasher: RandomState::new(),
                next_lease: AtomicU64::new(1),
                warned_full: AtomicBool::new(false),
            }),
        }
    }

    /// Keys remembered now (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| lock(s).entries.len())
            .sum()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = self.inner.hasher.hash_one(key) as usize % SHARDS;
        lock(&self.inner.shards[index])
    }

    fn insert(&self, shard: &mut Shard, key: &str, entry: Entry, now: Instant) {
        shard.order.push_back((entry.expires(), key.into()));
        shard.entries.insert(key.into(), entry);
        self.trim(shard, now);
    }

    /// Drops expired keys from the front of the order, and the oldest keys past the bound.
    fn trim(&self, shard: &mut Shard, now: Instant) {
        let bound = self.inner.per_shard;
        while let Some((expires, key)) = shard.order.front() {
            let live = match shard.entries.get(key) {
                Some(entry) if entry.expires() == *expires => entry.expires() > now,
                _ => {
                    shard.order.pop_front(); // stale
                    continue;
                }
            };
            let over = shard.entries.len() > bound || shard.order.len() > 2 * bound;
            if live && !over {
                break;
            }
            if live && !self.inner.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    capacity = bound * SHARDS,
                    "dedup memory store is full: forgetting the oldest keys (raise its capacity)"
                );
            }
            let (_, key) = shard.order.pop_front().expect("front exists");
            if let Some(Entry::Pending { notify, .. }) = shard.entries.remove(&key) {
                notify.notify_waiters();
            }
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &(self.inner.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock leaves the map consistent (no multi-step updates).
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DedupStore for MemoryStore {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        match shard.entries.get(key) {
            Some(entry) if entry.expires() > now => {
                return Ok(match entry {
                    Entry::Pending { .. } => Claim::InProgress,
                    Entry::Done { response, .. } => Claim::Done(response.clone()),
                });
            }
            _ => {}
        }
        let id = LeaseId(self.inner.next_lease.fetch_add(1, Ordering::Relaxed));
        let entry = Entry::Pending {
            lease: id,
            expires: now + lease,
            notify: Arc::new(Notify::new()),
        };
        self.insert(&mut shard, key, entry, now);
        Ok(Claim::Claimed(id))
    }

    async fn complete(
        &self,
        key: &str,
        lease: LeaseId,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let notify = match shard.entries.get(key) {
            Some(Entry::Pending {
                lease: holder,
                notify,
                ..
            }) if *holder == lease => notify.clone(),
            _ => return Ok(false),
        };
        let entry = Entry::Done {
            response: response.clone(),
            expires: now + ttl,
        };
        self.insert(&mut shard, key, entry, now);
        notify.notify_waiters();
        Ok(true)
    }

    async fn release(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        let mut shard = self.shard(key);
        if let Some(Entry::Pending { lease: holder, .. }) = shard.entries.get(key)
            && *holder == lease
            && let Some(Entry::Pending { notify, .. }) = shard.entries.remove(key)
        {
            notify.notify_waiters();
        }
        Ok(())
    }

    async fn wait(&self, key: &str, timeout: Duration) -> Result<Waited, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let (notified, expires) = {
                let shard = self.shard(key);
                match shard.entries.get(key) {
                    Some(entry) if entry.expires() <= now => return Ok(Waited::Released),
                    None => return Ok(Waited::Released),
                    Some(Entry::Done { response, .. }) => {
                        return Ok(Waited::Done(response.clone()));
                    }
                    Some(Entry::Pending {
                        notify, expires, ..
                    }) => {
                        // Registered before the lock is let go, so no wake-up is missed.
                        let mut notified = Box::pin(notify.clone().notified_owned());
                        notified.as_mut().enable();
                        (notified, *expires)
                    }
                }
            };
            if now >= deadline {
                return Ok(Waited::StillInProgress);
            }
            let _ = tokio::time::timeout_at(deadline.min(expires), notified).await;
        }
    }
}
