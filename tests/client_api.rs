//! The client against a loopback stand-in for WeChat's API (`tests/client/standin.rs`).

#[path = "client/standin.rs"]
mod standin;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use standin::{APPID, Act, SECRET, StandIn, template_key};
use tower::retry::budget::TpsBudget;
use tower_wechat::client::{
    AppSecret, BreakerState, CircuitBreakerLayer, ClientError, CustomMessage, QueueError,
    RetryPolicy, TemplateMessage, WeChatClient, WeChatClientBuilder,
};

fn builder(standin: &StandIn) -> WeChatClientBuilder {
    WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(standin.base_url())
        .timeout(Duration::from_secs(2))
        .retry(
            RetryPolicy::new()
                .base_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(20)),
        )
}

fn template(n: impl std::fmt::Display) -> TemplateMessage {
    TemplateMessage::new("oUser1234", "TEMPLATE_ID").data("n", n.to_string())
}

fn assert_each_delivered_once(standin: &StandIn, expected: usize) {
    let deliveries = standin.deliveries();
    assert_eq!(deliveries.len(), expected, "{deliveries:?}");
    assert!(
        deliveries.values().all(|count| *count == 1),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn a_cold_cache_fetches_the_token_once_for_100_concurrent_calls() {
    let standin = StandIn::start().await;
    // A slow token endpoint, so every call arrives while the fetch is under way.
    standin.token_plan(|_| Act::Slow(Duration::from_millis(200)));
    let client = builder(&standin).build().unwrap();
    let sends = (0..100).map(|n| {
        let client = client.clone();
        async move {
            client
                .send_custom_message(&CustomMessage::text("oUser1234", format!("m{n}")))
                .await
        }
    });
    for result in join_all(sends).await {
        result.unwrap();
    }
    assert_eq!(standin.token_requests(), 1);
    assert_eq!(standin.issued(), 1);
    assert_eq!(client.token_fetches(), 1);
    assert_each_delivered_once(&standin, 100);
    assert_eq!(standin.api_requests(), 100);
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_and_the_calls_succeed() {
    let standin = StandIn::start().await;
    let client = builder(&standin).build().unwrap();
    client
        .send_template_message(&template("warm"))
        .await
        .unwrap();
    standin.revoke_tokens();
    let sends = (0..50).map(|n| {
        let client = client.clone();
        async move { client.send_template_message(&template(n)).await }
    });
    for result in join_all(sends).await {
        result.unwrap();
    }
    assert_eq!(standin.issued(), 2);
    assert_eq!(client.token_fetches(), 2);
    assert_each_delivered_once(&standin, 51);

    // 42001 (expired) is handled the same way, and a newer token is not replaced again.
    standin.expire_tokens();
    client
        .send_custom_message(&CustomMessage::text("oUser1234", "after expiry"))
        .await
        .unwrap();
    assert_eq!(standin.issued(), 3);
}

#[tokio::test]
async fn a_token_still_refused_after_the_refresh_is_an_api_error() {
    let standin = StandIn::start().await;
    let client = builder(&standin).build().unwrap();
    standin.api_plan(|_| Act::RevokeTokens); // every call revokes what it was sent with
    let error = client
        .send_custom_message(&CustomMessage::text("oUser1234", "x"))
        .await
        .unwrap_err();
    assert_eq!(error.errcode(), Some(40001), "{error}");
    // One refresh and one retry, no loop.
    assert_eq!((standin.issued(), standin.api_requests()), (2, 2));
}

#[tokio::test]
async fn the_token_is_refreshed_ahead_of_expiry_without_making_callers_wait() {
    let standin = StandIn::start().await;
    standin.token_lifetime(Duration::from_secs(2)); // refreshed after 1 s (half the lifetime)
    let client = builder(&standin).build().unwrap();
    let first = client.access_token().await.unwrap();
    client
        .send_custom_message(&CustomMessage::text("oUser1234", "a"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // Due for refresh: answered at once with the still-valid token, refreshed behind.
    assert_eq!(client.access_token().await.unwrap(), first);
    for _ in 0..50 {
        if standin.issued() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(standin.issued(), 2);
    assert_ne!(client.access_token().await.unwrap(), first);
    tokio::time::sleep(Duration::from_millis(1_000)).await; // the first token has expired
    client
        .send_custom_message(&CustomMessage::text("oUser1234", "b"))
        .await
        .unwrap();
    // No call was refused for an expired token (the second token may be being refreshed by
    // now, behind the call).
    assert_eq!(standin.api_requests(), 2);
}

#[tokio::test]
async fn busy_and_502_are_retried_with_jittered_backoff_under_the_cap() {
    let standin = StandIn::start().await;
    let client = builder(&standin)
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .base_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(15)),
        )
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    // Each message: -1, then 502, then through.
    standin.api_plan(|n| match n % 3 {
        0 => Act::Busy,
        1 => Act::Status(502),
        _ => Act::Normal,
    });
    // Sequential sends so the -1 / 502 / ok cycle lines up with each message's attempts.
    // With a client_msg_id: a 502 is retried only for idempotent sends.
    for n in 0..20 {
        let message = template(n).client_msg_id(format!("id-{n}"));
        client.send_template_message(&message).await.unwrap();
    }
    assert_each_delivered_once(&standin, 20);
    assert_eq!(standin.api_requests(), 60);
    assert_eq!(client.retry_stats().retries, 40);
    let mut gaps = Vec::new();
    for times in standin.attempts().values() {
        assert_eq!(times.len(), 3);
        gaps.extend(times.windows(2).map(|pair| pair[1] - pair[0]));
    }
    // Every wait is under the cap (plus generous room for a loaded machine)...
    assert!(
        gaps.iter()
            .all(|gap| *gap < Duration::from_millis(15 + 250)),
        "{gaps:?}"
    );
    // ...and jittered: not one fixed delay.
    let distinct: HashSet<u128> = gaps.iter().map(|gap| gap.as_micros() / 1_000).collect();
    assert!(distinct.len() >= 3, "{gaps:?}");
}

#[tokio::test]
async fn a_502_is_not_retried_for_a_send_without_dedup_id_but_busy_and_503_are() {
    let standin = StandIn::start().await;
    let client = builder(&standin).build().unwrap();
    client.access_token().await.unwrap();
    // A 502 may follow a request that reached WeChat: not repeated, reported as maybe sent.
    let mut seen = 0;
    standin.api_plan(move |_| {
        seen += 1;
        if seen == 1 {
            Act::Status(502)
        } else {
            Act::Normal
        }
    });
    let custom = CustomMessage::text("oUser1234", "once");
    let error = client.send_custom_message(&custom).await.unwrap_err();
    assert!(
        matches!(error, ClientError::Status(status) if status == 502),
        "{error:?}"
    );
    assert!(!error.not_sent());
    assert_eq!(standin.api_requests(), 1);
    let error = client.send_template_message(&template(1)).await;
    assert!(error.is_ok(), "{error:?}"); // the plan answers normally from now on
    assert_eq!(client.retry_stats().retries, 0);

    // -1 and 503 are retried for the same kind of send.
    let mut seen = 0;
    standin.api_plan(move |_| {
        seen += 1;
        match seen {
            1 => Act::Busy,
            2 => Act::Status(503),
            _ => Act::Normal,
        }
    });
    client
        .send_custom_message(&CustomMessage::text("oUser1234", "busy first"))
        .await
        .unwrap();
    assert_eq!(client.retry_stats().retries, 2);
}

#[tokio::test]
async fn other_errcodes_are_never_retried() {
    let standin = StandIn::start().await;
    let client = builder(&standin).build().unwrap();
    standin.api_plan(|_| Act::Errcode(45009));
    let error = client
        .send_template_message(&template(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Api(api) if api.errcode == 45009 && api.errmsg == "refused"),
        "{error:?}"
    );
    assert_eq!(standin.api_requests(), 1);
    assert_eq!(client.retry_stats().retries, 0);
}

#[tokio::test]
async fn the_budget_stops_a_retry_storm() {
    let standin = StandIn::start().await;
    standin.api_plan(|_| Act::Busy);
    let client = builder(&standin)
        .retry(
            RetryPolicy::new()
                .max_attempts(5)
                .base_delay(Duration::from_millis(1))
                .max_delay(Duration::from_millis(2))
                // 10 retries in reserve, plus one per ten calls.
                .budget(TpsBudget::new(Duration::from_secs(10), 1, 0.1)),
        )
        .circuit_breaker(CircuitBreakerLayer::new().failure_threshold(u32::MAX))
        .build()
        .unwrap();
    let sends = (0..100).map(|n| {
        let client = client.clone();
        async move { client.send_template_message(&template(n)).await }
    });
    for result in join_all(sends).await {
        assert_eq!(result.unwrap_err().errcode(), Some(-1));
    }
    let stats = client.retry_stats();
    // Without the budget: 100 calls × 5 attempts = 500 requests.
    assert!(
        standin.api_requests() <= 100 + 10 + 10 + 1,
        "{}",
        standin.api_requests()
    );
    assert_eq!(standin.api_requests(), 100 + stats.retries);
    assert!(stats.budget_refusals >= 50, "{stats:?}");
    assert!(standin.deliveries().is_empty());
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_half_opens_and_closes() {
    let standin = StandIn::start().await;
    let breaker = CircuitBreakerLayer::new()
        .failure_threshold(3)
        .open_duration(Duration::from_millis(300));
    let client = builder(&standin)
        .retry(RetryPolicy::new().max_attempts(1))
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let plan = failing.clone();
    standin.api_plan(move |_| {
        if plan.load(std::sync::atomic::Ordering::SeqCst) {
            Act::Status(503)
        } else {
            Act::Normal
        }
    });
    for n in 0..3 {
        let error = client
            .send_template_message(&template(n))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ClientError::Status(status) if status == 503),
            "{error:?}"
        );
    }
    assert_eq!(breaker.stats().state, BreakerState::Open);
    // Open: refused without a request.
    let error = client
        .send_template_message(&template(3))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::CircuitOpen), "{error:?}");
    assert!(error.not_sent());
    assert_eq!(standin.api_requests(), 3);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(client.breaker_stats().state, BreakerState::HalfOpen);
    // A failed probe opens it again.
    client
        .send_template_message(&template(4))
        .await
        .unwrap_err();
    assert_eq!(breaker.stats().state, BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(350)).await;
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    client.send_template_message(&template(5)).await.unwrap();
    let stats = breaker.stats();
    assert_eq!(stats.state, BreakerState::Closed);
    assert_eq!(
        (
            stats.opened,
            stats.rejected,
            stats.failures,
            stats.successes
        ),
        (2, 1, 4, 1)
    );
    assert_eq!(
        standin.deliveries().keys().collect::<Vec<_>>(),
        vec![&template_key(5)]
    );
}

#[tokio::test]
async fn a_timed_out_message_without_dedup_id_is_not_sent_again() {
    let standin = StandIn::start().await;
    let client = builder(&standin)
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    standin.api_plan(|_| Act::Slow(Duration::from_millis(400)));
    let error = client
        .send_custom_message(&CustomMessage::text("oUser1234", "slow"))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Timeout(_)), "{error:?}");
    assert!(!error.not_sent());
    tokio::time::sleep(Duration::from_millis(400)).await;
    // WeChat did carry it out: a retry would have delivered it twice.
    assert_eq!(standin.api_requests(), 1);
    assert_each_delivered_once(&standin, 1);
}

