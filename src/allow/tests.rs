//! Unit tests: the layer's decisions (peer, forwarded header, trusted proxies, IPv6), its
//! responses, counters and summarized log lines, driven with `oneshot` and `service_fn`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use super::*;
use crate::TimingLayer;
use crate::hook::Summarized;

/// An fmt subscriber's output, kept in memory.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Log {
    fn install(&self, filter: &str) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The layer around a handler that counts its calls and answers "handled".
fn service(
    layer: &AllowLayer,
    calls: &Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<ResponseBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    let calls = calls.clone();
    layer.layer(service_fn(move |_: Request<Full<Bytes>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::from("handled"))) }
    }))
}

/// A request from `peer` (as hyper users record it), with `headers`.
fn from(peer: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::post("/wechat").body(Full::default()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(peer);
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

/// Status and body of `request` through `layer`, and whether the handler ran.
async fn send(layer: &AllowLayer, request: Request<Full<Bytes>>) -> (StatusCode, String, bool) {
    let calls = Arc::new(AtomicUsize::new(0));
    let response = service(layer, &calls).oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8(body.to_vec()).unwrap(),
        calls.load(Ordering::SeqCst) == 1,
    )
}

fn set(list: &str) -> IpSet {
    IpSet::parse(list).unwrap()
}

type Outcome = (StatusCode, String, bool);

fn passed() -> Outcome {
    (StatusCode::OK, "handled".into(), true)
}

fn refused() -> Outcome {
    refused_as("address not allowed")
}

fn refused_as(body: &str) -> Outcome {
    (StatusCode::FORBIDDEN, body.into(), false)
}

async fn check(layer: &AllowLayer, request: Request<Full<Bytes>>) -> Outcome {
    send(layer, request).await
}

#[tokio::test]
async fn the_peer_address_decides_without_proxies() {
    let layer = AllowLayer::new(set("127.0.0.1, 101.226.103.0/25"));
    assert_eq!(check(&layer, from("127.0.0.1:5000", &[])).await, passed());
    assert_eq!(
        check(&layer, from("101.226.103.7:5000", &[])).await,
        passed()
    );
    assert_eq!(check(&layer, from("127.0.0.2:5000", &[])).await, refused());
    assert_eq!(
        check(&layer, from("101.226.103.128:5000", &[])).await,
        refused()
    );
    let stats = layer.handle().stats();
    assert_eq!((stats.enabled, stats.entries, stats.refused), (true, 2, 2));
}

#[tokio::test]
async fn a_refusal_is_marked_summarized_and_plain_text() {
    let layer = AllowLayer::new(set("192.0.2.1"));
    let calls = Arc::new(AtomicUsize::new(0));
    let response = service(&layer, &calls)
        .oneshot(from("127.0.0.1:1", &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.extensions().get::<Summarized>().is_some());
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_connect_info_is_read() {
    let layer = AllowLayer::new(set("203.0.113.5"));
    let mut request = Request::post("/wechat").body(Full::default()).unwrap();
    let peer: SocketAddr = "203.0.113.5:443".parse().unwrap();
    request
        .extensions_mut()
        .insert(::axum::extract::ConnectInfo(peer));
    assert_eq!(check(&layer, request).await, passed());
    let mut request = Request::post("/wechat").body(Full::default()).unwrap();
    let peer: SocketAddr = "203.0.113.6:443".parse().unwrap();
    request
        .extensions_mut()
        .insert(::axum::extract::ConnectInfo(peer));
    assert_eq!(check(&layer, request).await, refused());
}

#[tokio::test]
async fn no_address_is_refused_with_one_warning_naming_the_fix() {
    let log = Log::default();
    let _guard = log.install("warn");
    let layer = AllowLayer::new(set("127.0.0.1"));
    for _ in 0..3 {
        let request = Request::post("/wechat").body(Full::default()).unwrap();
        assert_eq!(
            check(&layer, request).await,
            refused_as("client address unknown")
        );
    }
    assert_eq!(layer.handle().stats().refused_no_address, 3);
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn off_passes_everything_and_looks_at_nothing() {
    let log = Log::default();
    let _guard = log.install("trace");
    let layer = AllowLayer::off();
    let request = Request::post("/wechat").body(Full::default()).unwrap();
    assert_eq!(check(&layer, request).await, passed());
    assert_eq!(check(&layer, from("198.51.100.1:1", &[])).await, passed());
    let stats = layer.handle().stats();
    assert!(!stats.enabled);
    assert_eq!(stats.refused + stats.refused_no_address, 0);
    assert!(log.lines().is_empty(), "{:#?}", log.lines());
}

#[tokio::test]
async fn a_forwarded_header_from_an_untrusted_peer_is_ignored() {
    // No trusted proxies: the header is the client's word.
    let layer = AllowLayer::new(set("101.226.103.0/25"));
    let forged = [
        ("x-forwarded-for", "101.226.103.9"),
        ("x-real-ip", "101.226.103.9"),
    ];
    assert_eq!(
        check(&layer, from("198.51.100.1:1", &forged)).await,
        refused()
    );
    // Trusted proxies, but this peer is not one of them.
    let layer = layer.trusted_proxies(set("10.0.0.0/8"));
    assert_eq!(
        check(&layer, from("198.51.100.1:1", &forged)).await,
        refused()
    );
    // An allowed peer stays allowed whatever it forwards.
    let layer = AllowLayer::new(set("101.226.103.0/25")).trusted_proxies(set("10.0.0.0/8"));
    let unlisted = [("x-forwarded-for", "198.51.100.1")];
    assert_eq!(
        check(&layer, from("101.226.103.9:1", &unlisted)).await,
        passed()
    );
}

#[tokio::test]
async fn through_a_trusted_proxy_the_forwarded_address_decides() {
    let layer = AllowLayer::new(set("101.226.103.0/25")).trusted_proxies(IpSet::loopback());
    let nginx = |xff: &str| from("127.0.0.1:40000", &[("x-forwarded-for", xff)]);
    assert_eq!(check(&layer, nginx("101.226.103.9")).await, passed());
    assert_eq!(check(&layer, nginx("198.51.100.1")).await, refused());
    // The client prepended a listed address: the right-most untrusted hop decides.
    assert_eq!(
        check(&layer, nginx("101.226.103.9, 198.51.100.1")).await,
        refused()
    );
    // A load balancer (trusted) and nginx: both trusted hops are skipped.
    let layer = layer.trusted_proxies(set("127.0.0.0/8, 10.0.0.0/8"));
    let lb = |xff: &str| from("127.0.0.1:40000", &[("x-forwarded-for", xff)]);
    assert_eq!(
        check(&layer, lb("6.6.6.6, 101.226.103.9, 10.1.2.3")).await,
        passed()
    );
    // The proxy itself (no header) is not on the list.
    assert_eq!(check(&layer, from("127.0.0.1:1", &[])).await, refused());
}

#[tokio::test]
async fn an_unreadable_forwarded_address_is_refused() {
    let log = Log::default();
    let _guard = log.install("warn");
    let layer = AllowLayer::new(set("101.226.103.0/25")).trusted_proxies(IpSet::loopback());
    let request = from("127.0.0.1:1", &[("x-forwarded-for", "unknown")]);
    assert_eq!(
        check(&layer, request).await,
        refused_as("forwarded address unreadable")
    );
    let hops = vec!["127.0.0.1"; 17].join(",");
    let request = from("127.0.0.1:1", &[("x-forwarded-for", &hops)]);
    assert_eq!(
        check(&layer, request).await.1,
        "forwarded address unreadable"
    );
    assert_eq!(layer.handle().stats().refused_unreadable, 2);
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "one line per interval: {lines:#?}");
    assert!(
        lines[0].contains("why=\"a hop is not an IP address\""),
        "{lines:#?}"
    );
    assert!(
        !lines[0].contains("unknown"),
        "the header is not echoed: {lines:#?}"
    );
}

#[tokio::test]
async fn x_real_ip_can_be_the_forwarded_header() {
    let layer = AllowLayer::new(set("101.226.103.0/25"))
        .trusted_proxies(IpSet::loopback())
        .forwarded_header(HeaderName::from_static("x-real-ip"));
    let request = from(
        "127.0.0.1:1",
        &[
            ("x-real-ip", "101.226.103.9"),
            ("x-forwarded-for", "198.51.100.1"),
        ],
    );
    assert_eq!(check(&layer, request).await, passed());
    let request = from(
        "127.0.0.1:1",
        &[
            ("x-real-ip", "198.51.100.1"),
            ("x-forwarded-for", "101.226.103.9"),
        ],
    );
    assert_eq!(check(&layer, request).await, refused());
}

#[tokio::test]
async fn ipv6_peers_and_ipv4_mapped_peers() {
    let layer = AllowLayer::new(set("::1, 2001:db8::/32, 127.0.0.1"));
    assert_eq!(check(&layer, from("[::1]:1", &[])).await, passed());
    assert_eq!(check(&layer, from("[2001:db8::7]:1", &[])).await, passed());
    assert_eq!(check(&layer, from("[2001:db9::7]:1", &[])).await, refused());
    // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
    assert_eq!(
        check(&layer, from("[::ffff:127.0.0.1]:1", &[])).await,
        passed()
    );
    assert_eq!(
        check(&layer, from("[::ffff:127.0.0.2]:1", &[])).await,
        refused()
    );
    // An IPv6 proxy forwarding an IPv6 client with brackets and a port.
    let layer = layer.trusted_proxies(set("::1"));
    let request = from("[::1]:1", &[("x-forwarded-for", "[2001:db8::9]:443")]);
    assert_eq!(check(&layer, request).await, passed());
    let request = from("[::1]:1", &[("x-forwarded-for", "2001:db9::9")]);
    assert_eq!(check(&layer, request).await, refused());
}

#[tokio::test]
async fn replacing_the_list_changes_the_decision_and_resets_the_age() {
    let layer = AllowLayer::new(set("192.0.2.1"));
    let handle = layer.handle();
    assert_eq!(check(&layer, from("127.0.0.1:1", &[])).await, refused());
    std::thread::sleep(Duration::from_millis(30));
    assert!(handle.stats().age >= Duration::from_millis(30));
    assert!(handle.replace(set("127.0.0.1")));
    assert!(handle.stats().age < Duration::from_millis(30));
    assert!(!handle.replace(set("127.0.0.1/32")), "the same list");
    assert_eq!(check(&layer, from("127.0.0.1:1", &[])).await, passed());
    // An empty list refuses everything.
    handle.replace(IpSet::new());
    assert_eq!(check(&layer, from("127.0.0.1:1", &[])).await, refused());
    assert_eq!(handle.stats().entries, 0);
}

#[tokio::test]
async fn a_flood_is_logged_once_per_interval_with_its_count() {
    let log = Log::default();
    let _guard = log.install("warn");
    let layer = AllowLayer::new(set("192.0.2.1")).log_interval(Duration::from_millis(300));
    for n in 0..500 {
        let peer = format!("198.51.100.{}:1", n % 200);
        assert_eq!(check(&layer, from(&peer, &[])).await, refused());
    }
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("address=198.51.100.0"), "{lines:#?}");
    assert!(lines[0].contains("refused=1 "), "{lines:#?}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(check(&layer, from("198.51.100.77:1", &[])).await, refused());
    let lines = log.lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    // The 499 refusals unlogged after the first line, and this one.
    assert!(lines[1].contains("refused=500 "), "{lines:#?}");
    assert!(lines[1].contains("address=198.51.100.77"), "{lines:#?}");
    assert_eq!(layer.handle().stats().refused, 501);
}

#[tokio::test]
async fn timing_logs_a_refused_callback_at_debug_not_info() {
    let log = Log::default();
    let _guard = log.install("info");
    let service = ServiceBuilder::new()
        .layer(TimingLayer::new())
        .layer(AllowLayer::new(set("192.0.2.1")).log_interval(Duration::from_secs(3600)))
        .service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("handled")))
        });
    for _ in 0..20 {
        let response = service
            .clone()
            .oneshot(from("198.51.100.1:1", &[]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "only the allow-list's own line: {lines:#?}");
    assert!(lines[0].contains("tower_wechat::allow"), "{lines:#?}");
}

#[tokio::test]
async fn inside_verify_it_warns_once_naming_the_fix() {
    let log = Log::default();
    let _guard = log.install("warn");
    let layer = AllowLayer::new(set("127.0.0.1"));
    for _ in 0..2 {
        let mut request = from("127.0.0.1:1", &[]);
        let message = crate::Message::parse(
            b"<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>\
              <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>",
        )
        .unwrap();
        request.extensions_mut().insert(message);
        assert_eq!(check(&layer, request).await, passed());
    }
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("put AllowLayer outside VerifyLayer"),
        "{lines:#?}"
    );
}

