//! DedupLayer with the Redis store against a real `redis-server` (`common::redis_url`:
//! `REDIS_URL`, or one it starts; ignored unless asked for, as `scripts/test` does): two
//! replicas sharing one Redis process each message once; an unreachable Redis fails open
//! (or closed, when asked).

mod common;

#[path = "../examples/fast_ack.rs"]
#[allow(dead_code)]
mod fast_ack;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{WeChat, redis_url, serve, text_message};
use fast_ack::Demo;
use http::StatusCode;
use tower_wechat::dedup::{Claim, DedupLayer, DedupStore, RedisStore, StoredResponse, Waited};
use tower_wechat::{CallbackLayer, Token};

const TOKEN: &str = "redisdedup1";

/// A key prefix no other run uses, so reruns against one Redis start clean.
fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tower-wechat-test:{nanos}:")
}

/// A replica: its own server, its own layers, the Redis store shared through `prefix`.
async fn replica(url: &str, prefix: &str, delay: Duration) -> (WeChat, Demo) {
    let store = RedisStore::open(url).unwrap().prefix(prefix);
    let stack =
        CallbackLayer::new(Token::new(TOKEN).unwrap()).dedup(|_| DedupLayer::with_store(store));
    let demo = fast_ack::app(stack, delay);
    let addr = serve(demo.router.clone()).await;
    (WeChat::new(addr, TOKEN), demo)
}

fn processed(replicas: &[&Demo], key: &str) -> usize {
    replicas
        .iter()
        .map(|demo| demo.processed.counts().get(key).copied().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn two_replicas_sharing_redis_process_a_message_once() {
    let url = redis_url();
    let prefix = unique_prefix();
    let (a, demo_a) = replica(&url, &prefix, Duration::from_millis(300)).await;
    let (b, demo_b) = replica(&url, &prefix, Duration::from_millis(300)).await;

    // Concurrent: the load balancer sends the first try to A and a retry to B at once.
    let delivery = a.delivery(&text_message("shared", 4242));
    let (first, retry) = tokio::join!(a.send_delivery(&delivery), b.send_delivery(&delivery));
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(retry.status, StatusCode::OK);
    assert!(first.body.contains("shared"), "{}", first.body);
    assert_eq!(
        retry.body, first.body,
        "B answered with A's reply (or the reverse)"
    );

    // Sequential: later retries on either replica replay the stored reply.
    for wechat in [&a, &b, &a] {
        assert_eq!(wechat.send_delivery(&delivery).await.body, first.body);
    }
    assert_eq!(processed(&[&demo_a, &demo_b], "4242"), 1);

    // Many messages, each delivered to both replicas at once.
    let deliveries: Vec<_> = (0..40u64)
        .map(|id| a.delivery(&text_message("burst", 5000 + id)))
        .collect();
    let sends = deliveries
        .iter()
        .flat_map(|d| [a.send_delivery(d), b.send_delivery(d)]);
    for answer in futures_util::future::join_all(sends).await {
        assert_eq!(answer.status, StatusCode::OK);
    }
    for id in 0..40u64 {
        assert_eq!(processed(&[&demo_a, &demo_b], &(5000 + id).to_string()), 1);
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn a_slow_first_attempt_on_one_replica_holds_retries_on_the_other() {
    let url = redis_url();
    let prefix = unique_prefix();
    // 6 s handler: the first replica acks `success` at 4 s, the retry on B waits for it.
    let (a, demo_a) = replica(&url, &prefix, Duration::from_secs(6)).await;
    let (b, demo_b) = replica(&url, &prefix, Duration::from_secs(6)).await;
    let delivery = a.delivery(&text_message("slow", 4343));
    let (first, retry) = tokio::join!(a.send_delivery(&delivery), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        b.send_delivery(&delivery).await
    });
    assert_eq!(
        (first.status, first.body.as_str()),
        (StatusCode::OK, "success")
    );
    assert_eq!(
        (retry.status, retry.body.as_str()),
        (StatusCode::OK, "success")
    );
    assert_eq!(demo_b.handle.dedup().stats().coalesced, 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(processed(&[&demo_a, &demo_b], "4343"), 1);
}

fn stored(body: &'static str) -> StoredResponse {
    StoredResponse {
        status: StatusCode::OK,
        content_type: Some("application/xml; charset=utf-8".parse().unwrap()),
        body: body.into(),
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn redis_store_claims_atomically_and_only_the_holder_completes() {
    let url = redis_url();
    let store = RedisStore::open(&url).unwrap().prefix(unique_prefix());
    let lease = Duration::from_secs(5);

    let claims = futures_util::future::join_all((0..20).map(|_| store.claim("k", lease))).await;
    let winners: Vec<_> = claims
        .iter()
        .filter_map(|c| match c.as_ref().unwrap() {
            Claim::Claimed(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{claims:?}");
    let holder = winners[0];

    let stranger = tower_wechat::dedup::LeaseId(holder.0 ^ 1);
    assert!(
        !store
            .complete("k", stranger, &stored("x"), lease)
            .await
            .unwrap()
    );
    store.release("k", stranger).await.unwrap();
    assert_eq!(store.claim("k", lease).await.unwrap(), Claim::InProgress);

    let waiter = tokio::spawn({
        let store = store.clone();
        async move { store.wait("k", Duration::from_secs(3)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = "<xml>\n<Content><![CDATA[多行\n回复]]></Content></xml>";
    assert!(
        store
            .complete("k", holder, &stored(reply), Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(waiter.await.unwrap().unwrap(), Waited::Done(stored(reply)));
    assert_eq!(
        store.claim("k", lease).await.unwrap(),
        Claim::Done(stored(reply))
    );

    // A released key is free again; an expired claim too.
    let Claim::Claimed(id) = store.claim("j", lease).await.unwrap() else {
        panic!()
    };
    store.release("j", id).await.unwrap();
    assert_eq!(
        store.wait("j", Duration::from_secs(1)).await.unwrap(),
        Waited::Released
    );
    let Claim::Claimed(_) = store.claim("e", Duration::from_millis(50)).await.unwrap() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(matches!(
        store.claim("e", lease).await.unwrap(),
        Claim::Claimed(_)
    ));
}

/// Nothing listens on port 1 of loopback.
const UNREACHABLE: &str = "redis://127.0.0.1:1/";

async fn replica_with_unreachable_redis(fail_closed: bool) -> (WeChat, Demo) {
    let store = RedisStore::open(UNREACHABLE).unwrap();
    let mut dedup = DedupLayer::with_store(store).store_timeout(Duration::from_millis(500));
    if fail_closed {
        dedup = dedup.fail_closed();
    }
    let demo = fast_ack::app(
        CallbackLayer::new(Token::new(TOKEN).unwrap()).dedup(|_| dedup),
        Duration::ZERO,
    );
    let addr = serve(demo.router.clone()).await;
    (WeChat::new(addr, TOKEN), demo)
}

#[tokio::test]
async fn unreachable_redis_fails_open_by_default() {
    let (wechat, demo) = replica_with_unreachable_redis(false).await;
    let answer = wechat.deliver(&text_message("no redis", 61)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("no redis"), "processed without dedup");
    assert_eq!(demo.processed.counts()["61"], 1);
    assert!(demo.handle.dedup().stats().store_errors >= 1);
}

#[tokio::test]
async fn unreachable_redis_answers_503_when_failing_closed() {
    let (wechat, demo) = replica_with_unreachable_redis(true).await;
    let answer = wechat.deliver(&text_message("no redis", 62)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.body.contains("dedup store unavailable"));
    assert!(demo.processed.counts().is_empty());
}
