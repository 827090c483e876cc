//! Measures the file journal alone: N concurrent appenders, each append waiting for its
//! fsync (group commit), each entry finished `--hold-ms` later as a handler would.
//!
//!   cargo run --release --example file_journal_load -- [--dir PATH] [--appenders 64]
//!       [--seconds 10] [--body 600] [--hold-ms 3000]
//!
//! Prints appends/s, the append latency (p50, p99, max), and syncs (appends per sync is the
//! group commit's batch size). `--dir` should be on the disk the journal will use (default:
//! a fresh directory under `target/`, removed afterwards).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tower_wechat::journal::{FileJournal, Journal, JournalEntry};
use tower_wechat::message::CallbackQuery;

fn main() {
    let mut dir = None;
    let mut appenders = 64usize;
    let mut seconds = 10u64;
    let mut body = 600usize;
    let mut hold_ms = 3000u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => dir = Some(std::path::PathBuf::from(value)),
            "--appenders" => appenders = value.parse().unwrap(),
            "--seconds" => seconds = value.parse().unwrap(),
            "--body" => body = value.parse().unwrap(),
            "--hold-ms" => hold_ms = value.parse().unwrap(),
            _ => panic!("unknown flag {flag}"),
        }
    }
    let temp = match &dir {
        Some(_) => None,
        None => {
            std::fs::create_dir_all("target").unwrap();
            Some(tempfile::tempdir_in("target").unwrap())
        }
    };
    let dir = dir.unwrap_or_else(|| temp.as_ref().unwrap().path().to_path_buf());
    let journal = Arc::new(FileJournal::options().create_dir(true).open(&dir).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut latencies: Vec<u32> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..appenders {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let entry = entry(&format!("{task}-{n}"), body);
                    let start = Instant::now();
                    let id = journal.append(&entry).await.unwrap();
                    latencies.push(start.elapsed().as_micros() as u32);
                    let journal = journal.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                        journal.finish(&id).await.unwrap();
                    });
                }
                latencies
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let stats = journal.stats();
    println!(
        "{appenders} appenders, {body}-byte bodies, {seconds} s, entries finished {hold_ms} ms after their append, in {}",
        dir.display()
    );
    println!(
        "appends: {} ({:.0}/s); latency ms: p50 {:.2}, p99 {:.2}, max {:.2}",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!(
        "syncs: {} ({:.1} appends per sync); segments {}, {} bytes, {} deleted",
        stats.syncs,
        stats.appends as f64 / stats.syncs.max(1) as f64,
        stats.segments,
        stats.bytes,
        stats.deleted_segments
    );
    drop(runtime);
    drop(journal);
}

fn entry(nonce: &str, body: usize) -> JournalEntry {
    JournalEntry {
        path: "/wechat".into(),
        query: CallbackQuery {
            timestamp: 1_700_000_000,
            nonce: nonce.into(),
            openid: Some("oUser1234".into()),
            encrypted: false,
            redelivered: false,
        },
        body: Bytes::from(vec![b'x'; body]),
        key: Some(format!("gh_1:msg:{nonce}")),
        arrival_unix_ms: 1_700_000_000_000,
        attempt: 1,
        trace_context: None,
    }
}
