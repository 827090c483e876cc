//! Subscribe messages, WeCom app messages with a token per app, and typed quota errors,
//! against the loopback stand-in of WeChat's and WeCom's APIs (`tests/client/standin.rs`).

#[path = "client/standin.rs"]
mod standin;

use std::time::Duration;

use futures_util::future::join_all;
use standin::{APPID, Act, CORPID, SECRET, StandIn, WECOM_APPS};
use tower_wechat::client::{
    Account, AppSecret, BizSubscribeMessage, BreakerState, CircuitBreakerLayer, ClientError,
    CustomMessage, ErrorClass, ReadBody, RetryPolicy, SubscribeMessage, TemplateMessage,
    WeChatClient, WeChatTokenSource, WeComMessage, http_client,
};

fn fast_retries() -> RetryPolicy {
    RetryPolicy::new().base_delay(Duration::from_millis(5))
}

fn wechat(standin: &StandIn) -> WeChatClient {
    WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(standin.base_url())
        .retry(fast_retries())
        .build()
        .unwrap()
}

/// A client for WeCom app `app` (0 or 1 of [`WECOM_APPS`]).
fn wecom(standin: &StandIn, app: usize) -> WeChatClient {
    let (secret, agent) = WECOM_APPS[app];
    WeChatClient::wecom(CORPID, AppSecret::new(secret))
        .agent_id(agent)
        .base_url(standin.base_url())
        .retry(fast_retries())
        .build()
        .unwrap()
}

fn wecom_account(standin: &StandIn, app: usize) -> Account {
    let (secret, agent) = WECOM_APPS[app];
    Account::wecom(CORPID, AppSecret::new(secret))
        .agent_id(agent)
        .base_url(standin.base_url())
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
async fn two_wecom_apps_never_use_each_others_token_under_concurrent_cold_calls() {
    let standin = StandIn::start().await;
    // Slow token answers: both apps' first fetches are in flight together.
    standin.token_plan(|_| Act::Slow(Duration::from_millis(100)));
    let app_a = wecom(&standin, 0);
    let app_b = app_a.account(wecom_account(&standin, 1)).unwrap();
    let sends = (0..200).map(|n| {
        let client = if n % 2 == 0 { &app_a } else { &app_b };
        let message = WeComMessage::text(format!("alert {n}")).to_users(["zhangsan"]);
        async move { client.send_wecom_message(&message).await }
    });
    for result in join_all(sends).await {
        let sent = result.unwrap();
        assert!(!sent.is_partial() && sent.msgid.is_some());
    }
    assert_each_delivered_once(&standin, 200);
    assert_eq!(standin.wecom_mixed(), 0);
    for (_, agent) in WECOM_APPS {
        assert_eq!(standin.wecom_token_requests(agent), 1, "app {agent}");
        assert_eq!(standin.wecom_issued(agent), 1, "app {agent}");
    }
    assert_eq!((app_a.token_fetches(), app_b.token_fetches()), (1, 1));
    // Opening the same app again shares its cache: no new fetch.
    let again = app_a.account(wecom_account(&standin, 1)).unwrap();
    again
        .send_wecom_message(&WeComMessage::text("again").to_users(["lisi"]))
        .await
        .unwrap();
    assert_eq!(again.token_fetches(), 1);
    assert_eq!(standin.wecom_token_requests(WECOM_APPS[1].1), 1);
    assert_eq!(app_a.label(), format!("{CORPID}/{}", WECOM_APPS[0].1));

    // The stand-in does catch a mix-up: app B's sends with app A's token are refused.
    let http = ReadBody::new(http_client().unwrap());
    let a_source = WeChatTokenSource::wecom(
        http,
        &standin.base_url(),
        CORPID,
        AppSecret::new(WECOM_APPS[0].0),
    )
    .unwrap();
    let mixed = WeChatClient::wecom(CORPID, AppSecret::new(WECOM_APPS[1].0))
        .agent_id(WECOM_APPS[1].1)
        .base_url(standin.base_url())
        .token_source(a_source)
        .build()
        .unwrap();
    let error = mixed
        .send_wecom_message(&WeComMessage::text("mixed").to_users(["zhangsan"]))
        .await
        .unwrap_err();
    assert_eq!(error.errcode(), Some(301_002));
    assert_eq!(error.class(), ErrorClass::Permission);
    assert_eq!(standin.wecom_mixed(), 1);
}

#[tokio::test]
async fn quota_permission_configuration_and_refusals_are_typed_not_retried_and_do_not_open_the_breaker()
 {
    let standin = StandIn::start().await;
    // One failure would open this breaker, if it counted.
    let client = WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(standin.base_url())
        .retry(fast_retries())
        .circuit_breaker(CircuitBreakerLayer::new().failure_threshold(1))
        .build()
        .unwrap();
    // On the same host (the stand-in serves both APIs): the same breaker.
    let app = client.account(wecom_account(&standin, 0)).unwrap();
    let code = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let plan_code = code.clone();
    standin.api_plan(move |_| Act::Errcode(plan_code.load(std::sync::atomic::Ordering::SeqCst)));
    let set = |value| code.store(value, std::sync::atomic::Ordering::SeqCst);

    let mut requests = 0;
    let mut check = |error: ClientError, errcode: i64, class: ErrorClass| {
        requests += 1;
        assert_eq!(error.errcode(), Some(errcode), "{error}");
        assert_eq!(error.class(), class, "{error}");
        assert!(!error.is_retryable() && !error.counts_for_breaker());
        assert!(!error.not_sent());
        assert_eq!(standin.api_requests(), requests, "{errcode} was retried");
    };
    for _ in 0..3 {
        set(45009); // daily API quota
        let error = client
            .send_template_message(&TemplateMessage::new("oUser1234", "T").client_msg_id("m-1"))
            .await
            .unwrap_err();
        check(error, 45009, ErrorClass::Quota);
        set(45047); // customer-service quota
        let error = client
            .send_custom_message(&CustomMessage::text("oUser1234", "six"))
            .await
            .unwrap_err();
        check(error, 45047, ErrorClass::Quota);
        set(43101); // the user refused
        let error = client
            .send_subscribe_message(&SubscribeMessage::new("oUser1234", "T").data("n", "1"))
            .await
            .unwrap_err();
        check(error, 43101, ErrorClass::UserRefused);
        let error = client
            .send_biz_subscribe_message(&BizSubscribeMessage::new("oUser1234", "T").data("n", "2"))
            .await
            .unwrap_err();
        check(error, 43101, ErrorClass::UserRefused);
        set(60020); // WeCom: IP not trusted
        let error = app
            .send_wecom_message(&WeComMessage::text("x").to_users(["zhangsan"]))
            .await
            .unwrap_err();
        check(error, 60020, ErrorClass::Configuration);
    }
    assert_eq!(client.retry_stats().retries, 0);
    let stats = client.breaker_stats();
    assert_eq!((stats.state, stats.opened), (BreakerState::Closed, 0));
    assert_eq!(app.breaker_stats().state, BreakerState::Closed);

    // The others still get through...
    standin.api_plan(|_| Act::Normal);
    client
        .send_custom_message(&CustomMessage::text("oUser1234", "fine"))
        .await
        .unwrap();
    // ...and the breaker does open on what counts (-1 on every attempt).
    standin.api_plan(|_| Act::Busy);
    let error = client
        .send_custom_message(&CustomMessage::text("oUser1234", "busy"))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Unavailable);
    assert_eq!(client.breaker_stats().state, BreakerState::Open);
    assert!(matches!(
        app.send_wecom_message(&WeComMessage::text("y").to_users(["zhangsan"]))
            .await,
        Err(ClientError::CircuitOpen)
    ));
}

