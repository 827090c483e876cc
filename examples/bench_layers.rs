//! Drives a fixed number of signed text-message callbacks through one service in-process
//! (no sockets, no HTTP parsing), to count what each layer costs: run it under callgrind
//! for instruction counts (deterministic, unlike a shared machine's clock).
//!
//! ```text
//! cargo build --release --example bench_layers
//! valgrind --tool=callgrind --toggle-collect='*drive_requests*' \
//!     target/release/examples/bench_layers VARIANT 20000 > /dev/null
//! ```
//!
//! `VARIANT` (the handler is the quick start's echo bot, behind axum's router):
//! - `floor`, `naive`: the two routers of `examples/bench_naive.rs`;
//! - `handler`: the echo bot with the message parsed outside the timed loop (no layer);
//! - `v`, `tv`, `vd`, `vdf`, `tvd`, `tvdf`: the stack's layers by hand (`t` Timing, `v`
//!   Verify, `d` Dedup, `f` FastAck), in the stack's order;
//! - `stack`: `CallbackLayer` as the quick start builds it.
//!
//! `LOG=1` installs the quick start's subscriber (fmt to stdout at `RUST_LOG`, default
//! `info`, through its buffered writer): redirect stdout to a file. `LOG=line` writes each
//! line at once (one `write` per line), `LOG=default-fields` uses tracing-subscriber's own
//! field format, `LOG=no-target` / `LOG=no-time` drop a part of the line, `LOG=sink` formats
//! into nothing. Prints the wall time per request (noisy; use the
//! instruction counts) and how many answers were right.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_wechat::dedup::DedupLayer;
use tower_wechat::signature::Signature;
use tower_wechat::{CallbackLayer, FastAckLayer, Message, TimingLayer, Token, VerifyLayer};

#[path = "bench_naive.rs"]
mod naive;
#[path = "quickstart.rs"]
mod quickstart;

const TOKEN: &str = "towerwechatdemo";

/// Counts heap allocations (and reallocations), to report them per request.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts them.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn requests(count: u64, parsed: bool) -> Vec<Request<Body>> {
    let token = Token::new(TOKEN).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts = now.to_string();
    (0..count)
        .map(|index| {
            let nonce = format!("{:04}{index:07}", now % 10_000);
            let signature = Signature::plain(&token, &ts, &nonce);
            let body = format!(
                "<xml><ToUserName><![CDATA[gh_bench0000001]]></ToUserName>\
                 <FromUserName><![CDATA[oBench{:022}]]></FromUserName>\
                 <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
                 <Content><![CDATA[hello bench {index}]]></Content>\
                 <MsgId>{}</MsgId></xml>",
                index % 1000,
                now * 10_000_000 + index
            );
            let mut request = Request::post(format!(
                "/wechat?signature={signature}&timestamp={ts}&nonce={nonce}"
            ))
            .header("content-type", "text/xml")
            .body(Body::from(body.clone()))
            .unwrap();
            if parsed {
                let message = Message::parse(body.as_bytes()).unwrap();
                request.extensions_mut().insert(message);
            }
            request
        })
        .collect()
}

