//! Load run: time-to-answer of callbacks whose handler takes 3 s, at 64 concurrent callbacks.
//!
//! ```text
//! cargo run --release --example load_fast_ack
//! ```
//!
//! Starts the inbound stack (`CallbackLayer`: Timing → Verify → Dedup → FastAck → a handler
//! that sleeps) on a loopback port, then keeps `LOAD_CONCURRENCY` signed text messages in flight
//! over real HTTP for `LOAD_SECONDS`, each with a new MsgId, and prints the latency
//! percentiles of the answers. Client and server share this process (and the machine's
//! cores), so the figures include the client's own cost.
//!
//! Environment (all optional):
//! - `LOAD_CONCURRENCY` (default 64), `LOAD_SECONDS` (default 10),
//! - `LOAD_HANDLER_MS` (default 3000): how long each handler works,
//! - `LOAD_MODE`: `always-ack` (default: answer `success` at once) or `deadline` (answer
//!   with the handler's reply if it is ready within `LOAD_DEADLINE_MS`, default 4000),
//! - `LOAD_MAX_IN_FLIGHT` (default 100000): FastAck's bound on running handlers,
//! - `LOAD_JOURNAL`: `none` (default), `memory`, `file:PATH` (a fresh directory: the
//!   journal fsyncs each append before its callback is answered) or `redis://…` (feature
//!   `redis`): where each callback is stored before it is answered (see
//!   `tower_wechat::journal`).

use std::convert::Infallible;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_wechat::signature::Signature;
use tower_wechat::{CallbackLayer, Message, ReplyContent, Token};

const TOKEN: &str = "loadtoken";

fn setting(name: &str, default: u64) -> Result<u64, Box<dyn Error>> {
    match std::env::var(name) {
        Ok(value) => Ok(value
            .trim()
            .parse()
            .map_err(|_| format!("{name}: {value:?}"))?),
        Err(_) => Ok(default),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let concurrency = setting("LOAD_CONCURRENCY", 64)?;
    let seconds = setting("LOAD_SECONDS", 10)?;
    let handler_time = Duration::from_millis(setting("LOAD_HANDLER_MS", 3000)?);
    let deadline = Duration::from_millis(setting("LOAD_DEADLINE_MS", 4000)?);
    let max_in_flight = setting("LOAD_MAX_IN_FLIGHT", 100_000)? as usize;
    let mode = std::env::var("LOAD_MODE").unwrap_or_else(|_| "always-ack".to_owned());
    if !matches!(mode.as_str(), "always-ack" | "deadline") {
        return Err(format!("LOAD_MODE: always-ack or deadline, not {mode:?}").into());
    }
    let token = Token::new(TOKEN)?;
    let mut stack = CallbackLayer::new(token.clone()).fast_ack(|fast_ack| {
        let fast_ack = fast_ack.max_in_flight(max_in_flight);
        match mode.as_str() {
            "always-ack" => fast_ack.always_ack(),
            _ => fast_ack.deadline(deadline),
        }
    });
    let journal = std::env::var("LOAD_JOURNAL").unwrap_or_else(|_| "none".to_owned());
    stack = match journal.as_str() {
        "none" => stack,
        "memory" => stack.journal(tower_wechat::journal::MemoryJournal::with_budget(1 << 30)),
        file if file.starts_with("file:") => stack.journal(
            tower_wechat::journal::FileJournal::options()
                .create_dir(true)
                .open(&file["file:".len()..])?,
        ),
        #[cfg(feature = "redis")]
        url if url.starts_with("redis://") => {
            stack.journal(tower_wechat::journal::RedisJournal::open(url)?.max_entries(1_000_000))
        }
        other => {
            return Err(format!(
                "LOAD_JOURNAL: none, memory, file:PATH or redis://…, not {other:?}"
            )
            .into());
        }
    };
    let background = stack.handle();

    let slow = move |message: Message| async move {
        tokio::time::sleep(handler_time).await;
        message.reply(ReplyContent::text("done"))
    };
    let app = Router::new().route("/wechat", post(slow)).layer(stack);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tower_wechat::serve::Server::new(listener)
            .max_connections(4_096)
            .serve(app, std::future::pending()),
    );

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency as usize)
        .build_http();
    let next_id = Arc::new(AtomicU64::new(1));
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    println!(
        "{concurrency} concurrent callbacks for {seconds} s, handler {} ms, mode {mode}, journal {journal}",
        handler_time.as_millis()
    );

    let workers = (0..concurrency).map(|_| {
        let client = client.clone();
        let next_id = next_id.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0u64;
            while Instant::now() < stop_at {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let request = signed(&token, addr, id);
                let started = Instant::now();
                let response = client.request(request).await.expect("loopback request");
                let ok = response.status() == 200;
                response.into_body().collect().await.expect("loopback body");
                latencies.push(started.elapsed());
                refused += u64::from(!ok);
            }
            Ok::<_, Infallible>((latencies, refused))
        })
    });
    let mut latencies = Vec::new();
    let mut refused = 0;
    for worker in futures_util::future::join_all(workers).await {
        let (mut own, own_refused) = worker?.expect("infallible");
        latencies.append(&mut own);
        refused += own_refused;
    }
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "answered {} callbacks ({:.0}/s), {refused} not 200",
        latencies.len(),
        latencies.len() as f64 / seconds as f64
    );
    println!(
        "time to answer: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 100.0)),
    );
    println!(
        "handlers running at the end: {}",
        background.fast_ack().stats().in_flight
    );
    let report = background
        .shutdown(handler_time + Duration::from_secs(5))
        .await;
    println!(
        "drained: {} finished, {} unfinished; {:?}; journal {:?}",
        report.finished,
        report.unfinished,
        background.fast_ack().stats(),
        background.journal().map(|journal| journal.stats()),
    );
    Ok(())
}

fn signed(token: &Token, addr: std::net::SocketAddr, msg_id: u64) -> Request<Full<Bytes>> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        .to_string();
    let nonce = msg_id.to_string();
    let signature = Signature::plain(token, &timestamp, &nonce);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_load]]></ToUserName>\
         <FromUserName><![CDATA[oLoadUser]]></FromUserName><CreateTime>{timestamp}</CreateTime>\
         <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[load]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>"
    );
    Request::post(format!(
        "http://{addr}/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}&openid=oLoadUser"
    ))
    .header("content-type", "text/xml")
    .body(Full::new(Bytes::from(body)))
    .expect("valid request")
}
