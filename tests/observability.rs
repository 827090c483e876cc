//! The observability example's app on a real loopback port: signed callbacks from a
//! WeChat-like client, then `GET /metrics` as Prometheus would scrape it.
//!
//! The Prometheus recorder is global, so this binary has a single test of it; the other
//! test asks the profiling endpoints (the example's separate listener) for profiles.

mod common;

#[path = "../examples/observability.rs"]
#[allow(dead_code)]
mod observability;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{WeChat, now, serve, text_message};
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_wechat::{CallbackLayer, Token};

const TOKEN: &str = "metricstoken5";

/// The value of the sample line `name{labels}` in a Prometheus text payload.
fn sample(payload: &str, series: &str) -> Option<f64> {
    payload.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

fn click(key: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_account]]></ToUserName>\
         <FromUserName><![CDATA[oUser1234]]></FromUserName><CreateTime>{}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
         <EventKey><![CDATA[{key}]]></EventKey></xml>",
        now()
    )
}

#[tokio::test]
async fn metrics_show_a_histogram_that_counts_the_callbacks_sent() {
    let prometheus = observability::install_prometheus().unwrap();
    let stack = CallbackLayer::new(Token::new(TOKEN).unwrap());
    let stats = stack.handle().latency().clone();
    let wechat = WeChat::new(serve(observability::app(stack, prometheus)).await, TOKEN);

    const TEXTS: u64 = 7;
    for id in 1..=TEXTS {
        let answer = wechat.deliver(&text_message("hello", id)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.contains("You said: hello"));
    }
    for key in ["A", "B"] {
        assert_eq!(wechat.deliver(&click(key)).await.status, StatusCode::OK);
    }
    let forger = WeChat::new(wechat.addr(), "notthetoken");
    assert_eq!(
        forger.deliver(&text_message("x", 99)).await.status,
        StatusCode::FORBIDDEN
    );

    let answer = wechat.send(Method::GET, "/metrics", "").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let payload = answer.body;

    // A histogram (not a summary), with buckets, sum and count per message type and status.
    assert!(
        payload.contains("# TYPE wechat_callback_duration_seconds histogram"),
        "{payload}"
    );
    let text = r#"msg_type="text",status="200""#;
    let count = sample(
        &payload,
        &format!("wechat_callback_duration_seconds_count{{{text}}}"),
    );
    assert_eq!(count, Some(TEXTS as f64), "{payload}");
    let sum = sample(
        &payload,
        &format!("wechat_callback_duration_seconds_sum{{{text}}}"),
    );
    assert!(sum.is_some_and(|sum| sum > 0.0 && sum < 5.0), "{payload}");
    let all = sample(
        &payload,
        &format!("wechat_callback_duration_seconds_bucket{{{text},le=\"+Inf\"}}"),
    );
    assert_eq!(all, Some(TEXTS as f64), "{payload}");
    // Loopback callbacks all fit under WeChat's deadline; buckets are cumulative.
    let under_deadline = sample(
        &payload,
        &format!("wechat_callback_duration_seconds_bucket{{{text},le=\"5\"}}"),
    );
    assert_eq!(under_deadline, Some(TEXTS as f64), "{payload}");
    assert!(
        payload.contains(&format!(
            "wechat_callback_duration_seconds_bucket{{{text},le=\"0.005\"}}"
        )),
        "{payload}"
    );

    let event = r#"msg_type="event",status="200""#;
    assert_eq!(
        sample(
            &payload,
            &format!("wechat_callback_duration_seconds_count{{{event}}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&payload, &format!("wechat_callbacks_total{{{text}}}")),
        Some(TEXTS as f64),
        "{payload}"
    );
    assert_eq!(
        sample(
            &payload,
            r#"wechat_callbacks_total{msg_type="none",status="403"}"#
        ),
        Some(1.0),
        "{payload}"
    );
    assert!(!payload.contains("wechat_callbacks_over_deadline_total{"));

    // The same callbacks, read in process.
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.all_callbacks().count(), TEXTS + 3);
    let answer = wechat.send(Method::GET, "/stats", "").await;
    assert!(
        answer
            .body
            .starts_with(&format!("text       count={TEXTS} ")),
        "{}",
        answer.body
    );
    assert!(snapshot.all_callbacks().max().unwrap() < Duration::from_secs(5));
}

/// GET `path` from the profiling listener, with `token` as the bearer token.
async fn pprof_get(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Bytes) {
    let mut request = http::Request::get(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

/// A gzipped pprof protobuf, decoded.
fn decode_profile(body: &[u8]) -> pprof::protos::Profile {
    use pprof::protos::Message as _;
    use std::io::Read as _;
    assert_eq!(
        &body[..2],
        [0x1f, 0x8b],
        "gzip, as Go's net/http/pprof answers"
    );
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut raw)
        .unwrap();
    pprof::protos::Profile::decode(&raw[..]).unwrap()
}

fn strings(profile: &pprof::protos::Profile, indexes: impl IntoIterator<Item = i64>) -> Vec<&str> {
    indexes
        .into_iter()
        .map(|index| profile.string_table[index as usize].as_str())
        .collect()
}

/// Spins on a thread of its own until `stop`, so the CPU profile has something to sample.
fn spin_until(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut x = 1u64;
        while !stop.load(Ordering::Relaxed) {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        }
        x
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profiling_endpoints_answer_valid_profiles_and_only_with_the_token() {
    const PPROF_TOKEN: &str = "observability-test-token-0123456789";
    let addr = serve(observability::pprof_endpoints::router(Arc::from(
        PPROF_TOKEN,
    )))
    .await;

    // Without the token, or with another, nothing but a 401.
    for path in ["/debug/pprof/profile?seconds=1", "/debug/pprof/heap"] {
        for token in [None, Some("observability-test-token-0123456788"), Some("")] {
            let (status, body) = pprof_get(addr, path, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {token:?}");
            assert!(
                !body.starts_with(&[0x1f, 0x8b]),
                "no profile without the token"
            );
        }
    }
    let with_token = Some(PPROF_TOKEN);
    for bad in [
        "seconds=0",
        "seconds=61",
        "seconds=ten",
        "seconds=1&format=png",
    ] {
        let (status, _) = pprof_get(addr, &format!("/debug/pprof/profile?{bad}"), with_token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // A CPU profile of a busy process: gzipped pprof with samples of CPU time.
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = spin_until(stop.clone());
    let cpu = pprof_get(addr, "/debug/pprof/profile?seconds=1", with_token);
    let busy = async {
        // A second profile while the first runs is refused, not queued.
        tokio::time::sleep(Duration::from_millis(300)).await;
        pprof_get(addr, "/debug/pprof/profile?seconds=1", with_token).await
    };
    let ((status, body), (second, _)) = tokio::join!(cpu, busy);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second, StatusCode::TOO_MANY_REQUESTS);
    let profile = decode_profile(&body);
    let sample_types = strings(
        &profile,
        profile.sample_type.iter().map(|sample_type| sample_type.ty),
    );
    // As Go's: sample counts and CPU nanoseconds.
    assert_eq!(sample_types, ["samples", "cpu"], "{sample_types:?}");
    let sampled: i64 = profile.sample.iter().map(|sample| sample.value[0]).sum();
    assert!(
        sampled >= 10,
        "about 99 samples a second of a spinning thread, got {sampled}"
    );
    assert!(profile.duration_nanos >= 1_000_000_000);
    // The profiler walks frame pointers: stacks only where the build has them (CI's test
    // build does not; `RUSTFLAGS="-C force-frame-pointers=yes" scripts/test` checks them).
    if option_env!("RUSTFLAGS").is_some_and(|flags| flags.contains("force-frame-pointers=yes")) {
        let names = strings(
            &profile,
            profile.function.iter().map(|function| function.name),
        );
        assert!(
            names.iter().any(|name| name.contains("spin_until")),
            "the spinning thread's frames: {names:?}"
        );
    }

    // The same as a flame graph.
    let (status, svg) = pprof_get(
        addr,
        "/debug/pprof/profile?seconds=1&format=flamegraph",
        with_token,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert_eq!(status, StatusCode::OK);
    let svg = String::from_utf8(svg.to_vec()).unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg:.200}");
    // Idle (nothing spinning): still an SVG, never an empty 200 (inferno writes nothing for
    // an empty profile).
    let (status, svg) = pprof_get(
        addr,
        "/debug/pprof/profile?seconds=1&format=flamegraph",
        with_token,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let svg = String::from_utf8(svg.to_vec()).unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg:.200}");

    // The heap: jemalloc's sampled profile, as pprof. Something this test holds is in it.
    let held: Vec<Vec<u8>> = (0..64).map(|_| vec![7u8; 1 << 20]).collect();
    let (status, body) = pprof_get(addr, "/debug/pprof/heap", with_token).await;
    assert_eq!(status, StatusCode::OK);
    let heap = decode_profile(&body);
    let sample_types = strings(
        &heap,
        heap.sample_type.iter().map(|sample_type| sample_type.ty),
    );
    assert_eq!(sample_types, ["inuse_space"], "{sample_types:?}");
    let bytes: i64 = heap.sample.iter().map(|sample| sample.value[0]).sum();
    assert!(
        bytes >= 32 << 20,
        "64 MiB held, {bytes} bytes in the profile"
    );
    drop(held);
}