#[tokio::test]
async fn a_wrong_secret_or_a_quota_on_the_token_endpoint_is_typed() {
    let standin = StandIn::start().await;
    let wrong = WeChatClient::wecom(CORPID, AppSecret::new("not-the-secret"))
        .agent_id(1)
        .base_url(standin.base_url())
        .build()
        .unwrap();
    let error = wrong
        .send_wecom_message(&WeComMessage::text("x").to_users(["zhangsan"]))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Token(_)), "{error}");
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert!(error.not_sent());
    assert!(!error.to_string().contains("not-the-secret"));

    standin.token_plan(|_| Act::Errcode(45009));
    let error = wechat(&standin)
        .send_custom_message(&CustomMessage::text("oUser1234", "x"))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Quota);
    assert_eq!(
        standin.token_requests(),
        2,
        "45009 on the token endpoint was retried"
    );
}

#[tokio::test]
async fn a_wecom_send_retried_after_a_dropped_connection_is_delivered_once() {
    let standin = StandIn::start().await;
    // Every message's first attempt is carried out, then its connection dropped.
    standin.message_plan(|_, _, attempt| {
        if attempt == 1 {
            Act::DropAfter
        } else {
            Act::Normal
        }
    });
    let app = wecom(&standin, 0);
    let sends = (0..20).map(|n| {
        let app = app.clone();
        async move {
            app.send_wecom_message(
                &WeComMessage::text(format!("deploy {n}")).to_users(["zhangsan"]),
            )
            .await
        }
    });
    for result in join_all(sends).await {
        result.unwrap();
    }
    assert_each_delivered_once(&standin, 20);
    assert_eq!(standin.wecom_suppressed(), 20);
    assert!(app.retry_stats().retries >= 20);

    // Without the duplicate check the repeat could deliver it twice: not retried.
    let error = app
        .send_wecom_message(
            &WeComMessage::text("no check")
                .to_users(["zhangsan"])
                .without_duplicate_check(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Transport(_)), "{error}");
    assert!(!error.not_sent());
    assert_eq!(standin.attempts()["no check"].len(), 1);
    assert_eq!(standin.deliveries()["no check"], 1);
}

