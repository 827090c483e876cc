//! Fast ack and dedup: a handler slower than WeChat's 5 seconds, answered in time and run once
//! per message however often WeChat retries.
//!
//! ```text
//! cargo run --example fast_ack
//! ```
//!
//! Environment (all optional), as the quick start plus:
//! - `WECHAT_ADDR` (default `127.0.0.1:3000`), `WECHAT_TOKEN` (default `towerwechatdemo`) and
//!   the quick start's other settings (safe mode, timestamp window).
//! - `WECHAT_DEMO_DELAY_MS`: how long the handler works on each message (default 6000, more
//!   than WeChat waits). Each callback is answered within the 4 s deadline: with the echo
//!   reply if the handler is done, else `success` while it finishes in the background.
//! - `WECHAT_MAX_IN_FLIGHT`: handlers allowed at once (default 1024); beyond it, `503`.
//! - `WECHAT_ACK_DEADLINE_MS`: how long a callback waits for the handler before `success`
//!   (default 4000).
//! - `REDIS_URL` (with `--features redis`): dedup keys in Redis, shared by every replica
//!   started with the same URL; otherwise in memory.
//! - `WECHAT_JOURNAL`: where an acknowledged callback waits until its handler finished (see
//!   `tower_wechat::journal`): `memory` (the default: not durable), `file:PATH` (an fsync'd
//!   journal in the directory PATH: survives `kill -9`, replayed when the example starts
//!   again), `redis://…` (with `--features redis`: Redis Streams, any replica with the same
//!   URL finishes a dead one's work), or `none` (no journal: handlers run only in memory).
//!   `WECHAT_JOURNAL_LEASE_MS` (default 30000): how long a dead process's entries wait
//!   before another worker runs them. `WECHAT_WORKER_ONLY=1` serves no HTTP: the process
//!   only runs the recovery worker (an extra consumer).
//!
//! Each time the handler finishes a run it logs `processed msg_id=<MsgId>` (recovered runs
//! too, with `attempt`), so a run can be audited from its log. Ctrl-C or SIGTERM stops
//! taking callbacks and waits up to 10 s for running handlers; what is left stays in the
//! journal for the next start or another replica.

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, State};
use axum::routing::post;
use tower_wechat::dedup::DedupStore;
use tower_wechat::hook::Delivery;
use tower_wechat::journal::{FileJournal, Handoff, MemoryJournal};
use tower_wechat::{CallbackHandle, CallbackLayer, Message, MessageKind, Reply, ReplyContent};

#[path = "quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

/// How many times the handler finished, per MsgId (or per event, for messages without one).
#[derive(Clone, Default)]
pub struct Processed(Arc<Mutex<HashMap<String, usize>>>);

impl Processed {
    /// The counts now.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }

    fn record(&self, key: String) {
        *self.0.lock().unwrap().entry(key).or_default() += 1;
    }
}

/// The demo server and its handles.
pub struct Demo {
    /// `/wechat` behind the stack (Timing → Verify → Dedup → FastAck).
    pub router: Router,
    /// The stack's handles: FastAck's counters and shutdown, Dedup's counters, latencies.
    pub handle: CallbackHandle,
    /// What the handler has processed.
    pub processed: Processed,
}

#[derive(Clone)]
struct Slow {
    delay: Duration,
    processed: Processed,
}

/// Works on the message for `delay`, then echoes it.
async fn slow_echo(
    State(slow): State<Slow>,
    delivery: Option<Extension<Delivery>>,
    message: Message,
) -> Reply {
    tokio::time::sleep(slow.delay).await;
    let key = match message.msg_id {
        Some(msg_id) => msg_id.to_string(),
        None => format!("{}@{}", message.msg_type(), message.create_time),
    };
    let attempt = delivery.map_or(1, |Extension(delivery)| delivery.attempt);
    tracing::info!(msg_id = %key, attempt, "processed");
    slow.processed.record(key);
    match &message.kind {
        MessageKind::Text { content } => message.reply(ReplyContent::text(content.clone())),
        _ => Reply::success(),
    }
}

/// The demo's router behind `stack`: the handler takes `delay` per message.
pub fn app<St: DedupStore>(stack: CallbackLayer<St>, delay: Duration) -> Demo {
    let processed = Processed::default();
    let handle = stack.handle();
    let router = Router::new()
        .route("/wechat", post(slow_echo))
        .with_state(Slow {
            delay,
            processed: processed.clone(),
        })
        .layer(stack);
    Demo {
        router,
        handle,
        processed,
    }
}

