//! The observability example's app on a real loopback port: signed callbacks from a
//! WeChat-like client, then `GET /metrics` as Prometheus would scrape it.
//!
//! The Prometheus recorder is global, so this binary has a single test.

mod common;

#[path = "../examples/observability.rs"]
#[allow(dead_code)]
mod observability;

use std::time::Duration;

use common::{WeChat, now, serve, text_message};
use http::{Method, StatusCode, header};
use tower_wechat::{CallbackLayer, Token};

const TOKEN: &str = "metricstoken5";

/// The value of the sample line `name{labels}` in a Prometheus text payload.
fn sample(payload: &str, series: &str) -> Option<f64> {
    payload.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

fn click(key: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_account]]></ToUserName>\
         <FromUserName><![CDATA[oUser1234]]></FromUserName><CreateTime>{}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
         <EventKey><![CDATA[{key}]]></EventKey></xml>",
        now()
    )
}

#[tokio::test]
async fn metrics_show_a_histogram_that_counts_the_callbacks_sent() {
    let prometheus = observability::install_prometheus().unwrap();
    let stack = CallbackLayer::new(Token::new(TOKEN).unwrap());
    let stats = stack.handle().latency().clone();
    let wechat = WeChat::new(serve(observability::app(stack, prometheus)).await, TOKEN);

    const TEXTS: u64 = 7;
    for id in 1..=TEXTS {
        let answer = wechat.deliver(&text_message("hello", id)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.contains("You said: hello"));
    }
    for key in ["A", "B"] {
        assert_eq!(wechat.deliver(&click(key)).await.status, StatusCode::OK);
    }
    let forger = WeChat::new(wechat.addr(), "notthetoken");
    assert_eq!(
        forger.deliver(&text_message("x", 99)).await.status,
        StatusCode::FORBIDDEN
    );

    let answer = wechat.send(Method::GET, "/metrics", "").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let payload = answer.body;

    // A histogram (not a summary), with buckets, sum and count per message type and status.
    assert!(
        payload.contains("# TYPE wechat_callback_duration_seconds histogram"),
        "{payload}"
    );
    let text = r#"msg_type="text",status="200""#;
    let count = sample(
        &payload,
        &format!("wechat_callback_duration_seconds_count{{{text}}}"),
    );
    assert_eq!(count, Some(TEXTS as f64), "{payload}");
    let sum = sample(
        &payload,
        &format!("wechat_callback_duration_seconds_sum{{{text}}}"),
    );
    assert!(sum.is_some_and(|sum| sum > 0.0 && sum < 5.0), "{payload}");
    let all = sample(
        &payload,
        &format!("wechat_callback_duration_seconds_bucket{{{text},le=\"+Inf\"}}"),
    );
    assert_eq!(all, Some(TEXTS as f64), "{payload}");
    // Loopback callbacks all fit under WeChat's deadline; buckets are cumulative.
    let under_deadline = sample(
        &payload,
        &format!("wechat_callback_duration_seconds_bucket{{{text},le=\"5\"}}"),
    );
    assert_eq!(under_deadline, Some(TEXTS as f64), "{payload}");
    assert!(
        payload.contains(&format!(
            "wechat_callback_duration_seconds_bucket{{{text},le=\"0.005\"}}"
        )),
        "{payload}"
    );

    let event = r#"msg_type="event",status="200""#;
    assert_eq!(
        sample(
            &payload,
            &format!("wechat_callback_duration_seconds_count{{{event}}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&payload, &format!("wechat_callbacks_total{{{text}}}")),
        Some(TEXTS as f64),
        "{payload}"
    );
    assert_eq!(
        sample(
            &payload,
            r#"wechat_callbacks_total{msg_type="none",status="403"}"#
        ),
        Some(1.0),
        "{payload}"
    );
    assert!(!payload.contains("wechat_callbacks_over_deadline_total{"));

    // The same callbacks, read in process.
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.all_callbacks().count(), TEXTS + 3);
    let answer = wechat.send(Method::GET, "/stats", "").await;
    assert!(
        answer
            .body
            .starts_with(&format!("text       count={TEXTS} ")),
        "{}",
        answer.body
    );
    assert!(snapshot.all_callbacks().max().unwrap() < Duration::from_secs(5));
}
