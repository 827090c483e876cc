//! Issue 11, each item as an attacker tried it, over real loopback TCP against the one-call
//! stack served by `serve::Server`: slow clients, log injection, the path in the log, a
//! hung dedup store, memory by bytes, shutdown with slow clients, another route's answer.
//! Bounded in count and time; the timeouts are shortened so the tests run in seconds.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use common::log::Log;
use common::{WeChat, now, text_message};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_wechat::crypto::EncodingAesKey;
use tower_wechat::dedup::{DedupLayer, MemoryStore, RedisStore};
use tower_wechat::serve::{ServeReport, Server};
use tower_wechat::verify::SafeMode;
use tower_wechat::{CallbackLayer, Message, MessageKind, Reply, ReplyContent, Token, VerifyLayer};

const TOKEN: &str = "hostiletoken";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

async fn echo(message: Message) -> Reply {
    match &message.kind {
        MessageKind::Text { content } if content == "slow" => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            message.reply(ReplyContent::text("done"))
        }
        MessageKind::Text { content } => message.reply(ReplyContent::text(content.clone())),
        _ => Reply::success(),
    }
}

fn verify() -> VerifyLayer {
    VerifyLayer::new(Token::new(TOKEN).unwrap())
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<ServeReport>>,
}

impl Running {
    async fn start(router: Router, server: impl FnOnce(Server) -> Server) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server(Server::new(listener)).serve(router, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            served,
        }
    }

    /// Signals shutdown; the report and how long the server took to return.
    async fn stop(mut self) -> (ServeReport, Duration) {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        let report = tokio::time::timeout(Duration::from_secs(20), self.served)
            .await
            .expect("the server returns")
            .unwrap()
            .unwrap();
        (report, started.elapsed())
    }
}

/// How long until the server closes `stream` (EOF or reset), reading whatever it sends.
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            stream.read(&mut buffer),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some((started.elapsed(), received)),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

/// A client that sends a request head one line every `every`, never finishing it.
fn trickle_head(addr: SocketAddr, every: Duration) -> JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let started = Instant::now();
        stream
            .write_all(b"POST /wechat?signature=x HTTP/1.1\r\nHost: a\r\n")
            .await
            .ok()?;
        let mut line = 0u64;
        loop {
            let mut probe = [0u8; 64];
            tokio::select! {
                read = stream.read(&mut probe) => match read {
                    Ok(0) | Err(_) => return Some(started.elapsed()),
                    Ok(_) => {}
                },
                () = tokio::time::sleep(every) => {
                    line += 1;
                    if stream.write_all(format!("X-{line}: y\r\n").as_bytes()).await.is_err() {
                        return Some(started.elapsed());
                    }
                }
            }
        }
    })
}

fn safe_stack() -> CallbackLayer {
    let key = EncodingAesKey::new(KEY).unwrap();
    CallbackLayer::with_verify(verify().safe_mode(SafeMode::new(key, "wx1234567890abcdef")))
}

