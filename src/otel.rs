//! W3C Trace Context for OpenTelemetry (feature `otel`): a WeChat callback traced end to
//! end, from an incoming `traceparent` through the handler, the durable hand-off and the
//! outbound API calls.
//!
//! The crate logs through `tracing` and depends only on the OpenTelemetry **API** crate
//! (`opentelemetry`, trace feature): the SDK, the sampler and the exporter are the
//! application's choice. The usual setup bridges `tracing` to OpenTelemetry with
//! [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) (0.32 or later, built
//! on the same `opentelemetry` version as this crate: 0.33 ↔ tracing-opentelemetry 0.34):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! // Any SDK provider and exporter (OTLP, Jaeger, stdout …); an in-memory one here.
//! let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
//!     .with_simple_exporter(exporter)
//!     .build();
//! tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("my-bot")))
//!     .with(tracing_subscriber::fmt::layer())
//!     .init();
//! # Ok(())
//! # }
//! ```
//!
//! With that, and the feature `otel`:
//!
//! - **Incoming.** [`TimingLayer`](crate::TimingLayer) reads the request's `traceparent`
//!   (and `tracestate`) and makes its `wechat_callback` span a child of that remote span,
//!   so the callback joins the caller's trace — a gateway's or a proxy's; WeChat itself
//!   sends none. No valid `traceparent`: the callback starts a trace of its own (or
//!   continues the current span's, e.g. tower-http's `TraceLayer` outside it). An outer span
//!   already in the incoming trace (an outer layer that extracted it) stays the parent.
//!   [`TimingLayer::incoming_traceparent(false)`](crate::TimingLayer::incoming_traceparent)
//!   ignores the header, for an edge that does not strip what clients send (with a
//!   parent-based sampler, a client's `sampled` flag would pick which callbacks are traced).
//! - **The handler** runs inside `wechat_callback`, and so does the rest of a handler that
//!   [`FastAckLayer`](crate::FastAckLayer) moved to the background: its own spans and events
//!   are in the same trace.
//! - **The durable hand-off.** When a [journal](crate::journal) is configured, FastAck stores
//!   the `traceparent` of the callback's span with the entry
//!   ([`JournalEntry::trace_context`](crate::journal::JournalEntry::trace_context)); the run
//!   the recovery worker makes of it — after a failure, or in another process after a
//!   crash — opens its `wechat_callback` span as a child of the original callback's span:
//!   the same trace, however much later and wherever it runs.
//! - **Outbound.** [`WeChatClient`](crate::client::WeChatClient) (feature `client`) opens a
//!   `wechat_api` span per call (method, host, path — never the query, which carries the
//!   access_token) and sends `traceparent` and `tracestate` of the current span with each
//!   HTTP request, retries and token fetches included
//!   ([`TraceContextLayer`](crate::client::TraceContextLayer)).
//!
//! # How, with the API crate alone
//!
//! The crate never touches `tracing-opentelemetry`'s types. It reads and sets the
//! OpenTelemetry *current context* (`opentelemetry::Context::current()`), which
//! `tracing-opentelemetry` keeps in step with the entered `tracing` span ("context
//! activation", on by default since 0.32):
//!
//! - to link the callback to its remote parent, TimingLayer attaches a context holding the
//!   remote span context while it creates `wechat_callback`; `tracing-opentelemetry` takes
//!   the current context as the parent of a new span;
//! - to inject or store a `traceparent`, the crate reads the current context's span, which
//!   is the entered `tracing` span's.
//!
//! So with context activation turned off (`with_context_activation(false)`), or without
//! `tracing-opentelemetry`, nothing is linked, injected or stored; everything else works
//! as before. Only W3C Trace Context is read and written (`traceparent`, `tracestate`),
//! whatever global propagator the application set; B3, Jaeger and baggage headers are
//! neither read nor sent.
//!
//! # Bounds
//!
//! A `traceparent` is read only if it is exactly one header in the W3C format (version
//! `00`, or a later version's first 55 bytes followed by `-`; lowercase hex; trace and
//! parent ids not all zero); anything else is ignored without a log line. `tracestate`
//! headers are read up to 512 bytes in all (past that, or malformed, the trace state is
//! dropped and the `traceparent` kept).
//!
//! The functions below do the same for your own code, e.g. to carry the trace over a
//! queue of your own:
//!
//! ```
//! use http::HeaderMap;
//! use tower_wechat::otel;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(
//!     "traceparent",
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap(),
//! );
//! let remote = otel::extract(&headers).unwrap();
//! assert_eq!(format!("{:032x}", remote.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
//!
//! let mut outgoing = HeaderMap::new();
//! assert!(otel::inject(&remote, &mut outgoing));
//! assert_eq!(outgoing["traceparent"], headers["traceparent"]);
//! ```

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

