use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::hook::{BackgroundOutcome, CallbackHook, CallbackObserver};

type Handler =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, String>;

/// A handler that sleeps `delay`, counts its runs and answers `reply`.
fn sleepy(delay: Duration, runs: Arc<AtomicUsize>) -> Handler {
    tower::util::BoxCloneSyncService::new(service_fn(move |_request: Request<Full<Bytes>>| {
        let runs = runs.clone();
        async move {
            tokio::time::sleep(delay).await;
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Response::new(Full::from("reply")))
        }
    }))
}

fn request() -> Request<Full<Bytes>> {
    Request::new(Full::default())
}

/// Waits for `service` to be ready and calls it (keeping it, unlike `oneshot`).
async fn send<S, B>(service: &mut S, request: Request<Full<Bytes>>) -> S::Response
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    service.ready().await.unwrap().call(request).await.unwrap()
}

async fn body<B: http_body::Body>(response: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_handler_ready_in_time_gives_its_own_response() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = FastAckLayer::new().layer(sleepy(Duration::from_secs(1), runs.clone()));
    let started = tokio::time::Instant::now();
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(body(response).await, "reply");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_is_acked_at_the_deadline_and_finishes_in_the_background() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = FastAckLayer::new();
    let handle = layer.handle();
    let service = layer.layer(sleepy(Duration::from_secs(6), runs.clone()));
    let started = tokio::time::Instant::now();
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await, "success");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(handle.stats().in_flight, 1);
    assert_eq!(handle.stats().acked_early, 1);

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "ran once, to its end");
    let stats = handle.stats();
    assert_eq!((stats.in_flight, stats.completed), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_configurable() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = FastAckLayer::new()
        .deadline(Duration::from_millis(300))
        .layer(sleepy(Duration::from_secs(1), runs));
    let started = tokio::time::Instant::now();
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(body(response).await, "success");
}

#[tokio::test(start_paused = true)]
async fn always_ack_answers_at_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = FastAckLayer::new().always_ack();
    let handle = layer.handle();
    let service = layer.layer(sleepy(Duration::from_millis(10), runs.clone()));
    let started = tokio::time::Instant::now();
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(body(response).await, "success");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(handle.stats().completed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_bound_answers_503_not_success() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = FastAckLayer::new().max_in_flight(2);
    let handle = layer.handle();
    let service = layer.layer(sleepy(Duration::from_secs(10), runs.clone()));
    for _ in 0..2 {
        let response = service.clone().oneshot(request()).await.unwrap();
        assert_eq!(body(response).await, "success");
    }
    let refused = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(handle.stats().refused_full, 1);

    // A slot frees when a handler ends.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the refused callback never ran"
    );
}

#[tokio::test(start_paused = true)]
async fn lowering_the_bound_through_the_handle_applies_to_services_already_made() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = FastAckLayer::new();
    let handle = layer.handle();
    let service = layer.layer(sleepy(Duration::from_secs(10), runs));
    handle.set_max_in_flight(1);
    assert_eq!(handle.max_in_flight(), 1);
    assert_eq!(
        service.clone().oneshot(request()).await.unwrap().status(),
        200
    );
    assert_eq!(service.oneshot(request()).await.unwrap().status(), 503);
    assert_eq!(handle.stats().refused_full, 1);
}

fn panicking(after: Duration) -> Handler {
    tower::util::BoxCloneSyncService::new(service_fn(
        move |request: Request<Full<Bytes>>| async move {
            tokio::time::sleep(after).await;
            if request.uri().path() == "/panic" {
                panic!("handler bug");
            }
            Ok::<_, String>(Response::new(Full::from("fine")))
        },
    ))
}

