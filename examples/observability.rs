//! The quick start's echo bot with TimingLayer and a Prometheus endpoint.
//!
//! ```text
//! cargo run --example observability --features metrics
//! ```
//!
//! - `POST /wechat`: the callback, behind the quick start's stack (`TimingLayer` outermost);
//!   the log has one line per callback with its MsgId and latency.
//! - `GET /metrics`: Prometheus text format, with the callback latency histogram
//!   (`wechat_callback_duration_seconds_bucket` / `_sum` / `_count`) and the counters named
//!   in `tower_wechat::timing::metrics`.
//! - `GET /stats`: the same latencies read in process (`LatencyStats::snapshot`), per message
//!   type: count, p50, p90, p99, max.
//!
//! Environment: as the quick start (`WECHAT_ADDR`, `WECHAT_TOKEN`, safe mode…), plus
//! `WECHAT_BUDGET_MS` (default 1000): callbacks slower than this are logged at WARN and
//! counted over budget.

use std::error::Error;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use http::header;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tower_wechat::CallbackLayer;
use tower_wechat::timing::TimingLayer;
use tower_wechat::timing::metrics::DURATION_BUCKETS;

#[path = "quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

use quickstart::reply;

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

/// `/wechat` behind `stack`; `/metrics` rendered by `prometheus`; `/stats` from the stack's
/// in-process latency statistics.
pub fn app(stack: CallbackLayer, prometheus: PrometheusHandle) -> Router {
    let stats = stack.handle().latency().clone();
    let callback = Router::new().route("/wechat", post(reply)).layer(stack);
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

#[allow(dead_code)] // the integration test includes this file for `app`
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    quickstart::init_tracing();
    let addr = quickstart::listen_addr()?;
    let budget = match std::env::var("WECHAT_BUDGET_MS") {
        Ok(ms) => Duration::from_millis(
            ms.trim()
                .parse()
                .map_err(|_| format!("WECHAT_BUDGET_MS must be milliseconds, got {ms:?}"))?,
        ),
        Err(_) => TimingLayer::DEFAULT_BUDGET,
    };

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
    let stack = quickstart::stack_from_env()?.timing(|timing| timing.budget(budget));
    let handle = stack.handle();
    tower_wechat::serve::Server::new(listener)
        .serve(app(stack, prometheus), quickstart::shutdown_signal())
        .await?;
    handle.shutdown(Duration::from_secs(10)).await;
    quickstart::BufferedLog::flush();
    Ok(())
}