/// A safe-mode query with a `msg_signature` that matches nothing: no credential needed.
fn unsigned_safe_query() -> String {
    format!(
        "msg_signature={}&timestamp={}&nonce=1&encrypt_type=aes",
        "0".repeat(40),
        now()
    )
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_cut_off_at_the_header_timeout() {
    let server = Running::start(
        Router::new()
            .route("/wechat", post(echo))
            .layer(CallbackLayer::new(Token::new(TOKEN).unwrap())),
        |server| server.header_read_timeout(Duration::from_millis(500)),
    )
    .await;
    let tricklers: Vec<_> = (0..20)
        .map(|_| trickle_head(server.addr, Duration::from_millis(100)))
        .collect();
    // A client that connects and sends nothing is cut off too.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    for trickler in tricklers {
        let cut = trickler.await.unwrap().expect("connected");
        assert!(
            cut >= Duration::from_millis(400) && cut < Duration::from_millis(2_000),
            "cut after {cut:?}"
        );
    }
    let (cut, _) = closed_after(&mut silent, Duration::from_secs(2))
        .await
        .expect("a silent client is cut off");
    assert!(cut < Duration::from_millis(1_500), "{cut:?}");
    let (report, _) = server.stop().await;
    assert_eq!(report.header_timeouts, 21, "{report:?}");
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_at_once() {
    let server = Running::start(
        Router::new()
            .route("/wechat", post(echo))
            .layer(safe_stack()),
        |server| server,
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let head = format!(
        "POST /wechat HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n",
        "b".repeat(380 * 1024)
    );
    // The server stops reading past its limit, so the write may fail half way.
    let _ = stream.write_all(head.as_bytes()).await;
    let (_, answer) = closed_after(&mut stream, Duration::from_secs(2))
        .await
        .expect("closed");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    server.stop().await;
}

#[tokio::test]
async fn a_slow_or_endless_body_without_a_credential_gets_408_at_the_body_deadline() {
    let log = Log::default();
    let _guard = log.install("info");
    let stack = safe_stack().verify(|verify| verify.body_timeout(Duration::from_millis(500)));
    let server = Running::start(
        Router::new().route("/wechat", post(echo)).layer(stack),
        |server| server.header_read_timeout(Duration::from_secs(30)),
    )
    .await;
    let slow_body = format!(
        "POST /wechat?{} HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n<xml>",
        unsigned_safe_query()
    );
    let chunked = format!(
        "POST /wechat?{} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        unsigned_safe_query()
    );
    let clients = [slow_body, chunked].map(|head| {
        let addr = server.addr;
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            stream.write_all(head.as_bytes()).await.unwrap();
            let (mut read, mut write) = stream.into_split();
            // One more byte (a one-byte chunk) every 100 ms, forever.
            let chunked = head.contains("chunked");
            let writer = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let piece: &[u8] = if chunked { b"1\r\na\r\n" } else { b"a" };
                    if write.write_all(piece).await.is_err() {
                        break;
                    }
                }
            });
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(3), read.read_to_end(&mut answer)).await;
            writer.abort();
            (
                started.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
            )
        })
    });
    for client in clients {
        let (elapsed, answer) = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert!(
            elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(1_500),
            "answered after {elapsed:?}"
        );
    }
    let lines = log.lines();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("request body was not received in time")),
        "{lines:#?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn callbacks_are_answered_in_time_while_slow_clients_hold_most_connections() {
    let server = Running::start(
        Router::new()
            .route("/wechat", post(echo))
            .layer(CallbackLayer::new(Token::new(TOKEN).unwrap())),
        |server| {
            server
                .max_connections(64)
                .header_read_timeout(Duration::from_secs(30))
        },
    )
    .await;
    let tricklers: Vec<_> = (0..60)
        .map(|_| trickle_head(server.addr, Duration::from_millis(200)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wechat = WeChat::new(server.addr, TOKEN);
    for id in 1..=5 {
        let started = Instant::now();
        let answer = wechat.deliver(&text_message("hi", id)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.contains("hi"), "{}", answer.body);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    for trickler in &tricklers {
        assert!(!trickler.is_finished(), "slow clients are still connected");
    }
    let (report, _) = server.stop().await;
    assert_eq!(report.refused, 0, "{report:?}");
    for trickler in tricklers {
        trickler.abort();
    }
}

#[tokio::test]
async fn the_connection_cap_holds_and_says_so_at_a_bounded_rate() {
    let log = Log::default();
    let _guard = log.install("info");
    let server = Running::start(
        Router::new()
            .route("/wechat", post(echo))
            .layer(CallbackLayer::new(Token::new(TOKEN).unwrap())),
        |server| {
            server
                .max_connections(8)
                .header_read_timeout(Duration::from_secs(30))
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Past the cap: accepted and closed at once.
    for _ in 0..50 {
        let mut extra = TcpStream::connect(server.addr).await.unwrap();
        let (closed, _) = closed_after(&mut extra, Duration::from_secs(1))
            .await
            .expect("closed at once");
        assert!(closed < Duration::from_millis(500), "{closed:?}");
    }
    // A slot frees: WeChat is served again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = WeChat::new(server.addr, TOKEN)
        .deliver(&text_message("back", 1))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let (report, _) = server.stop().await;
    assert_eq!(report.refused, 50, "{report:?}");
    let warnings = log
        .lines()
        .into_iter()
        .filter(|line| line.contains("connection cap reached"))
        .count();
    assert!((1..=10).contains(&warnings), "{warnings} warnings");
}

#[tokio::test]
async fn a_forged_end_tag_reaches_neither_the_log_nor_the_answer_raw() {
    let log = Log::default();
    let _guard = log.install("info");
    let server = Running::start(
        Router::new()
            .route("/wechat", post(echo))
            .layer(safe_stack()),
        |server| server,
    )
    .await;
    let wechat = WeChat::new(server.addr, TOKEN);
    let forged = format!(
        "<xml><Encrypt>x</Encrypt></a\r\n2026-01-01T00:00:00Z ERROR forged line\u{1b}[2J{}></xml>",
        "x".repeat(60_000)
    );
    let before = log.lines().join("\n").len();
    let answer = wechat
        .send(
            Method::POST,
            &format!("/wechat?{}", unsigned_safe_query()),
            forged,
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.len() < 100, "{}", answer.body);
    assert!(!answer.body.contains("forged"), "{}", answer.body);
    let lines = log.lines();
    let all = lines.join("\n");
    let logged = all.len() - before;
    eprintln!("log bytes for one forged end tag: {logged}");
    assert!(logged < 1_024, "{logged} bytes:\n{all}");
    assert!(!all.contains("forged"), "{all}");
    assert!(!all.contains('\r') && !all.contains('\u{1b}'), "{all:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_rejections_with_a_long_path_costs_a_few_bounded_lines() {
    let log = Log::default();
    let _guard = log.install("info");
    let verify = verify();
    let rejections = verify.handle();
    let server = Running::start(
        // The stack on the whole router, as in the report: every path reaches VerifyLayer.
        Router::new()
            .route("/wechat", post(echo))
            .layer(CallbackLayer::with_verify(verify)),
        |server| server,
    )
    .await;
    let forged = WeChat::new(server.addr, "wrongtoken1");
    let path = format!("/{}\u{1b}x", "p".repeat(10_000));
    let path = path.replace('\u{1b}', "%1B");
    const FLOOD: u64 = 200;
    for _ in 0..FLOOD {
        let answer = forged
            .send(
                Method::POST,
                &format!("{path}?{}", forged.signed_query()),
                text_message("x", 1),
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_eq!(answer.body, "signature does not match");
    }
    let lines = log.lines();
    let rejected: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("rejected WeChat callback"))
        .collect();
    let bytes: usize = lines.iter().map(|line| line.len() + 1).sum();
    eprintln!(
        "{FLOOD} rejections with a {}-byte path: {} lines, {bytes} bytes of log ({} per request); \
         a line: {}",
        path.len(),
        lines.len(),
        bytes / FLOOD as usize,
        rejected[0]
    );
    assert!((1..=10).contains(&rejected.len()), "{lines:#?}");
    // Nothing else is logged per request at INFO (TimingLayer's line is DEBUG): at most the
    // server's `serving` line besides (when its task logged on this test's thread).
    let others: Vec<_> = lines
        .iter()
        .filter(|line| !line.contains("rejected WeChat callback"))
        .collect();
    assert!(
        others.len() <= 1 && others.iter().all(|line| line.contains("serving")),
        "{lines:#?}"
    );
    for line in &rejected {
        assert_eq!(line.matches("/ppp").count(), 1, "the path once: {line}");
        assert!(line.contains('…'), "cut: {line}");
        assert!(line.len() < 512, "{} bytes: {line}", line.len());
    }
    let stats = rejections.stats();
    assert_eq!(stats.rejected, FLOOD);
    assert_eq!(stats.rejected_for("signature_mismatch"), FLOOD);
    assert_eq!(stats.suppressed_log_lines, FLOOD - rejected.len() as u64);
    server.stop().await;
}

/// A Redis that accepts connections and never answers.
async fn hung_redis() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("redis://{addr}")
}

/// Claims in memory, then hangs when the response is to be stored.
#[derive(Debug, Default)]
struct HangsWhenStoring(MemoryStore);

impl tower_wechat::dedup::DedupStore for HangsWhenStoring {
    async fn claim(
        &self,
        key: &str,
        lease: Duration,
    ) -> Result<tower_wechat::dedup::Claim, tower_wechat::dedup::StoreError> {
        self.0.claim(key, lease).await
    }
    async fn complete(
        &self,
        _: &str,
        _: tower_wechat::dedup::LeaseId,
        _: &tower_wechat::dedup::StoredResponse,
        _: Duration,
    ) -> Result<bool, tower_wechat::dedup::StoreError> {
        std::future::pending().await
    }
    async fn release(
        &self,
        key: &str,
        lease: tower_wechat::dedup::LeaseId,
    ) -> Result<(), tower_wechat::dedup::StoreError> {
        self.0.release(key, lease).await
    }
    async fn wait(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<tower_wechat::dedup::Waited, tower_wechat::dedup::StoreError> {
        self.0.wait(key, timeout).await
    }
}

/// 20 callbacks at once, each to a handler that takes 6 s; every answer's latency.
async fn latencies(router: Router) -> Vec<Duration> {
    let server = Running::start(router, |server| server).await;
    let wechat = Arc::new(WeChat::new(server.addr, TOKEN));
    let calls: Vec<_> = (1..=20)
        .map(|id| {
            let wechat = wechat.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = wechat.deliver(&text_message("slow6", id)).await;
                assert_eq!(answer.status, StatusCode::OK);
                started.elapsed()
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for call in calls {
        latencies.push(call.await.unwrap());
    }
    latencies
}

async fn six_seconds(message: Message) -> Reply {
    tokio::time::sleep(Duration::from_secs(6)).await;
    message.reply(ReplyContent::text("late"))
}

#[tokio::test]
async fn with_a_hung_dedup_store_every_callback_is_answered_before_5_s() {
    let redis = RedisStore::open(&hung_redis().await).unwrap();
    let hung_redis =
        CallbackLayer::new(Token::new(TOKEN).unwrap()).dedup(|_| DedupLayer::with_store(redis));
    let hangs_when_storing = CallbackLayer::new(Token::new(TOKEN).unwrap())
        .dedup(|_| DedupLayer::with_store(HangsWhenStoring::default()));
    let (claims, stores) = tokio::join!(
        latencies(
            Router::new()
                .route("/wechat", post(six_seconds))
                .layer(hung_redis)
        ),
        latencies(
            Router::new()
                .route("/wechat", post(six_seconds))
                .layer(hangs_when_storing)
        ),
    );
    eprintln!(
        "hung Redis: slowest answer {:?}; store hung when storing: slowest {:?}",
        claims.iter().max().unwrap(),
        stores.iter().max().unwrap()
    );
    for latency in claims.iter().chain(&stores) {
        assert!(*latency < Duration::from_millis(4_900), "{latency:?}");
    }
}

#[tokio::test]
async fn the_dedup_store_stays_within_its_byte_budget_under_large_valid_messages() {
    const BUDGET: usize = 2 * 1024 * 1024;
    let store = MemoryStore::with_budget(BUDGET);
    let stack = CallbackLayer::new(Token::new(TOKEN).unwrap())
        .dedup(|_| DedupLayer::with_store(store.clone()));
    let server = Running::start(
        Router::new().route("/wechat", post(echo)).layer(stack),
        |s| s,
    )
    .await;
    let wechat = WeChat::new(server.addr, TOKEN);
    let account = "g".repeat(60_000);
    for id in 1..=100 {
        let xml = text_message("hi", id).replace("gh_account", &account);
        let answer = wechat.deliver(&xml).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(store.bytes() <= BUDGET, "{} bytes", store.bytes());
    }
    eprintln!(
        "100 messages with a 60 KB ToUserName: {} keys, {} bytes held (budget {BUDGET})",
        store.len(),
        store.bytes()
    );
    assert!(store.len() < 100);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_completes_within_its_deadline_with_slow_clients_connected() {
    let stack = CallbackLayer::new(Token::new(TOKEN).unwrap())
        .verify(|verify| verify.disable_body_timeout());
    let server = Running::start(
        Router::new().route("/wechat", post(echo)).layer(stack),
        |server| {
            server
                .header_read_timeout(Duration::from_secs(60))
                .shutdown_timeout(Duration::from_secs(1))
        },
    )
    .await;
    let tricklers: Vec<_> = (0..10)
        .map(|_| trickle_head(server.addr, Duration::from_millis(200)))
        .collect();
    let wechat = WeChat::new(server.addr, TOKEN);
    let mut slow_bodies = Vec::new();
    for _ in 0..10 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /wechat?{}&openid=oUser1234 HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n<xml>",
            wechat.signed_query()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        slow_bodies.push(stream);
    }
    // A callback in flight when the signal comes is still answered.
    let in_flight = tokio::spawn(async move { wechat.deliver(&text_message("slow", 9)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (report, took) = server.stop().await;
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("done"), "{}", answer.body);
    eprintln!("shutdown with 20 slow clients took {took:?}: {report:?}");
    assert!(took < Duration::from_millis(1_800), "{took:?}");
    assert_eq!(report.dropped_at_shutdown, 20, "{report:?}");
    for trickler in tricklers {
        assert!(trickler.await.unwrap().is_some());
    }
}

#[tokio::test]
async fn another_paths_answer_is_never_replayed_for_the_callback_url() {
    let handled = Arc::new(AtomicUsize::new(0));
    let counted = handled.clone();
    let router = Router::new()
        .route(
            "/wechat",
            post(move |message: Message| {
                let handled = counted.clone();
                async move {
                    handled.fetch_add(1, Ordering::SeqCst);
                    message.reply(ReplyContent::text("handled"))
                }
            }),
        )
        // The stack on every route, as in the report.
        .layer(CallbackLayer::new(Token::new(TOKEN).unwrap()));
    let server = Running::start(router, |server| server).await;
    let wechat = WeChat::new(server.addr, TOKEN);
    let xml = text_message("hello", 42);
    let other = wechat
        .send(
            Method::POST,
            &format!("/other?{}&openid=oUser1234", wechat.signed_query()),
            xml.clone(),
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let real = wechat.deliver(&xml).await;
    assert_eq!(real.status, StatusCode::OK);
    assert!(real.body.contains("handled"), "{}", real.body);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test]
async fn each_request_carries_the_peer_address() {
    let router = Router::new().route(
        "/peer",
        axum::routing::get(
            |axum::Extension(peer): axum::Extension<SocketAddr>| async move { peer.to_string() },
        ),
    );
    let server = Running::start(router, |server| server).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with(&local.to_string()), "{answer}");
    server.stop().await;
}
