//! [`RedisTokenStore`]: one access_token shared by every replica through Redis, refreshed by
//! one replica at a time.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;

use super::source::{IssuedToken, TokenRequest, TokenSource};
use super::{ApiToken, ClientError};

/// Configures a [`RedisTokenStore`].
#[derive(Clone)]
#[must_use]
pub struct RedisTokenStoreBuilder {
    connection: ConnectionManager,
    prefix: String,
    lock_ttl: Duration,
    poll_interval: Duration,
    operation_timeout: Duration,
}

impl RedisTokenStoreBuilder {
    /// A store on `connection`, with key prefix `tower-wechat`, a 30 s refresh lock, a 50 ms
    /// poll while another replica refreshes, and a 2 s limit on each Redis operation.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: "tower-wechat".to_owned(),
            lock_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            operation_timeout: Duration::from_secs(2),
        }
    }

    /// The key prefix; keys are `{prefix}:{appid}:access_token` and `{prefix}:{appid}:lock`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long the refresh lock is held at most (it is released as soon as the new token
    /// is stored). Longer than a token fetch with its retries.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How often a replica waiting for another one's refresh looks for the new token.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The limit on each Redis operation; past it the fetch fails with
    /// [`ClientError::Store`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The store for `appid`, refreshing from `source` (normally WeChat's token endpoint).
    pub fn build(
        self,
        appid: &str,
        source: impl TokenSource,
    ) -> Result<RedisTokenStore, ClientError> {
        if appid.is_empty() || self.prefix.is_empty() {
            return Err(ClientError::InvalidInput(
                "the Redis store needs an appid and a key prefix".into(),
            ));
        }
        Ok(RedisTokenStore {
            token_key: format!("{}:{appid}:access_token", self.prefix),
            lock_key: format!("{}:{appid}:lock", self.prefix),
            source: Arc::new(source),
            config: self,
        })
    }
}

impl fmt::Debug for RedisTokenStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTokenStoreBuilder")
            .field("prefix", &self.prefix)
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}

/// A [`TokenSource`] that shares one token between replicas through Redis.
///
/// WeChat's `/cgi-bin/token` issues a new token on every call and the previous one stops
/// working 5 minutes later, so replicas that each refresh their own token knock each other
/// out. Here the token lives in Redis (with its remaining lifetime as the key's TTL):
///
/// - a replica that needs a token reads it from Redis;
/// - when it is missing, was refused by WeChat, or is inside the refresh margin, the replica
///   takes a lock (`SET NX PX`), checks again, fetches from the inner source, stores the
///   token and releases the lock; the other replicas wait for that token instead of
///   fetching their own.
///
/// **Redis unreachable:** fetches fail with [`ClientError::Store`] and the inner source is
/// *not* called, because a replica that fetched on its own would invalidate the token every
/// other replica uses. Tokens already cached keep working until they expire (the cache
/// retries its refresh every few seconds meanwhile), so an outage of Redis shorter than the
/// refresh margin (5 min by default) costs nothing.
pub struct RedisTokenStore {
    token_key: String,
    lock_key: String,
    source: Arc<dyn TokenSource>,
    config: RedisTokenStoreBuilder,
}

const RELEASE: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0";

impl RedisTokenStore {
    /// Starts a store on `connection`; see [`RedisTokenStoreBuilder`].
    pub fn builder(connection: ConnectionManager) -> RedisTokenStoreBuilder {
        RedisTokenStoreBuilder::new(connection)
    }

    async fn op<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.config.operation_timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(ClientError::Store(Arc::new(error))),
            Err(_) => Err(ClientError::Store(Arc::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "Redis did not answer in time",
            )))),
        }
    }

    /// The shared token, if one is there that `request` can use.
    async fn read(&self, request: &TokenRequest) -> Result<Option<IssuedToken>, ClientError> {
        let mut connection = self.config.connection.clone();
        let (value, ttl_ms): (Option<String>, i64) = self
            .op(redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&self.token_key)
                .cmd("PTTL")
                .arg(&self.token_key)
                .query_async(&mut connection))
            .await?;
        // Stored as "{lifetime in ms} {token}".
        let Some((lifetime, token)) = value.as_deref().and_then(|value| value.split_once(' '))
        else {
            return Ok(None);
        };
        let (Ok(lifetime_ms), Ok(ttl_ms)) = (lifetime.parse::<u64>(), u64::try_from(ttl_ms)) else {
            return Ok(None);
        };
        let left = Duration::from_millis(ttl_ms);
        // The same rule as the cache: refresh `min_ttl` ahead, at most half the lifetime.
        let margin = request.min_ttl.min(Duration::from_millis(lifetime_ms) / 2);
        let token = ApiToken::new(token);
        if left <= margin || request.rejected.as_ref() == Some(&token) {
            return Ok(None);
        }
        Ok(Some(IssuedToken {
            token,
            expires_in: left,
        }))
    }

    async fn try_lock(&self, owner: &str) -> Result<bool, ClientError> {
        let mut connection = self.config.connection.clone();
        let set: Option<String> = self
            .op(redis::cmd("SET")
                .arg(&self.lock_key)
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(millis(self.config.lock_ttl))
                .query_async(&mut connection))
            .await?;
        Ok(set.is_some())
    }

    async fn unlock(&self, owner: &str) {
        let mut connection = self.config.connection.clone();
        let script = redis::Script::new(RELEASE);
        let released: Result<i64, _> = self
            .op(script
                .key(&self.lock_key)
                .arg(owner)
                .invoke_async(&mut connection))
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, "could not release the token refresh lock; it expires on its own");
        }
    }

    /// Holding the lock: checks again, fetches, stores.
    async fn refresh(&self, request: &TokenRequest) -> Result<IssuedToken, ClientError> {
        if let Some(issued) = self.read(request).await? {
            return Ok(issued);
        }
        let issued = self.source.fetch(request).await?;
        let mut connection = self.config.connection.clone();
        let value = format!("{} {}", millis(issued.expires_in), issued.token.expose());
        let stored: Result<(), _> = self
            .op(redis::cmd("SET")
                .arg(&self.token_key)
                .arg(value)
                .arg("PX")
                .arg(millis(issued.expires_in).max(1))
                .query_async(&mut connection))
            .await;
        if let Err(error) = stored {
            // The token is valid; this replica uses it, the others will fetch their own.
            tracing::warn!(%error, "could not store the new access_token in Redis");
        }
        Ok(issued)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl TokenSource for RedisTokenStore {
    fn fetch<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<IssuedToken, ClientError>> {
        Box::pin(async move {
            let owner = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            let deadline = Instant::now() + self.config.lock_ttl * 2;
            loop {
                if let Some(issued) = self.read(request).await? {
                    return Ok(issued);
                }
                if self.try_lock(&owner).await? {
                    let result = self.refresh(request).await;
                    self.unlock(&owner).await;
                    return result;
                }
                // Another replica is refreshing: wait for its token.
                if Instant::now() >= deadline {
                    return Err(ClientError::Store(Arc::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "another replica held the token refresh lock too long",
                    ))));
                }
                tokio::time::sleep(self.config.poll_interval).await;
            }
        })
    }
}

impl fmt::Debug for RedisTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTokenStore")
            .field("token_key", &self.token_key)
            .field("lock_ttl", &self.config.lock_ttl)
            .finish_non_exhaustive()
    }
}
