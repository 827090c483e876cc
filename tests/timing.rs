//! TimingLayer on real loopback servers, driven by a WeChat-like client, with the log
//! captured from a `tracing_subscriber::fmt` subscriber: the quick start's log, composition
//! with tower-http's `TraceLayer`, and the budget warning.

mod common;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use common::log::Log;
use common::{WeChat, serve, text_message};
use http::{Request, StatusCode};
use tower::ServiceBuilder;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_wechat::timing::{MsgType, RecordMessageLayer, TimingLayer};
use tower_wechat::{CallbackLayer, Message, Reply, Token, VerifyLayer};
use tracing::Level;

const TOKEN: &str = "tokenneverlogged9";

fn verify() -> VerifyLayer {
    VerifyLayer::new(Token::new(TOKEN).unwrap())
}

#[tokio::test]
async fn the_quickstart_logs_one_line_per_callback_with_msg_id_and_latency() {
    let log = Log::default();
    // The quick start's default filter.
    let _guard = log.install("info");
    let wechat = WeChat::new(
        serve(quickstart::app(CallbackLayer::with_verify(verify()))).await,
        TOKEN,
    );

    let ids = [24567890123456789, 2, 3];
    for id in ids {
        let answer = wechat.deliver(&text_message("secret words", id)).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let forged = WeChat::new(wechat.addr(), "wrongtoken1");
    assert_eq!(
        forged.deliver(&text_message("x", 4)).await.status,
        StatusCode::FORBIDDEN
    );

    let lines = log.lines();
    let answered: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("callback answered"))
        .collect();
    assert_eq!(answered.len(), 3, "{lines:#?}");
    for (id, line) in ids.iter().zip(&answered) {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains(&format!("msg_id={id} ")), "{line}");
        assert!(line.contains("msg_type=\"text\""), "{line}");
        assert!(line.contains("status=200"), "{line}");
        assert!(line.contains("latency_ms="), "{line}");
        // Exactly one line per message.
        let mentions = lines
            .iter()
            .filter(|l| l.contains(&format!("msg_id={id} ")))
            .count();
        assert_eq!(mentions, 1, "{lines:#?}");
    }
    // The forged one: one warning from VerifyLayer, the access line only at DEBUG.
    let refused: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("rejected WeChat callback"))
        .collect();
    assert_eq!(refused.len(), 1, "{lines:#?}");
    assert!(refused[0].contains("status=403"), "{}", refused[0]);
    assert_eq!(refused[0].matches("path=").count(), 1, "{}", refused[0]);

    let all = lines.join("\n");
    for secret in [TOKEN, "oUser1234", "signature=", "nonce=", "secret words"] {
        assert!(!all.contains(secret), "{secret} is in the log:\n{all}");
    }
    assert!(all.contains("openid=\"oUse****34\""), "{all}");
}

#[tokio::test]
async fn with_tower_http_trace_layer_one_info_line_per_callback() {
    let log = Log::default();
    let _guard = log.install("debug,hyper=info,hyper_util=info");
    let app = Router::new().route("/wechat", post(quickstart::reply)).layer(
        ServiceBuilder::new()
            // tower-http's span with the path only (its default records the whole URI, and
            // the query holds the signature and the openid); its events stay at their
            // default level, DEBUG: TimingLayer writes the INFO access line.
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            }))
            .layer(TimingLayer::new())
            .layer(verify())
            .layer(RecordMessageLayer),
    );
    let wechat = WeChat::new(serve(app).await, TOKEN);
    for id in 1..=3 {
        assert_eq!(
            wechat.deliver(&text_message("hi", id)).await.status,
            StatusCode::OK
        );
    }
    let lines = log.lines();
    let info: Vec<_> = lines
        .iter()
        .filter(|line| line.contains(" INFO "))
        .collect();
    assert_eq!(info.len(), 3, "{lines:#?}");
    for (id, line) in (1..=3).zip(&info) {
        // TimingLayer's span is a child of tower-http's.
        assert!(
            line.contains("request{method=POST path=/wechat}:wechat_callback{"),
            "{line}"
        );
        assert!(line.contains("callback answered"), "{line}");
        assert!(line.contains(&format!("msg_id={id} ")), "{line}");
    }
    let finished = lines
        .iter()
        .filter(|line| line.contains(" DEBUG ") && line.contains("finished processing request"))
        .count();
    assert_eq!(finished, 3, "{lines:#?}");
    assert!(!lines.join("\n").contains("signature="));
}

