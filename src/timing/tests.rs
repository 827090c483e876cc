//! Unit tests: histogram resolution and percentiles, concurrent recording, and the span and
//! events TimingLayer emits (captured by a recording subscriber layer).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use super::histogram::{BUCKETS, Histogram, bucket_index, bucket_upper_bound};
use super::*;
use crate::hook::{BackgroundOutcome, CallbackHook};
use crate::signature::{Signature, Token};
use crate::{Message, VerifyLayer};

// ---------------------------------------------------------------------------------------
// Histogram

#[test]
fn buckets_hold_their_values_within_the_stated_resolution() {
    let mut previous = 0;
    let mut values: Vec<u64> = (0..200_000).collect();
    values.extend((0..64).flat_map(|bit| {
        let power = 1u64 << bit;
        [power - 1, power, power + 1]
    }));
    values.sort_unstable();
    for value in values {
        let index = bucket_index(value);
        assert!(index < BUCKETS, "{value}");
        assert!(index >= previous, "indexes grow with values: {value}");
        previous = index;
        let upper = bucket_upper_bound(index);
        assert!(upper >= value, "{value} above its bucket's bound {upper}");
        if index < BUCKETS - 1 {
            // At most 1/32 above the value: the bucket's width is 1/32 of its lower bound.
            assert!((upper - value) * 32 <= value.max(1), "{value} -> {upper}");
            // The next value past the bound is in the next bucket.
            assert_eq!(bucket_index(upper + 1), index + 1, "{value}");
        }
    }
    assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    assert_eq!(bucket_index(1 << 27), BUCKETS - 1);
    assert_eq!(bucket_index((1 << 27) - 1), BUCKETS - 2);
}

fn micros(value: u64) -> Option<Duration> {
    Some(Duration::from_micros(value))
}

#[test]
fn percentiles_below_32_us_are_exact() {
    let histogram = Histogram::new();
    for value in (1..=100).rev() {
        histogram.record(Duration::from_micros(value));
    }
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.count(), 100);
    assert_eq!(snapshot.sum(), Duration::from_micros(5050));
    assert_eq!(snapshot.mean(), micros(50));
    assert_eq!(snapshot.quantile(0.0), micros(1));
    assert_eq!(snapshot.quantile(0.1), micros(10));
    assert_eq!(snapshot.quantile(0.31), micros(31));
    // 32..63 µs: buckets of 1 µs; 64..127 µs: buckets of 2 µs.
    assert_eq!(snapshot.p50(), micros(50));
    assert_eq!(snapshot.p90(), micros(91)); // 90 is in [90, 91]
    assert_eq!(snapshot.p99(), micros(99)); // [98, 99]
    // 100 is in [100, 101]: capped at the exact maximum.
    assert_eq!(snapshot.quantile(1.0), micros(100));
    assert_eq!(snapshot.max(), micros(100));
}

#[test]
fn percentiles_of_milliseconds_are_bucket_upper_bounds() {
    let histogram = Histogram::new();
    for ms in 1..=1000 {
        histogram.record(Duration::from_millis(ms));
    }
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.count(), 1000);
    assert_eq!(snapshot.sum(), Duration::from_millis(500_500));
    // 500 000 µs lies in [2^18 + 29·2^13, +2^13) = [499 712, 507 903].
    assert_eq!(snapshot.p50(), micros(507_903));
    // 900 000 µs in [884 736, 901 119]; 990 000 µs in [983 040, 999 423].
    assert_eq!(snapshot.p90(), micros(901_119));
    assert_eq!(snapshot.p99(), micros(999_423));
    assert_eq!(snapshot.max(), micros(1_000_000));
    assert_eq!(snapshot.quantile(1.0), micros(1_000_000));
    for (q, exact_ms) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
        let reported = snapshot.quantile(q).unwrap().as_secs_f64() * 1e3;
        assert!(reported >= exact_ms && reported <= exact_ms * (1.0 + 1.0 / 32.0));
    }
}

