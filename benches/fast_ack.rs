//! Per-request cost of DedupLayer and FastAckLayer with a fast handler (the common case: a
//! first delivery whose handler answers at once).
//!
//! ```text
//! cargo bench --bench fast_ack
//! ```
//!
//! Time-to-answer under slow handlers is measured by the `load_fast_ack` example.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_wechat::Message;
use tower_wechat::ack::FastAckLayer;
use tower_wechat::dedup::DedupLayer;

const TEXT: &str = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\
<FromUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></FromUserName>\
<CreateTime>1715943329</CreateTime><MsgType><![CDATA[text]]></MsgType>\
<Content><![CDATA[你好，我想查一下我的订单状态]]></Content><MsgId>24567890123456789</MsgId></xml>";

/// A request as VerifyLayer hands it on: the body and the parsed message, with a new MsgId
/// each time (a first delivery).
fn delivery(template: &Message, next: &AtomicU64) -> Request<Full<Bytes>> {
    let mut message = template.clone();
    message.msg_id = Some(next.fetch_add(1, Ordering::Relaxed));
    let mut request = Request::new(Full::new(Bytes::from_static(TEXT.as_bytes())));
    request.extensions_mut().insert(message);
    request
}

async fn run<S, B>(service: S, request: Request<Full<Bytes>>)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
}

fn layers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let template = Message::parse(TEXT.as_bytes()).unwrap();
    let next = AtomicU64::new(1);
    let handler = service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("success")))
    });
    let fast_ack = FastAckLayer::new().layer(handler);
    let dedup = DedupLayer::new().layer(handler);
    let dedup_small = DedupLayer::with_store(tower_wechat::dedup::MemoryStore::with_capacity(1024))
        .layer(handler);
    let both = DedupLayer::new().layer(FastAckLayer::new().layer(handler));

    let mut group = c.benchmark_group("fast_ack");
    group.bench_function("bare_handler", |b| {
        b.to_async(&runtime).iter_batched(
            || delivery(&template, &next),
            |request| run(handler, request),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("fast_ack_layer", |b| {
        b.to_async(&runtime).iter_batched(
            || delivery(&template, &next),
            |request| run(fast_ack.clone(), request),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("dedup_layer_memory", |b| {
        b.to_async(&runtime).iter_batched(
            || delivery(&template, &next),
            |request| run(dedup.clone(), request),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("dedup_layer_memory_1k", |b| {
        b.to_async(&runtime).iter_batched(
            || delivery(&template, &next),
            |request| run(dedup_small.clone(), request),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("dedup_and_fast_ack", |b| {
        b.to_async(&runtime).iter_batched(
            || delivery(&template, &next),
            |request| run(both.clone(), request),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
