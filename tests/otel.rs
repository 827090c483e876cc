//! One trace from end to end (feature `otel`): a signed callback with an incoming
//! `traceparent` reaches a handler that calls WeChat's API (the loopback stand-in); the
//! spans exported through `tracing-opentelemetry` into an in-memory exporter, and the
//! `traceparent` the stand-in received, are all of the caller's trace — and so is the run
//! the journal's recovery worker makes of a callback whose first run failed.
//!
//! Real HTTP on loopback both ways, the real SDK and bridge; each test installs its own
//! subscriber for its (current-thread) runtime.

mod common;
#[path = "client/standin.rs"]
mod standin;

use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, State};
use axum::routing::post;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use standin::{APPID, SECRET, StandIn};
use tower_wechat::client::{AppSecret, CustomMessage, WeChatClient};
use tower_wechat::hook::Delivery;
use tower_wechat::journal::{Handoff, MemoryJournal};
use tower_wechat::{CallbackLayer, Message, Reply, Token};
use tracing_subscriber::layer::SubscriberExt;

use common::{WeChat, serve, text_message};

const TOKEN: &str = "oteltoken16";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn caller_traceparent() -> String {
    format!("00-{TRACE}-{CALLER_SPAN}-01")
}

/// The bridge as an application sets it up, into an in-memory exporter (each span exported
/// when it ends); installed for this thread.
fn install_tracing() -> (InMemorySpanExporter, tracing::subscriber::DefaultGuard) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otel-test")));
    (exporter, tracing::subscriber::set_default(subscriber))
}

fn spans(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    exporter.get_finished_spans().unwrap()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// (trace id, parent id) of a `traceparent`.
fn ids(traceparent: &str) -> (TraceId, SpanId) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (
        TraceId::from_hex(parts[1]).unwrap(),
        SpanId::from_hex(parts[2]).unwrap(),
    )
}

async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(tokio::time::Instant::now() < until, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Clone)]
struct App {
    client: WeChatClient,
    /// Handler runs fail (500, after the ack) while their attempt is below this.
    succeed_from: u32,
    /// How long the handler works before calling the API.
    work: Duration,
}

