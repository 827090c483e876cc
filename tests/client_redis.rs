//! The Redis token store against a real `redis-server` (`common::redis_url`: `REDIS_URL`, or
//! one it starts; ignored unless asked for, as `scripts/test` does), with several clients
//! standing in for replicas of one app.

mod common;
#[path = "client/standin.rs"]
mod standin;

use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use standin::{APPID, Act, SECRET, StandIn};
use tower_wechat::client::{
    AppSecret, ClientError, CustomMessage, RedisTokenStore, RetryPolicy, WeChatClient,
};

/// A unique key prefix, so runs and tests sharing the Redis server do not meet.
fn prefix() -> String {
    format!("tower-wechat-test-{:016x}", fastrand::u64(..))
}

async fn replicas(standin: &StandIn, url: &str, prefix: &str, count: usize) -> Vec<WeChatClient> {
    let mut clients = Vec::new();
    for _ in 0..count {
        let connection = ConnectionManager::new(redis::Client::open(url).unwrap())
            .await
            .unwrap();
        let store = RedisTokenStore::builder(connection)
            .key_prefix(prefix)
            .poll_interval(Duration::from_millis(10));
        let client = WeChatClient::builder(APPID, AppSecret::new(SECRET))
            .base_url(standin.base_url())
            .redis_store(store)
            .retry(RetryPolicy::new().base_delay(Duration::from_millis(5)))
            .build()
            .unwrap();
        clients.push(client);
    }
    clients
}

async fn send_from_all(clients: &[WeChatClient], per_client: usize, tag: &str) {
    let sends = clients.iter().enumerate().flat_map(|(replica, client)| {
        (0..per_client).map(move |n| {
            let client = client.clone();
            let text = format!("{tag}-{replica}-{n}");
            async move {
                client
                    .send_custom_message(&CustomMessage::text("oUser1234", text))
                    .await
            }
        })
    });
    for result in join_all(sends).await {
        result.unwrap();
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn replicas_on_a_cold_start_share_one_token() {
    let url = common::redis_url();
    let standin = StandIn::start().await;
    standin.token_plan(|_| Act::Slow(Duration::from_millis(200)));
    let clients = replicas(&standin, &url, &prefix(), 3).await;
    send_from_all(&clients, 30, "cold").await;
    assert_eq!(standin.token_requests(), 1);
    assert_eq!(standin.issued(), 1);
    // Each replica's cache asked the store once; two of them read the first one's token.
    assert!(clients.iter().all(|client| client.token_fetches() == 1));
    assert_eq!(standin.deliveries().len(), 90);
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn a_revoked_token_is_replaced_once_for_all_replicas() {
    let url = common::redis_url();
    let standin = StandIn::start().await;
    let clients = replicas(&standin, &url, &prefix(), 3).await;
    send_from_all(&clients, 1, "warm").await;
    assert_eq!(standin.issued(), 1);
    standin.revoke_tokens();
    send_from_all(&clients, 20, "after").await;
    assert_eq!(standin.issued(), 2);
    let deliveries = standin.deliveries();
    assert_eq!(deliveries.len(), 63);
    assert!(deliveries.values().all(|count| *count == 1));
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn a_token_near_expiry_is_refreshed_by_one_replica() {
    let url = common::redis_url();
    let standin = StandIn::start().await;
    standin.token_lifetime(Duration::from_secs(2)); // refreshed in its last second
    let prefix = prefix();
    let first = replicas(&standin, &url, &prefix, 1).await;
    send_from_all(&first, 1, "first").await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // A replica starting now must not take the token that is about to expire, and the
    // first one's refresh ahead of expiry must pick up the replacement, not fetch its own.
    let second = replicas(&standin, &url, &prefix, 1).await;
    send_from_all(&second, 1, "second").await;
    send_from_all(&first, 1, "again").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_from_all(&first, 1, "later").await;
    assert_eq!(standin.issued(), 2);
    assert_eq!(
        first[0].access_token().await.unwrap(),
        second[0].access_token().await.unwrap()
    );
}

/// Redis down: the client does not fall back to fetching on its own (that would invalidate
/// every other replica's token); it fails with a typed error. Runs without `REDIS_URL`.
#[tokio::test]
async fn unreachable_redis_fails_closed_without_calling_wechat() {
    let standin = StandIn::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(200)))
        .set_number_of_retries(0);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let connection = ConnectionManager::new_lazy_with_config(client, config).unwrap();
    let client = WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(standin.base_url())
        .redis_store(RedisTokenStore::builder(connection).key_prefix(prefix()))
        .build()
        .unwrap();
    let error = client
        .send_custom_message(&CustomMessage::text("oUser1234", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Token(inner) if matches!(**inner, ClientError::Store(_))),
        "{error:?}"
    );
    assert!(error.not_sent());
    assert_eq!(standin.token_requests(), 0);
    assert_eq!(standin.api_requests(), 0);
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn a_replica_waiting_for_another_ones_refresh_fails_as_not_sent() {
    let url = common::redis_url();
    let standin = StandIn::start().await;
    let prefix = prefix();
    // Another replica holds the refresh lock (and never stores a token).
    let mut connection = ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:{APPID}:lock"))
        .arg("another-replica")
        .arg("PX")
        .arg(30_000)
        .query_async(&mut connection)
        .await
        .unwrap();
    let store = RedisTokenStore::builder(connection.clone())
        .key_prefix(&prefix)
        .poll_interval(Duration::from_millis(10));
    let client = WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(standin.base_url())
        .redis_store(store)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client
        .send_custom_message(&CustomMessage::text("oUser1234", "x"))
        .await
        .unwrap_err();
    // Not "timed out, may have been delivered": it was never sent.
    assert!(
        matches!(&error, ClientError::Token(inner) if matches!(**inner, ClientError::Timeout(_))),
        "{error:?}"
    );
    assert!(error.not_sent());
    assert_eq!(standin.api_requests(), 0);
    assert_eq!(client.breaker_stats().failures, 0);
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:{APPID}:lock"))
        .query_async(&mut connection)
        .await
        .unwrap();
}
