//! The `wechat_api` span each call of [`WeChatClient`](super::WeChatClient) runs in.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tracing::Span;
use tracing::field::Empty;

use super::ClientError;
use super::read_body::{answer_class, errcode};

/// The `target` of the span.
const TARGET: &str = "tower_wechat::client";

/// Opens the span of one call: the account, method, host, port and path — never the query
/// (the access_token is added there, and a `get_json` query is the caller's) nor the body.
/// Field names follow OpenTelemetry's HTTP client conventions; `otel.kind` and `otel.name`
/// are read by `tracing-opentelemetry`.
pub(super) fn call_span(account: &str, request: &Request<Full<Bytes>>) -> Span {
    let uri = request.uri();
    tracing::info_span!(
        target: TARGET,
        "wechat_api",
        otel.kind = "client",
        otel.name = %format_args!("{} {}", request.method(), uri.path()),
        http.request.method = %request.method(),
        server.address = uri.host().unwrap_or_default(),
        server.port = uri.port_u16(),
        url.path = uri.path(),
        wechat.account = account,
        http.response.status_code = Empty,
        wechat.errcode = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// Records how the call ended: the HTTP status, a non-zero errcode, and the failure's
/// [`ErrorClass`](super::ErrorClass) as `error.type`.
pub(super) fn record(span: &Span, result: &Result<Response<Bytes>, ClientError>) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(response) => {
            span.record("http.response.status_code", response.status().as_u16());
            if let Some(code) = errcode(response).filter(|code| *code != 0) {
                span.record("wechat.errcode", code);
            }
            if let Some(class) = answer_class(response) {
                span.record("error.type", class.as_str());
                span.record("otel.status_code", "error");
            }
        }
        Err(error) => {
            span.record("error.type", error.class().as_str());
            span.record("otel.status_code", "error");
        }
    }
}