/// Calls the API (a customer-service message to the sender), then answers.
async fn handler(
    State(app): State<App>,
    delivery: Option<Extension<Delivery>>,
    message: Message,
) -> Result<Reply, StatusCode> {
    let attempt = delivery.map_or(1, |Extension(delivery)| delivery.attempt);
    tokio::time::sleep(app.work).await;
    app.client
        .send_custom_message(&CustomMessage::text(
            &message.from_user_name,
            format!("run {attempt}"),
        ))
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    if attempt < app.succeed_from {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Ok(Reply::success())
}

fn router(stack: CallbackLayer, app: App) -> Router {
    Router::new()
        .route("/wechat", post(handler))
        .with_state(app)
        .layer(stack)
}

async fn client_for(standin: &StandIn) -> WeChatClient {
    WeChatClient::builder(APPID, AppSecret::new(SECRET))
        .base_url(standin.base_url())
        .build()
        .unwrap()
}

/// POSTs a signed text message with `headers`, as a gateway in front of the server would
/// pass it on.
async fn deliver_with(
    wechat: &WeChat,
    msg_id: u64,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = Request::post(format!(
        "http://{}/wechat?{}&openid=oUser1234",
        wechat.addr(),
        wechat.signed_query()
    ))
    .header("content-type", "text/xml");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(text_message("trace me", msg_id))))
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The message sends the stand-in received, with their `traceparent`.
fn sends(standin: &StandIn) -> Vec<String> {
    standin
        .traceparents()
        .into_iter()
        .filter(|(path, _)| path == "/cgi-bin/message/custom/send")
        .map(|(path, traceparent)| traceparent.unwrap_or_else(|| panic!("{path} had none")))
        .collect()
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued_through_the_handler_to_the_api_call() {
    let (exporter, _guard) = install_tracing();
    let standin = StandIn::start().await;
    let app = App {
        client: client_for(&standin).await,
        succeed_from: 1,
        work: Duration::ZERO,
    };
    let wechat = WeChat::new(
        serve(router(
            CallbackLayer::new(Token::new(TOKEN).unwrap()),
            app.clone(),
        ))
        .await,
        TOKEN,
    );
    let traceparent = caller_traceparent();
    let (status, body) = deliver_with(
        &wechat,
        1601,
        &[("traceparent", &traceparent), ("tracestate", "gw=abc")],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "success"));
    eventually(Duration::from_secs(5), || {
        !named(&spans(&exporter), "wechat_callback").is_empty()
    })
    .await;

    let spans = spans(&exporter);
    let trace = TraceId::from_hex(TRACE).unwrap();
    let [callback] = named(&spans, "wechat_callback")[..] else {
        panic!("one callback span: {spans:#?}")
    };
    assert_eq!(callback.span_context.trace_id(), trace);
    assert_eq!(
        callback.parent_span_id,
        SpanId::from_hex(CALLER_SPAN).unwrap()
    );
    assert!(callback.parent_span_is_remote);
    assert_eq!(callback.span_context.trace_state().get("gw"), Some("abc"));
    assert_eq!(attribute(callback, "msg_type").as_deref(), Some("text"));

    let [api] = named(&spans, "POST /cgi-bin/message/custom/send")[..] else {
        panic!("one API call span: {spans:#?}")
    };
    assert_eq!(api.span_context.trace_id(), trace);
    assert_eq!(api.parent_span_id, callback.span_context.span_id());
    assert_eq!(api.span_kind, SpanKind::Client);
    assert_eq!(
        attribute(api, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attribute(api, "url.path").as_deref(),
        Some("/cgi-bin/message/custom/send")
    );

    // The stand-in got the API span's context: the same trace, one more hop.
    let [sent] = &sends(&standin)[..] else {
        panic!("one send: {:?}", standin.traceparents())
    };
    assert_eq!(ids(sent), (trace, api.span_context.span_id()));
    assert!(sent.ends_with("-01"), "sampled: {sent}");
    // The token fetch made for the call is in the trace too.
    let token_fetch = standin
        .traceparents()
        .into_iter()
        .find(|(path, _)| path == "/cgi-bin/token")
        .and_then(|(_, traceparent)| traceparent)
        .expect("the token fetch carries a traceparent");
    assert_eq!(ids(&token_fetch).0, trace);

    // No secret in any span: the access_token goes in the query, which is never recorded.
    let token = app.client.access_token().await.unwrap();
    let everything = format!("{spans:?}");
    assert!(!everything.contains(token.expose()), "access_token leaked");
    assert!(!everything.contains(SECRET), "appsecret leaked");
    assert!(
        !everything.contains("access_token="),
        "a query was recorded"
    );
}

#[tokio::test]
async fn without_a_valid_traceparent_the_callback_starts_its_own_trace_and_passes_it_on() {
    let (exporter, _guard) = install_tracing();
    let standin = StandIn::start().await;
    let app = App {
        client: client_for(&standin).await,
        succeed_from: 1,
        work: Duration::ZERO,
    };
    let wechat = WeChat::new(
        serve(router(CallbackLayer::new(Token::new(TOKEN).unwrap()), app)).await,
        TOKEN,
    );
    let uppercase = caller_traceparent().to_uppercase();
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[("traceparent", &uppercase)],
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        )],
    ];
    for (n, headers) in cases.into_iter().enumerate() {
        let (status, _) = deliver_with(&wechat, 1610 + n as u64, headers).await;
        assert_eq!(status, StatusCode::OK);
    }
    eventually(Duration::from_secs(5), || {
        named(&spans(&exporter), "wechat_callback").len() == 3
    })
    .await;
    let spans = spans(&exporter);
    let callbacks = named(&spans, "wechat_callback");
    let sends = sends(&standin);
    assert_eq!(sends.len(), 3);
    let caller = TraceId::from_hex(TRACE).unwrap();
    for callback in &callbacks {
        let trace = callback.span_context.trace_id();
        assert_ne!(trace, caller, "a malformed traceparent is not continued");
        assert_eq!(callback.parent_span_id, SpanId::INVALID, "a root span");
        // Its own trace goes out with its API call.
        assert_eq!(
            sends.iter().filter(|sent| ids(sent).0 == trace).count(),
            1,
            "{sends:?}"
        );
    }
}