#[test]
fn values_past_the_range_are_reported_as_the_maximum() {
    let histogram = Histogram::new();
    histogram.record(Duration::from_secs(200));
    histogram.record(Duration::from_secs(300));
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.p50(), Some(Duration::from_secs(300)));
    assert_eq!(snapshot.max(), Some(Duration::from_secs(300)));
}

#[test]
fn an_empty_histogram_has_no_percentiles() {
    let snapshot = Histogram::new().snapshot();
    assert_eq!(snapshot.count(), 0);
    assert_eq!(
        (snapshot.p50(), snapshot.max(), snapshot.mean()),
        (None, None, None)
    );
}

#[test]
fn concurrent_recording_loses_nothing() {
    let stats = LatencyStats::new();
    let threads: Vec<_> = (0..8u64)
        .map(|thread| {
            let stats = stats.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    let msg_type = if i % 2 == 0 {
                        MsgType::Text
                    } else {
                        MsgType::Event
                    };
                    stats
                        .record_callback(msg_type, Duration::from_micros(thread * 1000 + i % 1000));
                }
            })
        })
        .collect();
    // Snapshots taken while writers run never see more than was written.
    for _ in 0..50 {
        assert!(stats.snapshot().all_callbacks().count() <= 160_000);
    }
    for thread in threads {
        thread.join().unwrap();
    }
    let snapshot = stats.snapshot();
    let text = snapshot.callbacks(MsgType::Text);
    let event = snapshot.callbacks(MsgType::Event);
    assert_eq!((text.count(), event.count()), (80_000, 80_000));
    assert_eq!(snapshot.all_callbacks().count(), 160_000);
    assert_eq!(snapshot.callbacks(MsgType::Image).count(), 0);
    // Sum over threads of (1000·t·20 000 + 20·Σ_{0..999} i) µs.
    let expected: u64 = (0..8).map(|t| t * 1000 * 20_000 + 20 * 499_500).sum();
    assert_eq!(text.sum() + event.sum(), Duration::from_micros(expected));
    assert_eq!(event.max(), micros(7999));
    assert_eq!(text.max(), micros(7998));
    assert_eq!(
        snapshot.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        [MsgType::Text, MsgType::Event]
    );
}

// ---------------------------------------------------------------------------------------
// Captured tracing output

#[derive(Clone, Debug)]
struct CapturedEvent {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
    /// Name and fields (as recorded so far) of the span the event is in.
    span: Option<SpanRecord>,
}

impl CapturedEvent {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// A span's name and fields.
type SpanRecord = (String, BTreeMap<String, String>);

#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<CapturedEvent>>>,
    closed_spans: Arc<Mutex<Vec<SpanRecord>>>,
}

/// A span's fields, kept in the registry's extensions.
struct SpanFields(BTreeMap<String, String>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> tracing_subscriber::Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        ctx.span(id)
            .unwrap()
            .extensions_mut()
            .insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        let fields = extensions.get_mut::<SpanFields>().unwrap();
        values.record(&mut Fields(&mut fields.0));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let span = ctx.event_span(event).map(|span| {
            let fields = span.extensions().get::<SpanFields>().unwrap().0.clone();
            (span.name().to_owned(), fields)
        });
        self.events.lock().unwrap().push(CapturedEvent {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
            span,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions().get::<SpanFields>().unwrap().0.clone();
        self.closed_spans
            .lock()
            .unwrap()
            .push((span.name().to_owned(), fields));
    }
}

impl Capture {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    fn events(&self) -> Vec<CapturedEvent> {
        self.events.lock().unwrap().clone()
    }

    /// TimingLayer's events at INFO and above.
    fn timing_events(&self) -> Vec<CapturedEvent> {
        self.events()
            .into_iter()
            .filter(|event| event.target == "tower_wechat::timing" && event.level <= Level::INFO)
            .collect()
    }

    fn closed(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        self.closed_spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(span, _)| span == name)
            .map(|(_, fields)| fields.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Requests through TimingLayer + VerifyLayer + RecordMessageLayer

const TOKEN: &str = "timingsecret77";
const OPENID: &str = "oia2Tj-jewbmiOUlr6X-1crbLOvLw";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn text_xml(msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_account]]></ToUserName>\
         <FromUserName><![CDATA[{OPENID}]]></FromUserName><CreateTime>{}</CreateTime>\
         <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[secret content]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>",
        now()
    )
}

