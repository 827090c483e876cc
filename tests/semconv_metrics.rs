//! OpenTelemetry's HTTP semantic-convention metrics, when asked for: the callback side
//! (`TimingLayer::semconv_metrics`, over real HTTP through axum) and the client side
//! (`WeChatClientBuilder::semconv_metrics`, one sample per HTTP attempt against the
//! stand-in), rendered by the Prometheus exporter beside the crate's own names. One test in
//! its own binary: the recorder is global.

#[path = "client/prometheus.rs"]
mod prometheus;
#[path = "client/standin.rs"]
mod standin;

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use metrics_exporter_prometheus::PrometheusBuilder;
use prometheus::sample;
use standin::{APPID, Act, SECRET, StandIn};
use tower_wechat::TimingLayer;
use tower_wechat::client::{AppSecret, CustomMessage, RetryPolicy, WeChatClient};

#[tokio::test]
async fn semconv_names_are_recorded_only_when_asked_for() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    tower_wechat::timing::metrics::describe();

    // Inbound: two servers, one with the semconv names and one without.
    let mut addresses = Vec::new();
    for semconv in [true, false] {
        let app = Router::new()
            .route("/wechat", post(|| async { "success" }))
            .layer(TimingLayer::new().semconv_metrics(semconv));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addresses.push(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    let http = reqwest_like::Client::new();
    for address in &addresses {
        for _ in 0..3 {
            let status = http.post(&format!("http://{address}/wechat")).await;
            assert_eq!(status, 200);
        }
        let status = http.get(&format!("http://{address}/wechat")).await;
        assert_eq!(status, 405);
    }

    // Outbound: the first attempt gets a 503 and is retried.
    let standin = StandIn::start().await;
    standin.message_plan(|_, _, attempt| match attempt {
        1 => Act::Status(503),
        _ => Act::Normal,
    });
    let client = WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(standin.base_url())
        .retry(RetryPolicy::new().base_delay(Duration::from_millis(5)))
        .semconv_metrics(true)
        .build()
        .unwrap();
    client
        .send_custom_message(&CustomMessage::text("oUser1234", "hi"))
        .await
        .unwrap();

    let text = handle.render();
    let server = |method: &str, status: &str| {
        sample(
            &text,
            "http_server_request_duration_count",
            &[
                ("http_request_method", method),
                ("http_response_status_code", status),
            ],
        )
    };
    // Only the server asked for them records them: 3 POSTs and one refused GET.
    assert_eq!(server("POST", "200"), Some(3.0), "{text}");
    assert_eq!(server("GET", "405"), Some(1.0), "{text}");
    // The crate's own names are recorded by both.
    assert_eq!(
        sample(
            &text,
            "wechat_callbacks_total",
            &[("msg_type", "none"), ("status", "200")]
        ),
        Some(6.0),
        "{text}"
    );

    let port = standin
        .base_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let client_samples = |status: &str| {
        sample(
            &text,
            "http_client_request_duration_count",
            &[
                ("http_request_method", "POST"),
                ("server_address", "127.0.0.1"),
                ("server_port", &port),
                ("http_response_status_code", status),
            ],
        )
    };
    // Each attempt is one sample: the 503 and the retry that succeeded.
    assert_eq!(client_samples("503"), Some(1.0), "{text}");
    assert_eq!(client_samples("200"), Some(1.0), "{text}");
    // The token fetch is an attempt too (a GET).
    assert_eq!(
        sample(
            &text,
            "http_client_request_duration_count",
            &[
                ("http_request_method", "GET"),
                ("http_response_status_code", "200")
            ],
        ),
        Some(1.0),
        "{text}"
    );
}

/// A minimal HTTP/1.1 client over hyper, answering only the status.
mod reqwest_like {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client as Hyper;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    pub struct Client(Hyper<HttpConnector, Empty<Bytes>>);

    impl Client {
        pub fn new() -> Self {
            Self(Hyper::builder(TokioExecutor::new()).build_http())
        }

        async fn send(&self, method: http::Method, url: &str) -> u16 {
            let request = http::Request::builder()
                .method(method)
                .uri(url)
                .body(Empty::new())
                .unwrap();
            self.0.request(request).await.unwrap().status().as_u16()
        }

        pub async fn post(&self, url: &str) -> u16 {
            self.send(http::Method::POST, url).await
        }

        pub async fn get(&self, url: &str) -> u16 {
            self.send(http::Method::GET, url).await
        }
    }
}
