//! Replay protection: a timestamp window and a bounded memory of recently seen nonces.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::clock::unix_now;
use crate::hashed::HashedMap;

/// Shards keep concurrent callbacks from queueing on one lock.
const SHARDS: usize = 16;

/// The timestamp is further from now than the window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stale;

/// A timestamp + nonce pair that was already accepted, with a different body (or with any
/// body, when identical repeats are refused too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NonceReused;

/// How a request's timestamp + nonce pair relates to those already accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Not seen before.
    First,
    /// Seen before with a byte-identical body: WeChat's retry of a slow or failed delivery,
    /// which reuses the signed query.
    Repeat,
}

/// Checks timestamps against a window and remembers accepted `(timestamp, nonce)` pairs with
/// a fingerprint of their body.
///
/// A pair is remembered until its timestamp leaves the window (after which the window check
/// refuses it anyway), or, with the window off, until it is evicted. When `capacity` pairs
/// are remembered, the oldest is forgotten to make room: memory stays bounded, and a replay
/// of a forgotten pair is no longer caught by the nonce check (the window still applies).
pub(crate) struct ReplayGuard {
    window: Option<Duration>,
    refuse_repeats: bool,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    warned_full: AtomicBool,
}

#[derive(Default)]
struct Shard {
    /// Pair key → body fingerprint.
    seen: HashedMap<u64>,
    /// `(forget_after, key)` in insertion order.
    order: VecDeque<(u64, u64)>,
}

impl ReplayGuard {
    pub(crate) fn new(window: Option<Duration>, capacity: usize, refuse_repeats: bool) -> Self {
        let shard_count = if capacity == 0 { 0 } else { SHARDS };
        Self {
            window,
            refuse_repeats,
            shards: (0..shard_count).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: RandomState::new(),
            warned_full: AtomicBool::new(false),
        }
    }

    /// Checks `timestamp` against the window.
    pub(crate) fn check_window(&self, timestamp: u64) -> Result<(), Stale> {
        self.check_window_at(unix_now(), timestamp)
    }

    fn check_window_at(&self, now: u64, timestamp: u64) -> Result<(), Stale> {
        match self.window {
            Some(window) if now.abs_diff(timestamp) > window.as_secs() => Err(Stale),
            _ => Ok(()),
        }
    }

    /// A fingerprint of a body, keyed per process so that collisions cannot be crafted.
    pub(crate) fn fingerprint(&self, body: &[u8]) -> u64 {
        self.hasher.hash_one(body)
    }

    /// Records an accepted pair; call only after the signature and window were checked, so
    /// forged requests never fill the memory.
    pub(crate) fn remember(
        &self,
        timestamp: u64,
        nonce: &str,
        fingerprint: u64,
    ) -> Result<Delivery, NonceReused> {
        self.remember_at(unix_now(), timestamp, nonce, fingerprint)
    }

    fn remember_at(
        &self,
        now: u64,
        timestamp: u64,
        nonce: &str,
        fingerprint: u64,
    ) -> Result<Delivery, NonceReused> {
        if self.shards.is_empty() {
            return Ok(Delivery::First);
        }
        let key = self.hasher.hash_one((timestamp, nonce));
        let forget_after = match self.window {
            Some(window) => timestamp.saturating_add(window.as_secs()),
            None => u64::MAX,
        };
        let shard = &self.shards[(key % SHARDS as u64) as usize];
        // A poisoned lock only means another request panicked mid-insert; the map is still
        // consistent enough to use.
        let mut shard = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        shard.forget_expired(now);
        if let Some(&seen) = shard.seen.get(&key) {
            return if seen == fingerprint && !self.refuse_repeats {
                Ok(Delivery::Repeat)
            } else {
                Err(NonceReused)
            };
        }
        shard.seen.insert(key, fingerprint);
        shard.order.push_back((forget_after, key));
        if shard.order.len() > self.per_shard {
            shard.evict_oldest();
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    capacity = self.per_shard * SHARDS,
                    "WeChat nonce cache is full; forgetting the oldest nonces (raise \
                     VerifyLayer::nonce_cache_capacity if this is regular traffic)"
                );
            }
        }
        Ok(Delivery::First)
    }
}

