//! The one-call inbound stack against hand-assembled ones, over real HTTP on loopback: the
//! order that works de-duplicates WeChat's retries; the reversed order (what
//! `Router::layer(a).layer(b)` gives when `a` is meant to be outermost) is caught by a
//! warning that names the fix.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::post;
use common::log::Log;
use common::{WeChat, serve, text_message};
use http::StatusCode;
use tower_wechat::{
    CallbackLayer, DedupLayer, FastAckLayer, Message, Reply, ReplyContent, Token, VerifyLayer,
};

const TOKEN: &str = "stackorder7";

fn token() -> Token {
    Token::new(TOKEN).unwrap()
}

/// `/wechat` with a handler that counts its runs.
fn counting_route(runs: Arc<AtomicUsize>) -> Router {
    Router::new().route(
        "/wechat",
        post(move |message: Message| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                message.reply(ReplyContent::text("once"))
            }
        }),
    )
}

/// One delivery and two byte-identical retries, as WeChat makes them; all must be 200.
async fn deliver_with_retries(wechat: &WeChat, msg_id: u64) -> Vec<String> {
    let delivery = wechat.delivery(&text_message("hello", msg_id));
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let answer = wechat.send_delivery(&delivery).await;
        assert_eq!(answer.status, StatusCode::OK);
        bodies.push(answer.body);
    }
    bodies
}

#[tokio::test]
async fn the_one_call_stack_runs_the_handler_once_per_msg_id_without_warnings() {
    let log = Log::default();
    let _guard = log.install("warn");
    let runs = Arc::new(AtomicUsize::new(0));
    let stack = CallbackLayer::new(token());
    let handle = stack.handle();
    let wechat = WeChat::new(
        serve(counting_route(runs.clone()).layer(stack)).await,
        TOKEN,
    );

    let bodies = deliver_with_retries(&wechat, 4242).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "retries answered, not run");
    assert!(bodies.iter().all(|body| body == &bodies[0]), "{bodies:?}");
    assert!(Reply::parse(bodies[0].as_bytes()).is_ok());
    let stats = handle.dedup().stats();
    assert_eq!((stats.processed, stats.replayed, stats.unkeyed), (1, 2, 0));
    let lines = log.lines();
    assert!(
        lines.is_empty(),
        "no warning for the right order: {lines:#?}"
    );

    // A forged signature is refused and counted where the stack's handle shows it.
    assert_eq!(handle.verify().stats().rejected, 0);
    let forged = wechat
        .send(
            http::Method::POST,
            "/wechat?signature=0000000000000000000000000000000000000000&timestamp=1&nonce=1",
            text_message("forged", 1),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(handle.verify().stats().rejected, 1);
}

#[tokio::test]
async fn layers_chained_in_the_reverse_order_warn_once_naming_the_fix() {
    let log = Log::default();
    let _guard = log.install("warn");
    let runs = Arc::new(AtomicUsize::new(0));
    let dedup = DedupLayer::new();
    let dedup_handle = dedup.handle();
    // Meant as Verify → Dedup → FastAck, but Router::layer wraps: FastAck ends up outermost.
    let app = counting_route(runs.clone())
        .layer(VerifyLayer::new(token()))
        .layer(dedup)
        .layer(FastAckLayer::new());
    let wechat = WeChat::new(serve(app).await, TOKEN);

    deliver_with_retries(&wechat, 4343).await;
    deliver_with_retries(&wechat, 4344).await;
    // What the wrong order costs: every retry ran the handler.
    assert_eq!(runs.load(Ordering::SeqCst), 6);
    assert_eq!(dedup_handle.stats().unkeyed, 6);

    let lines = log.lines();
    for layer in ["DedupLayer", "FastAckLayer"] {
        let warnings: Vec<_> = lines
            .iter()
            .filter(|line| line.contains(&format!("{layer} got a request without a parsed")))
            .collect();
        assert_eq!(warnings.len(), 1, "one warning for {layer}: {lines:#?}");
        let warning = warnings[0];
        assert!(warning.contains(" WARN "), "{warning}");
        assert!(warning.contains("put VerifyLayer outside it"), "{warning}");
        assert!(warning.contains("CallbackLayer"), "{warning}");
    }
    assert_eq!(lines.len(), 2, "nothing else: {lines:#?}");
}

#[tokio::test]
async fn timing_inside_verify_warns_once() {
    let log = Log::default();
    let _guard = log.install("warn");
    let runs = Arc::new(AtomicUsize::new(0));
    let app = counting_route(runs)
        .layer(tower_wechat::TimingLayer::new())
        .layer(VerifyLayer::new(token()));
    let wechat = WeChat::new(serve(app).await, TOKEN);
    for id in 1..=3 {
        assert_eq!(
            wechat.deliver(&text_message("hi", id)).await.status,
            StatusCode::OK
        );
    }
    let lines = log.lines();
    let warnings: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("TimingLayer got a request that VerifyLayer already handled"))
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert!(
        warnings[0].contains("put TimingLayer outside"),
        "{}",
        warnings[0]
    );
}
