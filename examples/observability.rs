//! The quick start's echo bot with TimingLayer and a Prometheus endpoint.
//!
//! ```text
//! cargo run --example observability --features metrics
//! ```
//!
//! - `POST /wechat`: the callback, behind `TimingLayer` (outermost) and `VerifyLayer`; the
//!   log has one line per callback with its MsgId and latency.
//! - `GET /metrics`: Prometheus text format, with the callback latency histogram
//!   (`wechat_callback_duration_seconds_bucket` / `_sum` / `_count`) and the counters named
//!   in `tower_wechat::timing::metrics`.
//! - `GET /stats`: the same latencies read in process (`LatencyStats::snapshot`), per message
//!   type: count, p50, p90, p99, max.
//!
//! Environment: `WECHAT_ADDR` (default `127.0.0.1:3000`), `WECHAT_TOKEN` (default
//! `towerwechatdemo`, for local tries only), `WECHAT_BUDGET_MS` (default 1000): callbacks
//! slower than this are logged at WARN and counted over budget.

use std::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::{get, post};
use http::header;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tower_wechat::signature::Signature;
use tower_wechat::timing::TimingLayer;
use tower_wechat::timing::metrics::DURATION_BUCKETS;
use tower_wechat::{Message, MessageKind, Reply, ReplyContent, Token, VerifyLayer};

/// The token used when `WECHAT_TOKEN` is not set. Only for trying the example locally.
pub const DEMO_TOKEN: &str = "towerwechatdemo";

/// Echoes text messages; everything else gets `success`.
pub async fn reply(message: Message) -> Reply {
    match &message.kind {
        MessageKind::Text { content } => {
            message.reply(ReplyContent::text(format!("You said: {content}")))
        }
        _ => Reply::success(),
    }
}

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

/// `/wechat` behind `timing` and `verify`; `/metrics` rendered by `prometheus`; `/stats`
/// from `timing`'s in-process statistics.
pub fn app(verify: VerifyLayer, timing: TimingLayer, prometheus: PrometheusHandle) -> Router {
    let stats = timing.stats();
    let callback = Router::new()
        .route("/wechat", post(reply))
        .layer(verify)
        .layer(timing);
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
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let addr: SocketAddr = std::env::var("WECHAT_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|error| format!("WECHAT_ADDR: {error}"))?;
    let token_text = std::env::var("WECHAT_TOKEN").unwrap_or_else(|_| DEMO_TOKEN.to_owned());
    let token = Token::new(token_text).map_err(|error| format!("WECHAT_TOKEN: {error}"))?;
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
    print_how_to_try(listener.local_addr()?, &token);
    let app = app(
        VerifyLayer::new(token),
        TimingLayer::new().budget(budget),
        prometheus,
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Prints a signed curl line for a text message, and the metrics and stats URLs.
fn print_how_to_try(addr: SocketAddr, token: &Token) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let timestamp = now.as_secs().to_string();
    let nonce = now.subsec_nanos().to_string();
    let signature = Signature::plain(token, &timestamp, &nonce);
    println!("WeChat callback URL: http://{addr}/wechat");
    println!("Send a text message (once; for the next 5 minutes):");
    println!(
        "  curl 'http://{addr}/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}' \
         -H 'Content-Type: text/xml' --data '<xml><ToUserName><![CDATA[gh_demo]]></ToUserName>\
         <FromUserName><![CDATA[oUser]]></FromUserName><CreateTime>{timestamp}</CreateTime>\
         <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content>\
         <MsgId>1</MsgId></xml>'"
    );
    println!("Then read the latency histogram and the counters:");
    println!("  curl http://{addr}/metrics");
    println!("  curl http://{addr}/stats");
}
