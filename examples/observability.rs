//! The quick start's echo bot, observable: metrics, traces and profiles.
//!
//! ```text
//! cargo run --example observability --features metrics,otel,client
//! ```
//!
//! - `POST /wechat`: the callback, behind the quick start's stack (`TimingLayer` outermost);
//!   the log has one line per callback with its MsgId and latency. With `WECHAT_APPID` and
//!   `WECHAT_SECRET` set, the handler also sends the sender a customer-service message
//!   through `WeChatClient` (to `WECHAT_API_BASE`, default WeChat's): an outbound call to
//!   trace.
//! - `GET /metrics`: Prometheus text format, with the callback latency histogram
//!   (`wechat_callback_duration_seconds_bucket` / `_sum` / `_count`) and the counters named
//!   in `tower_wechat::timing::metrics`.
//! - `GET /stats`: the same latencies read in process (`LatencyStats::snapshot`), per message
//!   type: count, p50, p90, p99, max.
//!
//! **Traces** go through `tracing-opentelemetry` to an OpenTelemetry SDK provider: to an
//! OTLP collector over HTTP/protobuf when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set — e.g. `http://127.0.0.1:4318` for a local
//! collector or Jaeger — else printed to stdout, so the example runs offline. A callback
//! that arrives with a W3C `traceparent` continues that trace: `wechat_callback` → the
//! handler → the `wechat_api` call, whose request carries a `traceparent` too; with
//! `WECHAT_JOURNAL=memory` or `file:PATH`, a callback acknowledged before its handler ended
//! is journaled with its trace context, and a run recovered from the journal (after a
//! failure, or after a crash and restart) is a child of the original callback's span.
//! `OTEL_SERVICE_NAME` names the service (default `tower-wechat-observability`).
//!
//! **Profiles** (see `observability/pprof.rs`), on a separate listener `WECHAT_PPROF_ADDR`
//! (default `127.0.0.1:6060`), only when `WECHAT_PPROF_TOKEN` is set (at least 16
//! characters; every request sends it as `Authorization: Bearer …`):
//!
//! ```text
//! curl -H "Authorization: Bearer $WECHAT_PPROF_TOKEN" -o cpu.pb.gz 'http://127.0.0.1:6060/debug/pprof/profile?seconds=10'
//! go tool pprof -top cpu.pb.gz
//! curl -H "Authorization: Bearer $WECHAT_PPROF_TOKEN" -o cpu.svg 'http://127.0.0.1:6060/debug/pprof/profile?seconds=10&format=flamegraph'
//! curl -H "Authorization: Bearer $WECHAT_PPROF_TOKEN" -o heap.pb.gz http://127.0.0.1:6060/debug/pprof/heap
//! ```
//!
//! The CPU profiler walks frame pointers: build with `RUSTFLAGS="-C force-frame-pointers=yes"`
//! for whole stacks. These live in the example, not in the library: the heap profile needs
//! jemalloc as the process's global allocator (with `malloc_conf` set at link time) and the
//! CPU profiler installs a process-wide SIGPROF handler and timer — choices only the
//! application can make, once per process.
//!
//! Environment: as the quick start (`WECHAT_ADDR`, `WECHAT_TOKEN`, safe mode…), plus
//! `WECHAT_BUDGET_MS` (default 1000): callbacks slower than this are logged at WARN and
//! counted over budget; `WECHAT_DEMO_DELAY_MS` (default 0): how long the handler works
//! before answering (past FastAck's deadline, it finishes in the background).

use std::error::Error;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::header;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower_wechat::client::{AppSecret, CustomMessage, WeChatClient};
use tower_wechat::journal::{FileJournal, Handoff, MemoryJournal};
use tower_wechat::timing::TimingLayer;
use tower_wechat::timing::metrics::DURATION_BUCKETS;
use tower_wechat::{CallbackLayer, Message, Reply};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[path = "quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

#[path = "observability/pprof.rs"]
#[allow(dead_code)]
pub mod pprof_endpoints;

/// jemalloc as the allocator, for the heap profile.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: profiling on, one sample per 2^19 bytes
/// (512 KiB) allocated on average, so the cost stays small.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

/// Installs the Prometheus recorder as the global `metrics` recorder, with histogram
/// buckets for the duration metrics (without them the exporter writes summaries), and
/// describes tower-wechat's metrics. Once per process.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".to_owned()),
            DURATION_BUCKETS,
        )?
        .install_recorder()?;
    tower_wechat::timing::metrics::describe();
    Ok(handle)
}

/// The tracer provider: OTLP over HTTP when an OTLP endpoint is configured (the exporter
/// reads `OTEL_EXPORTER_OTLP_*` itself), else the stdout exporter.
pub fn tracer_provider() -> Result<SdkTracerProvider, Box<dyn Error>> {
    let service = std::env::var("OTEL_SERVICE_NAME")
        .unwrap_or_else(|_| "tower-wechat-observability".to_owned());
    let resource = Resource::builder().with_service_name(service).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    let provider = if configured {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        builder.with_batch_exporter(exporter).build()
    } else {
        builder
            .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
            .build()
    };
    Ok(provider)
}

/// Logs to stdout at `RUST_LOG` (default `info`) and sends the spans to `provider`.
pub fn init_tracing(provider: &SdkTracerProvider) {
    let tracer = provider.tracer("tower-wechat-observability");
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
        )
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .init();
}

/// What the handler does besides answering.
#[derive(Clone, Default)]
pub struct Handler {
    /// Sends each sender a customer-service message through this client.
    pub client: Option<WeChatClient>,
    /// Works this long before answering.
    pub delay: Duration,
}