/// The journal `WECHAT_JOURNAL` names, with the lease `WECHAT_JOURNAL_LEASE_MS`; `None` for
/// `none`.
pub fn journal_from_env() -> Result<Option<Handoff>, Box<dyn Error>> {
    let lease = Duration::from_millis(env_number("WECHAT_JOURNAL_LEASE_MS", 30_000)?);
    let setting = std::env::var("WECHAT_JOURNAL").unwrap_or_else(|_| "memory".to_owned());
    let handoff = match setting.trim() {
        "none" => return Ok(None),
        "memory" => Handoff::new(MemoryJournal::new()),
        file if file.starts_with("file:") => {
            let dir = &file["file:".len()..];
            Handoff::new(
                FileJournal::open(dir).map_err(|error| format!("WECHAT_JOURNAL: {error}"))?,
            )
        }
        #[cfg(feature = "redis")]
        url if url.starts_with("redis://") || url.starts_with("rediss://") => Handoff::new(
            tower_wechat::journal::RedisJournal::open(url)
                .map_err(|error| format!("WECHAT_JOURNAL: {error}"))?,
        ),
        #[cfg(not(feature = "redis"))]
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            return Err("WECHAT_JOURNAL is a Redis URL: build with --features redis".into());
        }
        _ => {
            return Err("WECHAT_JOURNAL: expected memory, file:PATH, redis://… or none".into());
        }
    };
    // Recovered runs go through FastAck's bound too; after a crash, a whole burst comes back.
    Ok(Some(handoff.lease(lease).recovery_concurrency(256)))
}

fn env_number(name: &str, default: u64) -> Result<u64, Box<dyn Error>> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a whole number, got {value:?}").into()),
    }
}

#[allow(dead_code)] // the integration tests include this file for `app`
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Line by line: tests/journal_crash.rs counts the `processed` lines of a killed process.
    quickstart::init_tracing_line_by_line();
    let addr = quickstart::listen_addr()?;
    let delay = Duration::from_millis(env_number("WECHAT_DEMO_DELAY_MS", 6000)?);
    let max_in_flight = usize::try_from(env_number("WECHAT_MAX_IN_FLIGHT", 1024)?)?;
    let deadline = Duration::from_millis(env_number("WECHAT_ACK_DEADLINE_MS", 4000)?);
    let mut stack = quickstart::stack_from_env()?
        .fast_ack(|fast_ack| fast_ack.max_in_flight(max_in_flight).deadline(deadline));
    if let Some(handoff) = journal_from_env()? {
        stack = stack.journal(handoff);
    }
    let worker_only = std::env::var("WECHAT_WORKER_ONLY").is_ok_and(|value| value == "1");

    let demo = match std::env::var("REDIS_URL") {
        #[cfg(feature = "redis")]
        Ok(url) => {
            println!("Dedup keys in Redis at {url}");
            let store = tower_wechat::dedup::RedisStore::open(&url)?;
            app(
                stack.dedup(|_| tower_wechat::DedupLayer::with_store(store)),
                delay,
            )
        }
        #[cfg(not(feature = "redis"))]
        Ok(_) => return Err("REDIS_URL is set: build with --features redis".into()),
        Err(_) => app(stack, delay),
    };
    // The recovery worker runs what a dead process (or a failed run) left in the journal,
    // through the same router.
    let recovery = demo
        .handle
        .journal()
        .map(|journal| journal.spawn_recovery(demo.router.clone()));
    if worker_only {
        println!("Worker only: running what the journal holds, no HTTP.");
        quickstart::shutdown_signal().await;
    } else {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        quickstart::print_how_to_try(listener.local_addr()?);
        println!("The handler takes {} ms per message.", delay.as_millis());
        tower_wechat::serve::Server::new(listener)
            .serve(demo.router.clone(), quickstart::shutdown_signal())
            .await?;
    }
    if let Some(recovery) = recovery {
        recovery.stop_within(Duration::from_secs(2)).await;
    }
    let report = demo.handle.shutdown(Duration::from_secs(10)).await;
    println!(
        "stopped: {} handlers finished during shutdown, {} did not (they stay in the journal); {:?}; {:?}; {:?}",
        report.finished,
        report.unfinished,
        demo.handle.fast_ack().stats(),
        demo.handle.dedup().stats(),
        demo.handle.journal().map(|journal| journal.stats()),
    );
    Ok(())
}
