//! `RedisJournal` against a real `redis-server` (`common::redis_url`: `REDIS_URL`, or one it
//! starts; ignored unless asked for, as `scripts/test` does): the `Journal` semantics, two
//! replicas sharing a stream, a Redis killed with SIGKILL and restarted (AOF, fsync always),
//! and the recovery worker running on it. An unreachable Redis needs no server.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::redis_url;
use common::services::redis_server_bin;
use http::{Response, StatusCode};
use http_body_util::Full;
use tower_wechat::journal::{EntryId, Handoff, Journal, JournalEntry, JournalError, RedisJournal};
use tower_wechat::message::CallbackQuery;

const LEASE: Duration = Duration::from_secs(1);

/// A stream key no other test or run uses.
fn unique_prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tower-wechat-test:{name}:{nanos}")
}

fn entry(n: u32) -> JournalEntry {
    JournalEntry {
        path: "/wechat".into(),
        query: CallbackQuery {
            timestamp: 1_700_000_000 + u64::from(n),
            nonce: format!("nonce{n}"),
            openid: Some("oUser1234".into()),
            encrypted: n.is_multiple_of(2),
            redelivered: false,
        },
        body: Bytes::from(format!(
            "<xml><Content><![CDATA[消息 {n}]]></Content></xml>"
        )),
        key: Some(format!("gh_1:msg:{n}")),
        arrival_unix_ms: 1_700_000_000_000 + u64::from(n),
        attempt: 1,
        trace_context: None,
    }
}

fn journal(url: &str, prefix: &str, consumer: &str) -> RedisJournal {
    RedisJournal::open(url)
        .unwrap()
        .prefix(prefix)
        .consumer(consumer)
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `(id, owner, deliveries)` of every entry in the group's pending list.
async fn pel(url: &str, stream: &str) -> Vec<(String, String, u64)> {
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(stream)
        .arg("tower-wechat")
        .arg("-")
        .arg("+")
        .arg(1000)
        .query_async(&mut raw(url).await)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(id, owner, _idle, deliveries)| (id, owner, deliveries))
        .collect()
}

