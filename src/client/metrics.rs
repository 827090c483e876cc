//! The `metrics` facade (features `client` + `metrics`): what the outbound client records,
//! under stable names beside the inbound ones of
//! [`timing::metrics`](crate::timing::metrics).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `wechat_client_calls_total` | counter | `account`, `outcome` | API calls made through [`WeChatClient`](super::WeChatClient) (one per call, its retries included) |
//! | `wechat_client_call_duration_seconds` | histogram | `account`, `outcome` | each call's time, its retries and token wait included |
//! | `wechat_client_token_fetches_total` | counter | `account`, `outcome` | calls of the token cache to its source (`ok` / `error`) |
//! | `wechat_client_retries_total` | counter | | retries made by the [`RetryPolicy`](super::RetryPolicy) |
//! | `wechat_client_retry_budget_refusals_total` | counter | | retries that were due but refused by the budget |
//! | `wechat_client_breaker_state` | gauge | `host` | 0 closed, 1 half-open, 2 open |
//! | `wechat_client_breaker_opened_total` | counter | `host` | times the breaker opened |
//! | `wechat_client_breaker_rejected_total` | counter | `host` | calls refused by the open breaker |
//! | `wechat_client_sender_queue_depth` | gauge | `account` | messages waiting in a [`BackgroundSender`](super::BackgroundSender)'s queue |
//! | `wechat_client_sender_messages_total` | counter | `account`, `outcome` | background messages by outcome (`sent`, `failed`, `unsent`, `requeued`) |
//!
//! `account` is the account's label: its appid (Official Account, Mini Program), or the
//! corp id and agent id (`ww…/1000002`) of a WeCom app, unless set with
//! [`WeChatClientBuilder::label`](super::WeChatClientBuilder::label) or
//! [`Account::label`](super::Account::label) — never a secret. `outcome` of a call is `ok` or
//! its [`ErrorClass`]'s [`as_str`](ErrorClass::as_str) (`quota`, `user_refused`, ...), so its
//! values are bounded. `host` is the API's host and port (`api.weixin.qq.com:443`): one
//! breaker per API host.
//!
//! ```
//! use metrics_exporter_prometheus::PrometheusBuilder;
//!
//! let recorder = PrometheusBuilder::new().build_recorder();
//! // metrics::set_global_recorder(recorder) in the application, then once:
//! tower_wechat::client::metrics::describe();
//! # let _ = recorder;
//! ```

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use super::ErrorClass;

/// Counter: API calls through `WeChatClient`, by `account` and `outcome`.
pub const CALLS_TOTAL: &str = "wechat_client_calls_total";
/// Histogram: seconds per API call (retries and token wait included), by `account` and
/// `outcome`.
pub const CALL_DURATION_SECONDS: &str = "wechat_client_call_duration_seconds";
/// Counter: calls of a token cache to its source, by `account` and `outcome` (`ok`, `error`).
pub const TOKEN_FETCHES_TOTAL: &str = "wechat_client_token_fetches_total";
/// Counter: retries made.
pub const RETRIES_TOTAL: &str = "wechat_client_retries_total";
/// Counter: retries refused by the retry budget.
pub const RETRY_BUDGET_REFUSALS_TOTAL: &str = "wechat_client_retry_budget_refusals_total";
/// Gauge: the circuit breaker's state (0 closed, 1 half-open, 2 open), by `host`.
pub const BREAKER_STATE: &str = "wechat_client_breaker_state";
/// Counter: times the circuit breaker opened, by `host`.
pub const BREAKER_OPENED_TOTAL: &str = "wechat_client_breaker_opened_total";
/// Counter: calls refused by the circuit breaker, by `host`.
pub const BREAKER_REJECTED_TOTAL: &str = "wechat_client_breaker_rejected_total";
/// Gauge: messages waiting in a background sender's queue, by `account`.
pub const SENDER_QUEUE_DEPTH: &str = "wechat_client_sender_queue_depth";
/// Counter: background messages by `account` and `outcome` (`sent`, `failed`, `unsent`,
/// `requeued`).
pub const SENDER_MESSAGES_TOTAL: &str = "wechat_client_sender_messages_total";

/// Describes the client's metrics (unit and help text) to the installed recorder; call once
/// after installing it.
pub fn describe() {
    describe_counter!(CALLS_TOTAL, "WeChat API calls, by account and outcome");
    describe_histogram!(
        CALL_DURATION_SECONDS,
        Unit::Seconds,
        "WeChat API call time, retries and token wait included, by account and outcome"
    );
    describe_counter!(
        TOKEN_FETCHES_TOTAL,
        "access_token fetches from the token source, by account and outcome"
    );
    describe_counter!(RETRIES_TOTAL, "Retried WeChat API attempts");
    describe_counter!(
        RETRY_BUDGET_REFUSALS_TOTAL,
        "WeChat API retries refused by the retry budget"
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state by API host: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(BREAKER_OPENED_TOTAL, "Times the circuit breaker opened");
    describe_counter!(
        BREAKER_REJECTED_TOTAL,
        "WeChat API calls refused by the open circuit breaker"
    );
    describe_gauge!(
        SENDER_QUEUE_DEPTH,
        "Messages waiting in the background sender's queue"
    );
    describe_counter!(
        SENDER_MESSAGES_TOTAL,
        "Background messages, by account and outcome"
    );
}

/// `ok`, or the error's class.
fn outcome_label(outcome: Result<(), ErrorClass>) -> &'static str {
    match outcome {
        Ok(()) => "ok",
        Err(class) => class.as_str(),
    }
}

pub(crate) fn record_call(account: &str, outcome: Result<(), ErrorClass>, elapsed: Duration) {
    let outcome = outcome_label(outcome);
    counter!(CALLS_TOTAL, "account" => account.to_owned(), "outcome" => outcome).increment(1);
    histogram!(CALL_DURATION_SECONDS, "account" => account.to_owned(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

pub(crate) fn record_token_fetch(account: &str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(TOKEN_FETCHES_TOTAL, "account" => account.to_owned(), "outcome" => outcome)
        .increment(1);
}

pub(crate) fn record_retry() {
    counter!(RETRIES_TOTAL).increment(1);
}

pub(crate) fn record_budget_refusal() {
    counter!(RETRY_BUDGET_REFUSALS_TOTAL).increment(1);
}

/// `value`: 0 closed, 1 half-open, 2 open.
pub(crate) fn record_breaker_state(host: &str, value: f64) {
    gauge!(BREAKER_STATE, "host" => host.to_owned()).set(value);
}

pub(crate) fn record_breaker_opened(host: &str) {
    counter!(BREAKER_OPENED_TOTAL, "host" => host.to_owned()).increment(1);
}

pub(crate) fn record_breaker_rejected(host: &str) {
    counter!(BREAKER_REJECTED_TOTAL, "host" => host.to_owned()).increment(1);
}

pub(crate) fn record_queue_depth(account: &str, depth: usize) {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a queue's depth is far below 2^52"
    )]
    gauge!(SENDER_QUEUE_DEPTH, "account" => account.to_owned()).set(depth as f64);
}

pub(crate) fn record_sender(account: &str, outcome: &'static str) {
    counter!(SENDER_MESSAGES_TOTAL, "account" => account.to_owned(), "outcome" => outcome)
        .increment(1);
}