fn click_xml() -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_account]]></ToUserName>\
         <FromUserName><![CDATA[{OPENID}]]></FromUserName><CreateTime>{}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
         <EventKey><![CDATA[MENU_ORDERS]]></EventKey></xml>",
        now()
    )
}

/// A POST signed with [`TOKEN`], with a fresh nonce.
fn signed(xml: String) -> Request<Full<Bytes>> {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let nonce = NONCE
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string();
    let timestamp = now().to_string();
    let signature = Signature::plain(&Token::new(TOKEN).unwrap(), &timestamp, &nonce);
    Request::post(format!(
        "/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}&openid={OPENID}"
    ))
    .body(Full::new(Bytes::from(xml)))
    .unwrap()
}

async fn answer(delay: Duration) -> Result<Response<Full<Bytes>>, Infallible> {
    tokio::time::sleep(delay).await;
    tracing::info!(target: "handler", "handling");
    Ok(Response::new(Full::new(Bytes::from_static(b"success"))))
}

async fn call_through(
    layer: TimingLayer,
    request: Request<Full<Bytes>>,
    delay: Duration,
) -> Response<crate::body::ResponseBody<Full<Bytes>>> {
    ServiceBuilder::new()
        .layer(layer)
        .layer(VerifyLayer::new(Token::new(TOKEN).unwrap()))
        .layer(RecordMessageLayer)
        .service_fn(move |_request: Request<Full<Bytes>>| answer(delay))
        .oneshot(request)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_info_line_per_callback_with_its_msg_id_and_latency() {
    let capture = Capture::default();
    let _guard = capture.install();
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let response = call_through(layer, signed(text_xml(24567890123456789)), Duration::ZERO).await;
    assert_eq!(response.status(), StatusCode::OK);

    let lines = capture.timing_events();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert_eq!(line.level, Level::INFO);
    assert_eq!(line.message(), "callback answered");
    assert_eq!(line.field("msg_type"), Some("text"));
    assert_eq!(line.field("msg_id"), Some("24567890123456789"));
    assert_eq!(line.field("status"), Some("200"));
    let latency: f64 = line.field("latency_ms").unwrap().parse().unwrap();
    assert!(latency >= 0.0);
    assert_eq!(line.field("budget_ms"), None);
    assert_eq!(line.field("background"), None);
    assert_eq!(line.field("event"), None);
    let (span_name, span) = line.span.as_ref().unwrap();
    assert_eq!(span_name, "wechat_callback");
    assert_eq!(span["method"], "POST");
    assert_eq!(span["path"], "/wechat");
    assert_eq!(span["msg_id"], "24567890123456789");
    assert_eq!(span["openid"], "oia2****Lw");

    // The handler's own event is under the callback span.
    let handler = capture
        .events()
        .into_iter()
        .find(|event| event.target == "handler")
        .unwrap();
    assert_eq!(handler.span.unwrap().1["msg_type"], "text");

    // Once closed, the span has every field.
    let spans = capture.closed("wechat_callback");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["status"], "200");
    assert_eq!(spans[0]["latency_ms"], line.fields["latency_ms"]);
    assert_eq!(spans[0]["msg_type"], "text");

    // No secret, no full openid, no query, no content anywhere.
    let everything = format!(
        "{:?}{:?}",
        capture.events(),
        capture.closed("wechat_callback")
    );
    for secret in [TOKEN, OPENID, "signature", "nonce", "secret content"] {
        assert!(
            !everything.contains(secret),
            "{secret} logged: {everything}"
        );
    }

    let snapshot = stats.snapshot();
    assert_eq!(snapshot.callbacks(MsgType::Text).count(), 1);
    assert_eq!(snapshot.all_callbacks().count(), 1);
    assert_eq!(snapshot.callbacks(MsgType::Text).over_budget(), 0);
}