fn sorted(mut ids: Vec<EntryId>) -> Vec<EntryId> {
    ids.sort();
    ids
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn appended_entries_are_run_again_after_a_release_or_a_lapse_never_before() {
    let url = redis_url();
    let prefix = unique_prefix("semantics");
    let j = journal(&url, &prefix, "only");

    let a = j.append(&entry(1)).await.unwrap();
    let b = j.append(&entry(2)).await.unwrap();
    let c = j.append(&entry(3)).await.unwrap();
    assert_eq!(j.pending().await.unwrap(), 3);
    // Each append is in this consumer's pending list, delivered once.
    let owned = pel(&url, &prefix).await;
    assert_eq!(owned.len(), 3, "{owned:?}");
    assert!(owned.iter().all(|(_, owner, n)| owner == "only" && *n == 1));
    assert!(
        j.reclaim(LEASE, 10).await.unwrap().is_empty(),
        "all running"
    );

    j.finish(&a).await.unwrap();
    assert_eq!(j.pending().await.unwrap(), 2);
    // Finishing twice, or an id that was never there, is fine.
    j.finish(&a).await.unwrap();
    j.finish(&EntryId::new("1-1")).await.unwrap();

    // The release restarts b's clock; c is kept alive.
    tokio::time::sleep(LEASE * 3 / 4).await;
    j.release(&b).await.unwrap();
    j.keep_alive(std::slice::from_ref(&c)).await.unwrap();
    tokio::time::sleep(LEASE / 4).await;
    assert!(
        j.reclaim(LEASE, 10).await.unwrap().is_empty(),
        "b released and c kept alive less than a lease ago"
    );

    // A lease later, both are handed out again, counted as second deliveries.
    tokio::time::sleep(LEASE).await;
    let again = j.reclaim(LEASE, 10).await.unwrap();
    assert_eq!(
        sorted(again.iter().map(|r| r.id.clone()).collect()),
        sorted(vec![b.clone(), c.clone()])
    );
    for reclaimed in &again {
        let n = if reclaimed.id == b { 2 } else { 3 };
        assert_eq!(
            reclaimed.entry,
            JournalEntry {
                attempt: 2,
                ..entry(n)
            }
        );
    }
    assert!(
        j.reclaim(LEASE, 10).await.unwrap().is_empty(),
        "running here now"
    );

    // `max` is respected; what is left comes with the next call.
    j.release(&b).await.unwrap();
    j.release(&c).await.unwrap();
    tokio::time::sleep(LEASE + LEASE / 4).await;
    let first = j.reclaim(LEASE, 1).await.unwrap();
    let second = j.reclaim(LEASE, 1).await.unwrap();
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0].id, second[0].id);
    assert_eq!((first[0].entry.attempt, second[0].entry.attempt), (3, 3));

    // Dead-lettered: out of the journal, readable in `{prefix}:dead` with its reason.
    let dead = JournalEntry {
        attempt: 3,
        ..entry(2)
    };
    j.dead_letter(&b, &dead, "failed 3 deliveries")
        .await
        .unwrap();
    assert_eq!(j.pending().await.unwrap(), 1);
    let letters = j.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].original, b);
    assert_eq!(letters[0].reason, "failed 3 deliveries");
    assert_eq!(letters[0].entry.as_ref(), Some(&dead));

    // An entry finished meanwhile (say, by another replica) is not dead-lettered.
    j.finish(&c).await.unwrap();
    j.dead_letter(&c, &entry(3), "too late").await.unwrap();
    assert_eq!(j.dead_letters(10).await.unwrap().len(), 1);
    assert_eq!(j.pending().await.unwrap(), 0);
    assert!(pel(&url, &prefix).await.is_empty());
    tokio::time::sleep(LEASE + LEASE / 4).await;
    assert!(j.reclaim(LEASE, 10).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn a_full_journal_refuses_appends_and_trims_nothing() {
    let url = redis_url();
    let prefix = unique_prefix("full");
    let j = journal(&url, &prefix, "only").max_entries(3);
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(j.append(&entry(n)).await.unwrap());
    }
    for n in 3..6 {
        assert!(matches!(j.append(&entry(n)).await, Err(JournalError::Full)));
    }
    assert_eq!(j.pending().await.unwrap(), 3);
    j.finish(&ids[0]).await.unwrap();
    let fourth = j.append(&entry(9)).await.unwrap();
    assert!(matches!(
        j.append(&entry(10)).await,
        Err(JournalError::Full)
    ));

    // Every unfinished entry is still there, intact.
    tokio::time::sleep(LEASE + LEASE / 4).await;
    let left = j.reclaim(LEASE, 10).await.unwrap();
    assert_eq!(
        sorted(left.iter().map(|r| r.id.clone()).collect()),
        sorted(vec![ids[1].clone(), ids[2].clone(), fourth])
    );
    let mut bodies: Vec<_> = left.iter().map(|r| r.entry.body.clone()).collect();
    bodies.sort();
    let mut expected: Vec<_> = [1, 2, 9].map(|n| entry(n).body).to_vec();
    expected.sort();
    assert_eq!(bodies, expected);
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn unreadable_stray_and_deleted_entries_are_dealt_with() {
    let url = redis_url();
    let prefix = unique_prefix("odd");
    let j = journal(&url, &prefix, "only");
    let kept = j.append(&entry(1)).await.unwrap();
    let mut connection = raw(&url).await;

    // Added by hand, never delivered to the group: a garbage one and a valid one.
    let garbage: String = redis::cmd("XADD")
        .arg(&prefix)
        .arg("*")
        .arg("e")
        .arg(b"\x01not an entry".as_slice())
        .query_async(&mut connection)
        .await
        .unwrap();
    let stray: String = redis::cmd("XADD")
        .arg(&prefix)
        .arg("*")
        .arg("e")
        .arg(entry(7).encode())
        .query_async(&mut connection)
        .await
        .unwrap();
    let found = j.reclaim(LEASE, 10).await.unwrap();
    assert_eq!(found.len(), 1, "the valid stray, as a first delivery");
    assert_eq!(found[0].id.as_str(), stray);
    assert_eq!(found[0].entry, entry(7));
    assert_eq!(j.stats().unreadable, 1);
    let letters = j.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].original.as_str(), garbage);
    assert_eq!(letters[0].reason, "unreadable entry");
    assert_eq!(letters[0].entry, None);
    assert_eq!(j.pending().await.unwrap(), 2, "kept + the valid stray");

    // Deleted from the stream under the pending list: acknowledged away when found.
    let _: i64 = redis::cmd("XDEL")
        .arg(&prefix)
        .arg(kept.as_str())
        .query_async(&mut connection)
        .await
        .unwrap();
    tokio::time::sleep(LEASE + LEASE / 4).await;
    let found = j.reclaim(LEASE, 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id.as_str(), stray);
    assert_eq!(found[0].entry.attempt, 2);
    assert_eq!(j.stats().vanished, 1);
    let left: Vec<_> = pel(&url, &prefix)
        .await
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    assert_eq!(left, vec![stray]);

    // A group deleted by hand is made again, and the stream's entries are taken in.
    let _: i64 = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&prefix)
        .arg("tower-wechat")
        .query_async(&mut connection)
        .await
        .unwrap();
    let new = j.append(&entry(8)).await.unwrap();
    let owned: Vec<_> = pel(&url, &prefix)
        .await
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    assert_eq!(owned.len(), 2, "the stray and the new one: {owned:?}");
    assert!(owned.contains(&new.to_string()));
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn a_replica_takes_over_what_another_stopped_keeping_alive_after_the_lease() {
    let url = redis_url();
    let prefix = unique_prefix("replicas");
    let a = journal(&url, &prefix, "replica-a");
    let b = journal(&url, &prefix, "replica-b");
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(a.append(&entry(n)).await.unwrap());
    }

    // While A keeps its entries alive (every third of the lease), B gets none of them.
    let until = Instant::now() + LEASE * 2;
    while Instant::now() < until {
        a.keep_alive(&ids).await.unwrap();
        assert!(b.reclaim(LEASE, 10).await.unwrap().is_empty());
        tokio::time::sleep(LEASE / 3).await;
    }
    // A goes quiet (as if it had died): not before the lease...
    a.keep_alive(&ids).await.unwrap();
    tokio::time::sleep(LEASE / 4).await;
    assert!(b.reclaim(LEASE, 10).await.unwrap().is_empty());
    // ...and after it, B has them all, as second deliveries, and owns them.
    tokio::time::sleep(LEASE).await;
    let taken = b.reclaim(LEASE, 10).await.unwrap();
    assert_eq!(
        sorted(taken.iter().map(|r| r.id.clone()).collect()),
        sorted(ids.clone())
    );
    assert!(taken.iter().all(|r| r.entry.attempt == 2));
    let owners = pel(&url, &prefix).await;
    assert!(
        owners.iter().all(|(_, owner, _)| owner == "replica-b"),
        "{owners:?}"
    );

    // A comes back and keeps "its" entries alive: it does not take them back, and says so.
    a.keep_alive(&ids).await.unwrap();
    assert_eq!(a.stats().taken_over, 5);
    let owners = pel(&url, &prefix).await;
    assert!(
        owners.iter().all(|(_, owner, _)| owner == "replica-b"),
        "{owners:?}"
    );
    // A release by A of an entry B runs does not restart B's clock either.
    a.release(&ids[0]).await.unwrap();

    // B finishes them; nothing is left for anyone.
    for id in &ids {
        b.finish(id).await.unwrap();
    }
    drop(a);
    assert_eq!(b.pending().await.unwrap(), 0);
    tokio::time::sleep(LEASE + LEASE / 4).await;
    let c = journal(&url, &prefix, "replica-c");
    assert!(c.reclaim(LEASE, 10).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn the_recovery_worker_retries_on_another_replica_then_dead_letters() {
    let log = common::log::Log::default();
    let _guard = log.install("tower_wechat=info");
    let url = redis_url();
    let prefix = unique_prefix("worker");
    // Replica A appended two callbacks, then died.
    let a = journal(&url, &prefix, "replica-a");
    let ok = a.append(&entry(1)).await.unwrap();
    let failing = a.append(&entry(2)).await.unwrap();
    drop(a);

    // Replica B's worker: its app processes entry 1 and fails entry 2 every time.
    let b = Arc::new(journal(&url, &prefix, "replica-b"));
    let handoff = Handoff::from_arc(b.clone())
        .lease(LEASE)
        .max_deliveries(3)
        .recovery_interval(Duration::from_millis(50));
    let handle = handoff.handle();
    let runs = Arc::new(AtomicUsize::new(0));
    let app = tower::service_fn({
        let runs = runs.clone();
        move |request: http::Request<Full<Bytes>>| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let body = request.into_body();
                let body = http_body_util::BodyExt::collect(body)
                    .await
                    .unwrap()
                    .to_bytes();
                let status = if body == entry(2).body {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                Ok::<_, std::convert::Infallible>(
                    Response::builder().status(status).body(()).unwrap(),
                )
            }
        }
    });
    let recovery = handle.spawn_recovery(app);
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.pending().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "{:?}", handle.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    recovery.stop().await;

    let stats = handle.stats();
    // Entry 1 once (deliveries 2); entry 2 at deliveries 2 and 3, dead at the 4th.
    assert_eq!(runs.load(Ordering::SeqCst), 3, "{stats:?}");
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");
    let letters = b.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].original, failing);
    assert_eq!(letters[0].reason, "failed 3 deliveries");
    assert_eq!(letters[0].entry.as_ref().map(|e| e.attempt), Some(4));
    assert_ne!(letters[0].original, ok);
    let lines = log.lines().join("\n");
    assert!(lines.contains("moved to the dead letters"), "{lines}");
    assert!(
        !lines.contains("消息"),
        "no callback content in the log: {lines}"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn consumers_that_own_nothing_are_forgotten_after_the_idle_limit() {
    let url = redis_url();
    let prefix = unique_prefix("consumers");
    let gone = journal(&url, &prefix, "gone");
    let id = gone.append(&entry(1)).await.unwrap();
    gone.finish(&id).await.unwrap();
    let busy = journal(&url, &prefix, "busy");
    busy.append(&entry(2)).await.unwrap();
    let consumers = || async {
        let rows: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&prefix)
            .arg("tower-wechat")
            .query_async(&mut raw(&url).await)
            .await
            .unwrap();
        let mut names: Vec<String> = rows
            .iter()
            .map(|row| redis::from_redis_value(row[1].clone()).unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(consumers().await, ["busy", "gone"]);

    tokio::time::sleep(Duration::from_millis(300)).await;
    // A replica with the default limit (1 h) deletes nobody (and, claiming nothing, is
    // not made a consumer by Redis).
    journal(&url, &prefix, "patient")
        .reclaim(LEASE, 10)
        .await
        .unwrap();
    assert_eq!(consumers().await, ["busy", "gone"]);
    // With 200 ms: the idle consumers that own nothing go; the one owning an entry stays.
    journal(&url, &prefix, "tidy")
        .consumer_idle_limit(Duration::from_millis(200))
        .reclaim(LEASE, 10)
        .await
        .unwrap();
    assert_eq!(consumers().await, ["busy"]);
}

/// Nothing listens on port 1 of loopback.
const UNREACHABLE: &str = "redis://:hunter2@127.0.0.1:1/";

#[tokio::test]
async fn an_unreachable_redis_is_reported_by_the_first_operation_without_the_password() {
    // Opening does not connect (like the dedup store): it succeeds.
    let j = RedisJournal::open(UNREACHABLE).unwrap();
    let started = Instant::now();
    let errors = [
        j.append(&entry(1)).await.map(|_| ()).unwrap_err(),
        j.pending().await.map(|_| ()).unwrap_err(),
        j.reclaim(LEASE, 10).await.map(|_| ()).unwrap_err(),
        j.keep_alive(&[EntryId::new("1-1")]).await.unwrap_err(),
        j.finish(&EntryId::new("1-1")).await.unwrap_err(),
    ];
    for error in &errors {
        assert!(
            matches!(error, JournalError::Unavailable(_) | JournalError::Timeout),
            "{error:?}"
        );
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
    // Refused connections fail at once, well inside the hand-off's 2 s operation timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// A private Redis that the test kills and restarts.

/// A redis-server with AOF (`appendfsync always`) in its own directory, on a fixed port.
struct Server {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start() -> Self {
        let bin = redis_server_bin().expect(
            "this test starts its own redis-server: run scripts/test, or set \
             REDIS_SERVER_BIN=/path/to/redis-server, or put redis-server on PATH",
        );
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "tower-wechat-journal-redis-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            bin,
            dir,
            port,
            child: None,
        };
        server.run();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for(&self.dir, self.port);
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL: no shutdown, no final fsync.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(dir: &Path, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = (|| -> std::io::Result<bool> {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
            stream.set_read_timeout(Some(Duration::from_secs(1)))?;
            stream.write_all(b"PING\r\n")?;
            let mut answer = [0u8; 16];
            let n = stream.read(&mut answer)?;
            Ok(answer[..n].starts_with(b"+PONG"))
        })();
        if answered.unwrap_or(false) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not come up: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `operation` until it succeeds (Redis is coming back), at most 15 s.
async fn eventually<T, F: std::future::Future<Output = Result<T, JournalError>>>(
    mut operation: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match operation().await {
            Ok(value) => return value,
            Err(error) => {
                assert!(Instant::now() < deadline, "still failing: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: run scripts/test (it provisions one)"]
async fn a_redis_killed_and_restarted_keeps_every_acknowledged_append_and_its_delivery_count() {
    let mut server = Server::start();
    let url = server.url();
    let prefix = unique_prefix("restart");
    let j = journal(&url, &prefix, "only");

    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(j.append(&entry(n)).await.unwrap());
    }
    for id in &ids[..5] {
        j.finish(id).await.unwrap();
    }
    // One entry failed once already: released, reclaimed (deliveries 2), released again.
    j.release(&ids[5]).await.unwrap();
    tokio::time::sleep(LEASE + LEASE / 4).await;
    let retried = j.reclaim(LEASE, 1).await.unwrap();
    let retried_id = retried[0].id.clone();
    assert_eq!(retried[0].entry.attempt, 2);
    j.keep_alive(&ids[5..]).await.unwrap();
    j.release(&retried_id).await.unwrap();

    // A Redis that hangs (SIGSTOP): reads and keep-alives time out after the 1 s response
    // timeout, then work again once it answers.
    server.signal("STOP");
    let at = Instant::now();
    let hung = [
        tokio::time::timeout(Duration::from_secs(5), j.pending())
            .await
            .expect("bounded")
            .map(|_| ()),
        tokio::time::timeout(Duration::from_secs(5), j.keep_alive(&ids[5..]))
            .await
            .expect("bounded"),
    ];
    eprintln!("hung: 2 operations failed in {:?}: {hung:?}", at.elapsed());
    for result in hung {
        assert!(matches!(result, Err(JournalError::Timeout)), "{result:?}");
    }
    server.signal("CONT");
    assert_eq!(eventually(|| j.pending()).await, 15);

    server.kill();

    // During the outage every operation fails, quickly, with Unavailable or Timeout.
    let bounded = Duration::from_secs(5);
    for _ in 0..3 {
        let at = Instant::now();
        let results = [
            tokio::time::timeout(bounded, j.append(&entry(99)))
                .await
                .expect("bounded")
                .map(|_| ()),
            tokio::time::timeout(bounded, j.pending())
                .await
                .expect("bounded")
                .map(|_| ()),
            tokio::time::timeout(bounded, j.reclaim(LEASE, 10))
                .await
                .expect("bounded")
                .map(|_| ()),
            tokio::time::timeout(bounded, j.keep_alive(&ids))
                .await
                .expect("bounded"),
        ];
        eprintln!(
            "outage: 4 operations failed in {:?}: {results:?}",
            at.elapsed()
        );
        for result in results {
            assert!(
                matches!(
                    result,
                    Err(JournalError::Unavailable(_) | JournalError::Timeout)
                ),
                "{result:?}"
            );
        }
    }

    server.run();

    // The same journal recovers by itself; the 15 unfinished entries are all there.
    let at = Instant::now();
    assert_eq!(eventually(|| j.pending()).await, 15);
    eprintln!("recovered {:?} after the restart", at.elapsed());
    tokio::time::sleep(LEASE + LEASE / 4).await;
    let back = eventually(|| j.reclaim(LEASE, 100)).await;
    assert_eq!(
        sorted(back.iter().map(|r| r.id.clone()).collect()),
        sorted(ids[5..].to_vec())
    );
    for reclaimed in &back {
        let expected = if reclaimed.id == retried_id { 3 } else { 2 };
        assert_eq!(reclaimed.entry.attempt, expected, "{:?}", reclaimed.id);
        let n = ids.iter().position(|id| *id == reclaimed.id).unwrap() as u32;
        assert_eq!(
            reclaimed.entry,
            JournalEntry {
                attempt: expected,
                ..entry(n)
            }
        );
    }
    // And it takes new appends again.
    let new = j.append(&entry(100)).await.unwrap();
    j.finish(&new).await.unwrap();
    assert_eq!(j.pending().await.unwrap(), 15);
}