#[tokio::test(start_paused = true)]
async fn a_panic_before_the_deadline_is_a_500_and_the_service_keeps_serving() {
    let layer = FastAckLayer::new();
    let handle = layer.handle();
    let service = layer.layer(panicking(Duration::from_millis(5)));
    let panicked = service
        .clone()
        .oneshot(Request::get("/panic").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(panicked.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(handle.stats().panicked, 1);
    let fine = service.oneshot(request()).await.unwrap();
    assert_eq!(body(fine).await, "fine");
}

#[tokio::test(start_paused = true)]
async fn a_panic_after_the_ack_is_counted_and_reported() {
    let (hook, events) = recording_hook();
    let layer = FastAckLayer::new();
    let handle = layer.handle();
    let service = layer.layer(panicking(Duration::from_secs(5)));
    let mut request = Request::get("/panic").body(Full::default()).unwrap();
    request.extensions_mut().insert(hook);
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(body(response).await, "success");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.stats().panicked, 1);
    assert_eq!(
        *events.lock().unwrap(),
        ["started".to_owned(), "panicked after 5s".to_owned()]
    );
}

#[tokio::test(start_paused = true)]
async fn handler_errors_pass_through_in_time_and_are_counted_in_the_background() {
    let failing = |delay: Duration| {
        service_fn(move |_: Request<Full<Bytes>>| async move {
            tokio::time::sleep(delay).await;
            Err::<Response<Full<Bytes>>, _>("database down".to_owned())
        })
    };
    let layer = FastAckLayer::new();
    let handle = layer.handle();
    let error = layer
        .layer(failing(Duration::from_secs(1)))
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(error, "database down");
    let late = layer
        .layer(failing(Duration::from_secs(5)))
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(body(late).await, "success");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.stats().failed, 2);
}

#[tokio::test(start_paused = true)]
async fn a_5xx_response_counts_as_failed() {
    let layer = FastAckLayer::new();
    let handle = layer.handle();
    let service = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        let mut response = Response::new(Full::<Bytes>::default());
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        Ok::<_, Infallible>(response)
    }));
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(handle.stats().failed, 1);
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl CallbackObserver for Recorder {
    fn background_started(&self) {
        self.0.lock().unwrap().push("started".to_owned());
    }

    fn background_finished(&self, outcome: BackgroundOutcome, elapsed: Duration) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{outcome} after {}s", elapsed.as_secs()));
    }
}

fn recording_hook() -> (CallbackHook, Arc<Mutex<Vec<String>>>) {
    let recorder = Recorder::default();
    let events = recorder.0.clone();
    (CallbackHook::new(recorder), events)
}

#[tokio::test(start_paused = true)]
async fn the_background_hook_hears_start_and_end_only_for_background_work() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = FastAckLayer::new().layer(sleepy(Duration::from_secs(6), runs.clone()));
    let (hook, events) = recording_hook();
    let mut slow = request();
    slow.extensions_mut().insert(hook.clone());
    service.clone().oneshot(slow).await.unwrap();
    assert_eq!(*events.lock().unwrap(), ["started"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(*events.lock().unwrap(), ["started", "completed after 6s"]);

    let fast = FastAckLayer::new().layer(sleepy(Duration::from_secs(1), runs));
    let (hook, events) = recording_hook();
    let mut request = request();
    request.extensions_mut().insert(hook);
    fast.oneshot(request).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        events.lock().unwrap().is_empty(),
        "answered in time: no background work"
    );
}

