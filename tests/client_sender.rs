//! The background sender through an outage: messages that were never sent are kept and
//! tried again, and what cannot be sent is handed back, never counted as failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::service_fn;
use tower_wechat::client::{
    AppSecret, BackgroundSender, CircuitBreakerLayer, ClientError, CustomMessage, Outgoing,
    RetryPolicy, SenderReport, SenderRetry, WeChatClient,
};

/// WeChat's API, down (connections refused) while `down` is set; counts deliveries by body.
struct Api {
    down: Arc<AtomicBool>,
    deliveries: Arc<Mutex<HashMap<String, u32>>>,
}

fn client(api: &Api) -> WeChatClient {
    let down = api.down.clone();
    let deliveries = api.deliveries.clone();
    let http = service_fn(move |request: Request<Full<Bytes>>| {
        let down = down.clone();
        let deliveries = deliveries.clone();
        async move {
            if request.uri().path().contains("token") {
                let token = r#"{"access_token":"T","expires_in":7200}"#;
                return Ok(Response::new(Full::<Bytes>::from(token)));
            }
            if down.load(Ordering::SeqCst) {
                let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down");
                return Err(ClientError::Connect(Arc::new(refused)));
            }
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let key = String::from_utf8(body.to_vec()).unwrap();
            *deliveries.lock().unwrap().entry(key).or_default() += 1;
            Ok::<_, ClientError>(Response::new(Full::<Bytes>::from(
                r#"{"errcode":0,"errmsg":"ok"}"#,
            )))
        }
    });
    WeChatClient::builder("wx1", AppSecret::new("s"))
        .base_url("http://127.0.0.1:1")
        .retry(RetryPolicy::new().max_attempts(1))
        .circuit_breaker(
            CircuitBreakerLayer::new()
                .failure_threshold(2)
                .open_duration(Duration::from_millis(30)),
        )
        .build_with(http)
        .unwrap()
}

fn api(down: bool) -> Api {
    Api {
        down: Arc::new(AtomicBool::new(down)),
        deliveries: Arc::default(),
    }
}

fn message(n: usize) -> Outgoing {
    CustomMessage::text("oUser1234", format!("m{n}")).into()
}

/// Waits (10 s at most, a stuck test fails instead of hanging) until `done`.
async fn until(sender: &BackgroundSender, done: impl Fn(SenderReport) -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !done(sender.report()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{:?}", sender.report());
}

#[tokio::test]
async fn messages_not_sent_during_an_outage_are_sent_once_it_ends() {
    let api = api(true);
    let client = client(&api);
    let retry = SenderRetry::new()
        .delays(Duration::from_millis(5), Duration::from_millis(20))
        .max_attempts(10_000)
        .max_age(Duration::from_secs(60));
    let sender = client.background_sender_with(16, 2, retry);
    for n in 0..10 {
        sender.send(message(n)).await.unwrap();
    }
    // Connection refused, then the breaker open: tried again and again, never "failed".
    until(&sender, |report| report.requeued >= 20).await;
    let report = sender.report();
    assert_eq!((report.sent, report.failed, report.unsent), (0, 0, 0));
    assert!(client.breaker_stats().opened >= 1);
    api.down.store(false, Ordering::SeqCst);
    until(&sender, |report| report.sent == 10).await;
    let shutdown = sender.shutdown().await;
    assert_eq!(shutdown.report.failed, 0);
    assert!(shutdown.unsent.is_empty());
    let deliveries = api.deliveries.lock().unwrap();
    assert_eq!(deliveries.len(), 10);
    assert!(
        deliveries.values().all(|count| *count == 1),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn shutdown_hands_back_every_message_it_could_not_send() {
    let api = api(true);
    let client = client(&api);
    let retry = SenderRetry::new()
        .delays(Duration::from_millis(5), Duration::from_millis(20))
        .max_attempts(10_000);
    let sender = client.background_sender_with(8, 2, retry);
    let mut queued = Vec::new();
    for n in 0..6 {
        sender.send(message(n)).await.unwrap();
        queued.push(format!("{:?}", message(n)));
    }
    until(&sender, |report| report.requeued >= 2).await;
    let shutdown = sender.shutdown().await;
    assert_eq!((shutdown.report.sent, shutdown.report.failed), (0, 0));
    assert_eq!(shutdown.report.unsent, 6);
    let mut unsent: Vec<String> = shutdown
        .unsent
        .iter()
        .map(|unsent| {
            assert!(unsent.error.not_sent(), "{:?}", unsent.error);
            assert!(unsent.attempts >= 1);
            format!("{:?}", unsent.message)
        })
        .collect();
    unsent.sort();
    queued.sort();
    assert_eq!(unsent, queued);
    assert!(api.deliveries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_message_given_up_on_is_handed_back_while_running() {
    let api = api(true);
    let client = client(&api);
    let retry = SenderRetry::new()
        .delays(Duration::from_millis(1), Duration::from_millis(2))
        .max_attempts(3);
    let sender = client.background_sender_with(8, 4, retry);
    for n in 0..3 {
        sender.send(message(n)).await.unwrap();
    }
    until(&sender, |report| report.unsent == 3).await;
    let unsent = sender.take_unsent();
    assert_eq!(unsent.len(), 3);
    assert!(unsent.iter().all(|unsent| unsent.attempts == 3));
    assert_eq!(sender.report().failed, 0);
    assert!(sender.take_unsent().is_empty());
    let shutdown = sender.shutdown().await;
    assert!(shutdown.unsent.is_empty());
}