/// The quick start's echo, after the configured work and outbound call.
async fn handle(State(handler): State<Handler>, message: Message) -> Reply {
    if !handler.delay.is_zero() {
        tokio::time::sleep(handler.delay).await;
    }
    if let Some(client) = &handler.client {
        let note = CustomMessage::text(&message.from_user_name, "Got your message");
        if let Err(error) = client.send_custom_message(&note).await {
            tracing::warn!(%error, "the customer-service message was not sent");
        }
    }
    quickstart::reply(message).await
}

/// `/wechat` behind `stack`; `/metrics` rendered by `prometheus`; `/stats` from the stack's
/// in-process latency statistics.
pub fn app(stack: CallbackLayer, prometheus: PrometheusHandle) -> Router {
    app_with(stack, prometheus, Handler::default())
}

/// [`app`] with a handler that does more.
pub fn app_with(stack: CallbackLayer, prometheus: PrometheusHandle, handler: Handler) -> Router {
    let stats = stack.handle().latency().clone();
    let callback = Router::new()
        .route("/wechat", post(handle))
        .with_state(handler)
        .layer(stack);
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    prometheus.render(),
                )
            }),
        )
        .route(
            "/stats",
            get(move || async move { stats.snapshot().to_string() }),
        )
        .merge(callback)
}

/// The client `WECHAT_APPID` / `WECHAT_SECRET` / `WECHAT_API_BASE` configure, if any.
fn client_from_env() -> Result<Option<WeChatClient>, Box<dyn Error>> {
    let (Ok(appid), Ok(secret)) = (
        std::env::var("WECHAT_APPID"),
        std::env::var("WECHAT_SECRET"),
    ) else {
        return Ok(None);
    };
    let mut builder = WeChatClient::builder(appid.trim(), AppSecret::new(secret.trim()));
    if let Ok(base) = std::env::var("WECHAT_API_BASE") {
        builder = builder.base_url(base.trim());
    }
    Ok(Some(builder.build()?))
}

/// The journal `WECHAT_JOURNAL` names: `memory`, `file:PATH`, or none (unset).
fn journal_from_env() -> Result<Option<Handoff>, Box<dyn Error>> {
    let Ok(setting) = std::env::var("WECHAT_JOURNAL") else {
        return Ok(None);
    };
    let handoff = match setting.trim() {
        "" | "none" => return Ok(None),
        "memory" => Handoff::new(MemoryJournal::new()),
        other => match other.strip_prefix("file:") {
            Some(dir) => Handoff::new(
                FileJournal::open(PathBuf::from(dir))
                    .map_err(|error| format!("WECHAT_JOURNAL: {error}"))?,
            ),
            None => return Err("WECHAT_JOURNAL: expected memory, file:PATH or none".into()),
        },
    };
    Ok(Some(handoff.lease(Duration::from_secs(5))))
}

fn millis_from_env(name: &str) -> Result<Option<Duration>, Box<dyn Error>> {
    match std::env::var(name) {
        Ok(ms) => {
            Ok(Some(Duration::from_millis(ms.trim().parse().map_err(
                |_| format!("{name} must be milliseconds, got {ms:?}"),
            )?)))
        }
        Err(_) => Ok(None),
    }
}

#[allow(dead_code)] // the integration test includes this file for `app`
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let provider = tracer_provider()?;
    init_tracing(&provider);
    let addr = quickstart::listen_addr()?;
    let budget = millis_from_env("WECHAT_BUDGET_MS")?.unwrap_or(TimingLayer::DEFAULT_BUDGET);
    let handler = Handler {
        client: client_from_env()?,
        delay: millis_from_env("WECHAT_DEMO_DELAY_MS")?.unwrap_or_default(),
    };
    let pprof = pprof_endpoints::settings_from_env()?;

    let prometheus = install_prometheus()?;
    // The exporter keeps histogram samples until upkeep folds them in.
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    quickstart::print_how_to_try(local);
    println!("Then read the latency histogram and the counters:");
    println!("  curl http://{local}/metrics");
    println!("  curl http://{local}/stats");
    let pprof_server = match pprof {
        Some((pprof_addr, token)) => {
            let pprof_listener = tokio::net::TcpListener::bind(pprof_addr).await?;
            let pprof_local = pprof_listener.local_addr()?;
            println!("Profiles (bearer token from WECHAT_PPROF_TOKEN):");
            println!("  http://{pprof_local}/debug/pprof/profile?seconds=10 (&format=flamegraph)");
            println!("  http://{pprof_local}/debug/pprof/heap");
            Some(tokio::spawn(async move {
                axum::serve(pprof_listener, pprof_endpoints::router(token))
                    .with_graceful_shutdown(quickstart::shutdown_signal())
                    .await
            }))
        }
        None => {
            println!(
                "Profiling endpoints off: set WECHAT_PPROF_TOKEN (16+ characters) to serve them"
            );
            None
        }
    };

    let mut stack = quickstart::stack_from_env()?.timing(|timing| timing.budget(budget));
    let journal = journal_from_env()?;
    if let Some(handoff) = journal {
        stack = stack.journal(handoff);
    }
    let handle = stack.handle();
    let app = app_with(stack, prometheus, handler);
    let recovery = handle
        .journal()
        .map(|journal| journal.spawn_recovery(app.clone()));
    tower_wechat::serve::Server::new(listener)
        .serve(app, quickstart::shutdown_signal())
        .await?;
    if let Some(recovery) = recovery {
        recovery.stop_within(Duration::from_secs(2)).await;
    }
    handle.shutdown(Duration::from_secs(10)).await;
    if let Some(server) = pprof_server {
        server.abort();
    }
    // Export what is still buffered.
    if let Err(error) = provider.shutdown() {
        eprintln!("exporting the last spans failed: {error}");
    }
    Ok(())
}
