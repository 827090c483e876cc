//! The "done when": against a WeChat-like API that revokes the first token mid-run
//! and answers some sends with -1 and 502, every message is delivered exactly once and the
//! token is fetched at most twice — in process, and through the `template_message` example
//! run as a new user would.

#[path = "client/standin.rs"]
mod standin;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::join_all;
use standin::{APPID, Act, CORPID, SECRET, StandIn, WECOM_APPS};
use tower_wechat::client::{AppSecret, RetryPolicy, TemplateMessage, WeChatClient};

/// Revokes the tokens at the 20th request; the first attempt at about one message in five
/// gets -1, one in five 502, and one in ten gets 502 again on its second attempt. Messages
/// without a `client_msg_id` (odd `n` in the in-process test) get 503 instead of 502: a 502
/// is not retried for them, since the request may have reached WeChat.
fn misbehave(standin: &StandIn) {
    standin.message_plan(|n, key, attempt| {
        if n == 20 {
            return Act::RevokeTokens;
        }
        let bucket = key.bytes().map(u64::from).sum::<u64>() % 10;
        let gateway = if without_dedup_id(key) { 503 } else { 502 };
        match (attempt, bucket) {
            (1, 0 | 1) => Act::Busy,
            (1, 2 | 3) => Act::Status(gateway),
            (2, 0) => Act::Status(gateway),
            _ => Act::Normal,
        }
    });
}

/// Whether the in-process test sent the message with this key without a `client_msg_id`
/// (its `n`, in `{"n":{"value":"<n>"}}`, is odd). The example's keys hold no such number.
fn without_dedup_id(key: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(key)
        .ok()
        .and_then(|value| value["n"]["value"].as_str()?.parse::<u64>().ok())
        .is_some_and(|n| n % 2 == 1)
}

