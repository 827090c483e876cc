//! The durable hand-off with real processes: the `fast_ack` example, killed with SIGKILL
//! after it acknowledged a burst, loses nothing — started again, it runs every message from
//! its file journal; with Redis Streams, a second replica finishes the dead one's work. Each
//! message is processed exactly once, counted from the example's `processed msg_id=` lines.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{WeChat, text_message};
use http::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const TOKEN: &str = "crashtoken7";
const MESSAGES: u64 = 200;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One run of the example, its log lines streamed to the test.
struct Replica {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
}

impl Replica {
    async fn start(addr: SocketAddr, envs: &[(&str, String)]) -> Self {
        let mut command = Command::new(common::services::example("fast_ack"));
        command
            .env("WECHAT_ADDR", addr.to_string())
            .env("WECHAT_TOKEN", TOKEN)
            .env("WECHAT_DEMO_DELAY_MS", "2000")
            .env("WECHAT_ACK_DEADLINE_MS", "1000")
            .env("WECHAT_JOURNAL_LEASE_MS", "1000")
            .env("RUST_LOG", "info")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start the fast_ack example");
        let (sender, lines) = mpsc::unbounded_channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let _ = sender.send(line);
                }
            });
        }
        let mut replica = Self {
            child,
            lines,
            log: Vec::new(),
        };
        replica
            .wait_for(Duration::from_secs(60), |line| {
                line.contains("WeChat callback URL") || line.contains("Worker only")
            })
            .await;
        replica
    }

    /// Reads lines until one satisfies `done` (kept in `log`).
    async fn wait_for(&mut self, limit: Duration, mut done: impl FnMut(&str) -> bool) {
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let hit = done(&line);
                    self.log.push(line);
                    if hit {
                        return;
                    }
                }
                Ok(None) => panic!("the example exited:\n{}", self.log.join("\n")),
                Err(_) => panic!("not within {limit:?}:\n{}", self.log.join("\n")),
            }
        }
    }

    /// Reads what is there now.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
    }

    /// SIGKILL: no shutdown, no drain, no flush.
    async fn kill_9(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        // What it wrote before it died.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.drain();
    }

    /// The MsgIds of `processed` lines, with how often each was processed.
    fn processed(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for line in &self.log {
            let id = line
                .split("msg_id=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next());
            if let Some(id) = id.filter(|_| line.contains(" processed")) {
                *counts.entry(id.to_owned()).or_default() += 1;
            }
        }
        counts
    }
}

/// Sends the burst to `addr` as WeChat does: a callback answered `503` (the journal could
/// not store it in time, say while the server warms up) is delivered again, up to three
/// tries in all. Every callback must end acknowledged with `success`.
async fn burst(addr: SocketAddr, first_id: u64) {
    let wechat = WeChat::new(addr, TOKEN);
    let answers = futures_util::future::join_all((0..MESSAGES).map(|i| {
        let wechat = &wechat;
        async move {
            let delivery = wechat.delivery(&text_message("durable", first_id + i));
            let mut answer = wechat.send_delivery(&delivery).await;
            for _ in 1..3 {
                if answer.status != StatusCode::SERVICE_UNAVAILABLE {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                answer = wechat.send_delivery(&delivery).await;
            }
            answer
        }
    }))
    .await;
    for answer in answers {
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "success"),
            "acknowledged before the handler finished"
        );
    }
}

fn merged(runs: &[&Replica]) -> HashMap<String, usize> {
    let mut all: HashMap<String, usize> = HashMap::new();
    for run in runs {
        for (id, n) in run.processed() {
            *all.entry(id).or_default() += n;
        }
    }
    all
}

fn assert_each_once(all: &HashMap<String, usize>, first_id: u64) {
    for i in 0..MESSAGES {
        let id = (first_id + i).to_string();
        assert_eq!(
            all.get(&id),
            Some(&1),
            "msg_id {id} processed {:?} times",
            all.get(&id)
        );
    }
    assert_eq!(all.len() as u64, MESSAGES, "nothing else processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_the_acks_then_a_restart_processes_every_message_once_from_the_file_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = format!("file:{}", dir.path().display());
    let envs = [("WECHAT_JOURNAL", journal)];
    let addr = free_addr();
    let mut first = Replica::start(addr, &envs).await;
    burst(addr, 70_000).await;
    first.kill_9().await;
    let before = first.processed();
    assert!(
        before.len() < MESSAGES as usize,
        "killed while handlers ran: {} already processed",
        before.len()
    );
    assert_journal_holds_entries(dir.path());

    let mut second = Replica::start(free_addr(), &envs).await;
    let expected = MESSAGES as usize - before.len();
    let mut seen = 0;
    second
        .wait_for(Duration::from_secs(60), |line| {
            seen += usize::from(line.contains(" processed"));
            seen == expected
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.drain();
    assert_each_once(&merged(&[&first, &second]), 70_000);
    assert!(
        second
            .log
            .iter()
            .any(|line| line.contains("recovered=true")),
        "the recovered runs are logged as such"
    );
}

/// The journal directory has segment data after the kill.
fn assert_journal_holds_entries(dir: &Path) {
    let bytes: u64 = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    assert!(bytes > 0, "the journal wrote to {}", dir.display());
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn two_replicas_on_redis_streams_one_killed_mid_burst_the_other_finishes_its_work() {
    let url = common::redis_url();
    let envs = [("WECHAT_JOURNAL", url.clone()), ("REDIS_URL", url)];
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let mut a = Replica::start(addr_a, &envs).await;
    let mut b = Replica::start(addr_b, &envs).await;
    burst(addr_a, 80_000).await;
    let killed = Instant::now();
    a.kill_9().await;
    let before = a.processed();

    let expected = MESSAGES as usize - before.len();
    let mut seen = 0;
    b.wait_for(Duration::from_secs(60), |line| {
        seen += usize::from(line.contains(" processed"));
        seen == expected
    })
    .await;
    let took = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.drain();
    assert_each_once(&merged(&[&a, &b]), 80_000);
    // Lease 1 s, handlers 2 s: B picks the work up after the lease and finishes it.
    assert!(
        took < Duration::from_secs(15),
        "B finished A's work {took:?} after the kill"
    );
    eprintln!("B finished A's {expected} messages {took:?} after the kill");
}