#[tokio::test]
async fn a_timed_out_template_with_client_msg_id_is_retried_and_delivered_once() {
    let standin = StandIn::start().await;
    let client = builder(&standin)
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    standin.api_plan(|n| {
        if n == 0 {
            Act::Slow(Duration::from_millis(300))
        } else {
            Act::Normal
        }
    });
    let msgid = client
        .send_template_message(&template(1).client_msg_id("order-1"))
        .await
        .unwrap();
    assert!(msgid > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(standin.api_requests(), 2);
    assert_each_delivered_once(&standin, 1);
}

#[tokio::test]
async fn dropped_connections_are_retried_only_when_safe() {
    let standin = StandIn::start().await;
    let client = builder(&standin).build().unwrap();
    client.access_token().await.unwrap();
    // Dropped before being carried out, but the client cannot know: not retried.
    standin.api_plan(|n| if n == 0 { Act::Drop } else { Act::Normal });
    let error = client
        .send_custom_message(&CustomMessage::text("oUser1234", "a"))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Transport(_)), "{error:?}");
    assert_eq!(standin.api_requests(), 1);
    // Carried out, then dropped: retried thanks to client_msg_id, de-duplicated by WeChat.
    standin.api_plan(|n| if n == 1 { Act::DropAfter } else { Act::Normal });
    client
        .send_template_message(&template(2).client_msg_id("m-2"))
        .await
        .unwrap();
    assert_eq!(standin.api_requests(), 3);
    assert_each_delivered_once(&standin, 1);
}

