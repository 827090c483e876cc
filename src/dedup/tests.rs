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

fn at(path: &str, message: Message) -> Request<Full<Bytes>> {
    let mut request = delivery(message);
    *request.uri_mut() = path.parse().unwrap();
    request
}

#[tokio::test(start_paused = true)]
async fn another_routes_answer_is_never_replayed_and_non_2xx_is_not_stored() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = DedupLayer::new();
    let handle = layer.handle();
    // Routes the way axum does behind a layer on the whole router.
    let counted = runs.clone();
    let service = layer.layer(service_fn(move |request: Request<Full<Bytes>>| {
        let runs = counted.clone();
        async move {
            let mut response = Response::new(Full::from("<xml>wechat</xml>"));
            if request.uri().path() == "/wechat" {
                runs.fetch_add(1, Ordering::SeqCst);
            } else {
                *response.status_mut() = StatusCode::NOT_FOUND;
                *response.body_mut() = Full::from("not found");
            }
            Ok::<_, Infallible>(response)
        }
    }));
    for _ in 0..2 {
        let other = service
            .clone()
            .oneshot(at("/other", text(42)))
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::NOT_FOUND);
    }
    for _ in 0..2 {
        let wechat = service
            .clone()
            .oneshot(at("/wechat?x=1", text(42)))
            .await
            .unwrap();
        assert_eq!(
            answer(wechat).await,
            (StatusCode::OK, "<xml>wechat</xml>".into())
        );
    }
    // The 404s were released (not stored); /wechat ran once and was replayed once.
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stats = handle.stats();
    assert_eq!((stats.released, stats.processed, stats.replayed), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_4xx_first_attempt_frees_the_key_for_the_retry() {
    let runs = Arc::new(AtomicUsize::new(0));
    fn bad_request_first(run: usize) -> (StatusCode, &'static str) {
        match run {
            0 => (StatusCode::BAD_REQUEST, "no"),
            _ => (StatusCode::OK, "<xml>ok</xml>"),
        }
    }
    let service = DedupLayer::new().layer(handler(Duration::ZERO, runs.clone(), bad_request_first));
    let first = service.clone().oneshot(delivery(text(5))).await.unwrap();
    assert_eq!(first.status(), StatusCode::BAD_REQUEST);
    let retry = service.clone().oneshot(delivery(text(5))).await.unwrap();
    assert_eq!(
        answer(retry).await,
        (StatusCode::OK, "<xml>ok</xml>".into())
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn a_long_route_is_keyed_by_its_digest() {
    let long = format!("/{}", "p".repeat(10_000));
    let key = super::service::route_key_for_tests(&long, "gh:msg:1");
    assert!(key.len() < 100, "{key}");
    assert!(key.starts_with("sha1:") && key.ends_with("|gh:msg:1"));
    assert_ne!(
        key,
        super::service::route_key_for_tests("/other", "gh:msg:1")
    );
    assert_eq!(
        super::service::route_key_for_tests("/wechat", "gh:msg:1"),
        "/wechat|gh:msg:1"
    );
}

#[tokio::test(start_paused = true)]
async fn memory_store_stays_within_its_byte_budget_whatever_the_key_size() {
    let budget = 1024 * 1024;
    let store = MemoryStore::with_budget(budget);
    let account = "g".repeat(60_000);
    let reply = stored("r");
    for i in 0..300 {
        // A 60 KB key, as a 60 KB ToUserName makes.
        let key = format!("{account}:msg:{i}");
        let Claim::Claimed(lease) = store.claim(&key, Duration::from_secs(10)).await.unwrap()
        else {
            panic!();
        };
        store
            .complete(&key, lease, &reply, Duration::from_secs(600))
            .await
            .unwrap();
        assert!(store.bytes() <= budget, "{} bytes after {i}", store.bytes());
    }
    assert!(store.len() < 20, "{} keys", store.len());
    assert!(store.bytes() > budget / 2, "{} bytes", store.bytes());
    // Releases and evictions give their bytes back.
    let Claim::Claimed(lease) = store.claim("short", Duration::from_secs(10)).await.unwrap() else {
        panic!();
    };
    let before = store.bytes();
    store.release("short", lease).await.unwrap();
    assert_eq!(
        store.bytes(),
        before - MemoryStore::ENTRY_OVERHEAD - "short".len()
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_byte_budget_never_forgets_a_claim_in_progress() {
    let store = MemoryStore::with_limits(1_000, 16 * 4096);
    let Claim::Claimed(_) = store.claim("held", Duration::from_secs(60)).await.unwrap() else {
        panic!();
    };
    let big = StoredResponse {
        body: Bytes::from(vec![b'x'; 3000]),
        ..stored("r")
    };
    for i in 0..500 {
        let key = format!("k{i}");
        if let Claim::Claimed(lease) = store.claim(&key, Duration::from_secs(10)).await.unwrap() {
            store
                .complete(&key, lease, &big, Duration::from_secs(600))
                .await
                .unwrap();
        }
    }
    assert_eq!(
        store.claim("held", Duration::from_secs(1)).await.unwrap(),
        Claim::InProgress
    );
}

/// A store that never answers: a hung Redis.
#[derive(Debug)]
struct Hung;

impl DedupStore for Hung {
    async fn claim(&self, _: &str, _: Duration) -> Result<Claim, StoreError> {
        std::future::pending().await
    }
    async fn complete(
        &self,
        _: &str,
        _: LeaseId,
        _: &StoredResponse,
        _: Duration,
    ) -> Result<bool, StoreError> {
        std::future::pending().await
    }
    async fn release(&self, _: &str, _: LeaseId) -> Result<(), StoreError> {
        std::future::pending().await
    }
    async fn wait(&self, _: &str, _: Duration) -> Result<Waited, StoreError> {
        std::future::pending().await
    }
}

/// Claims from memory, then hangs when the response is to be stored.
#[derive(Debug, Default)]
struct HangsOnComplete(MemoryStore);

impl DedupStore for HangsOnComplete {
    async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        self.0.claim(key, lease).await
    }
    async fn complete(
        &self,
        _: &str,
        _: LeaseId,
        _: &StoredResponse,
        _: Duration,
    ) -> Result<bool, StoreError> {
        std::future::pending().await
    }
    async fn release(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        self.0.release(key, lease).await
    }
    async fn wait(&self, key: &str, timeout: Duration) -> Result<Waited, StoreError> {
        self.0.wait(key, timeout).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_never_holds_the_answer_past_the_budget() {
    let runs = Arc::new(AtomicUsize::new(0));
    // Hung at the claim: one store timeout (1 s), then processed without dedup.
    let service = DedupLayer::with_store(Hung)
        .store_timeout(Duration::from_secs(10))
        .layer(handler(Duration::from_millis(10), runs.clone(), always_ok));
    let started = tokio::time::Instant::now();
    let response = service.oneshot(delivery(text(1))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_millis(4_510));
}

#[tokio::test(start_paused = true)]
async fn a_store_hung_when_storing_lets_the_answer_go_at_the_budget() {
    let runs = Arc::new(AtomicUsize::new(0));
    // Behind FastAck, a quick handler: its reply is stored before it goes out, and the
    // store hangs; the reply is let go after the store timeout (1 s), well within the
    // budget.
    let layer = DedupLayer::with_store(HangsOnComplete::default());
    let handle = layer.handle();
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .layer(FastAckLayer::new())
        .service(handler(Duration::from_millis(10), runs.clone(), always_ok));
    let started = tokio::time::Instant::now();
    let response = service.clone().oneshot(delivery(text(2))).await.unwrap();
    assert_eq!(answer(response).await.1, "<xml>reply</xml>");
    assert_eq!(started.elapsed(), Duration::from_millis(1_010));
    let stats = handle.stats();
    assert_eq!((stats.processed, stats.store_errors), (1, 1));

    // A slow handler is answered `success` at FastAck's 4 s deadline; the store is told of
    // its end only when it ends (this store cannot record the early answer: repeats wait).
    let slow = tower::ServiceBuilder::new()
        .layer(DedupLayer::with_store(HangsOnComplete::default()))
        .layer(FastAckLayer::new())
        .service(handler(Duration::from_secs(30), runs, always_ok));
    let started = tokio::time::Instant::now();
    let response = slow.oneshot(delivery(text(3))).await.unwrap();
    assert_eq!(answer(response).await.1, "success");
    assert_eq!(started.elapsed(), Duration::from_secs(4));
}

#[test]
fn the_entry_overhead_covers_a_freshly_doubled_table() {
    // A hash map slot (the entry and its 64-bit hash, plus a control byte) at 7 in 16 used,
    // two claim-order items per entry (a deque just doubled), two allocator headers.
    let slot = super::memory::slot_size() + 1;
    let worst = slot * 16 / 7 + 2 * std::mem::size_of::<(u64, u64)>() + 2 * 16;
    assert!(
        worst <= MemoryStore::ENTRY_OVERHEAD,
        "an entry may take {worst} bytes beyond its key and reply; ENTRY_OVERHEAD says {}",
        MemoryStore::ENTRY_OVERHEAD
    );
}