#[tokio::test]
async fn events_are_named_by_event_and_key() {
    let capture = Capture::default();
    let _guard = capture.install();
    let layer = TimingLayer::new();
    let stats = layer.stats();
    call_through(layer, signed(click_xml()), Duration::ZERO).await;
    let lines = capture.timing_events();
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line.field("msg_type"), Some("event"));
    assert_eq!(line.field("event"), Some("CLICK"));
    assert_eq!(line.field("event_key"), Some("MENU_ORDERS"));
    assert_eq!(line.field("msg_id"), None);
    assert_eq!(stats.snapshot().callbacks(MsgType::Event).count(), 1);
}

#[tokio::test]
async fn rejected_requests_are_timed_without_a_message() {
    let capture = Capture::default();
    let _guard = capture.install();
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let mut request = signed(text_xml(1));
    *request.uri_mut() = "/wechat?signature=00&timestamp=1&nonce=2".parse().unwrap();
    let response = call_through(layer, request, Duration::ZERO).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // VerifyLayer logged the reason; the access line of a refused request is DEBUG.
    assert!(capture.timing_events().is_empty());
    let lines: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|event| event.target == "tower_wechat::timing")
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].level, Level::DEBUG);
    assert_eq!(lines[0].field("status"), Some("400"));
    assert_eq!(lines[0].field("msg_type"), Some("none"));
    assert_eq!(stats.snapshot().callbacks(MsgType::NoMessage).count(), 1);
}

#[tokio::test]
async fn a_slow_callback_warns_past_the_budget_and_errs_past_the_deadline() {
    let capture = Capture::default();
    let _guard = capture.install();
    let layer = TimingLayer::new()
        .budget(Duration::from_millis(20))
        .deadline(Duration::from_millis(80));
    let stats = layer.stats();
    call_through(layer.clone(), signed(text_xml(1)), Duration::ZERO).await;
    call_through(
        layer.clone(),
        signed(text_xml(2)),
        Duration::from_millis(40),
    )
    .await;
    call_through(layer, signed(text_xml(3)), Duration::from_millis(100)).await;

    let lines = capture.timing_events();
    let levels: Vec<_> = lines.iter().map(|line| line.level).collect();
    assert_eq!(levels, [Level::INFO, Level::WARN, Level::ERROR]);
    assert_eq!(lines[1].message(), "callback answered over budget");
    assert_eq!(lines[1].field("budget_ms"), Some("20"));
    assert_eq!(lines[1].field("msg_id"), Some("2"));
    assert!(
        lines[1]
            .field("latency_ms")
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= 40.0
    );
    assert_eq!(
        lines[2].message(),
        "callback answered after WeChat's deadline; WeChat retries it"
    );
    assert_eq!(lines[2].field("msg_id"), Some("3"));

    let text = stats.snapshot().callbacks(MsgType::Text).clone();
    assert_eq!(
        (text.count(), text.over_budget(), text.over_deadline()),
        (3, 2, 1)
    );
    assert!(text.max().unwrap() >= Duration::from_millis(100));
}

#[tokio::test]
async fn a_callback_dropped_unanswered_is_logged_and_counted() {
    let capture = Capture::default();
    let _guard = capture.install();
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let call = call_through(layer, signed(text_xml(5)), Duration::from_secs(60));
    assert!(
        tokio::time::timeout(Duration::from_millis(30), call)
            .await
            .is_err()
    );
    let lines = capture.timing_events();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].level, Level::WARN);
    assert_eq!(lines[0].message(), "callback dropped unanswered");
    assert_eq!(lines[0].field("msg_id"), Some("5"));
    assert_eq!(lines[0].field("status"), None);
    assert_eq!(stats.snapshot().callbacks(MsgType::Text).count(), 1);
}

