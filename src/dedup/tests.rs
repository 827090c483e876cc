use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::Message;
use crate::ack::FastAckLayer;

fn text(msg_id: u64) -> Message {
    Message::parse(
        format!(
            "<xml><ToUserName>gh_1</ToUserName><FromUserName>oUser</FromUserName>\
             <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content>\
             <MsgId>{msg_id}</MsgId></xml>"
        )
        .as_bytes(),
    )
    .unwrap()
}

fn delivery(message: Message) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::default());
    request.extensions_mut().insert(message);
    request
}

/// How a test handler answers its n-th run (0-based).
type Script = fn(usize) -> (StatusCode, &'static str);

/// A handler that sleeps `delay`, counts its runs and answers as `script` says.
fn handler(
    delay: Duration,
    runs: Arc<AtomicUsize>,
    script: Script,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |_request: Request<Full<Bytes>>| {
        let runs = runs.clone();
        async move {
            tokio::time::sleep(delay).await;
            let run = runs.fetch_add(1, Ordering::SeqCst);
            let (status, body) = script(run);
            let mut response = Response::new(Full::from(body));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, "application/xml".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    })
}

fn always_ok(_: usize) -> (StatusCode, &'static str) {
    (StatusCode::OK, "<xml>reply</xml>")
}

fn fails_first(run: usize) -> (StatusCode, &'static str) {
    match run {
        0 => (StatusCode::INTERNAL_SERVER_ERROR, "db down"),
        _ => (StatusCode::OK, "<xml>second try</xml>"),
    }
}

async fn answer(response: Response<Full<Bytes>>) -> (StatusCode, String) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn sequential_retries_run_the_handler_once_and_replay_its_reply() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = DedupLayer::new();
    let handle = layer.handle();
    let service = layer.layer(handler(Duration::from_millis(10), runs.clone(), always_ok));
    for _ in 0..3 {
        let response = service.clone().oneshot(delivery(text(7))).await.unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/xml");
        assert_eq!(
            answer(response).await,
            (StatusCode::OK, "<xml>reply</xml>".into())
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stats = handle.stats();
    assert_eq!((stats.processed, stats.replayed), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn concurrent_retries_wait_for_the_first_attempt() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = DedupLayer::new();
    let handle = layer.handle();
    let service = layer.layer(handler(Duration::from_secs(2), runs.clone(), always_ok));
    let deliveries = (0..3).map(|_| service.clone().oneshot(delivery(text(8))));
    let started = tokio::time::Instant::now();
    let responses = futures_util::future::join_all(deliveries).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "waiters woke with the first"
    );
    for response in responses {
        assert_eq!(answer(response.unwrap()).await.1, "<xml>reply</xml>");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(handle.stats().coalesced, 2);
}

#[tokio::test(start_paused = true)]
async fn distinct_messages_are_not_confused() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = DedupLayer::new().layer(handler(Duration::ZERO, runs.clone(), always_ok));
    for msg_id in 1..=5 {
        service
            .clone()
            .oneshot(delivery(text(msg_id)))
            .await
            .unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_attempt_does_not_poison_the_key() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = DedupLayer::new();
    let handle = layer.handle();
    let service = layer.layer(handler(Duration::ZERO, runs.clone(), fails_first));
    let first = service.clone().oneshot(delivery(text(9))).await.unwrap();
    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let retry = service.clone().oneshot(delivery(text(9))).await.unwrap();
    assert_eq!(
        answer(retry).await,
        (StatusCode::OK, "<xml>second try</xml>".into())
    );
    let third = service.oneshot(delivery(text(9))).await.unwrap();
    assert_eq!(answer(third).await.1, "<xml>second try</xml>");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(handle.stats().released, 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_retry_takes_over_when_the_first_attempt_fails() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service =
        DedupLayer::new().layer(handler(Duration::from_secs(1), runs.clone(), fails_first));
    let (first, retry) = tokio::join!(service.clone().oneshot(delivery(text(10))), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        service.clone().oneshot(delivery(text(10))).await
    });
    assert_eq!(first.unwrap().status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer(retry.unwrap()).await.1, "<xml>second try</xml>");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_error_from_the_inner_service_releases_the_key() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let service = DedupLayer::new().layer(service_fn(move |_: Request<Full<Bytes>>| {
        let run = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            match run {
                0 => Err("broken pipe"),
                _ => Ok(Response::new(Full::from("ok"))),
            }
        }
    }));
    assert!(service.clone().oneshot(delivery(text(11))).await.is_err());
    let retry = service.oneshot(delivery(text(11))).await.unwrap();
    assert_eq!(answer(retry).await.1, "ok");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_waits_too_long_gets_503_not_a_second_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = DedupLayer::new().wait_timeout(Duration::from_secs(4));
    let handle = layer.handle();
    let service = layer.layer(handler(Duration::from_secs(9), runs.clone(), always_ok));
    let first = tokio::spawn(service.clone().oneshot(delivery(text(12))));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let retry = service.clone().oneshot(delivery(text(12))).await.unwrap();
    assert_eq!(retry.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(handle.stats().busy, 1);
    assert_eq!(
        answer(first.await.unwrap().unwrap()).await.1,
        "<xml>reply</xml>"
    );
    let late = service.oneshot(delivery(text(12))).await.unwrap();
    assert_eq!(answer(late).await.1, "<xml>reply</xml>");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn with_fast_ack_inside_a_slow_handler_runs_once_and_retries_get_success() {
    let runs = Arc::new(AtomicUsize::new(0));
    let fast_ack = FastAckLayer::new();
    let service = DedupLayer::new().layer(fast_ack.layer(handler(
        Duration::from_secs(6),
        runs.clone(),
        always_ok,
    )));
    // WeChat: the first try, then retries after 5 s each.
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let response = service.clone().oneshot(delivery(text(13))).await.unwrap();
        assert!(started.elapsed() <= Duration::from_secs(4));
        assert_eq!(answer(response).await, (StatusCode::OK, "success".into()));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(fast_ack.handle().stats().completed, 1);
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_message_pass_through() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = DedupLayer::new();
    let handle = layer.handle();
    let service = layer.layer(handler(Duration::ZERO, runs.clone(), always_ok));
    for _ in 0..2 {
        service
            .clone()
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(handle.stats().unkeyed, 2);
}

#[tokio::test(start_paused = true)]
async fn a_custom_key_decides_what_is_the_same() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = DedupLayer::new()
        .key(|message| Some(message.from_user_name.clone()))
        .layer(handler(Duration::ZERO, runs.clone(), always_ok));
    service.clone().oneshot(delivery(text(1))).await.unwrap();
    service.oneshot(delivery(text(2))).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "same sender: one run");
}

#[tokio::test(start_paused = true)]
async fn replies_expire_after_the_ttl() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = DedupLayer::new()
        .ttl(Duration::from_secs(60))
        .layer(handler(Duration::ZERO, runs.clone(), always_ok));
    service.clone().oneshot(delivery(text(14))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(59)).await;
    service.clone().oneshot(delivery(text(14))).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    service.oneshot(delivery(text(14))).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

fn stored(body: &'static str) -> StoredResponse {
    StoredResponse {
        status: StatusCode::OK,
        content_type: None,
        body: Bytes::from_static(body.as_bytes()),
    }
}

#[tokio::test(start_paused = true)]
async fn memory_store_claims_complete_and_release_by_lease() {
    let store = MemoryStore::new();
    let lease = Duration::from_secs(10);
    let Claim::Claimed(first) = store.claim("k", lease).await.unwrap() else {
        panic!("a fresh key is claimed");
    };
    assert_eq!(store.claim("k", lease).await.unwrap(), Claim::InProgress);
    // Only the holder completes or releases.
    let stranger = LeaseId(first.0.wrapping_add(1));
    assert!(
        !store
            .complete("k", stranger, &stored("x"), lease)
            .await
            .unwrap()
    );
    store.release("k", stranger).await.unwrap();
    assert_eq!(store.claim("k", lease).await.unwrap(), Claim::InProgress);
    assert!(
        store
            .complete("k", first, &stored("a"), lease)
            .await
            .unwrap()
    );
    assert_eq!(
        store.claim("k", lease).await.unwrap(),
        Claim::Done(stored("a"))
    );

    let Claim::Claimed(other) = store.claim("j", lease).await.unwrap() else {
        panic!();
    };
    store.release("j", other).await.unwrap();
    assert!(matches!(
        store.claim("j", lease).await.unwrap(),
        Claim::Claimed(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn an_expired_claim_can_be_taken_over_and_the_old_holder_cannot_complete() {
    let store = MemoryStore::new();
    let Claim::Claimed(crashed) = store.claim("k", Duration::from_secs(10)).await.unwrap() else {
        panic!();
    };
    tokio::time::sleep(Duration::from_secs(11)).await;
    let Claim::Claimed(_) = store.claim("k", Duration::from_secs(10)).await.unwrap() else {
        panic!("an expired claim is free");
    };
    assert!(
        !store
            .complete("k", crashed, &stored("late"), Duration::from_secs(60))
            .await
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn memory_store_waiters_wake_on_completion_and_time_out() {
    let store = MemoryStore::new();
    let Claim::Claimed(lease) = store.claim("k", Duration::from_secs(30)).await.unwrap() else {
        panic!();
    };
    let waiter = tokio::spawn({
        let store = store.clone();
        async move { store.wait("k", Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    store
        .complete("k", lease, &stored("r"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), Waited::Done(stored("r")));

    store.claim("slow", Duration::from_secs(30)).await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        store.wait("slow", Duration::from_secs(2)).await.unwrap(),
        Waited::StillInProgress
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        store.wait("absent", Duration::from_secs(2)).await.unwrap(),
        Waited::Released
    );
}

#[tokio::test(start_paused = true)]
async fn memory_store_stays_within_its_capacity() {
    let store = MemoryStore::with_capacity(160);
    for i in 0..10_000 {
        let key = format!("k{i}");
        let Claim::Claimed(lease) = store.claim(&key, Duration::from_secs(10)).await.unwrap()
        else {
            panic!();
        };
        store
            .complete(&key, lease, &stored("r"), Duration::from_secs(600))
            .await
            .unwrap();
    }
    assert!(store.len() <= 160, "{} keys kept", store.len());
    // The newest keys are the ones kept.
    assert!(matches!(
        store.claim("k9999", Duration::from_secs(1)).await.unwrap(),
        Claim::Done(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn memory_store_drops_expired_keys_as_new_ones_arrive() {
    let store = MemoryStore::with_capacity(100_000);
    for i in 0..1_000 {
        store
            .claim(&format!("old{i}"), Duration::from_secs(1))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..1_000 {
        store
            .claim(&format!("new{i}"), Duration::from_secs(1))
            .await
            .unwrap();
    }
    assert_eq!(store.len(), 1_000);
}

#[tokio::test(start_paused = true)]
async fn a_full_memory_store_never_forgets_a_claim_in_progress() {
    let store = MemoryStore::with_capacity(16); // one key per shard
    let Claim::Claimed(_) = store
        .claim("running", Duration::from_secs(10))
        .await
        .unwrap()
    else {
        panic!();
    };
    for i in 0..2_000 {
        let key = format!("k{i}");
        if let Claim::Claimed(lease) = store.claim(&key, Duration::from_secs(10)).await.unwrap() {
            store
                .complete(&key, lease, &stored("r"), Duration::from_secs(600))
                .await
                .unwrap();
        }
    }
    assert_eq!(
        store
            .claim("running", Duration::from_secs(10))
            .await
            .unwrap(),
        Claim::InProgress,
        "a retry must still wait for the first attempt"
    );
    assert!(store.len() <= 16 + 1, "{} keys kept", store.len());
    // Its lease still ends it.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(matches!(
        store
            .claim("running", Duration::from_secs(10))
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_first_delivery_is_finished_and_recorded_so_retries_do_not_rerun_it() {
    // WeChat hangs up on a late first delivery before FastAck's deadline: the server drops
    // the response future. The attempt must still complete its key.
    let runs = Arc::new(AtomicUsize::new(0));
    let fast_ack = FastAckLayer::new();
    let service = DedupLayer::new().layer(fast_ack.layer(handler(
        Duration::from_secs(3),
        runs.clone(),
        always_ok,
    )));
    let first = tokio::time::timeout(
        Duration::from_secs(2),
        service.clone().oneshot(delivery(text(42))),
    )
    .await;
    assert!(first.is_err(), "the client gave up");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Retries, before and after the lease would have run out, replay the stored reply.
    for _ in 0..2 {
        let retry = service.clone().oneshot(delivery(text(42))).await.unwrap();
        assert_eq!(
            answer(retry).await,
            (StatusCode::OK, "<xml>reply</xml>".into())
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        fast_ack.handle().stats().abandoned,
        0,
        "finished by Dedup, not abandoned"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reply_over_the_limit_is_a_500_and_frees_the_key() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = DedupLayer::new();
    let handle = layer.handle();
    let counted = runs.clone();
    let service = layer.layer(service_fn(move |_: Request<Full<Bytes>>| {
        let run = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let body = match run {
                0 => Bytes::from(vec![b'x'; crate::body::REPLY_LIMIT + 1]),
                _ => Bytes::from_static(b"<xml>fits</xml>"),
            };
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        }
    }));
    let first = service.clone().oneshot(delivery(text(31))).await.unwrap();
    assert_eq!(
        answer(first).await,
        (StatusCode::INTERNAL_SERVER_ERROR, "reply too large".into())
    );
    assert_eq!(handle.stats().released, 1, "the key is free for the retry");
    let retry = service.oneshot(delivery(text(31))).await.unwrap();
    assert_eq!(answer(retry).await.1, "<xml>fits</xml>");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_reply_body_is_a_500_and_frees_the_key() {
    use http_body_util::StreamBody;
    let layer = DedupLayer::new();
    let handle = layer.handle();
    let service = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        let frames = futures_util::stream::iter([
            Ok(http_body::Frame::data(Bytes::from_static(b"<xml>"))),
            Err::<http_body::Frame<Bytes>, _>(std::io::Error::other("connection to the db lost")),
        ]);
        Ok::<_, Infallible>(Response::new(StreamBody::new(frames)))
    }));
    let response = service.oneshot(delivery(text(32))).await.unwrap();
    assert_eq!(
        answer(response).await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "reply body failed".into()
        )
    );
    assert_eq!(handle.stats().released, 1);
}