/// The timed loop: call, read the whole answer, check it.
#[inline(never)]
async fn drive_requests<S>(service: &mut S, requests: Vec<Request<Body>>, expect: &[u8]) -> usize
where
    S: Service<Request<Body>, Response = http::Response<axum::body::Body>>,
    S::Error: std::fmt::Debug,
{
    let mut right = 0;
    for request in requests {
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        let ok = response.status().is_success();
        let body: Bytes = response.into_body().collect().await.unwrap().to_bytes();
        let found = body
            .iter()
            .enumerate()
            .filter(|&(_, &byte)| byte == expect[0])
            .any(|(at, _)| body[at..].starts_with(expect));
        if ok && found {
            right += 1;
        }
    }
    right
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "stack".to_owned());
    let count: u64 = args.next().map_or(20_000, |n| n.parse().unwrap());
    let fmt = || tracing_subscriber::fmt().with_ansi(false);
    match std::env::var("LOG").as_deref() {
        // The quick start's: buffered, since stdout is not a terminal here.
        Ok("1") => quickstart::init_tracing(),
        Ok("line") => quickstart::init_tracing_line_by_line(),
        // What the line's options cost (each buffered like the quick start's).
        // The quick start's line with tracing-subscriber's own field format.
        Ok("default-fields") => fmt().with_writer(quickstart::BufferedLog::start()).init(),
        Ok("no-target") => fmt()
            .fmt_fields(quickstart::log::AccessFields)
            .with_target(false)
            .with_writer(quickstart::BufferedLog::start())
            .init(),
        Ok("no-time") => fmt()
            .fmt_fields(quickstart::log::AccessFields)
            .without_time()
            .with_writer(quickstart::BufferedLog::start())
            .init(),
        // The quick start's line through tracing-subscriber's own line format.
        Ok("default-format") => fmt()
            .fmt_fields(quickstart::log::AccessFields)
            .with_timer(quickstart::log::CachedTime)
            .with_writer(quickstart::BufferedLog::start())
            .init(),
        Ok("sink") => fmt()
            .fmt_fields(quickstart::log::AccessFields)
            .with_writer(std::io::sink)
            .init(),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = || Token::new(TOKEN).unwrap();
    let echo = || post(quickstart::reply);
    let (right, elapsed, allocations) = runtime.block_on(async {
        let requests = requests(count, variant == "handler");
        let expect: &[u8] = if variant == "floor" {
            b"success"
        } else {
            b"hello bench"
        };
        let start = Instant::now();
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        macro_rules! run {
            ($router:expr) => {{
                let mut router: Router = $router;
                drive_requests(&mut router, requests, expect).await
            }};
        }
        let right = match variant.as_str() {
            "floor" => run!(naive::floor_app()),
            "naive" => run!(naive::naive_app(Arc::from(TOKEN))),
            "handler" => run!(Router::new().route("/wechat", echo())),
            "v" => run!(Router::new().route("/wechat", echo().layer(VerifyLayer::new(token())))),
            "tv" => run!(
                Router::new().route(
                    "/wechat",
                    echo().layer(
                        ServiceBuilder::new()
                            .layer(TimingLayer::new())
                            .layer(VerifyLayer::new(token()))
                    )
                )
            ),
            "vd" => run!(
                Router::new().route(
                    "/wechat",
                    echo().layer(
                        ServiceBuilder::new()
                            .layer(VerifyLayer::new(token()))
                            .layer(DedupLayer::new())
                    )
                )
            ),
            "vdf" => run!(
                Router::new().route(
                    "/wechat",
                    echo().layer(
                        ServiceBuilder::new()
                            .layer(VerifyLayer::new(token()))
                            .layer(DedupLayer::new())
                            .layer(FastAckLayer::new())
                    )
                )
            ),
            "tvd" => run!(
                Router::new().route(
                    "/wechat",
                    echo().layer(
                        ServiceBuilder::new()
                            .layer(TimingLayer::new())
                            .layer(VerifyLayer::new(token()))
                            .layer(DedupLayer::new())
                    )
                )
            ),
            "tvdf" => run!(
                Router::new().route(
                    "/wechat",
                    echo().layer(
                        ServiceBuilder::new()
                            .layer(TimingLayer::new())
                            .layer(VerifyLayer::new(token()))
                            .layer(DedupLayer::new())
                            .layer(FastAckLayer::new())
                    )
                )
            ),
            "stack" => run!(quickstart::app(CallbackLayer::new(token()))),
            other => panic!("unknown variant {other}"),
        };
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
        (right, start.elapsed(), allocations)
    });
    eprintln!(
        "{variant}: {count} requests, {right} answered right, {:.2} µs/request (wall, noisy), \
         {:.1} allocations/request",
        elapsed.as_secs_f64() * 1e6 / count as f64,
        allocations as f64 / count as f64
    );
    quickstart::BufferedLog::flush();
    assert_eq!(right as u64, count, "some answers were wrong");
}
