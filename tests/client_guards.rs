//! The client's guards against a slow token, a path that leads elsewhere, a token source
//! that answers nonsense or panics: in process, over a `service_fn` standing in for the
//! HTTP client.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, join_all};
use http::{Request, Response};
use http_body_util::Full;
use tower::service_fn;
use tower_wechat::client::{
    ApiToken, AppSecret, ClientError, CustomMessage, IssuedToken, TokenRequest, TokenSource,
    WeChatClient,
};

const OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;
const BASE: &str = "https://api.weixin.qq.com";

/// A token source that waits `delay`, then hands out `expires_in`, or panics when told to.
struct Source {
    delay: Duration,
    expires_in: Duration,
    panic: bool,
}

impl Source {
    fn slow(delay: Duration) -> Self {
        Self {
            delay,
            expires_in: Duration::from_secs(7200),
            panic: false,
        }
    }
}

impl TokenSource for Source {
    fn fetch<'a>(&'a self, _: &'a TokenRequest) -> BoxFuture<'a, Result<IssuedToken, ClientError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            assert!(!self.panic, "a token source that panics");
            Ok(IssuedToken {
                token: ApiToken::new("TOKEN_VALUE_1"),
                expires_in: self.expires_in,
            })
        })
    }
}

/// An HTTP client that records each request's URI and answers `answer`.
#[allow(clippy::type_complexity)]
fn recording(
    answer: &'static str,
) -> (
    Arc<Mutex<Vec<String>>>,
    impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let http = service_fn(move |request: Request<Full<Bytes>>| {
        log.lock().unwrap().push(request.uri().to_string());
        let body = if request.uri().path().contains("token") {
            r#"{"access_token":"SECRET_TOKEN","expires_in":7200}"#
        } else {
            answer
        };
        async move { Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(body))) }
    });
    (seen, http)
}

#[tokio::test(start_paused = true)]
async fn a_slow_token_is_a_token_error_not_an_ambiguous_timeout() {
    let sends = Arc::new(AtomicUsize::new(0));
    let counter = sends.clone();
    let http = service_fn(move |_: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(OK))) }
    });
    let client = WeChatClient::builder("wx1", AppSecret::new("s"))
        .base_url(BASE)
        .timeout(Duration::from_secs(5))
        .token_source(Source::slow(Duration::from_secs(6)))
        .build_with(http)
        .unwrap();
    let error = client
        .send_custom_message(&CustomMessage::text("oUser", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Token(inner)
            if matches!(**inner, ClientError::Timeout(after) if after == Duration::from_secs(5))),
        "{error:?}"
    );
    assert!(error.not_sent(), "nothing was sent: {error:?}");
    assert_eq!(sends.load(Ordering::SeqCst), 0);
    // Neither a retry nor a breaker failure: WeChat's API was not asked.
    assert_eq!(client.retry_stats().retries, 0);
    assert_eq!(client.breaker_stats().failures, 0);
    // The fetch went on; the next call gets its token and is sent once.
    client
        .send_custom_message(&CustomMessage::text("oUser", "again"))
        .await
        .unwrap();
    assert_eq!(sends.load(Ordering::SeqCst), 1);
    assert_eq!(client.token_fetches(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_per_attempt_timeout_still_times_the_exchange() {
    let http = service_fn(|_: Request<Full<Bytes>>| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(OK)))
    });
    let client = WeChatClient::builder("wx1", AppSecret::new("s"))
        .base_url(BASE)
        .timeout(Duration::from_secs(5))
        .token_wait(Duration::from_secs(60))
        .token_source(Source::slow(Duration::from_secs(30)))
        .build_with(http)
        .unwrap();
    // 30 s for the token are within the token wait; the exchange then times out.
    let error = client
        .send_custom_message(&CustomMessage::text("oUser", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::Timeout(after) if after == Duration::from_secs(5)),
        "{error:?}"
    );
    assert!(!error.not_sent());
}