#[tokio::test]
async fn a_layer_told_to_ignore_traceparent_starts_a_new_trace() {
    let (exporter, _guard) = install_tracing();
    let standin = StandIn::start().await;
    let app = App {
        client: client_for(&standin).await,
        succeed_from: 1,
        work: Duration::ZERO,
    };
    let stack = CallbackLayer::new(Token::new(TOKEN).unwrap())
        .timing(|timing| timing.incoming_traceparent(false));
    let wechat = WeChat::new(serve(router(stack, app)).await, TOKEN);
    let traceparent = caller_traceparent();
    let (status, _) = deliver_with(&wechat, 1620, &[("traceparent", &traceparent)]).await;
    assert_eq!(status, StatusCode::OK);
    eventually(Duration::from_secs(5), || {
        !named(&spans(&exporter), "wechat_callback").is_empty()
    })
    .await;
    let spans = spans(&exporter);
    let callback = named(&spans, "wechat_callback")[0];
    assert_ne!(
        callback.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(callback.parent_span_id, SpanId::INVALID);
}

#[tokio::test]
async fn a_run_recovered_from_the_journal_stays_in_the_callback_s_trace() {
    let (exporter, _guard) = install_tracing();
    let standin = StandIn::start().await;
    // The first run outlasts the ack deadline, calls the API, then fails; the recovery
    // worker runs it again from the journal, and the second run succeeds.
    let app = App {
        client: client_for(&standin).await,
        succeed_from: 2,
        work: Duration::from_millis(300),
    };
    let handoff = Handoff::new(MemoryJournal::new())
        .lease(Duration::from_millis(300))
        .recovery_interval(Duration::from_millis(50));
    let journal = handoff.handle();
    let stack = CallbackLayer::new(Token::new(TOKEN).unwrap())
        .fast_ack(|fast_ack| fast_ack.deadline(Duration::from_millis(100)))
        .journal(handoff);
    let routes = router(stack, app);
    let recovery = journal.spawn_recovery(routes.clone());
    let wechat = WeChat::new(serve(routes).await, TOKEN);

    let traceparent = caller_traceparent();
    let (status, body) = deliver_with(&wechat, 1630, &[("traceparent", &traceparent)]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "success"));
    eventually(Duration::from_secs(8), || journal.stats().finished == 1).await;
    eventually(Duration::from_secs(5), || {
        named(&spans(&exporter), "wechat_callback").len() == 2
    })
    .await;
    recovery.stop().await;

    let spans = spans(&exporter);
    let trace = TraceId::from_hex(TRACE).unwrap();
    let callbacks = named(&spans, "wechat_callback");
    let first = callbacks
        .iter()
        .find(|span| span.parent_span_id == SpanId::from_hex(CALLER_SPAN).unwrap())
        .expect("the first run's span, child of the caller's");
    let recovered = callbacks
        .iter()
        .find(|span| span.span_context.span_id() != first.span_context.span_id())
        .unwrap();
    assert_eq!(first.span_context.trace_id(), trace);
    assert_eq!(recovered.span_context.trace_id(), trace, "{spans:#?}");
    assert_eq!(
        recovered.parent_span_id,
        first.span_context.span_id(),
        "the recovered run is a child of the original callback"
    );

    // Both runs' API calls went out in the caller's trace, each under its own run.
    let api_spans = named(&spans, "POST /cgi-bin/message/custom/send");
    assert_eq!(api_spans.len(), 2, "{spans:#?}");
    for api in &api_spans {
        assert_eq!(api.span_context.trace_id(), trace);
    }
    let parents: Vec<SpanId> = api_spans.iter().map(|span| span.parent_span_id).collect();
    assert!(parents.contains(&first.span_context.span_id()));
    assert!(parents.contains(&recovered.span_context.span_id()));
    let sends = sends(&standin);
    assert_eq!(sends.len(), 2);
    assert!(sends.iter().all(|sent| ids(sent).0 == trace), "{sends:?}");
}