#[tokio::test]
async fn an_inner_error_is_logged_at_error() {
    let capture = Capture::default();
    let _guard = capture.install();
    let service = TimingLayer::new().layer(service_fn(|_request: Request<()>| async {
        Err::<Response<()>, _>("boom")
    }));
    assert!(service.oneshot(Request::new(())).await.is_err());
    let lines = capture.timing_events();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].level, Level::ERROR);
    assert_eq!(lines[0].message(), "callback failed without a response");
}

#[tokio::test]
async fn no_subscriber_still_records_statistics() {
    let layer = TimingLayer::new();
    let stats = layer.stats();
    for id in 0..3 {
        call_through(layer.clone(), signed(text_xml(id)), Duration::ZERO).await;
    }
    assert_eq!(stats.snapshot().callbacks(MsgType::Text).count(), 3);
}

#[tokio::test]
async fn the_first_recorded_message_wins() {
    let capture = Capture::default();
    let _guard = capture.install();
    let other = Message::parse(click_xml().as_bytes()).unwrap();
    // A handler that records another message after RecordMessageLayer did.
    let service = ServiceBuilder::new()
        .layer(TimingLayer::new())
        .layer(VerifyLayer::new(Token::new(TOKEN).unwrap()))
        .layer(RecordMessageLayer)
        .layer(RecordMessageLayer)
        .service_fn(move |request: Request<Full<Bytes>>| {
            let timing = request.extensions().get::<CallbackTiming>().unwrap();
            assert_eq!(timing.msg_type(), MsgType::Text);
            timing.record_message(&other);
            answer(Duration::ZERO)
        });
    service.oneshot(signed(text_xml(11))).await.unwrap();
    let lines = capture.timing_events();
    assert_eq!(lines[0].field("msg_type"), Some("text"));
    assert_eq!(lines[0].field("event"), None);
}

// ---------------------------------------------------------------------------------------
// Background work, driven the way FastAckLayer drives the hook

/// Acknowledges at once and finishes the handler in a task instrumented with the span
/// current at `call`, telling the hook `started` and then `finished`, as FastAck does.
#[derive(Clone)]
struct FakeFastAck {
    work: Duration,
    outcome: BackgroundOutcome,
}

impl<B: Send + 'static> tower::Service<Request<B>> for FakeFastAck {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        use tracing::Instrument;
        let hook = request
            .extensions()
            .get::<CallbackHook>()
            .cloned()
            .expect("TimingLayer puts a hook in the extensions");
        let (work, outcome) = (self.work, self.outcome);
        let started = std::time::Instant::now();
        hook.background_started();
        tokio::spawn(
            async move {
                tokio::time::sleep(work).await;
                tracing::info!(target: "handler", "slow handler done");
                hook.background_finished(outcome, started.elapsed());
            }
            .instrument(tracing::Span::current()),
        );
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"success")))))
    }
}