#[tokio::test(start_paused = true)]
async fn background_work_runs_in_the_callers_span() {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber =
        tracing_subscriber::registry().with(tracing_subscriber::fmt::layer().with_test_writer());
    let _guard = tracing::subscriber::set_default(subscriber);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let service = FastAckLayer::new().layer(service_fn(move |_: Request<Full<Bytes>>| {
        let recorded = recorded.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let name = tracing::Span::current().metadata().map(|m| m.name());
            recorded.lock().unwrap().push(name);
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }
    }));
    use tracing::Instrument;
    let span = tracing::info_span!("callback");
    service.oneshot(request()).instrument(span).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(*seen.lock().unwrap(), [Some("callback")]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_refuses_new_work_and_drains_running_handlers() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = FastAckLayer::new().deadline(Duration::from_millis(100));
    let handle = layer.handle();
    let mut service = ServiceBuilder::new()
        .layer(layer)
        .service(sleepy(Duration::from_secs(6), runs.clone()));
    for _ in 0..3 {
        let response = send(&mut service, request()).await;
        assert_eq!(body(response).await, "success");
    }
    let shutdown = tokio::spawn({
        let handle = handle.clone();
        async move { handle.shutdown(Duration::from_secs(10)).await }
    });
    tokio::task::yield_now().await;
    assert!(handle.is_closing());
    let refused = send(&mut service, request()).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

    let report = shutdown.await.unwrap();
    assert_eq!(
        report,
        ShutdownReport {
            finished: 3,
            unfinished: 0
        }
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(handle.stats().refused_closing, 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_handlers_that_outlive_the_grace_period() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = FastAckLayer::new();
    let handle = layer.handle();
    let service = layer.layer(sleepy(Duration::from_secs(60), runs));
    service.oneshot(request()).await.unwrap();
    let report = handle.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        ShutdownReport {
            finished: 0,
            unfinished: 1
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_answers_at_once_is_not_spawned_and_still_counted() {
    let layer = FastAckLayer::new();
    let handle = layer.handle();
    let mut service = layer.layer(service_fn(|request: Request<Full<Bytes>>| async move {
        if request.uri().path() == "/panic" {
            panic!("synchronous bug");
        }
        Ok::<_, Infallible>(Response::new(Full::from("at once")))
    }));
    let response = send(&mut service, request()).await;
    assert_eq!(body(response).await, "at once");
    let panicked = send(
        &mut service,
        Request::get("/panic").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(panicked.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let stats = handle.stats();
    assert_eq!(
        (stats.completed, stats.panicked, stats.in_flight),
        (1, 1, 0)
    );
    // The slot of each went back.
    assert_eq!(handle.stats().refused_full, 0);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_goes_away_is_not_counted_as_acknowledged() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = FastAckLayer::new();
    let handle = layer.handle();
    let service = layer.layer(sleepy(Duration::from_secs(3), runs.clone()));
    let (hook, events) = recording_hook();
    let mut request = request();
    request.extensions_mut().insert(hook);
    let gone = tokio::time::timeout(Duration::from_secs(1), service.oneshot(request)).await;
    assert!(gone.is_err());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the handler still ran to its end"
    );
    let stats = handle.stats();
    assert_eq!(
        (stats.abandoned, stats.acked_early, stats.completed),
        (1, 0, 1)
    );
    assert_eq!(*events.lock().unwrap(), ["started", "completed after 3s"]);
}

#[tokio::test(start_paused = true)]
async fn lowering_the_bound_while_handlers_run_takes_effect_as_they_finish() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = FastAckLayer::new().max_in_flight(2);
    let handle = layer.handle();
    let service = layer.layer(sleepy(Duration::from_secs(10), runs));
    for _ in 0..2 {
        assert_eq!(
            service.clone().oneshot(request()).await.unwrap().status(),
            200
        );
    }
    // Both slots are held: the permit owed is taken back when a handler returns its own.
    handle.set_max_in_flight(1);
    tokio::time::sleep(Duration::from_secs(7)).await; // both handlers done
    assert_eq!(handle.stats().in_flight, 0);
    assert_eq!(
        service.clone().oneshot(request()).await.unwrap().status(),
        200
    );
    assert_eq!(service.oneshot(request()).await.unwrap().status(), 503);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_the_callbacks_arrival() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = FastAckLayer::new().layer(sleepy(Duration::from_secs(6), runs));
    let mut late = request();
    // The layers outside spent 1.5 s already (a slow body, a slow store).
    late.extensions_mut().insert(crate::hook::Arrival(
        std::time::Instant::now() - Duration::from_millis(1500),
    ));
    let started = tokio::time::Instant::now();
    let response = service.oneshot(late).await.unwrap();
    assert_eq!(body(response).await, "success");
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(2490)..=Duration::from_millis(2510)).contains(&waited),
        "acked by arrival + 4 s, i.e. after {waited:?} here"
    );
}
