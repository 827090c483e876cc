//! The client's metrics through the `metrics` facade, rendered by the Prometheus exporter:
//! calls by outcome class, token fetches per account, retries, the breaker and the
//! background sender. One test in its own binary: the recorder is global.

#[path = "client/prometheus.rs"]
mod prometheus;
#[path = "client/standin.rs"]
mod standin;

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use prometheus::sample;
use standin::{APPID, Act, CORPID, SECRET, StandIn, WECOM_APPS};
use tower_wechat::client::{
    Account, AppSecret, CircuitBreakerLayer, CustomMessage, RetryPolicy, WeChatClient, WeComMessage,
};

#[tokio::test]
async fn the_client_counts_calls_tokens_retries_breaker_and_sender() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    tower_wechat::client::metrics::describe();
    let standin = StandIn::start().await;
    let client = WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(standin.base_url())
        .retry(RetryPolicy::new().base_delay(Duration::from_millis(5)))
        .circuit_breaker(CircuitBreakerLayer::new().failure_threshold(2))
        .build()
        .unwrap();
    let (secret, agent) = WECOM_APPS[0];
    let app = client
        .account(
            Account::wecom(CORPID, AppSecret::new(secret))
                .agent_id(agent)
                .base_url(standin.base_url()),
        )
        .unwrap();

    // 3 sends: the first attempt of each is busy (retried), then 45047 for "quota".
    standin.message_plan(|_, key, attempt| match (key, attempt) {
        ("quota", _) => Act::Errcode(45047),
        (_, 1) => Act::Busy,
        _ => Act::Normal,
    });
    for text in ["a", "b", "quota"] {
        let _ = client
            .send_custom_message(&CustomMessage::text("oUser1234", text))
            .await;
    }
    app.send_wecom_message(&WeComMessage::text("w").to_users(["zhangsan"]))
        .await
        .unwrap();
    // The background sender: two messages sent.
    standin.message_plan(|_, _, _| Act::Normal);
    let sender = client.background_sender(10, 1);
    for text in ["s1", "s2"] {
        sender
            .send(CustomMessage::text("oUser1234", text).into())
            .await
            .unwrap();
    }
    let report = sender.shutdown().await.report;
    assert_eq!(report.sent, 2);
    // Then an outage opens the breaker.
    standin.message_plan(|_, _, _| Act::Status(503));
    for text in ["x", "y", "z"] {
        let _ = client
            .send_custom_message(&CustomMessage::text("oUser1234", text))
            .await;
    }

    let text = handle.render();
    let wecom_label = format!("{CORPID}/{agent}");
    let host = standin.base_url().trim_start_matches("http://").to_owned();
    let calls = |account: &str, outcome: &str| {
        sample(
            &text,
            "wechat_client_calls_total",
            &[("account", account), ("outcome", outcome)],
        )
    };
    assert_eq!(calls(APPID, "ok"), Some(4.0), "{text}");
    assert_eq!(calls(APPID, "quota"), Some(1.0), "{text}");
    // Two 503 failures open the breaker; the third call is refused.
    assert_eq!(calls(APPID, "unavailable"), Some(2.0), "{text}");
    assert_eq!(calls(APPID, "circuit_open"), Some(1.0), "{text}");
    assert_eq!(calls(&wecom_label, "ok"), Some(1.0), "{text}");
    let fetches = |account: &str| {
        sample(
            &text,
            "wechat_client_token_fetches_total",
            &[("account", account), ("outcome", "ok")],
        )
    };
    assert_eq!(fetches(APPID), Some(1.0), "{text}");
    assert_eq!(fetches(&wecom_label), Some(1.0), "{text}");
    // Busy first attempts of "a", "b", "quota"; two 503s retried twice each (3 attempts).
    let retries = sample(&text, "wechat_client_retries_total", &[]).unwrap();
    assert_eq!(retries, client.retry_stats().retries as f64, "{text}");
    assert!(retries >= 3.0 + 4.0, "{text}");
    assert_eq!(
        sample(&text, "wechat_client_breaker_state", &[("host", &host)]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "wechat_client_breaker_opened_total",
            &[("host", &host)]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "wechat_client_breaker_rejected_total",
            &[("host", &host)]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "wechat_client_sender_messages_total",
            &[("account", APPID), ("outcome", "sent")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "wechat_client_sender_queue_depth",
            &[("account", APPID)]
        ),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("wechat_client_call_duration_seconds"),
        "{text}"
    );
    assert!(!text.contains(SECRET) && !text.contains(secret));
}
