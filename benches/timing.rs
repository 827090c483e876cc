//! TimingLayer's cost per request: without a subscriber, with an fmt subscriber writing
//! each line to a sink, and (feature `metrics`) through the `metrics` facade.
//!
//! ```text
//! cargo bench --bench timing
//! cargo bench --bench timing --features metrics   # adds timing/metrics_*
//! ```
//!
//! The inner service answers at once, so `timing/*` minus `baseline/inner_service` is what
//! TimingLayer adds to a callback.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::LazyLock;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service, service_fn};
use tower_wechat::Message;
use tower_wechat::timing::{CallbackTiming, LatencyStats, MsgType, TimingLayer};

const TEXT: &str = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\
<FromUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></FromUserName>\
<CreateTime>1715943329</CreateTime><MsgType><![CDATA[text]]></MsgType>\
<Content><![CDATA[你好，我想查一下我的订单状态]]></Content><MsgId>24567890123456789</MsgId></xml>";

static MESSAGE: LazyLock<Message> = LazyLock::new(|| Message::parse(TEXT.as_bytes()).unwrap());

async fn answer(_request: Request<()>) -> Result<Response<()>, Infallible> {
    Ok(Response::new(()))
}

/// What VerifyLayer does once it has parsed the message (with the one-line change, or
/// RecordMessageLayer): record it into the callback's timing handle.
async fn record_and_answer(request: Request<()>) -> Result<Response<()>, Infallible> {
    if let Some(timing) = request.extensions().get::<CallbackTiming>() {
        timing.record_message(&MESSAGE);
    }
    Ok(Response::new(()))
}

/// Calls `service` once with a fresh request; the futures here are ready at once.
fn call<S>(service: &mut S) -> Response<()>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let request = Request::post("/wechat").body(()).unwrap();
    service.call(request).now_or_never().unwrap().unwrap()
}

/// An extension axum's router puts in each routed request, so the extensions map already
/// exists when a route layer sees the request.
#[derive(Clone)]
struct Routed;

/// [`call`] with a request whose extensions map is already allocated, as behind axum's router.
fn call_routed<S>(service: &mut S) -> Response<()>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let mut request = Request::post("/wechat").body(()).unwrap();
    request.extensions_mut().insert(Routed);
    service.call(request).now_or_never().unwrap().unwrap()
}

fn benches(c: &mut Criterion) {
    LazyLock::force(&MESSAGE);
    let mut group = c.benchmark_group("baseline");
    let mut inner = service_fn(answer);
    group.bench_function("inner_service", |b| b.iter(|| black_box(call(&mut inner))));
    group.bench_function("inner_service_routed", |b| {
        b.iter(|| black_box(call_routed(&mut inner)))
    });
    group.bench_function("instant_now", |b| b.iter(std::time::Instant::now));
    group.finish();

    let mut group = c.benchmark_group("timing");
    // No subscriber: the global default is none in this process.
    let mut timed = TimingLayer::new().layer(service_fn(answer));
    group.bench_function("no_subscriber", |b| b.iter(|| black_box(call(&mut timed))));
    group.bench_function("no_subscriber_routed", |b| {
        b.iter(|| black_box(call_routed(&mut timed)))
    });
    let mut timed = TimingLayer::new().layer(service_fn(record_and_answer));
    group.bench_function("no_subscriber_message_recorded", |b| {
        b.iter(|| black_box(call(&mut timed)))
    });

    // fmt subscriber at INFO writing to a sink: the span, its fields, the access line.
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(fmt, || {
        let mut timed = TimingLayer::new().layer(service_fn(record_and_answer));
        group.bench_function("fmt_sink_message_recorded", |b| {
            b.iter(|| black_box(call(&mut timed)))
        });
    });
    // A subscriber that filters INFO out (e.g. RUST_LOG=warn): only slow callbacks log.
    let warn_only = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(warn_only, || {
        let mut timed = TimingLayer::new().layer(service_fn(record_and_answer));
        group.bench_function("fmt_warn_only_message_recorded", |b| {
            b.iter(|| black_box(call(&mut timed)))
        });
    });

    #[cfg(feature = "metrics")]
    {
        // No recorder installed: the facade's no-op recorder.
        let mut timed = TimingLayer::new().layer(service_fn(record_and_answer));
        group.bench_function("metrics_no_recorder", |b| {
            b.iter(|| black_box(call(&mut timed)))
        });
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
                tower_wechat::timing::metrics::DURATION_BUCKETS,
            )
            .unwrap()
            .build_recorder();
        metrics::with_local_recorder(&recorder, || {
            let mut timed = TimingLayer::new().layer(service_fn(record_and_answer));
            group.bench_function("metrics_prometheus", |b| {
                b.iter(|| black_box(call(&mut timed)))
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("stats");
    let stats = LatencyStats::new();
    group.bench_function("record", |b| {
        b.iter(|| stats.record_callback(MsgType::Text, black_box(Duration::from_micros(1234))))
    });
    for ms in 1..=10_000 {
        stats.record_callback(MsgType::Text, Duration::from_micros(ms * 100));
    }
    group.bench_function("snapshot_p99", |b| {
        b.iter(|| black_box(stats.snapshot().callbacks(MsgType::Text).p99()))
    });
    group.finish();
}

criterion_group!(timing, benches);
criterion_main!(timing);
