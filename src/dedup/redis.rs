//! [`RedisStore`]: a [`DedupStore`] in Redis, shared by several replicas.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::store::{Claim, DedupStore, LeaseId, StoreError, StoredResponse, Waited};

/// Default prefix of every key this store writes.
const DEFAULT_PREFIX: &str = "tower-wechat:dedup:";
/// A claim's value is `P` + its lease; a completed key's value is `D` + the response; an
/// acknowledged claim's value is `A` + its lease + the response it was answered.
const PENDING: u8 = b'P';
const DONE: u8 = b'D';
const ACKED: u8 = b'A';
/// `P` or `A` and the 8 bytes of a lease.
const CLAIM_LEN: usize = 9;

/// A [`DedupStore`] in Redis, so that replicas behind a load balancer process each callback
/// once between them.
///
/// A claim is one atomic `SET key P<lease> NX PX <lease ms>`; completing and releasing are
/// Lua scripts that act only if the key still holds the caller's lease, so an attempt whose
/// claim expired cannot overwrite the attempt that took over. A waiting retry polls the key
/// (every 20 ms at first, backing off to 200 ms).
///
/// The connection is made on first use and remade after failures
/// ([`redis::aio::ConnectionManager`]), with a 1 s connect and response timeout. What
/// happens to callbacks while Redis is unreachable is the layer's choice:
/// [`DedupLayer::fail_closed`](super::DedupLayer::fail_closed).
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    complete: Script,
    release: Script,
    acknowledge: Script,
    take_over: Script,
}

impl RedisStore {
    /// A store on the server at `url` (`redis://host:port/db`). Must be called within a tokio
    /// runtime; does not connect until first used, so an unreachable server is reported by
    /// the first operation, not here.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        Self::new(client)
    }

    /// A store on `client`'s server (see [`open`](Self::open)).
    pub fn new(client: redis::Client) -> Result<Self, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let connection = client
            .get_connection_manager_lazy(config)
            .map_err(unavailable)?;
        Ok(Self {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
            // ARGV[1] = P<lease>, ARGV[4] = A<lease>: the claim, acknowledged or not.
            complete: Script::new(
                r"local v = redis.call('GET', KEYS[1])
                  if v and (v == ARGV[1] or string.sub(v, 1, 9) == ARGV[4]) then
                    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
                    return 1
                  end
                  return 0",
            ),
            release: Script::new(
                r"local v = redis.call('GET', KEYS[1])
                  if v and (v == ARGV[1] or string.sub(v, 1, 9) == ARGV[2]) then
                    return redis.call('DEL', KEYS[1])
                  end
                  return 0",
            ),
            // ARGV[1] = P<lease>, ARGV[2] = A<lease><answer>, ARGV[3] = hold ms.
            acknowledge: Script::new(
                r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
                    return 1
                  end
                  return 0",
            ),
            // ARGV[1] = P<new lease>, ARGV[2] = lease ms. Returns the value found, or
            // nothing if the key was claimed anew (free, or acknowledged by a gone runner).
            take_over: Script::new(
                r"local v = redis.call('GET', KEYS[1])
                  if v and string.sub(v, 1, 1) ~= 'A' then
                    return v
                  end
                  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                  return false",
            ),
        })
    }

    /// Prefixes every key with `prefix` instead of `tower-wechat:dedup:` (to keep several
    /// deployments apart in one Redis).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.connection.clone();
        connection.get(key).await.map_err(unavailable)
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: redis::RedisError) -> StoreError {
    // Redis errors name the command and the server's reply, never a value we sent.
    StoreError::Unavailable(error.to_string())
}

fn pending_value(lease: LeaseId) -> Vec<u8> {
    claim_value(PENDING, lease)
}

fn claim_value(kind: u8, lease: LeaseId) -> Vec<u8> {
    let mut value = vec![kind];
    value.extend_from_slice(&lease.0.to_be_bytes());
    value
}

/// What a stored value says to a repeat: `None` while pending (an acknowledged claim's
/// answer is replayed).
fn read_value(value: &[u8]) -> Result<Option<StoredResponse>, StoreError> {
    let decode = |response| {
        StoredResponse::decode(response)
            .map(Some)
            .map_err(|_| StoreError::Corrupt)
    };
    match value.split_first() {
        Some((&PENDING, _)) => Ok(None),
        Some((&DONE, response)) => decode(response),
        Some((&ACKED, _)) if value.len() >= CLAIM_LEN => decode(&value[CLAIM_LEN..]),
        _ => Err(StoreError::Corrupt),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl DedupStore for RedisStore {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let key = self.key(key);
        let id = LeaseId::random();
        // A key that expires between the SET and the GET is tried once more.
        for _ in 0..2 {
            let options = redis::SetOptions::default()
                .conditional_set(redis::ExistenceCheck::NX)
                .with_expiration(redis::SetExpiry::PX(millis(lease)));
            let mut connection = self.connection.clone();
            let set: Option<String> = connection
                .set_options(&key, pending_value(id), options)
                .await
                .map_err(unavailable)?;
            if set.is_some() {
                return Ok(Claim::Claimed(id));
            }
            if let Some(value) = self.get(&key).await? {
                return Ok(match read_value(&value)? {
                    None => Claim::InProgress,
                    Some(response) => Claim::Done(response),
                });
            }
        }
        Ok(Claim::InProgress)
    }

    async fn complete(
        &self,
        key: &str,
        lease: LeaseId,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut value = vec![DONE];
        value.extend_from_slice(&response.encode());
        let mut connection = self.connection.clone();
        let stored: i64 = self
            .complete
            .key(self.key(key))
            .arg(pending_value(lease))
            .arg(value)
            .arg(millis(ttl))
            .arg(claim_value(ACKED, lease))
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(stored == 1)
    }

    async fn release(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let _: i64 = self
            .release
            .key(self.key(key))
            .arg(pending_value(lease))
            .arg(claim_value(ACKED, lease))
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn acknowledge(
        &self,
        key: &str,
        lease: LeaseId,
        answered: &StoredResponse,
        hold: Duration,
    ) -> Result<bool, StoreError> {
        let mut value = claim_value(ACKED, lease);
        value.extend_from_slice(&answered.encode());
        let mut connection = self.connection.clone();
        let stored: i64 = self
            .acknowledge
            .key(self.key(key))
            .arg(pending_value(lease))
            .arg(value)
            .arg(millis(hold))
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(stored == 1)
    }

    async fn take_over(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let id = LeaseId::random();
        let mut connection = self.connection.clone();
        let found: Option<Vec<u8>> = self
            .take_over
            .key(self.key(key))
            .arg(pending_value(id))
            .arg(millis(lease))
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(match found {
            None => Claim::Claimed(id),
            Some(value) => match read_value(&value)? {
                None => Claim::InProgress,
                Some(response) => Claim::Done(response),
            },
        })
    }

    async fn wait(&self, key: &str, timeout: Duration) -> Result<Waited, StoreError> {
        let key = self.key(key);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.get(&key).await? {
                None => return Ok(Waited::Released),
                Some(value) => {
                    if let Some(response) = read_value(&value)? {
                        return Ok(Waited::Done(response));
                    }
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Waited::StillInProgress);
            }
            tokio::time::sleep_until(deadline.min(now + pause)).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}
