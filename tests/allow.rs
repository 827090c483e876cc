//! The allow-list over real HTTP on loopback: the quick start's app behind `CallbackLayer`
//! with `AllowLayer` on, served with axum's connect info, driven by a WeChat-like client
//! (and raw TCP where the body must never arrive). With feature `client`, the list is
//! refreshed from the loopback stand-in for WeChat's API (`tests/client/standin.rs`).

mod common;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

#[path = "../examples/hyper_server.rs"]
#[allow(dead_code)]
mod hyper_server;

#[cfg(feature = "client")]
#[path = "client/standin.rs"]
mod standin;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use common::log::Log;
use common::{WeChat, text_message};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_wechat::allow::IpSet;
use tower_wechat::{AllowLayer, CallbackHandle, CallbackLayer, Token};

const TOKEN: &str = "allowlist9";

fn set(list: &str) -> IpSet {
    IpSet::parse(list).unwrap()
}

/// The quick start's app behind the stack with `allow`, served on `bind` (port 0) with
/// connect info, as the quick start serves it.
async fn start_on(bind: &str, allow: AllowLayer) -> (WeChat, CallbackHandle) {
    let stack = CallbackLayer::new(Token::new(TOKEN).unwrap()).allow(|_| allow);
    let handle = stack.handle();
    let addr = serve(bind, quickstart::app(stack)).await;
    (WeChat::new(addr, TOKEN), handle)
}

async fn start(allow: AllowLayer) -> (WeChat, CallbackHandle) {
    start_on("127.0.0.1:0", allow).await
}

async fn serve(bind: &str, router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

/// A signed text message with extra headers; status and body of the answer.
async fn deliver_with(wechat: &WeChat, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "http://{}/wechat?{}&openid=oUser1234",
            wechat.addr(),
            wechat.signed_query()
        ))
        .header("content-type", "text/xml");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(text_message("hi", 7))))
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn answered(answer: &(StatusCode, String)) -> bool {
    answer.0 == StatusCode::OK && answer.1.contains("You said: hi")
}

fn refused(answer: &(StatusCode, String)) -> bool {
    answer == &(StatusCode::FORBIDDEN, "address not allowed".to_owned())
}

#[tokio::test]
async fn a_loopback_peer_on_the_list_is_answered_and_off_it_refused() {
    let (wechat, handle) = start(AllowLayer::new(set("101.226.103.0/25, 127.0.0.1"))).await;
    let answer = deliver_with(&wechat, &[]).await;
    assert!(answered(&answer), "{answer:?}");
    // The handshake too: WeChat makes it from the same addresses.
    assert_eq!(wechat.handshake("1234").await.body, "1234");

    let (wechat, handle_off) = start(AllowLayer::new(set("101.226.103.0/25"))).await;
    let answer = deliver_with(&wechat, &[]).await;
    assert!(refused(&answer), "{answer:?}");
    assert_eq!(wechat.handshake("1234").await.status, StatusCode::FORBIDDEN);
    assert_eq!(handle.allow().stats().refused, 0);
    assert_eq!(handle_off.allow().stats().refused, 2);
    // Refused before Verify: the timing statistics saw no parsed message.
    assert_eq!(handle_off.dedup().stats().processed, 0);
}

/// Sends a signed POST's head with `Content-Length: 1000` and no body; what comes back
/// within `wait`.
async fn head_without_body(wechat: &WeChat, wait: Duration) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(wechat.addr()).await.unwrap();
    let head = format!(
        "POST /wechat?{}&openid=oUser1234 HTTP/1.1\r\nHost: wechat\r\n\
         Content-Type: text/xml\r\nContent-Length: 1000\r\n\r\n",
        wechat.signed_query()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = vec![0; 4096];
    let read = tokio::time::timeout(wait, stream.read(&mut buffer)).await;
    let text = match read {
        Ok(Ok(n)) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
        Ok(Err(error)) => panic!("read failed: {error}"),
        Err(_) => String::new(),
    };
    (stream, text)
}

