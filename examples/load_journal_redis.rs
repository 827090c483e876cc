//! Load on `RedisJournal`: N concurrent tasks append (and, with `--finish`, then finish) an
//! entry of a typical callback's size as fast as they can; prints operations per second and
//! the p50 / p99 / max latency of an append.
//!
//! ```text
//! cargo run --release --example load_journal_redis --features redis -- \
//!     redis://127.0.0.1:6379/ [--tasks 64] [--seconds 10] [--finish]
//! ```
//!
//! It writes to a stream of its own (`tower-wechat-load:{time}`) and deletes it at the end.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tower_wechat::journal::{Journal, JournalEntry, RedisJournal};
use tower_wechat::message::CallbackQuery;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut url = "redis://127.0.0.1:6379/".to_owned();
    let (mut tasks, mut seconds, mut finish) = (64usize, 10u64, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tasks" => tasks = args.next().and_then(|n| n.parse().ok()).expect("--tasks N"),
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--seconds N");
            }
            "--finish" => finish = true,
            other => url = other.to_owned(),
        }
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("tower-wechat-load:{nanos}");
    let journal = Arc::new(
        RedisJournal::open(&url)
            .expect("a redis:// URL")
            .prefix(&prefix)
            .max_entries(u64::MAX),
    );
    // A text message as WeChat pushes it, about 300 bytes.
    let entry = JournalEntry {
        path: "/wechat".into(),
        query: CallbackQuery {
            timestamp: 1_700_000_000,
            nonce: "1234567890".into(),
            openid: Some("oUser1234567890abcdefghijklm".into()),
            encrypted: false,
            redelivered: false,
        },
        body: Bytes::from(format!(
            "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>\
             <FromUserName><![CDATA[oUser1234567890abcdefghijklm]]></FromUserName>\
             <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[{}]]></Content><MsgId>24000000000000000</MsgId></xml>",
            "你好".repeat(20)
        )),
        key: Some("gh_0123456789ab:msg:24000000000000000".into()),
        arrival_unix_ms: 1_700_000_000_000,
        attempt: 1,
        trace_context: None,
    };
    journal.append(&entry).await.expect("Redis answers");

    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let journal = journal.clone();
            let entry = entry.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < until {
                    let at = Instant::now();
                    match journal.append(&entry).await {
                        Ok(id) => {
                            latencies.push(at.elapsed());
                            if finish && journal.finish(&id).await.is_err() {
                                errors += 1;
                            }
                        }
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mine, failed) = worker.await.unwrap();
        latencies.extend(mine);
        errors += failed;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let what = if finish { "append+finish" } else { "append" };
    println!(
        "{tasks} tasks, {:.1} s: {} {what} cycles, {:.0}/s, {errors} errors; append latency p50 {:?} p99 {:?} max {:?}",
        elapsed.as_secs_f64(),
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99),
        latencies.last().unwrap(),
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&prefix)
        .query_async(&mut connection)
        .await
        .unwrap();
}