/// The `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The most `tracestate` bytes read from a request (all its `tracestate` headers together);
/// the W3C recommends propagating at least this much.
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// Length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// Reads a W3C `traceparent` (and, if given, `tracestate`) into a remote [`SpanContext`];
/// `None` if the `traceparent` is not valid. A malformed or oversized `tracestate` is
/// dropped, the `traceparent` kept.
///
/// ```
/// use tower_wechat::otel;
///
/// let span = otel::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Some("congo=t61rcWkgMzE")).unwrap();
/// assert!(span.is_remote() && span.is_sampled());
/// assert_eq!(span.trace_state().get("congo"), Some("t61rcWkgMzE"));
/// assert!(otel::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", None).is_none()); // uppercase
/// assert!(otel::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none()); // zero trace id
/// ```
pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let bytes = traceparent.as_bytes();
    if bytes.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex_u8(&bytes[0..2])?;
    // Version ff is forbidden; 00 is exactly 55 bytes; a later version may append fields
    // after a `-`, which we do not read.
    let length_ok = match version {
        0xff => false,
        0x00 => bytes.len() == TRACEPARENT_LEN,
        _ => bytes.len() == TRACEPARENT_LEN || bytes[TRACEPARENT_LEN] == b'-',
    };
    if !length_ok || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id = TraceId::from_bytes(hex_array::<16>(&bytes[3..35])?);
    let span_id = SpanId::from_bytes(hex_array::<8>(&bytes[36..52])?);
    let flags = hex_u8(&bytes[53..55])?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let state = tracestate
        .filter(|state| state.len() <= MAX_TRACESTATE_BYTES)
        .and_then(|state| state.parse::<TraceState>().ok())
        .unwrap_or_default();
    // Only the sampled bit is defined; the others are not propagated.
    let flags = TraceFlags::new(flags) & TraceFlags::SAMPLED;
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// The W3C `traceparent` of `span`: `00-{trace id}-{span id}-{flags}`; `None` for an
/// invalid span context (no span).
///
/// ```
/// use tower_wechat::otel;
///
/// let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// assert_eq!(otel::format(&otel::parse(text, None).unwrap()).as_deref(), Some(text));
/// ```
pub fn format(span: &SpanContext) -> Option<String> {
    span.is_valid().then(|| {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            span.trace_id(),
            span.span_id(),
            (span.trace_flags() & TraceFlags::SAMPLED).to_u8()
        )
    })
}

/// The remote span context an HTTP request carries in its `traceparent` and `tracestate`
/// headers; see [`parse`] and the [bounds](self#bounds). `None` without exactly one valid
/// `traceparent`.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// assert!(tower_wechat::otel::extract(&headers).is_none());
/// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".parse().unwrap());
/// assert!(!tower_wechat::otel::extract(&headers).unwrap().is_sampled());
/// ```
pub fn extract(headers: &HeaderMap) -> Option<SpanContext> {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let traceparent = parents.next()?.to_str().ok()?;
    if parents.next().is_some() {
        return None;
    }
    // Several tracestate headers are one list, in order.
    let mut state = String::new();
    for value in headers.get_all(TRACESTATE) {
        let Ok(value) = value.to_str() else {
            state.clear();
            break;
        };
        if state.len() + value.len() + 1 > MAX_TRACESTATE_BYTES {
            state.clear();
            break;
        }
        if !state.is_empty() {
            state.push(',');
        }
        state.push_str(value);
    }
    parse(
        traceparent.trim(),
        Some(state.trim()).filter(|s| !s.is_empty()),
    )
}