#[tokio::test]
async fn an_address_off_the_list_gets_403_before_its_body_arrives() {
    let (wechat, _handle) = start(AllowLayer::new(set("192.0.2.1"))).await;
    let (_stream, answer) = head_without_body(&wechat, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden"), "{answer}");
    assert!(answer.ends_with("address not allowed"), "{answer}");

    // Control: allowed, the same request waits for its body (VerifyLayer reads it), and is
    // answered once it comes.
    let (wechat, _handle) = start(AllowLayer::new(set("127.0.0.1"))).await;
    let (mut stream, answer) = head_without_body(&wechat, Duration::from_millis(300)).await;
    assert_eq!(answer, "", "nothing before the body");
    let body = format!("{:<1000}", text_message("hi", 8));
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut buffer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test]
async fn a_forged_forwarded_header_from_an_untrusted_peer_changes_nothing() {
    let forged = [
        ("x-forwarded-for", "101.226.103.9"),
        ("x-real-ip", "101.226.103.9"),
    ];
    // No trusted proxy at all.
    let (wechat, _) = start(AllowLayer::new(set("101.226.103.0/25"))).await;
    assert!(refused(&deliver_with(&wechat, &forged).await));
    // Trusted proxies elsewhere: loopback is not one of them.
    let (wechat, _) =
        start(AllowLayer::new(set("101.226.103.0/25")).trusted_proxies(set("10.0.0.0/8"))).await;
    assert!(refused(&deliver_with(&wechat, &forged).await));
    // And an allowed peer is not refused for what it forwards.
    let (wechat, _) = start(AllowLayer::new(set("127.0.0.1"))).await;
    let answer = deliver_with(&wechat, &[("x-forwarded-for", "198.51.100.1")]).await;
    assert!(answered(&answer), "{answer:?}");
}

#[tokio::test]
async fn through_a_trusted_proxy_the_forwarded_address_decides() {
    let log = Log::default();
    let _guard = log.install("warn");
    // Loopback is the proxy (an nginx on this machine); WeChat's range is allowed.
    let (wechat, handle) =
        start(AllowLayer::new(set("101.226.103.0/25")).trusted_proxies(IpSet::loopback())).await;
    // nginx: X-Forwarded-For $proxy_add_x_forwarded_for.
    let answer = deliver_with(&wechat, &[("x-forwarded-for", "101.226.103.9")]).await;
    assert!(answered(&answer), "{answer:?}");
    let answer = deliver_with(&wechat, &[("x-forwarded-for", "198.51.100.1")]).await;
    assert!(refused(&answer), "{answer:?}");
    // A client that sends its own header gets it prepended to: its real address decides.
    let answer = deliver_with(
        &wechat,
        &[("x-forwarded-for", "101.226.103.9, 198.51.100.1")],
    )
    .await;
    assert!(refused(&answer), "{answer:?}");
    // The proxy itself, without the header, is not on the list.
    assert!(refused(&deliver_with(&wechat, &[]).await));
    assert_eq!(handle.allow().stats().refused, 3);
    // One line for the three refusals (within the 10 s interval), naming the address and
    // the proxy it came through.
    let lines: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|line| line.contains("tower_wechat::allow"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("address=198.51.100.1 via=127.0.0.1 refused=1"),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn ipv6_loopback_peers_are_checked_too() {
    // This machine (and CI's, the same kind) has ::1; without it this test cannot run.
    let (wechat, handle) = start_on("[::1]:0", AllowLayer::new(set("::1, 192.0.2.1"))).await;
    let answer = deliver_with(&wechat, &[]).await;
    assert!(answered(&answer), "{answer:?}");
    let (wechat, _) = start_on("[::1]:0", AllowLayer::new(set("127.0.0.1, 2001:db8::/32"))).await;
    assert!(refused(&deliver_with(&wechat, &[]).await));
    // An IPv6 proxy forwarding for an IPv6 client.
    let (wechat, _) = start_on(
        "[::1]:0",
        AllowLayer::new(set("2001:db8::/32")).trusted_proxies(set("::1")),
    )
    .await;
    let answer = deliver_with(&wechat, &[("x-forwarded-for", "2001:db8::77")]).await;
    assert!(answered(&answer), "{answer:?}");
    let answer = deliver_with(&wechat, &[("x-forwarded-for", "2001:db9::77")]).await;
    assert!(refused(&answer), "{answer:?}");
    assert_eq!(handle.allow().stats().refused, 0);
}

#[tokio::test]
async fn without_connect_info_every_request_is_refused_and_the_fix_is_named() {
    let log = Log::default();
    let _guard = log.install("warn");
    let stack =
        CallbackLayer::new(Token::new(TOKEN).unwrap()).allow(|_| AllowLayer::new(set("127.0.0.1")));
    let handle = stack.handle();
    // Served without connect info: the layer cannot know who is calling.
    let wechat = WeChat::new(common::serve(quickstart::app(stack)).await, TOKEN);
    for _ in 0..2 {
        let answer = deliver_with(&wechat, &[]).await;
        assert_eq!(
            answer,
            (StatusCode::FORBIDDEN, "client address unknown".to_owned())
        );
    }
    assert_eq!(handle.allow().stats().refused_no_address, 2);
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("into_make_service_with_connect_info"));
}

#[tokio::test]
async fn the_hyper_example_records_the_peer_for_the_allow_list() {
    for (list, allowed) in [("127.0.0.1", true), ("192.0.2.1", false)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stack =
            CallbackLayer::new(Token::new(TOKEN).unwrap()).allow(|_| AllowLayer::new(set(list)));
        let handle = stack.handle();
        tokio::spawn(hyper_server::serve(listener, stack, std::future::pending()));
        let wechat = WeChat::new(addr, TOKEN);
        let answer = deliver_with(&wechat, &[]).await;
        assert_eq!(answered(&answer), allowed, "{list}: {answer:?}");
        assert_eq!(refused(&answer), !allowed, "{list}: {answer:?}");
        assert_eq!(handle.allow().stats().refused_no_address, 0);
    }
}

#[test]
fn the_quick_start_reads_its_variables_and_names_bad_entries() {
    assert!(quickstart::allow_from(None, None).unwrap().is_none());
    assert!(quickstart::allow_from(Some("  "), None).unwrap().is_none());
    let layer = quickstart::allow_from(Some("101.226.103.0/25,127.0.0.1"), Some("127.0.0.1/32"))
        .unwrap()
        .unwrap();
    assert_eq!(layer.handle().stats().entries, 2);
    let error = quickstart::allow_from(Some("101.226.103.0/25, 10.0.0.300"), None)
        .err()
        .unwrap();
    assert_eq!(
        error,
        "WECHAT_ALLOWED_IPS: \"10.0.0.300\" is not an IP address or CIDR range: not an IPv4 or IPv6 address"
    );
    let error = quickstart::allow_from(Some("127.0.0.1"), Some("10.0.0.0/33"))
        .err()
        .unwrap();
    assert!(
        error.starts_with("WECHAT_TRUSTED_PROXIES: \"10.0.0.0/33\""),
        "{error}"
    );
    let error = quickstart::allow_from(None, Some("10.0.0.0/8"))
        .err()
        .unwrap();
    assert!(error.contains("WECHAT_ALLOWED_IPS is not"), "{error}");
    let error = quickstart::allow_from(Some(",,"), None).err().unwrap();
    assert!(error.contains("lists no address"), "{error}");
}

#[cfg(feature = "client")]
mod refresh {
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::routing::get;
    use tower_wechat::AllowLayer;
    use tower_wechat::allow::{CallbackIps, IpSet};
    use tower_wechat::client::{AppSecret, ClientError, RetryPolicy, WeChatClient};

    use super::standin::{APPID, Act, SECRET, StandIn};
    use super::{answered, deliver_with, refused, serve, set, start};

    fn source(base: &str) -> CallbackIps {
        let client = WeChatClient::builder(APPID, AppSecret::new(SECRET))
            .base_url(base)
            .timeout(Duration::from_secs(2))
            .retry(
                RetryPolicy::new()
                    .base_delay(Duration::from_millis(5))
                    .max_delay(Duration::from_millis(20)),
            )
            .build()
            .unwrap();
        CallbackIps::new(client)
    }

    /// What the stand-in's `getcallbackip` answers: loopback.
    fn standin_list() -> IpSet {
        set("127.0.0.1")
    }

    #[tokio::test]
    async fn a_refresh_replaces_the_list_and_a_failing_one_keeps_it() {
        let standin = StandIn::start().await;
        let source = source(&standin.base_url());
        let (wechat, handle) = start(AllowLayer::new(set("192.0.2.1"))).await;
        let allow = handle.allow();
        assert!(refused(&deliver_with(&wechat, &[]).await));

        // WeChat's list (loopback, in the stand-in) replaces the static one.
        assert_eq!(allow.refresh(&source).await.unwrap(), 1);
        assert_eq!(*allow.list(), standin_list());
        let answer = deliver_with(&wechat, &[]).await;
        assert!(answered(&answer), "{answer:?}");
        let stats = allow.stats();
        assert_eq!(
            (stats.entries, stats.refreshes, stats.refresh_failures),
            (1, 1, 0)
        );

        // WeChat refuses (quota reached): the last good list stays, its age grows.
        standin.api_plan(|_| Act::Errcode(45009));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let error = allow.refresh(&source).await.unwrap_err();
        assert_eq!(error.errcode(), Some(45009), "{error}");
        // Then unreachable altogether (HTTP 502, retried, then given up).
        standin.api_plan(|_| Act::Status(502));
        assert!(allow.refresh(&source).await.is_err());
        let stats = allow.stats();
        assert_eq!(
            (stats.entries, stats.refreshes, stats.refresh_failures),
            (1, 1, 2)
        );
        assert!(stats.age >= Duration::from_millis(20), "{stats:?}");
        let answer = deliver_with(&wechat, &[]).await;
        assert!(answered(&answer), "{answer:?}");
    }

    #[tokio::test]
    async fn the_refresher_task_keeps_the_list_fresh_and_survives_failures() {
        let standin = StandIn::start().await;
        let source = source(&standin.base_url());
        let (wechat, handle) = start(AllowLayer::new(set("192.0.2.1"))).await;
        let allow = handle.allow();
        let task = allow.spawn_refresh(source, Duration::from_millis(100));
        wait_until(|| allow.stats().refreshes >= 1).await;
        assert!(answered(&deliver_with(&wechat, &[]).await));
        assert_eq!(*allow.list(), standin_list());

        standin.api_plan(|_| Act::Busy);
        let failures = allow.stats().refresh_failures;
        wait_until(|| allow.stats().refresh_failures >= failures + 2).await;
        assert_eq!(*allow.list(), standin_list());
        assert!(answered(&deliver_with(&wechat, &[]).await));

        // Stopped: no more requests reach the stand-in.
        task.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let requests = standin.api_requests();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(standin.api_requests(), requests);
    }

    /// Waits (at most 10 s) until `done`.
    async fn wait_until(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A WeChat-like API whose `getcallbackip` answers `list`.
    async fn api_answering(list: serde_json::Value) -> String {
        let router = Router::new()
            .route(
                "/cgi-bin/token",
                get(|| async { r#"{"access_token":"T0123456789","expires_in":7200}"# }),
            )
            .route(
                "/cgi-bin/getcallbackip",
                get(move || {
                    let list = list.clone();
                    async move { list.to_string() }
                }),
            );
        format!("http://{}", serve("127.0.0.1:0", router).await)
    }

    #[tokio::test]
    async fn an_answer_with_a_bad_entry_is_a_failed_refresh_naming_it() {
        let cases = [
            (
                serde_json::json!({"ip_list": ["101.226.103.0/25", "101.226.62.*"]}),
                "getcallbackip: \"101.226.62.*\" is not an IP address or CIDR range",
            ),
            (
                serde_json::json!({"ip_list": []}),
                "getcallbackip: the list is empty",
            ),
            (
                serde_json::json!({"ip_list": vec!["10.0.0.1"; 4097]}),
                "getcallbackip: 4097 entries, more than the limit of 4096",
            ),
            (serde_json::json!({"ips": ["10.0.0.1"]}), "JSON answer"),
        ];
        for (answer, expected) in cases {
            let base = api_answering(answer).await;
            let layer = AllowLayer::new(set("127.0.0.1"));
            let allow = layer.handle();
            let error = allow.refresh(&source(&base)).await.unwrap_err();
            assert!(
                matches!(error, ClientError::InvalidResponse(_)),
                "{error:?}"
            );
            assert!(error.to_string().contains(expected), "{error} / {expected}");
            assert_eq!(*allow.list(), set("127.0.0.1"));
            assert_eq!(allow.stats().refresh_failures, 1);
        }
    }
}