#[tokio::test]
async fn trace_layer_raised_to_info_doubles_the_access_log() {
    // What the composition above avoids: TraceLayer's response event raised to INFO (the
    // usual tower-http access-log setup) next to TimingLayer logs every callback twice.
    let log = Log::default();
    let _guard = log.install("info");
    let app = Router::new()
        .route("/wechat", post(quickstart::reply))
        .layer(
            ServiceBuilder::new()
                .layer(
                    TraceLayer::new_for_http()
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(TimingLayer::new())
                .layer(verify())
                .layer(RecordMessageLayer),
        );
    let wechat = WeChat::new(serve(app).await, TOKEN);
    wechat.deliver(&text_message("hi", 1)).await;
    let lines = log.lines();
    let info: Vec<_> = lines
        .iter()
        .filter(|line| line.contains(" INFO "))
        .collect();
    assert_eq!(info.len(), 2, "{lines:#?}");
    assert!(info[0].contains("callback answered"));
    assert!(info[1].contains("finished processing request"));
}

async fn slow(message: Message) -> Reply {
    tokio::time::sleep(Duration::from_millis(120)).await;
    let _ = message;
    Reply::success()
}

#[tokio::test]
async fn a_slow_handler_warns_with_its_msg_id() {
    let log = Log::default();
    let _guard = log.install("warn");
    let timing = TimingLayer::new().budget(Duration::from_millis(50));
    let stats = timing.stats();
    let app = Router::new()
        .route("/wechat", post(slow))
        .layer(RecordMessageLayer)
        .layer(verify())
        .layer(timing);
    let wechat = WeChat::new(serve(app).await, TOKEN);
    assert_eq!(
        wechat.deliver(&text_message("hi", 42)).await.status,
        StatusCode::OK
    );
    let lines = log.lines();
    // Only WARN and above are enabled, so the INFO span is off: the line names the message
    // by its own fields.
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("callback answered over budget"), "{line}");
    assert!(line.contains("msg_id=42 "), "{line}");
    assert!(line.contains("budget_ms=50"), "{line}");
    let text = stats.snapshot().callbacks(MsgType::Text).clone();
    assert_eq!((text.count(), text.over_budget()), (1, 1));
    assert!(text.max().unwrap() >= Duration::from_millis(120));
}

async fn slower(message: Message) -> Reply {
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = message;
    Reply::success()
}

#[tokio::test]
async fn fast_ack_background_work_is_timed_under_the_callback_span() {
    use tower_wechat::hook::BackgroundOutcome;

    let log = Log::default();
    let _guard = log.install("info");
    let stack = CallbackLayer::with_verify(verify())
        .fast_ack(|fast_ack| fast_ack.deadline(Duration::from_millis(100)));
    let handle = stack.handle();
    let stats = handle.latency().clone();
    let background = handle.fast_ack().clone();
    let app = Router::new().route("/wechat", post(slower)).layer(stack);
    let wechat = WeChat::new(serve(app).await, TOKEN);
    let answer = wechat.deliver(&text_message("slow", 77)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "success")
    );
    background.shutdown(Duration::from_secs(5)).await;

    let lines = log.lines();
    let answered: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("callback answered"))
        .collect();
    assert_eq!(answered.len(), 1, "{lines:#?}");
    assert!(answered[0].contains("msg_id=77 "), "{}", answered[0]);
    assert!(answered[0].contains("background=true"), "{}", answered[0]);
    let finished: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("background work finished"))
        .collect();
    assert_eq!(finished.len(), 1, "{lines:#?}");
    let line = finished[0];
    assert!(
        line.contains("wechat_callback{"),
        "under the callback span: {line}"
    );
    assert!(line.contains("msg_id=77"), "{line}");
    assert!(line.contains("outcome=\"completed\""), "{line}");
    assert!(line.contains("background_ms="), "{line}");
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.background_started(), 1);
    let completed = snapshot.background(BackgroundOutcome::Completed);
    assert_eq!(completed.count(), 1);
    assert!(completed.max().unwrap() >= Duration::from_millis(400));
}