#[tokio::test]
async fn token_fetches_are_retried_and_their_errors_shared() {
    let standin = StandIn::start().await;
    standin.token_plan(|n| match n {
        0 => Act::Drop,
        1 => Act::Busy,
        _ => Act::Normal,
    });
    let client = builder(&standin).build().unwrap();
    client
        .send_custom_message(&CustomMessage::text("oUser1234", "a"))
        .await
        .unwrap();
    assert_eq!(
        (
            standin.token_requests(),
            standin.issued(),
            client.token_fetches()
        ),
        (3, 1, 1)
    );

    // A wrong secret: one request for 20 waiting callers, a typed error, no secret in it.
    let standin = StandIn::start().await;
    standin.token_plan(|_| Act::Slow(Duration::from_millis(100)));
    let client = WeChatClient::builder(APPID, AppSecret::new("wrong-secret-value"))
        .base_url(standin.base_url())
        .build()
        .unwrap();
    let calls = (0..20).map(|_| {
        let client = client.clone();
        async move {
            client
                .send_custom_message(&CustomMessage::text("oUser1234", "x"))
                .await
        }
    });
    for result in join_all(calls).await {
        let error = result.unwrap_err();
        assert!(
            matches!(&error, ClientError::Token(inner) if inner.errcode() == Some(40125)),
            "{error:?}"
        );
        assert!(error.not_sent());
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("wrong-secret-value"), "{shown}");
    }
    assert_eq!(standin.token_requests(), 1);
    assert_eq!(standin.api_requests(), 0);
}

