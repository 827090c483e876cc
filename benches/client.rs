//! The client stack's overhead per call: `WeChatClient::send_custom_message` (circuit breaker,
//! retry policy, per-attempt timeout, access_token, body read, JSON in and out) against the
//! bare call it wraps.
//!
//! - `in_memory/*`: over an in-process service that answers at once, so the difference is
//!   the stack alone.
//! - `loopback/*`: over hyper-util's pooled client and a loopback axum stand-in.
//!
//! ```sh
//! cargo bench --bench client --features client
//! ```

use std::convert::Infallible;
use std::hint::black_box;

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_wechat::client::{AppSecret, CustomMessage, WeChatClient, http_client};

const OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;
const TOKEN: &str = r#"{"access_token":"ACCESS_TOKEN_BENCH","expires_in":7200}"#;

fn message() -> CustomMessage {
    CustomMessage::text("oUser1234", "Your order has shipped")
}

/// A bare request as the stack would send it, token included.
fn bare_request(base: &str) -> Request<Full<Bytes>> {
    let body = serde_json::to_vec(&message()).unwrap();
    Request::post(format!(
        "{base}/cgi-bin/message/custom/send?access_token=ACCESS_TOKEN_BENCH"
    ))
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from(body)))
    .unwrap()
}

/// Answers like WeChat, in process.
async fn in_memory(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let answer = if request.uri().path() == "/cgi-bin/token" {
        TOKEN
    } else {
        OK
    };
    Ok(Response::new(Full::new(Bytes::from_static(
        answer.as_bytes(),
    ))))
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("in_memory");
    let service = tower::service_fn(in_memory);
    let client = WeChatClient::builder("wx0123456789abcdef", AppSecret::new("secret"))
        .base_url("http://wechat.invalid")
        .build_with(service)
        .unwrap();
    runtime.block_on(client.access_token()).unwrap();
    group.bench_function("bare_service", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = service
                .oneshot(bare_request("http://wechat.invalid"))
                .await
                .unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
            black_box(answer);
        })
    });
    group.bench_function("wechat_client", |b| {
        b.to_async(&runtime).iter(|| async {
            client
                .send_custom_message(black_box(&message()))
                .await
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("loopback");
    let base = runtime.block_on(async {
        let router = Router::new()
            .route("/cgi-bin/token", get(|| async { TOKEN }))
            .route("/cgi-bin/message/custom/send", post(|| async { OK }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{addr}")
    });
    let bare = runtime.block_on(async { http_client().unwrap() });
    let client = runtime.block_on(async {
        let client = WeChatClient::builder("wx0123456789abcdef", AppSecret::new("secret"))
            .base_url(&base)
            .build()
            .unwrap();
        client.access_token().await.unwrap();
        client
    });
    group.bench_function("bare_client", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = bare.request(bare_request(&base)).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
            black_box(answer);
        })
    });
    group.bench_function("wechat_client", |b| {
        b.to_async(&runtime).iter(|| async {
            client
                .send_custom_message(black_box(&message()))
                .await
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(client, benches);
criterion_main!(client);
