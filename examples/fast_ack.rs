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
//! - `REDIS_URL` (with `--features redis`): dedup keys in Redis, shared by every replica
//!   started with the same URL; otherwise in memory.
//!
//! Each time the handler finishes it logs `processed msg_id=<MsgId>`. Ctrl-C or SIGTERM stops
//! taking callbacks and waits up to 10 s for running handlers.

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use tower_wechat::dedup::DedupStore;
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
async fn slow_echo(State(slow): State<Slow>, message: Message) -> Reply {
    tokio::time::sleep(slow.delay).await;
    let key = match message.msg_id {
        Some(msg_id) => msg_id.to_string(),
        None => format!("{}@{}", message.msg_type(), message.create_time),
    };
    tracing::info!(msg_id = %key, "processed");
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
    quickstart::init_tracing();
    let addr = quickstart::listen_addr()?;
    let delay = Duration::from_millis(env_number("WECHAT_DEMO_DELAY_MS", 6000)?);
    let max_in_flight = usize::try_from(env_number("WECHAT_MAX_IN_FLIGHT", 1024)?)?;
    let stack =
        quickstart::stack_from_env()?.fast_ack(|fast_ack| fast_ack.max_in_flight(max_in_flight));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    quickstart::print_how_to_try(listener.local_addr()?);
    println!("The handler takes {} ms per message.", delay.as_millis());

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
    tower_wechat::serve::Server::new(listener)
        .serve(demo.router, quickstart::shutdown_signal())
        .await?;
    let report = demo.handle.shutdown(Duration::from_secs(10)).await;
    println!(
        "stopped: {} handlers finished during shutdown, {} did not; {:?}; {:?}",
        report.finished,
        report.unfinished,
        demo.handle.fast_ack().stats(),
        demo.handle.dedup().stats()
    );
    Ok(())
}