#[tokio::test]
async fn subscribe_and_wecom_messages_are_delivered_once_through_revocation_and_busy() {
    let standin = StandIn::start().await;
    standin.message_plan(|n, _, attempt| match (n, attempt) {
        (10, _) => Act::RevokeTokens,
        (_, 1) if n % 3 == 0 => Act::Busy,
        (_, 1) if n % 3 == 1 => Act::Status(503),
        _ => Act::Normal,
    });
    let client = wechat(&standin);
    let app = client.account(wecom_account(&standin, 1)).unwrap();
    let sends = (0..60).map(|n| {
        let (client, app) = (client.clone(), app.clone());
        async move {
            match n % 3 {
                0 => client
                    .send_subscribe_message(
                        &SubscribeMessage::new("oUser1234", "T").data("n", n.to_string()),
                    )
                    .await
                    .map(|msgid| assert!(msgid.is_some())),
                1 => {
                    client
                        .send_biz_subscribe_message(
                            &BizSubscribeMessage::new("oUser1234", "T").data("n", n.to_string()),
                        )
                        .await
                }
                _ => app
                    .send_wecom_message(&WeComMessage::text(n.to_string()).to_users(["zhangsan"]))
                    .await
                    .map(drop),
            }
        }
    });
    for result in join_all(sends).await {
        result.unwrap();
    }
    assert_each_delivered_once(&standin, 60);
    // One fetch before the revocation and one after, per account (an account whose first
    // fetch ended after the revocation needs no second one).
    let fetches = (client.token_fetches(), app.token_fetches());
    assert!(
        fetches.0 <= 2 && fetches.1 <= 2 && fetches.0 + fetches.1 >= 3,
        "{fetches:?}"
    );
    assert!(client.retry_stats().retries >= 20);
    // A subscribe message whose connection drops after it was carried out is not sent
    // again: it may have used the user's one-time subscription.
    standin.message_plan(|_, _, _| Act::DropAfter);
    let error = client
        .send_subscribe_message(&SubscribeMessage::new("oUser1234", "T").data("n", "dropped"))
        .await
        .unwrap_err();
    assert!(!error.not_sent() && error.is_retryable());
    assert_eq!(standin.deliveries().len(), 61);
}

#[tokio::test]
async fn the_background_sender_delivers_subscribe_and_wecom_messages_once() {
    let standin = StandIn::start().await;
    // Every first attempt fails without being carried out: busy, or a gateway's 503.
    standin.message_plan(|n, _, attempt| match (n % 2, attempt) {
        (0, 1) => Act::Busy,
        (_, 1) => Act::Status(503),
        _ => Act::Normal,
    });
    let client = wechat(&standin);
    let app = client.account(wecom_account(&standin, 0)).unwrap();
    let sender = client.background_sender(64, 4);
    let app_sender = app.background_sender(64, 4);
    for n in 0..10 {
        sender
            .send(
                SubscribeMessage::new("oUser1234", "T")
                    .data("n", format!("s{n}"))
                    .into(),
            )
            .await
            .unwrap();
        sender
            .send(
                BizSubscribeMessage::new("oUser1234", "T")
                    .data("n", format!("b{n}"))
                    .into(),
            )
            .await
            .unwrap();
        app_sender
            .send(
                WeComMessage::text(format!("w{n}"))
                    .to_users(["zhangsan"])
                    .into(),
            )
            .await
            .unwrap();
    }
    let report = sender.shutdown().await.report;
    let app_report = app_sender.shutdown().await.report;
    assert_eq!((report.sent, report.failed), (20, 0), "{report:?}");
    assert_eq!(
        (app_report.sent, app_report.failed),
        (10, 0),
        "{app_report:?}"
    );
    assert_each_delivered_once(&standin, 30);
    // Each first attempt was refused and retried.
    assert!(
        client.retry_stats().retries >= 20,
        "{:?}",
        client.retry_stats()
    );
    // The WeCom messages went with the app's token, fetched once.
    assert_eq!(app.token_fetches(), 1);
}