impl Shard {
    fn forget_expired(&mut self, now: u64) {
        while let Some(&(forget_after, _)) = self.order.front() {
            if forget_after >= now {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const BODY: u64 = 42;

    fn guard(window: Option<u64>, capacity: usize) -> ReplayGuard {
        ReplayGuard::new(window.map(Duration::from_secs), capacity, false)
    }

    fn remember(
        guard: &ReplayGuard,
        now: u64,
        timestamp: u64,
        nonce: &str,
    ) -> Result<Delivery, NonceReused> {
        guard.remember_at(now, timestamp, nonce, BODY)
    }

    #[test]
    fn timestamps_inside_the_window_pass_both_ways() {
        let guard = guard(Some(300), 100);
        assert_eq!(guard.check_window_at(NOW, NOW - 300), Ok(()));
        assert_eq!(guard.check_window_at(NOW, NOW + 300), Ok(()));
        assert_eq!(guard.check_window_at(NOW, NOW - 301), Err(Stale));
        assert_eq!(guard.check_window_at(NOW, NOW + 301), Err(Stale));
        assert_eq!(guard.check_window_at(NOW, 0), Err(Stale));
        assert_eq!(guard.check_window_at(NOW, u64::MAX), Err(Stale));
    }

    #[test]
    fn the_window_off_accepts_any_timestamp() {
        let guard = guard(None, 100);
        assert_eq!(guard.check_window_at(NOW, 1_410_685_589), Ok(()));
        assert_eq!(guard.check_window_at(NOW, u64::MAX), Ok(()));
    }

    #[test]
    fn a_reused_pair_with_another_body_is_refused() {
        let guard = guard(Some(300), 100);
        assert_eq!(guard.remember_at(NOW, NOW, "n1", 1), Ok(Delivery::First));
        assert_eq!(guard.remember_at(NOW, NOW, "n1", 2), Err(NonceReused));
        assert_eq!(guard.remember_at(NOW, NOW, "n2", 2), Ok(Delivery::First));
        assert_eq!(
            guard.remember_at(NOW, NOW - 1, "n1", 2),
            Ok(Delivery::First)
        );
    }

    #[test]
    fn an_identical_repeat_is_a_retry_unless_repeats_are_refused() {
        let lenient = guard(Some(300), 100);
        assert_eq!(remember(&lenient, NOW, NOW, "n"), Ok(Delivery::First));
        assert_eq!(remember(&lenient, NOW, NOW, "n"), Ok(Delivery::Repeat));
        assert_eq!(remember(&lenient, NOW, NOW, "n"), Ok(Delivery::Repeat));

        let strict = ReplayGuard::new(Some(Duration::from_secs(300)), 100, true);
        assert_eq!(remember(&strict, NOW, NOW, "n"), Ok(Delivery::First));
        assert_eq!(remember(&strict, NOW, NOW, "n"), Err(NonceReused));
    }

    #[test]
    fn fingerprints_tell_bodies_apart() {
        let guard = guard(Some(300), 100);
        assert_eq!(
            guard.fingerprint(b"<xml>a</xml>"),
            guard.fingerprint(b"<xml>a</xml>")
        );
        assert_ne!(
            guard.fingerprint(b"<xml>a</xml>"),
            guard.fingerprint(b"<xml>b</xml>")
        );
    }

    #[test]
    fn capacity_zero_turns_the_nonce_check_off() {
        let guard = guard(Some(300), 0);
        assert_eq!(guard.remember_at(NOW, NOW, "n", 1), Ok(Delivery::First));
        assert_eq!(guard.remember_at(NOW, NOW, "n", 2), Ok(Delivery::First));
    }

    #[test]
    fn pairs_are_forgotten_once_their_timestamp_leaves_the_window() {
        let guard = guard(Some(300), 1_000);
        assert_eq!(remember(&guard, NOW, NOW, "n"), Ok(Delivery::First));
        assert_eq!(remember(&guard, NOW + 300, NOW, "n"), Ok(Delivery::Repeat));
        // One second past the window the pair is forgotten on the next insert into its shard.
        assert_eq!(remember(&guard, NOW + 301, NOW, "n"), Ok(Delivery::First));

        for i in 0..200 {
            remember(&guard, NOW, NOW, &i.to_string()).unwrap();
        }
        for shard in guard.shards.iter() {
            shard.lock().unwrap().forget_expired(NOW + 301);
        }
        let remembered: usize = guard
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap().seen.len())
            .sum();
        assert_eq!(remembered, 0);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_pair_is_forgotten_first() {
        let capacity = SHARDS * 2;
        let guard = guard(None, capacity);
        for i in 0..10_000 {
            guard.remember_at(NOW, NOW, &i.to_string(), 1).unwrap();
        }
        for shard in guard.shards.iter() {
            let shard = shard.lock().unwrap();
            assert!(shard.seen.len() <= 2, "shard holds {}", shard.seen.len());
            assert_eq!(shard.seen.len(), shard.order.len());
        }
        // The newest pair is still remembered.
        assert_eq!(guard.remember_at(NOW, NOW, "9999", 2), Err(NonceReused));
        // The first one was forgotten: at the bound a very old replay passes the nonce check.
        assert_eq!(guard.remember_at(NOW, NOW, "0", 2), Ok(Delivery::First));
    }

    #[test]
    fn concurrent_checks_accept_each_pair_exactly_once() {
        let guard = std::sync::Arc::new(guard(Some(300), 100_000));
        let first: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let guard = guard.clone();
                    scope.spawn(move || {
                        (0..1_000)
                            .filter(|i| {
                                remember(&guard, NOW, NOW, &i.to_string()) == Ok(Delivery::First)
                            })
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(first, 1_000);
    }
}
