//! The `metrics` facade (feature `metrics`): what [`TimingLayer`](super::TimingLayer)
//! records, under stable names.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `wechat_callback_duration_seconds` | histogram | `msg_type`, `status` | latency of each callback, until its response head is ready |
//! | `wechat_callbacks_total` | counter | `msg_type`, `status` | callbacks answered (or failed, or dropped) |
//! | `wechat_callbacks_over_budget_total` | counter | `msg_type` | callbacks slower than the layer's budget |
//! | `wechat_callbacks_over_deadline_total` | counter | `msg_type` | callbacks slower than WeChat's 5 s deadline |
//! | `wechat_background_started_total` | counter | | handlers FastAck moved to the background |
//! | `wechat_background_duration_seconds` | histogram | `outcome` | whole run of a handler that finished in the background |
//! | `wechat_journal_events_total` | counter | `event` | the durable hand-off: `appended`, `finished`, `released`, `recovered`, `duplicate`, `dead_lettered`, `error`, `unjournaled`, `refused` (see [`journal`](crate::journal)) |
//!
//! With [`TimingLayer::semconv_metrics`](super::TimingLayer::semconv_metrics), each callback
//! is also recorded as [`http.server.request.duration`](HTTP_SERVER_REQUEST_DURATION)
//! (histogram, seconds; attributes `http.request.method`, `http.response.status_code` or
//! `error.type`, `wechat.msg_type`).
//!
//! `msg_type` is one of [`MsgType`]'s labels (`text`, `image`, …, `event`, `info`,
//! `other`, `none`), so its values are bounded. `status` is the HTTP status code
//! (`"200"`), `"error"` when the inner service failed without a response, or
//! `"cancelled"` when the callback was dropped unanswered. `outcome` is
//! [`BackgroundOutcome::as_str`] (`completed`, `failed`, `panicked`).
//!
//! # OpenTelemetry's HTTP semantic conventions
//!
//! How these names map to OpenTelemetry's [HTTP metrics
//! conventions](https://opentelemetry.io/docs/specs/semconv/http/http-metrics/):
//!
//! | ours | OpenTelemetry | difference |
//! |---|---|---|
//! | `wechat_callback_duration_seconds` | `http.server.request.duration` | same measure (seconds, from the request reaching the layer to its response head); labels `msg_type`/`status` where semconv has `http.request.method`/`http.response.status_code`; semconv counts requests from its `_count`, where we also keep `wechat_callbacks_total` |
//! | `wechat_callbacks_total` | (the count of `http.server.request.duration`) | a counter of its own, with the same labels |
//! | `wechat_background_duration_seconds` | none | work after the response has no HTTP equivalent |
//! | `wechat_client_call_duration_seconds` ([`client::metrics`](crate::client::metrics)) | `http.client.request.duration` | ours is one **API call**, its retries and token wait included; semconv's is one **HTTP attempt** (the client can record that too, see [`WeChatClientBuilder::semconv_metrics`](crate::client::WeChatClientBuilder::semconv_metrics)) |
//!
//! Prometheus exporters turn the dots of semconv names into underscores
//! (`http_server_request_duration_seconds` with the OpenTelemetry Collector's naming,
//! `http_server_request_duration` with `metrics-exporter-prometheus`); an OTLP exporter
//! keeps them.
//!
//! The facade records into whatever recorder the application installed, and costs next to
//! nothing without one. Prometheus exporters render histograms as summaries unless given
//! buckets; [`DURATION_BUCKETS`] suits WeChat's 5 s deadline:
//!
//! ```
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//! use tower_wechat::timing::metrics::DURATION_BUCKETS;
//!
//! let recorder = PrometheusBuilder::new()
//!     .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), DURATION_BUCKETS)
//!     .unwrap()
//!     .build_recorder();
//! # let _ = recorder;
//! ```

use std::time::Duration;

use http::{Method, StatusCode};
use metrics::{SharedString, Unit, counter, describe_counter, describe_histogram, histogram};

use crate::hook::BackgroundOutcome;

use super::stats::MsgType;

/// Histogram: seconds from the callback reaching the layer to its response head.
pub const CALLBACK_DURATION_SECONDS: &str = "wechat_callback_duration_seconds";
/// Counter: callbacks, by `msg_type` and `status`.
pub const CALLBACKS_TOTAL: &str = "wechat_callbacks_total";
/// Counter: callbacks slower than the layer's budget, by `msg_type`.
pub const CALLBACKS_OVER_BUDGET_TOTAL: &str = "wechat_callbacks_over_budget_total";
/// Counter: callbacks slower than WeChat's deadline, by `msg_type`.
pub const CALLBACKS_OVER_DEADLINE_TOTAL: &str = "wechat_callbacks_over_deadline_total";
/// Counter: handlers moved to the background by FastAck.
pub const BACKGROUND_STARTED_TOTAL: &str = "wechat_background_started_total";
/// Histogram: seconds a handler that finished in the background ran, by `outcome`.
pub const BACKGROUND_DURATION_SECONDS: &str = "wechat_background_duration_seconds";