#[tokio::test]
async fn a_path_cannot_send_the_token_to_another_host() {
    let (seen, http) = recording(OK);
    let client = WeChatClient::builder("wx1", AppSecret::new("s"))
        .base_url(BASE)
        .build_with(http)
        .unwrap();
    for path in [
        "@evil.example/x",
        ".evil.example/x",
        ":4444/x",
        "evil.example/x",
        "//evil.example/x",
        "/\\evil.example/x",
    ] {
        let result = client.post_json::<serde_json::Value>(path, &1, false).await;
        assert!(
            matches!(&result, Err(error @ ClientError::InvalidInput(_)) if error.not_sent()),
            "{path:?} -> {result:?}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );

    // `call` and `service()` put the token only on requests to the base URL's origin.
    for uri in [
        "https://evil.example/cgi-bin/x",
        "http://api.weixin.qq.com/cgi-bin/x",
        "https://api.weixin.qq.com:4444/cgi-bin/x",
        "https://user@api.weixin.qq.com/cgi-bin/x",
        "/cgi-bin/x",
    ] {
        let request = Request::post(uri).body(Full::default()).unwrap();
        let result = client.call(request).await;
        assert!(
            matches!(&result, Err(error @ ClientError::InvalidInput(_)) if error.not_sent()),
            "{uri} -> {result:?}"
        );
        let request = Request::post(uri).body(Full::default()).unwrap();
        let result = tower::ServiceExt::oneshot(client.service(), request).await;
        assert!(
            matches!(&result, Err(ClientError::InvalidInput(_))),
            "{uri}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(client.token_fetches(), 0);

    // The base URL's own origin works, in any case and with its default port spelled out.
    for uri in [
        "https://api.weixin.qq.com/cgi-bin/x",
        "https://API.weixin.qq.com:443/cgi-bin/x",
    ] {
        let request = Request::post(uri).body(Full::default()).unwrap();
        client.call(request).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}"); // the token, then both calls
    assert!(seen[1].contains("access_token=SECRET_TOKEN"), "{seen:?}");
    assert!(
        seen.iter()
            .all(|uri| uri.to_ascii_lowercase().starts_with(BASE)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_huge_expires_in_is_capped_and_fetched_once() {
    let http = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(
            r#"{"access_token":"T","expires_in":18446744073709551615}"#,
        )))
    });
    let client = WeChatClient::builder("wx1", AppSecret::new("s"))
        .base_url("http://127.0.0.1:1")
        .build_with(http)
        .unwrap();
    for _ in 0..3 {
        assert_eq!(client.access_token().await.unwrap().expose(), "T");
    }
    assert_eq!(client.token_fetches(), 1);

    // The same from a source of one's own, which the parser does not see.
    let client = WeChatClient::builder("wx1", AppSecret::new("s"))
        .base_url("http://127.0.0.1:1")
        .token_source(Source {
            delay: Duration::ZERO,
            expires_in: Duration::MAX,
            panic: false,
        })
        .build_with(recording(OK).1)
        .unwrap();
    for _ in 0..3 {
        client.access_token().await.unwrap();
    }
    assert_eq!(client.token_fetches(), 1);

    // A token valid for no time at all is an error, not a token to use.
    let client = WeChatClient::builder("wx1", AppSecret::new("s"))
        .base_url("http://127.0.0.1:1")
        .token_source(Source {
            delay: Duration::ZERO,
            expires_in: Duration::ZERO,
            panic: false,
        })
        .build_with(recording(OK).1)
        .unwrap();
    let error = client.access_token().await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Token(inner) if matches!(**inner, ClientError::InvalidResponse(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_callers_waiting_for_a_fetch_that_panicked_share_its_error() {
    let client = WeChatClient::builder("wx1", AppSecret::new("s"))
        .base_url("http://127.0.0.1:1")
        .token_source(Source {
            delay: Duration::from_millis(100),
            expires_in: Duration::from_secs(7200),
            panic: true,
        })
        .build_with(recording(OK).1)
        .unwrap();
    let waiters = (0..8).map(|_| {
        let client = client.clone();
        async move { client.access_token().await }
    });
    for result in join_all(waiters).await {
        let error = result.unwrap_err();
        assert!(
            matches!(&error, ClientError::Token(_)) && error.not_sent(),
            "{error:?}"
        );
    }
    assert_eq!(client.token_fetches(), 1);
}