#[tokio::test]
async fn connect_failures_are_typed_and_nothing_panics_on_bad_input() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let client = WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(format!("http://127.0.0.1:{port}"))
        .retry(RetryPolicy::new().base_delay(Duration::from_millis(1)))
        .build()
        .unwrap();
    let error = client.access_token().await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Token(inner) if matches!(**inner, ClientError::Connect(_))),
        "{error:?}"
    );

    for base in [
        "",
        "api.weixin.qq.com",
        "ftp://api.weixin.qq.com",
        "http://h/?a=b",
    ] {
        let built = WeChatClient::builder(APPID, AppSecret::new(SECRET))
            .base_url(base)
            .build();
        assert!(
            matches!(built, Err(ClientError::InvalidInput(_))),
            "{base:?}"
        );
    }
    for appid in ["", "wx1&secret=x", "wx 1"] {
        let built = WeChatClient::builder(appid, AppSecret::new(SECRET)).build();
        assert!(
            matches!(built, Err(ClientError::InvalidInput(_))),
            "{appid:?}"
        );
    }
    let standin = StandIn::start().await;
    let client = builder(&standin).build().unwrap();
    let error = client
        .post_json::<serde_json::Value>("/cgi-bin/x y", &1, false)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::InvalidInput(_)), "{error:?}");
}

#[tokio::test]
async fn the_stable_token_endpoint_is_forced_only_after_a_rejection() {
    let standin = StandIn::start().await;
    let first = builder(&standin).stable_token().build().unwrap();
    let second = builder(&standin).stable_token().build().unwrap();
    first.send_template_message(&template(1)).await.unwrap();
    second.send_template_message(&template(2)).await.unwrap();
    // Two independent caches, one token: stable_token hands the same one out.
    assert_eq!(standin.issued(), 1);
    assert_eq!(
        first.access_token().await.unwrap(),
        second.access_token().await.unwrap()
    );
    standin.revoke_tokens();
    first.send_template_message(&template(3)).await.unwrap();
    assert_eq!((standin.issued(), standin.force_refreshes()), (2, 1));
    assert_each_delivered_once(&standin, 3);
}

#[tokio::test]
async fn the_background_sender_drains_its_queue_on_shutdown() {
    let standin = StandIn::start().await;
    standin.api_plan(|n| {
        if n % 5 == 0 {
            Act::Busy
        } else {
            Act::Slow(Duration::from_millis(5))
        }
    });
    let client = builder(&standin).build().unwrap();
    let sender = client.background_sender(8, 4);
    for n in 0..40 {
        sender.send(template(n).into()).await.unwrap();
    }
    let shutdown = sender.clone().shutdown().await;
    assert_eq!((shutdown.report.sent, shutdown.report.failed), (40, 0));
    assert!(shutdown.unsent.is_empty());
    assert_each_delivered_once(&standin, 40);
    assert!(matches!(
        sender.try_send(template(99).into()),
        Err(QueueError::Closed(_))
    ));

    // A full queue hands the message back.
    standin.api_plan(|_| Act::Slow(Duration::from_millis(300)));
    let sender = client.background_sender(1, 1);
    let mut refused = 0;
    for n in 100..105 {
        if let Err(QueueError::Full(_)) = sender.try_send(template(n).into()) {
            refused += 1;
        }
    }
    assert!(refused >= 3, "{refused}");
    let report = sender.shutdown().await.report;
    assert_eq!(report.sent + refused, 5);
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_stay_out_of_debug_output_errors_and_logs() {
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || LogWriter(writer.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let standin = StandIn::start().await;
    let client = builder(&standin).build().unwrap();
    client.send_template_message(&template(1)).await.unwrap();
    standin.revoke_tokens();
    standin.api_plan(|n| if n == 1 { Act::Busy } else { Act::Normal });
    client
        .send_custom_message(&CustomMessage::text("oUser1234", "x"))
        .await
        .unwrap();
    let token = client.access_token().await.unwrap();
    let shown = format!(
        "{client:?} {token:?} {:?} {:?}",
        builder(&standin),
        AppSecret::new(SECRET)
    );
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("refreshing"),
        "the logs were captured: {logs}"
    );
    for text in [&shown, &logs] {
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains(token.expose()), "{text}");
        assert!(!text.contains("ACCESS_TOKEN_"), "{text}");
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