/// Histogram (with [`TimingLayer::semconv_metrics`](super::TimingLayer::semconv_metrics)):
/// OpenTelemetry's name for the same measure as [`CALLBACK_DURATION_SECONDS`], by
/// `http.request.method`, `http.response.status_code` (or `error.type`) and
/// `wechat.msg_type`.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http.server.request.duration";

/// Histogram buckets (seconds) for the two duration histograms: fine below WeChat's 5 s
/// deadline, with one bucket past it.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 10.0,
];

/// Describes the metrics (unit and help text) to the installed recorder; call once after
/// installing it.
pub fn describe() {
    describe_histogram!(
        CALLBACK_DURATION_SECONDS,
        Unit::Seconds,
        "WeChat callback latency until the response head, by message type and status"
    );
    describe_histogram!(
        HTTP_SERVER_REQUEST_DURATION,
        Unit::Seconds,
        "Duration of HTTP server requests (OpenTelemetry semantic conventions)"
    );
    describe_counter!(
        CALLBACKS_TOTAL,
        "WeChat callbacks, by message type and status"
    );
    describe_counter!(
        CALLBACKS_OVER_BUDGET_TOTAL,
        "WeChat callbacks slower than the timing budget"
    );
    describe_counter!(
        CALLBACKS_OVER_DEADLINE_TOTAL,
        "WeChat callbacks slower than WeChat's 5 s deadline"
    );
    describe_counter!(
        BACKGROUND_STARTED_TOTAL,
        "Handlers moved to the background after the ack"
    );
    describe_histogram!(
        BACKGROUND_DURATION_SECONDS,
        Unit::Seconds,
        "Run time of handlers that finished in the background, by outcome"
    );
    #[cfg(feature = "fast-ack")]
    describe_counter!(
        crate::journal::JOURNAL_EVENTS_TOTAL,
        "Durable hand-off events (appended, finished, recovered, dead_lettered…), by event"
    );
}

fn status_label(status: Option<StatusCode>, cancelled: bool) -> SharedString {
    let Some(status) = status else {
        return SharedString::const_str(if cancelled { "cancelled" } else { "error" });
    };
    let known = match status.as_u16() {
        200 => "200",
        204 => "204",
        400 => "400",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return SharedString::from(status.as_str().to_owned()),
    };
    SharedString::const_str(known)
}

/// The method as `http.request.method` names it: the known ones by name, others `_OTHER`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

pub(crate) fn record_callback(
    msg_type: MsgType,
    status: Option<StatusCode>,
    cancelled: bool,
    latency: Duration,
    over_budget: bool,
    over_deadline: bool,
    semconv_method: Option<&'static str>,
) {
    let msg_type = msg_type.as_str();
    let status = status_label(status, cancelled);
    if let Some(method) = semconv_method {
        let outcome = if status.as_ref().starts_with(|c: char| c.is_ascii_digit()) {
            "http.response.status_code"
        } else {
            "error.type"
        };
        histogram!(
            HTTP_SERVER_REQUEST_DURATION,
            "http.request.method" => method,
            outcome => status.clone(),
            "wechat.msg_type" => msg_type
        )
        .record(latency.as_secs_f64());
    }
    histogram!(CALLBACK_DURATION_SECONDS, "msg_type" => msg_type, "status" => status.clone())
        .record(latency.as_secs_f64());
    counter!(CALLBACKS_TOTAL, "msg_type" => msg_type, "status" => status).increment(1);
    if over_budget {
        counter!(CALLBACKS_OVER_BUDGET_TOTAL, "msg_type" => msg_type).increment(1);
    }
    if over_deadline {
        counter!(CALLBACKS_OVER_DEADLINE_TOTAL, "msg_type" => msg_type).increment(1);
    }
}

pub(crate) fn record_background_started() {
    counter!(BACKGROUND_STARTED_TOTAL).increment(1);
}

pub(crate) fn record_background(outcome: BackgroundOutcome, elapsed: Duration) {
    histogram!(BACKGROUND_DURATION_SECONDS, "outcome" => outcome.as_str())
        .record(elapsed.as_secs_f64());
}