#[test]
fn debug_output_names_settings_not_the_whole_list() {
    let layer = AllowLayer::new(set("10.0.0.0/8, 192.0.2.1")).trusted_proxies(IpSet::loopback());
    let text = format!("{layer:?}");
    assert!(text.contains("entries: 2"), "{text}");
    assert!(text.contains("127.0.0.0/8"), "{text}");
    let handle = format!("{:?}", layer.handle());
    assert!(handle.contains("entries: 2"), "{handle}");
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_report_the_list_and_the_refusals() {
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tower::Service;

    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    ::metrics::with_local_recorder(&recorder, || {
        let layer = AllowLayer::new(set("192.0.2.1, 192.0.2.2"));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = service(&layer, &calls);
        // The check runs in `call`, before the future is polled.
        drop(service.call(from("198.51.100.1:1", &[])));
        drop(service.call(Request::new(Full::default())));
        layer
            .handle()
            .replace(set("192.0.2.1, 192.0.2.2, 192.0.2.3"));
    });
    let text = handle.render();
    assert!(text.contains("wechat_allow_list_entries 3"), "{text}");
    assert!(
        text.contains("wechat_allow_refused_total{reason=\"unlisted\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("wechat_allow_refused_total{reason=\"no_address\"} 1"),
        "{text}"
    );
    let updated = text
        .lines()
        .find_map(|line| line.strip_prefix("wechat_allow_list_updated_seconds "))
        .and_then(|value| value.parse::<f64>().ok())
        .expect("the updated gauge");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - updated).abs() < 60.0, "{updated} vs {now}");
}