async fn through_fake_fast_ack(
    capture: &Capture,
    outcome: BackgroundOutcome,
) -> (LatencyStats, Vec<CapturedEvent>) {
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let service = ServiceBuilder::new()
        .layer(layer)
        .layer(VerifyLayer::new(Token::new(TOKEN).unwrap()))
        .layer(RecordMessageLayer)
        .service(FakeFastAck {
            work: Duration::from_millis(30),
            outcome,
        });
    let response = service.oneshot(signed(text_xml(77))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The access line is out before the background work ends.
    assert_eq!(capture.timing_events().len(), 1);
    for _ in 0..200 {
        if capture.timing_events().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (stats, capture.timing_events())
}

#[tokio::test]
async fn background_work_is_timed_under_the_callback_span() {
    let capture = Capture::default();
    let _guard = capture.install();
    let (stats, lines) = through_fake_fast_ack(&capture, BackgroundOutcome::Completed).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");

    let access = &lines[0];
    assert_eq!(access.message(), "callback answered");
    assert_eq!(access.field("background"), Some("true"));

    let background = &lines[1];
    assert_eq!(background.level, Level::INFO);
    assert_eq!(background.message(), "background work finished");
    assert_eq!(background.field("outcome"), Some("completed"));
    assert_eq!(background.field("msg_id"), Some("77"));
    let ms: f64 = background.field("background_ms").unwrap().parse().unwrap();
    assert!(ms >= 30.0, "{ms}");
    let (span_name, span) = background.span.as_ref().unwrap();
    assert_eq!(span_name, "wechat_callback");
    assert_eq!(span["msg_id"], "77");

    let moved = capture
        .events()
        .into_iter()
        .find(|event| event.level == Level::DEBUG)
        .unwrap();
    assert_eq!(moved.message(), "handler moved to the background");
    assert_eq!(moved.span.unwrap().1["msg_id"], "77");

    // The handler's event in the background task is under the same span.
    let handler = capture
        .events()
        .into_iter()
        .find(|event| event.target == "handler")
        .unwrap();
    assert_eq!(handler.span.unwrap().1["msg_id"], "77");

    let snapshot = stats.snapshot();
    assert_eq!(snapshot.background_started(), 1);
    let completed = snapshot.background(BackgroundOutcome::Completed);
    assert_eq!(completed.count(), 1);
    assert!(completed.max().unwrap() >= Duration::from_millis(30));
    assert_eq!(snapshot.background(BackgroundOutcome::Failed).count(), 0);
    assert_eq!(snapshot.callbacks(MsgType::Text).count(), 1);
}

#[tokio::test]
async fn failed_background_work_warns() {
    let capture = Capture::default();
    let _guard = capture.install();
    let (stats, lines) = through_fake_fast_ack(&capture, BackgroundOutcome::Panicked).await;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].level, Level::WARN);
    assert_eq!(lines[1].field("outcome"), Some("panicked"));
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.background(BackgroundOutcome::Panicked).count(), 1);
    assert_eq!(snapshot.background(BackgroundOutcome::Completed).count(), 0);
}

#[test]
fn snapshots_print_a_table() {
    let stats = LatencyStats::new();
    stats.record_callback(MsgType::Text, Duration::from_millis(2));
    stats.record_background(BackgroundOutcome::Failed, Duration::from_millis(7));
    let table = stats.snapshot().to_string();
    assert_eq!(
        table,
        "text       count=1 p50=2.000ms p90=2.000ms p99=2.000ms max=2.000ms over_budget=0 over_deadline=0\n\
         background started=0\n\
         background failed    count=1 p50=7.000ms p90=7.000ms p99=7.000ms max=7.000ms over_budget=0 over_deadline=0\n"
    );
}

/// Once VerifyLayer records the message itself (one line in `src/verify/future.rs`, see
/// the module docs), no RecordMessageLayer is needed.
#[tokio::test]
async fn verify_layer_records_the_message_without_record_message_layer() {
    let capture = Capture::default();
    let _guard = capture.install();
    let layer = TimingLayer::new();
    let stats = layer.stats();
    let service = ServiceBuilder::new()
        .layer(layer)
        .layer(VerifyLayer::new(Token::new(TOKEN).unwrap()))
        .service_fn(|_request: Request<Full<Bytes>>| answer(Duration::ZERO));
    service.oneshot(signed(text_xml(31))).await.unwrap();
    let lines = capture.timing_events();
    assert_eq!(lines[0].field("msg_id"), Some("31"));
    assert_eq!(lines[0].span.as_ref().unwrap().1["openid"], "oia2****Lw");
    assert_eq!(stats.snapshot().callbacks(MsgType::Text).count(), 1);
}
