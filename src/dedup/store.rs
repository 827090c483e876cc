//! The [`DedupStore`] trait: where DedupLayer remembers which callbacks it has seen.

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use crate::body::StoredResponse;

/// Where [`DedupLayer`](super::DedupLayer) keeps its keys: who is processing a callback, and
/// the response of one that was processed.
///
/// Every operation is atomic with respect to the others on the same key, across every
/// process that shares the store. [`MemoryStore`](super::MemoryStore) serves one process;
/// `RedisStore` (feature `redis`) serves several replicas.
pub trait DedupStore: Send + Sync + 'static {
    /// Claims `key` for `lease` if nobody holds it; otherwise says who does. A claim that is
    /// neither completed nor released within `lease` expires, so a crashed replica cannot
    /// hold a message forever.
    fn claim(
        &self,
        key: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Stores `response` for `key`, which `lease` claimed, for `ttl`. Returns `false` (and
    /// stores nothing) if the claim had expired and another attempt now holds the key.
    fn complete(
        &self,
        key: &str,
        lease: LeaseId,
        response: &StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives up `lease`'s claim on `key` (the attempt failed) so a retry can run.
    fn release(
        &self,
        key: &str,
        lease: LeaseId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Waits, up to `timeout`, for the attempt holding `key` to complete or give up.
    fn wait(
        &self,
        key: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<Waited, StoreError>> + Send;

    /// The callback `lease` claimed was answered (`answered`: FastAck's `success`) before
    /// its handler finished. From now on a repeat gets `answered` replayed at once, while
    /// the claim stays held — for up to `hold` — until [`complete`](Self::complete) or
    /// [`release`](Self::release) ends it. Returns `false` if the claim was lost.
    ///
    /// The default does nothing and returns `false`: repeats then wait for the handler's end
    /// (up to the layer's wait timeout), which is correct but slower for WeChat.
    /// [`MemoryStore`](super::MemoryStore) and `RedisStore` implement it.
    fn acknowledge(
        &self,
        key: &str,
        lease: LeaseId,
        answered: &StoredResponse,
        hold: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (key, lease, answered, hold);
        async { Ok(false) }
    }

    /// [`claim`](Self::claim), for a callback the journal's recovery worker runs again:
    /// an [acknowledged](Self::acknowledge) claim is taken over (the journal hands a
    /// callback back only when the process that ran it stopped keeping it alive), a live
    /// unacknowledged claim is in progress, a completed key is done.
    ///
    /// The default is [`claim`](Self::claim): a recovered callback then waits until the
    /// dead runner's claim expires (its lease).
    fn take_over(
        &self,
        key: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        self.claim(key, lease)
    }
}

/// The answer to [`DedupStore::claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the key now and must complete or release it.
    Claimed(LeaseId),
    /// Another attempt is processing the callback.
    InProgress,
    /// The callback was processed; here is its response.
    Done(StoredResponse),
}

/// The answer to [`DedupStore::wait`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waited {
    /// The other attempt completed with this response.
    Done(StoredResponse),
    /// The other attempt gave up (or its claim expired): the key is free.
    Released,
    /// The other attempt is still running after the timeout.
    StillInProgress,
}

/// Identifies one claim, so only its holder completes or releases it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId(pub u64);

impl LeaseId {
    /// A fresh random id.
    pub fn random() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self(RandomState::new().hash_one(std::time::Instant::now()))
    }
}

/// A store operation that failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer in time.
    Timeout,
    /// The store could not be reached or refused the command.
    Unavailable(String),
    /// A stored value could not be read back.
    Corrupt,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("dedup store timed out"),
            Self::Unavailable(reason) => write!(f, "dedup store unavailable: {reason}"),
            Self::Corrupt => f.write_str("dedup store holds an unreadable value"),
        }
    }
}

impl std::error::Error for StoreError {}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderValue, StatusCode};

    #[test]
    fn stored_response_round_trips() {
        let stored = StoredResponse {
            status: StatusCode::OK,
            content_type: Some(HeaderValue::from_static("application/xml; charset=utf-8")),
            body: Bytes::from_static(b"<xml>\n<a>1</a>\n</xml>"),
        };
        assert_eq!(StoredResponse::decode(&stored.encode()).unwrap(), stored);
        let bare = StoredResponse {
            status: StatusCode::NO_CONTENT,
            content_type: None,
            body: Bytes::new(),
        };
        assert_eq!(StoredResponse::decode(&bare.encode()).unwrap(), bare);
    }

    #[test]
    fn corrupt_values_are_errors() {
        for bad in [
            &b""[..],
            b"200",
            b"2000\n\n",
            b"abc\n\nbody",
            b"200\n\x01\nbody",
        ] {
            assert!(StoredResponse::decode(bad).is_err(), "{bad:?}");
        }
    }
}