#[tokio::test]
async fn partial_success_surfaces_the_recipients_not_reached() {
    let standin = StandIn::start().await;
    let app = wecom(&standin, 0);
    let sent = app
        .send_wecom_message(
            &WeComMessage::markdown("**release**")
                .to_users(["zhangsan", "ghost1", "GhostTwo"])
                .to_parties([2, 5000])
                .to_tags([7]),
        )
        .await
        .unwrap();
    assert!(sent.is_partial());
    assert_eq!(sent.invalid_users, ["ghost1", "ghosttwo"]);
    assert_eq!(sent.invalid_parties, ["5000"]);
    assert!(sent.invalid_tags.is_empty());
    assert_eq!(standin.deliveries()["**release**"], 1);
    let shown = format!("{sent:?}");
    assert!(!shown.contains("ghosttwo"), "{shown}");

    // Nobody reachable: WeCom's 81013, an error.
    let error = app
        .send_wecom_message(&WeComMessage::text("nobody").to_users(["ghost3"]))
        .await
        .unwrap_err();
    assert_eq!(error.errcode(), Some(81013));
    assert_eq!(error.class(), ErrorClass::Rejected);
}

#[tokio::test]
async fn sends_go_only_through_a_client_of_their_kind_and_need_an_agentid() {
    let standin = StandIn::start().await;
    let client = wechat(&standin);
    let app = client
        .account(
            Account::wecom(CORPID, AppSecret::new(WECOM_APPS[0].0)).base_url(standin.base_url()),
        )
        .unwrap();
    let wecom_message = WeComMessage::text("x").to_users(["zhangsan"]);
    for error in [
        client.send_wecom_message(&wecom_message).await.unwrap_err(),
        app.send_custom_message(&CustomMessage::text("oUser1234", "x"))
            .await
            .unwrap_err(),
        // No agentid on the message or the account; no recipient.
        app.send_wecom_message(&wecom_message).await.unwrap_err(),
        app.send_wecom_message(&WeComMessage::text("x").agent_id(WECOM_APPS[0].1))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(error, ClientError::InvalidInput(_)), "{error}");
        assert!(error.not_sent());
    }
    assert_eq!(standin.api_requests() + standin.token_requests(), 0);
    app.send_wecom_message(&wecom_message.agent_id(WECOM_APPS[0].1))
        .await
        .unwrap();
}

#[tokio::test]
async fn get_json_reads_an_answer_and_is_retried_as_idempotent() {
    #[derive(serde::Deserialize)]
    struct CallbackIps {
        ip_list: Vec<String>,
    }
    let standin = StandIn::start().await;
    // A dropped connection and a 502: ambiguous, retried for a GET.
    standin.message_plan(|_, _, attempt| match attempt {
        1 => Act::DropAfter,
        2 => Act::Status(502),
        _ => Act::Normal,
    });
    let client = wechat(&standin);
    let ips: CallbackIps = client.get_json("/cgi-bin/getcallbackip").await.unwrap();
    assert_eq!(ips.ip_list, ["127.0.0.1"]);
    assert_eq!(standin.api_requests(), 3);
    // An unknown path: axum's 404, a rejected call; a path off the base is refused unsent.
    let error = client
        .get_json::<serde_json::Value>("/cgi-bin/nothing-here")
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Rejected);
    assert!(matches!(
        client
            .get_json::<serde_json::Value>("//evil.example/x")
            .await,
        Err(ClientError::InvalidInput(_))
    ));
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_2023_template_rules_warn_once_and_logs_hold_no_secret_or_userid() {
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || LogWriter(writer.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let standin = StandIn::start().await;
    let client = wechat(&standin);
    for n in 0..3 {
        let message = TemplateMessage::new("oUser1234567", "TPL_2023")
            .data("first", "Hello")
            .data(
                "thing1",
                format!("a value well over twenty characters, number {n}"),
            )
            .data("remark", "Bye");
        // Sent anyway.
        client.send_template_message(&message).await.unwrap();
    }
    let app = client.account(wecom_account(&standin, 0)).unwrap();
    standin.revoke_tokens();
    app.send_wecom_message(&WeComMessage::text("partial").to_users(["zhangsan", "ghostuser1"]))
        .await
        .unwrap();

    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    for field in ["\"first\"", "\"remark\"", "\"thing1\""] {
        let lines = logs
            .lines()
            .filter(|line| line.contains("TPL_2023") && line.contains(field))
            .count();
        assert_eq!(lines, 1, "{field} warned once: {logs}");
    }
    assert_eq!(standin.deliveries().len(), 4);
    assert!(logs.contains("some recipients only"), "{logs}");
    for secret in [
        SECRET,
        WECOM_APPS[0].0,
        "ghostuser1",
        "oUser1234567",
        "WECOM_TOKEN_",
    ] {
        assert!(!logs.contains(secret), "{secret} in {logs}");
    }
}