fn assert_each_delivered_once(standin: &StandIn, expected: usize) {
    let deliveries = standin.deliveries();
    assert_eq!(deliveries.len(), expected);
    assert!(
        deliveries.values().all(|count| *count == 1),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn every_message_is_delivered_once_through_revocation_busy_and_502() {
    let standin = StandIn::start().await;
    misbehave(&standin);
    let client = WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(standin.base_url())
        .retry(RetryPolicy::new().base_delay(Duration::from_millis(10)))
        .build()
        .unwrap();
    // Half with a client_msg_id, half without: -1 and 503 are retried either way, 502 only
    // with the id (the plan gives the others 503).
    let sends = (0..200).map(|n| {
        let client = client.clone();
        let mut message = TemplateMessage::new("oUser1234", "TEMPLATE_ID").data("n", n.to_string());
        if n % 2 == 0 {
            message = message.client_msg_id(format!("m-{n}"));
        }
        async move { client.send_template_message(&message).await }
    });
    for result in join_all(sends).await {
        result.unwrap();
    }
    assert_each_delivered_once(&standin, 200);
    assert_eq!(standin.issued(), 2);
    assert!(client.token_fetches() <= 2);
    // The faults did happen.
    assert!(
        client.retry_stats().retries >= 60,
        "{:?}",
        client.retry_stats()
    );
    assert!(standin.api_requests() >= 200 + 60);
}

/// `target/<profile>/examples/template_message`, which `cargo test` builds with the tests.
fn example() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe
        .parent()?
        .parent()?
        .join("examples")
        .join(format!("template_message{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "{} is not built (cargo test --all-features builds it): skipping",
            path.display()
        );
        None
    }
}

async fn run_example(standin: &StandIn, count: &str) -> std::process::Output {
    run_example_kind(standin, "template", count).await
}

/// Runs the example with `WECHAT_SEND_KIND=kind` (WeCom's settings set too).
async fn run_example_kind(standin: &StandIn, kind: &str, count: &str) -> std::process::Output {
    tokio::process::Command::new(example().unwrap())
        .env("WECHAT_SEND_KIND", kind)
        .env("WECHAT_CORPID", CORPID)
        .env("WECHAT_CORPSECRET", WECOM_APPS[0].0)
        .env("WECHAT_AGENTID", WECOM_APPS[0].1.to_string())
        .env("WECHAT_TOUSER", "zhangsan|lisi")
        .env("WECHAT_API_BASE", standin.base_url())
        .env("WECHAT_APPID", APPID)
        .env("WECHAT_SECRET", SECRET)
        .env("WECHAT_TEMPLATE_ID", "TEMPLATE_ID")
        .env("WECHAT_OPENID", "oUser1234")
        .env("WECHAT_SEND_COUNT", count)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_example_delivers_every_message_once_and_exits_0() {
    if example().is_none() {
        return;
    }
    let standin = StandIn::start().await;
    misbehave(&standin);
    let output = run_example(&standin, "100").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("sent 100, failed 0, token fetches 2"),
        "{stdout}"
    );
    assert_each_delivered_once(&standin, 100);
    assert_eq!(standin.issued(), 2);
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
}

#[tokio::test]
async fn the_example_exits_non_zero_when_a_message_fails() {
    if example().is_none() {
        return;
    }
    let standin = StandIn::start().await;
    // 43101: the user refused messages. Not retried, reported.
    standin.message_plan(|n, _, _| {
        if n == 1 {
            Act::Errcode(43101)
        } else {
            Act::Normal
        }
    });
    let output = run_example(&standin, "3").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("sent 2, failed 1"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("43101"));

    let missing = tokio::process::Command::new(example().unwrap())
        .env_remove("WECHAT_APPID")
        .output()
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

/// Revokes the tokens at the 20th request; the first attempt at about one message in five
/// gets -1, one in five a gateway error, and (`ambiguous_safe`: WeCom with its duplicate
/// check) one in ten has its connection dropped after it was carried out. Without a
/// de-duplication id (subscribe messages) the gateway error is 503, which says the request
/// was not carried out; with one it is 502.
fn misbehave_kind(standin: &StandIn, ambiguous_safe: bool) {
    standin.message_plan(move |n, key, attempt| {
        if n == 20 {
            return Act::RevokeTokens;
        }
        let bucket = key.bytes().map(u64::from).sum::<u64>() % 10;
        match (attempt, bucket, ambiguous_safe) {
            (1, 0 | 1, _) => Act::Busy,
            (1, 2 | 3, false) => Act::Status(503),
            (1, 2 | 3, true) => Act::Status(502),
            (1, 4, true) => Act::DropAfter,
            _ => Act::Normal,
        }
    });
}

#[tokio::test]
async fn the_example_delivers_subscribe_and_wecom_messages_once_and_exits_0() {
    if example().is_none() {
        return;
    }
    for kind in ["subscribe", "bizsend", "wecom"] {
        let standin = StandIn::start().await;
        misbehave_kind(&standin, kind == "wecom");
        let output = run_example_kind(&standin, kind, "60").await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{kind}: {stdout}\n{stderr}");
        assert!(
            stdout.contains("sent 60, failed 0, token fetches 2"),
            "{kind}: {stdout}"
        );
        assert_each_delivered_once(&standin, 60);
        assert!(standin.api_requests() > 60 + 15, "{kind}: faults missing");
        if kind == "wecom" {
            assert!(
                standin.wecom_suppressed() > 0,
                "no dropped connection retried"
            );
            assert_eq!(standin.wecom_issued(WECOM_APPS[0].1), 2);
        }
        for secret in [SECRET, WECOM_APPS[0].0] {
            assert!(!stdout.contains(secret) && !stderr.contains(secret));
        }
    }
}

#[tokio::test]
async fn the_example_reports_quota_and_refusals_with_their_class_without_retrying() {
    if example().is_none() {
        return;
    }
    for (kind, errcode, class) in [
        ("bizsend", 43101, "user_refused"),
        ("subscribe", 45009, "quota"),
        ("wecom", 60020, "configuration"),
    ] {
        let standin = StandIn::start().await;
        standin.message_plan(move |n, _, _| {
            if n == 1 {
                Act::Errcode(errcode)
            } else {
                Act::Normal
            }
        });
        let output = run_example_kind(&standin, kind, "3").await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{kind}: {stdout}\n{stderr}");
        assert!(stdout.contains("sent 2, failed 1"), "{kind}: {stdout}");
        assert!(stdout.contains("retries 0"), "{kind}: {stdout}");
        assert!(
            stderr.contains(&format!("({class})")) && stderr.contains(&errcode.to_string()),
            "{kind}: {stderr}"
        );
        assert_eq!(standin.api_requests(), 3);
    }
}