/// Writes `span` as `traceparent` (and `tracestate`, if it has one) into `headers`,
/// replacing any there; `false`, and nothing written, for an invalid span context.
///
/// ```
/// use tower_wechat::otel;
///
/// let span = otel::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Some("a=1")).unwrap();
/// let mut headers = http::HeaderMap::new();
/// assert!(otel::inject(&span, &mut headers));
/// assert_eq!(headers["tracestate"], "a=1");
/// ```
pub fn inject(span: &SpanContext, headers: &mut HeaderMap) -> bool {
    let Some(traceparent) = format(span).and_then(|text| HeaderValue::try_from(text).ok()) else {
        return false;
    };
    headers.insert(TRACEPARENT, traceparent);
    let state = span.trace_state().header();
    match HeaderValue::try_from(state) {
        Ok(value) if !value.is_empty() => {
            headers.insert(TRACESTATE, value);
        }
        _ => {
            headers.remove(TRACESTATE);
        }
    }
    true
}

/// The span context of OpenTelemetry's current context — with `tracing-opentelemetry`, the
/// entered `tracing` span's — if it is valid.
///
/// ```
/// // No span entered, no OpenTelemetry layer: nothing.
/// assert!(tower_wechat::otel::current().is_none());
/// ```
pub fn current() -> Option<SpanContext> {
    let context = Context::current();
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// The `traceparent` of the [`current`] span, as stored with a journal entry.
///
/// ```
/// assert!(tower_wechat::otel::current_traceparent().is_none());
/// ```
pub fn current_traceparent() -> Option<String> {
    current().as_ref().and_then(format)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

fn hex_u8(pair: &[u8]) -> Option<u8> {
    Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?)
}

fn hex_array<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = hex_u8(pair)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let span = parse(VALID, None).unwrap();
        assert_eq!(
            span.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            span.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(span.is_sampled() && span.is_remote());
        assert_eq!(format(&span).as_deref(), Some(VALID));
        let unsampled = VALID.replace("-01", "-00");
        assert!(!parse(&unsampled, None).unwrap().is_sampled());
        // Undefined flag bits are not carried on.
        let other_bits = VALID.replace("-01", "-ff");
        assert_eq!(
            format(&parse(&other_bits, None).unwrap()).as_deref(),
            Some(VALID)
        );
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        let bad = [
            "",
            "00",
            &VALID[..54],
            &format!("{VALID}-"),             // version 00 is 55 bytes
            &VALID.replace("00-4b", "ff-4b"), // forbidden version
            &VALID.to_uppercase(),            // uppercase hex
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for text in bad {
            assert!(parse(text, None).is_none(), "{text:?}");
        }
        // A later version may carry more fields after a dash.
        let future = VALID.replace("00-4b", "01-4b") + "-what-comes-next";
        assert!(parse(&future, None).is_some());
        assert!(parse(&(VALID.replace("00-4b", "01-4b") + "x"), None).is_none());
    }

    #[test]
    fn tracestate_is_bounded_and_optional() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.append(TRACESTATE, HeaderValue::from_static("a=1"));
        headers.append(TRACESTATE, HeaderValue::from_static("b=2"));
        let span = extract(&headers).unwrap();
        assert_eq!(span.trace_state().header(), "a=1,b=2");

        let long = format!("a={}", "x".repeat(MAX_TRACESTATE_BYTES));
        headers.insert(TRACESTATE, HeaderValue::try_from(long).unwrap());
        let span = extract(&headers).unwrap();
        assert_eq!(span.trace_state().header(), "");

        headers.insert(TRACESTATE, HeaderValue::from_static("not a list"));
        assert_eq!(extract(&headers).unwrap().trace_state().header(), "");

        // Two traceparents: which one is meant is unknown.
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(extract(&headers).is_none());
    }

    #[test]
    fn inject_writes_both_headers_and_replaces_old_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, HeaderValue::from_static("old=1"));
        let span = parse(VALID, None).unwrap();
        assert!(inject(&span, &mut headers));
        assert_eq!(headers[TRACEPARENT], VALID);
        assert!(headers.get(TRACESTATE).is_none());
        assert!(!inject(&SpanContext::empty_context(), &mut headers));
    }
}
