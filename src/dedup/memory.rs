//! [`MemoryStore`]: a bounded, expiring in-process [`DedupStore`].

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::hashed::HashedMap;

use super::store::{Claim, DedupStore, LeaseId, StoreError, StoredResponse, Waited};

/// Shards keep concurrent callbacks from queueing on one lock.
const SHARDS: usize = 16;
/// Default bound on remembered keys.
const DEFAULT_CAPACITY: usize = 100_000;
/// Default byte budget.
const DEFAULT_BUDGET: usize = 16 * 1024 * 1024;

/// The default [`DedupStore`]: keys in this process's memory, for one replica.
///
/// Bounded twice: at most `capacity` keys (100 000 by default) and a byte budget (16 MiB
/// by default, [`MemoryStore::DEFAULT_BUDGET`]), counting each entry as its key, its stored
/// reply (body and content type) and [`MemoryStore::ENTRY_OVERHEAD`] bytes for the maps
/// that hold it. Keys and replies come from messages (a `ToUserName` of 60 KB makes a 60 KB
/// key), so the budget is what bounds memory. Expired keys are dropped as new ones arrive;
/// past either bound the oldest stored replies are forgotten first (a warning is logged
/// once), so a retry of a forgotten message would run again. Claims in progress are never
/// forgotten early (they end with their lease). The keys are spread over 16 shards, each
/// with a sixteenth of both bounds, so a reply larger than a sixteenth of the budget is not
/// kept. Waiting retries are woken as soon as the first attempt completes.
///
/// Keys are found by a keyed 64-bit hash and then compared in full; two keys with the same
/// hash never share an entry (the newer one replaces the older, which at worst lets a retry
/// of the older run again — never a message taken for another).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    bytes_per_shard: usize,
    hasher: RandomState,
    next_lease: AtomicU64,
    warned_full: AtomicBool,
}

#[derive(Default)]
struct Shard {
    entries: HashedMap<Entry>,
    /// `(seq, hash)` of each entry in the order it was claimed; an item whose `seq` is not
    /// its entry's any more (released, or claimed anew) is stale and skipped. One item per
    /// claim: completing or acknowledging a claim moves its expiry, not its place.
    order: VecDeque<(u64, u64)>,
    /// The `seq` of the next entry.
    next_seq: u64,
    /// What the entries cost, by [`Entry::cost`].
    bytes: usize,
}

struct Entry {
    key: Box<str>,
    /// Which item of [`Shard::order`] is this entry's.
    seq: u64,
    expires: Instant,
    state: State,
}

enum State {
    Pending {
        lease: LeaseId,
        /// Made by the first waiter.
        waiters: Option<Arc<Notify>>,
        /// What the callback was answered while its handler still runs
        /// ([`DedupStore::acknowledge`]): replayed to repeats.
        answered: Option<StoredResponse>,
    },
    Done(StoredResponse),
}

impl Entry {
    /// What this entry counts against the byte budget.
    fn cost(&self) -> usize {
        let size = |response: &StoredResponse| {
            response.body.len() + response.content_type.as_ref().map_or(0, |v| v.len())
        };
        let stored = match &self.state {
            State::Done(response)
            | State::Pending {
                answered: Some(response),
                ..
            } => size(response),
            State::Pending { .. } => 0,
        };
        MemoryStore::ENTRY_OVERHEAD + self.key.len() + stored
    }
}

impl State {
    fn wake_waiters(&self) {
        if let Self::Pending {
            waiters: Some(waiters),
            ..
        } = self
        {
            waiters.notify_waiters();
        }
    }
}

impl Shard {
    /// The live entry for `key`, if any.
    fn live(&mut self, hash: u64, key: &str, now: Instant) -> Option<&mut Entry> {
        self.entries
            .get_mut(&hash)
            .filter(|entry| &*entry.key == key && entry.expires > now)
    }
}

impl MemoryStore {
    /// The default byte budget: 16 MiB.
    pub const DEFAULT_BUDGET: usize = DEFAULT_BUDGET;
    /// What each entry counts beyond its key and reply: the hash map slot holding the entry
    /// (with the slack of a table just doubled: 7 slots in 16 used), its place in the claim
    /// order (also doubled), and the allocator's headers of its key and reply. Measured on
    /// x86-64 Linux (glibc): a store of short keys and 217-byte replies took 542–627 bytes
    /// per entry where key and reply were 293; this counts 400 + 293.
    pub const ENTRY_OVERHEAD: usize = 400;

