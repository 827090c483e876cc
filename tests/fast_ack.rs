//! The fast_ack example served on a loopback port and driven like WeChat drives a callback
//! URL: bursts of slow messages, retries of one MsgId, a full bound, a panicking handler, and
//! a graceful shutdown.

mod common;

#[path = "../examples/fast_ack.rs"]
#[allow(dead_code)]
mod fast_ack;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use common::{WeChat, serve, text_message};
use fast_ack::Demo;
use http::StatusCode;
use tower::ServiceBuilder;
use tower_wechat::ack::FastAckLayer;
use tower_wechat::dedup::DedupLayer;
use tower_wechat::{CallbackLayer, Message, Reply, ReplyContent, Token, VerifyLayer};

const TOKEN: &str = "fastack42";

fn verify() -> VerifyLayer {
    VerifyLayer::new(Token::new(TOKEN).unwrap())
}

fn stack(fast_ack: FastAckLayer) -> CallbackLayer {
    CallbackLayer::new(Token::new(TOKEN).unwrap()).fast_ack(|_| fast_ack)
}

async fn start(fast_ack: FastAckLayer, delay: Duration) -> (WeChat, Demo) {
    let demo = fast_ack::app(stack(fast_ack), delay);
    let addr = serve(demo.router.clone()).await;
    (WeChat::new(addr, TOKEN), demo)
}

/// Waits (up to `limit`) until `done` holds.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "not done within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_150_slow_messages_is_answered_in_time_and_processed_once() {
    let (wechat, demo) = start(FastAckLayer::new(), Duration::from_secs(6)).await;
    let deliveries: Vec<_> = (0..150u64)
        .map(|id| wechat.delivery(&text_message(&format!("m{id}"), 10_000 + id)))
        .collect();

    let started = Instant::now();
    let answers = futures_util::future::join_all(deliveries.iter().map(|d| async {
        let sent = Instant::now();
        let answer = wechat.send_delivery(d).await;
        (answer, sent.elapsed())
    }))
    .await;
    for (answer, latency) in &answers {
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "success");
        assert!(
            *latency < Duration::from_secs(5),
            "answered after {latency:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(demo.handle.fast_ack().stats().acked_early, 150);

    // WeChat got its answers in time; were it to retry anyway, nothing runs twice.
    for answer in
        futures_util::future::join_all(deliveries.iter().map(|d| wechat.send_delivery(d))).await
    {
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "success")
        );
    }
    eventually(Duration::from_secs(10), || {
        demo.processed.counts().len() == 150
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counts = demo.processed.counts();
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let stats = demo.handle.fast_ack().stats();
    assert_eq!((stats.completed, stats.in_flight), (150, 0));
    assert_eq!(demo.handle.dedup().stats().replayed, 150);
}

#[tokio::test]
async fn retries_of_one_msg_id_run_the_handler_once_concurrent_or_sequential() {
    let (wechat, demo) = start(FastAckLayer::new(), Duration::from_millis(300)).await;
    let delivery = wechat.delivery(&text_message("once", 777));
    let concurrent =
        futures_util::future::join_all((0..3).map(|_| wechat.send_delivery(&delivery))).await;
    let first = &concurrent[0];
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.body.contains("<![CDATA[once]]>"), "{}", first.body);
    for answer in &concurrent {
        assert_eq!(answer.body, first.body);
    }
    for _ in 0..3 {
        let answer = wechat.send_delivery(&delivery).await;
        assert_eq!(answer.body, first.body, "the same passive reply, replayed");
    }
    assert_eq!(demo.processed.counts()["777"], 1);
    let stats = demo.handle.dedup().stats();
    assert_eq!(
        (stats.processed, stats.coalesced, stats.replayed),
        (1, 2, 3)
    );
}

#[tokio::test]
async fn a_fast_handler_s_passive_reply_arrives_and_a_later_retry_gets_it_again() {
    let (wechat, demo) = start(FastAckLayer::new(), Duration::ZERO).await;
    let delivery = wechat.delivery(&text_message("quick", 778));
    let answer = wechat.send_delivery(&delivery).await;
    assert_eq!(answer.status, StatusCode::OK);
    let reply = Reply::parse(answer.body.as_bytes()).unwrap();
    assert_eq!(reply.content(), Some(&ReplyContent::text("quick")));
    let retry = wechat.send_delivery(&delivery).await;
    assert_eq!(retry.body, answer.body);
    assert_eq!(demo.processed.counts()["778"], 1);
}

#[tokio::test]
async fn a_full_bound_answers_503_and_the_retry_is_processed_later() {
    let fast_ack = FastAckLayer::new()
        .deadline(Duration::from_millis(100))
        .max_in_flight(2);
    let (wechat, demo) = start(fast_ack, Duration::from_millis(800)).await;
    for id in 0..2 {
        let answer = wechat.deliver(&text_message("fill", 900 + id)).await;
        assert_eq!(answer.body, "success");
    }
    let third = wechat.delivery(&text_message("third", 902));
    let refused = wechat.send_delivery(&third).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(demo.handle.fast_ack().stats().refused_full, 1);
    // The 503 did not mark the message as handled: WeChat's retry runs it.
    eventually(Duration::from_secs(5), || {
        demo.handle.fast_ack().stats().in_flight == 0
    })
    .await;
    let retry = wechat.send_delivery(&third).await;
    assert_eq!(retry.status, StatusCode::OK);
    eventually(Duration::from_secs(5), || {
        demo.processed.counts().contains_key("902")
    })
    .await;
    assert_eq!(demo.processed.counts()["902"], 1);
}

async fn panics_on_request(message: Message) -> Reply {
    if let tower_wechat::MessageKind::Text { content } = &message.kind
        && content == "panic"
    {
        panic!("a bug in the handler");
    }
    message.reply(ReplyContent::text("still here"))
}

#[tokio::test]
async fn a_panicking_handler_does_not_take_the_server_down() {
    let fast_ack = FastAckLayer::new();
    let handle = fast_ack.handle();
    let router = Router::new()
        .route("/wechat", post(panics_on_request))
        .layer(
            ServiceBuilder::new()
                .layer(verify())
                .layer(DedupLayer::new())
                .layer(fast_ack),
        );
    let wechat = WeChat::new(serve(router).await, TOKEN);
    let panicked = wechat.deliver(&text_message("panic", 1)).await;
    assert_eq!(panicked.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(handle.stats().panicked, 1);
    let fine = wechat.deliver(&text_message("hello", 2)).await;
    assert_eq!(fine.status, StatusCode::OK);
    assert!(fine.body.contains("still here"));
}

#[tokio::test]
async fn graceful_shutdown_drains_background_handlers() {
    let demo = fast_ack::app(
        stack(FastAckLayer::new().deadline(Duration::from_millis(100))),
        Duration::from_millis(1500),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wechat = WeChat::new(listener.local_addr().unwrap(), TOKEN);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, demo.router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    for id in 0..3 {
        assert_eq!(
            wechat.deliver(&text_message("work", 50 + id)).await.body,
            "success"
        );
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(
        demo.handle.fast_ack().stats().in_flight,
        3,
        "acked, still working"
    );

    let report = demo.handle.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.finished, report.unfinished), (3, 0));
    assert_eq!(demo.processed.counts().len(), 3);
}