    /// A store for up to 100 000 keys within 16 MiB.
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_CAPACITY, DEFAULT_BUDGET)
    }

    /// A store for up to `capacity` keys (at least one per shard), within the default
    /// byte budget.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_limits(capacity, DEFAULT_BUDGET)
    }

    /// A store within `bytes` (keys, replies and [`Self::ENTRY_OVERHEAD`] per entry), for
    /// up to 100 000 keys.
    ///
    /// ```
    /// use tower_wechat::dedup::{DedupLayer, MemoryStore};
    ///
    /// let layer = DedupLayer::with_store(MemoryStore::with_budget(64 * 1024 * 1024));
    /// # let _ = layer;
    /// ```
    pub fn with_budget(bytes: usize) -> Self {
        Self::with_limits(DEFAULT_CAPACITY, bytes)
    }

    /// A store for up to `capacity` keys within `bytes`.
    ///
    /// ```
    /// use tower_wechat::dedup::MemoryStore;
    ///
    /// let store = MemoryStore::with_limits(10_000, 4 * 1024 * 1024);
    /// assert_eq!(store.bytes(), 0);
    /// ```
    pub fn with_limits(capacity: usize, bytes: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                per_shard,
                bytes_per_shard: bytes / SHARDS,
                hasher: RandomState::new(),
                next_lease: AtomicU64::new(1),
                warned_full: AtomicBool::new(false),
            }),
        }
    }

    /// What the entries held now count against the byte budget (see
    /// [`with_budget`](Self::with_budget)).
    pub fn bytes(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).bytes).sum()
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.inner.bytes_per_shard * SHARDS
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

    /// The key's hash and its shard, locked.
    fn shard(&self, key: &str) -> (u64, MutexGuard<'_, Shard>) {
        let hash = self.inner.hasher.hash_one(key);
        // Bits the map does not use for its buckets (low) or tags (top 7).
        let index = (hash >> 32) as usize % SHARDS;
        (hash, lock(&self.inner.shards[index]))
    }

    /// A fresh claim on `key` (replacing whatever was there), for `lease`.
    fn claim_anew(
        &self,
        shard: &mut Shard,
        hash: u64,
        key: &str,
        lease: Duration,
        now: Instant,
    ) -> LeaseId {
        let id = LeaseId(self.inner.next_lease.fetch_add(1, Ordering::Relaxed));
        let entry = Entry {
            key: key.into(),
            seq: 0, // set by insert
            expires: now + lease,
            state: State::Pending {
                lease: id,
                waiters: None,
                answered: None,
            },
        };
        self.insert(shard, hash, entry, now);
        id
    }

    fn insert(&self, shard: &mut Shard, hash: u64, mut entry: Entry, now: Instant) {
        entry.seq = shard.next_seq;
        shard.next_seq += 1;
        shard.order.push_back((entry.seq, hash));
        shard.bytes += entry.cost();
        if let Some(replaced) = shard.entries.insert(hash, entry) {
            shard.bytes -= replaced.cost();
            replaced.state.wake_waiters();
        }
        self.trim(shard, now);
    }

    /// Drops expired keys from the front of the order, and the oldest keys past the bound.
    /// The order is the order of claims, so an expired key behind a live one waits for it
    /// (it is no longer found by [`Shard::live`], and still counts against both bounds).
    /// A claim in progress is never forgotten early (a waiting retry would then run the
    /// handler a second time); it is passed over, and its lease ends it soon enough.
    fn trim(&self, shard: &mut Shard, now: Instant) {
        let bound = self.inner.per_shard;
        let mut passed_over = 0;
        while let Some(&(seq, hash)) = shard.order.front() {
            let (live, pending) = match shard.entries.get(&hash) {
                Some(entry) if entry.seq == seq => (
                    entry.expires > now,
                    matches!(entry.state, State::Pending { .. }),
                ),
                _ => {
                    shard.order.pop_front(); // stale
                    continue;
                }
            };
            let over = shard.entries.len() > bound
                || shard.order.len() > 2 * bound
                || shard.bytes > self.inner.bytes_per_shard;
            if live && !over {
                break;
            }
            if live && pending {
                if passed_over >= shard.order.len() {
                    break; // only claims in progress are left
                }
                passed_over += 1;
                shard.order.rotate_left(1);
                continue;
            }
            if live && !self.inner.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    capacity = bound * SHARDS,
                    budget_bytes = self.inner.bytes_per_shard * SHARDS,
                    "dedup memory store is full: forgetting the oldest replies (raise its \
                     capacity or byte budget; this warning is logged once)"
                );
            }
            shard.order.pop_front();
            if let Some(removed) = shard.entries.remove(&hash) {
                shard.bytes -= removed.cost();
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
            .field("budget", &self.budget())
            .finish_non_exhaustive()
    }
}

/// The size of a slot of the entries' map.
#[cfg(test)]
pub(super) fn slot_size() -> usize {
    std::mem::size_of::<(u64, Entry)>()
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
        let (hash, mut shard) = self.shard(key);
        if let Some(entry) = shard.live(hash, key, now) {
            return Ok(match &entry.state {
                State::Pending {
                    answered: Some(answered),
                    ..
                } => Claim::Done(answered.clone()),
                State::Pending { .. } => Claim::InProgress,
                State::Done(response) => Claim::Done(response.clone()),
            });
        }
        Ok(Claim::Claimed(
            self.claim_anew(&mut shard, hash, key, lease, now),
        ))
    }

    async fn take_over(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let (hash, mut shard) = self.shard(key);
        if let Some(entry) = shard.live(hash, key, now) {
            match &entry.state {
                State::Pending { answered: None, .. } => return Ok(Claim::InProgress),
                State::Done(response) => return Ok(Claim::Done(response.clone())),
                State::Pending {
                    answered: Some(_), ..
                } => {} // its runner is gone: taken over below
            }
        }
        Ok(Claim::Claimed(
            self.claim_anew(&mut shard, hash, key, lease, now),
        ))
    }

    async fn acknowledge(
        &self,
        key: &str,
        lease: LeaseId,
        answered: &StoredResponse,
        hold: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let (hash, mut shard) = self.shard(key);
        let Some(entry) = shard.live(hash, key, now) else {
            return Ok(false);
        };
        let before = entry.cost();
        let State::Pending {
            lease: holder,
            answered: slot,
            waiters,
        } = &mut entry.state
        else {
            return Ok(false);
        };
        if *holder != lease {
            return Ok(false);
        }
        *slot = Some(answered.clone());
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
        entry.expires = now + hold;
        let after = entry.cost();
        shard.bytes = shard.bytes + after - before;
        self.trim(&mut shard, now);
        Ok(true)
    }

    async fn complete(
        &self,
        key: &str,
        lease: LeaseId,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let (hash, mut shard) = self.shard(key);
        let Some(entry) = shard.live(hash, key, now) else {
            return Ok(false);
        };
        if !matches!(entry.state, State::Pending { lease: holder, .. } if holder == lease) {
            return Ok(false);
        }
        entry.expires = now + ttl;
        let before = entry.cost();
        std::mem::replace(&mut entry.state, State::Done(response.clone())).wake_waiters();
        let after = entry.cost();
        shard.bytes = shard.bytes + after - before;
        self.trim(&mut shard, now);
        Ok(true)
    }

    async fn release(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        let now = Instant::now();
        let (hash, mut shard) = self.shard(key);
        let holds = shard.live(hash, key, now).is_some_and(
            |entry| matches!(entry.state, State::Pending { lease: holder, .. } if holder == lease),
        );
        if holds && let Some(entry) = shard.entries.remove(&hash) {
            shard.bytes -= entry.cost();
            entry.state.wake_waiters();
        }
        Ok(())
    }

    async fn wait(&self, key: &str, timeout: Duration) -> Result<Waited, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let (notified, expires) = {
                let (hash, mut shard) = self.shard(key);
                let Some(entry) = shard.live(hash, key, now) else {
                    return Ok(Waited::Released);
                };
                match &mut entry.state {
                    State::Done(response)
                    | State::Pending {
                        answered: Some(response),
                        ..
                    } => return Ok(Waited::Done(response.clone())),
                    State::Pending { waiters, .. } => {
                        let waiters = waiters.get_or_insert_with(Arc::default);
                        // Registered before the lock is let go, so no wake-up is missed.
                        let mut notified = Box::pin(waiters.clone().notified_owned());
                        notified.as_mut().enable();
                        (notified, entry.expires)
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
