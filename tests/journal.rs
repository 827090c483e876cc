//! The durable hand-off in one process, over real HTTP on loopback: the whole stack with a
//! journal, the recovery worker driving the app, handlers that fail, journals that fail.
//! (Crash survival with real processes killed with SIGKILL: tests/journal_crash.rs.)

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use axum::routing::post;
use common::{WeChat, serve, text_message};
use http::StatusCode;
use tower_wechat::hook::Delivery;
use tower_wechat::journal::{
    BoxFuture, EntryId, Handoff, Journal, JournalEntry, JournalError, MemoryJournal, Reclaimed,
};
use tower_wechat::{CallbackLayer, Message, Reply, ReplyContent, Token};

const TOKEN: &str = "journaltoken1";

/// One run the handler saw: (attempt, recovered).
type Run = (u32, bool);

/// What the handler saw, per MsgId: the deliveries it ran.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<u64, Vec<Run>>>>);

impl Runs {
    fn of(&self, msg_id: u64) -> Vec<Run> {
        self.0
            .lock()
            .unwrap()
            .get(&msg_id)
            .cloned()
            .unwrap_or_default()
    }
}

/// How the test handler behaves.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers at once with a passive reply.
    Quick,
    /// Takes `ms`, then answers; fails (500) on deliveries below `succeed_from`.
    Slow { ms: u64, succeed_from: u32 },
}

fn app(stack: CallbackLayer, runs: Runs, behaviour: Behaviour) -> Router {
    Router::new()
        .route(
            "/wechat",
            post(
                move |Extension(delivery): Extension<Delivery>, message: Message| {
                    let runs = runs.clone();
                    async move {
                        let msg_id = message.msg_id.unwrap_or_default();
                        runs.0
                            .lock()
                            .unwrap()
                            .entry(msg_id)
                            .or_default()
                            .push((delivery.attempt, delivery.recovered));
                        match behaviour {
                            Behaviour::Quick => {
                                Ok(message.reply(ReplyContent::text("quick reply")))
                            }
                            Behaviour::Slow { ms, succeed_from } => {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                if delivery.attempt < succeed_from {
                                    Err((StatusCode::INTERNAL_SERVER_ERROR, "db down"))
                                } else {
                                    Ok(Reply::success())
                                }
                            }
                        }
                    }
                },
            ),
        )
        .layer(stack)
}

fn stack(handoff: Handoff) -> CallbackLayer {
    CallbackLayer::new(Token::new(TOKEN).unwrap())
        .fast_ack(|fast_ack| fast_ack.deadline(Duration::from_millis(200)))
        .journal(handoff)
}

/// Fast settings so recoveries happen within a test.
fn quick(journal: impl Journal) -> Handoff {
    Handoff::new(journal)
        .lease(Duration::from_millis(300))
        .recovery_interval(Duration::from_millis(50))
}

async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(tokio::time::Instant::now() < until, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_fast_handlers_passive_reply_still_arrives_and_its_retry_is_replayed() {
    // Every test here logs into its own subscriber: tracing caches what a call site may
    // log, and a test without one would make another's capture miss lines.
    let _log = common::log::Log::default().install("info");
    let runs = Runs::default();
    let handoff = quick(MemoryJournal::new());
    let journal = handoff.handle();
    let app = app(stack(handoff), runs.clone(), Behaviour::Quick);
    let wechat = WeChat::new(serve(app).await, TOKEN);
    let delivery = wechat.delivery(&text_message("hi", 501));
    let first = wechat.send_delivery(&delivery).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.body.contains("quick reply"), "{}", first.body);
    let retry = wechat.send_delivery(&delivery).await;
    assert_eq!(retry.body, first.body, "the retry gets the reply replayed");
    assert_eq!(runs.of(501), [(1, false)]);
    let stats = journal.stats();
    assert_eq!((stats.appended, stats.finished), (1, 1));
    assert_eq!(journal.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn a_handler_that_fails_after_the_ack_is_run_again_from_the_journal() {
    // Every test here logs into its own subscriber: tracing caches what a call site may
    // log, and a test without one would make another's capture miss lines.
    let _log = common::log::Log::default().install("info");
    let runs = Runs::default();
    let handoff = quick(MemoryJournal::new());
    let journal = handoff.handle();
    let stack = stack(handoff);
    let app = app(
        stack,
        runs.clone(),
        Behaviour::Slow {
            ms: 400,
            succeed_from: 2,
        },
    );
    let recovery = journal.spawn_recovery(app.clone());
    let wechat = WeChat::new(serve(app).await, TOKEN);
    let answer = wechat.deliver(&text_message("fails once", 502)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "success")
    );
    eventually(Duration::from_secs(5), || runs.of(502).len() == 2).await;
    assert_eq!(runs.of(502), [(1, false), (2, true)]);
    eventually(Duration::from_secs(5), || journal.stats().finished == 1).await;
    let stats = journal.stats();
    assert_eq!(
        (
            stats.appended,
            stats.released,
            stats.recovered,
            stats.finished
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(journal.pending().await.unwrap(), 0);
    recovery.stop().await;
}

#[tokio::test]
async fn a_handler_that_always_fails_is_dead_lettered_and_holds_nothing_up() {
    // Every test here logs into its own subscriber: tracing caches what a call site may
    // log, and a test without one would make another's capture miss lines.
    let _log = common::log::Log::default().install("info");
    let runs = Runs::default();
    let memory = Arc::new(MemoryJournal::new());
    let handoff = Handoff::from_arc(memory.clone())
        .lease(Duration::from_millis(200))
        .recovery_interval(Duration::from_millis(50))
        .max_deliveries(3);
    let journal = handoff.handle();
    let app = app(
        stack(handoff),
        runs.clone(),
        Behaviour::Slow {
            ms: 250,
            succeed_from: u32::MAX,
        },
    );
    let recovery = journal.spawn_recovery(app.clone());
    let wechat = WeChat::new(serve(app.clone()).await, TOKEN);
    assert_eq!(
        wechat.deliver(&text_message("poison", 503)).await.body,
        "success"
    );
    eventually(Duration::from_secs(8), || {
        journal.stats().dead_lettered == 1
    })
    .await;
    assert_eq!(runs.of(503), [(1, false), (2, true), (3, true)]);
    let dead = memory.dead_letters();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].1.contains("3 deliveries"), "{}", dead[0].1);
    assert_eq!(journal.pending().await.unwrap(), 0);

    // Meanwhile other callbacks go through untouched.
    let fine = Runs::default();
    let app = self::app(
        stack(quick(MemoryJournal::new())),
        fine.clone(),
        Behaviour::Quick,
    );
    let other = WeChat::new(serve(app).await, TOKEN);
    assert!(
        other
            .deliver(&text_message("fine", 504))
            .await
            .body
            .contains("quick reply")
    );
    recovery.stop().await;
}

/// A journal that fails every append, counting its calls.
#[derive(Default)]
struct Broken {
    appends: AtomicU32,
}

impl Journal for Broken {
    fn append<'a>(&'a self, _: &'a JournalEntry) -> BoxFuture<'a, Result<EntryId, JournalError>> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(JournalError::Unavailable("disk on fire".into())) })
    }
    fn finish<'a>(&'a self, _: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async { Ok(()) })
    }
    fn release<'a>(&'a self, _: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async { Ok(()) })
    }
    fn reclaim(
        &self,
        _: Duration,
        _: usize,
    ) -> BoxFuture<'_, Result<Vec<Reclaimed>, JournalError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn dead_letter<'a>(
        &'a self,
        _: &'a EntryId,
        _: &'a JournalEntry,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async { Ok(()) })
    }
    fn pending(&self) -> BoxFuture<'_, Result<u64, JournalError>> {
        Box::pin(async { Ok(0) })
    }
}

#[tokio::test]
async fn an_unreachable_journal_fails_closed_by_default_without_running_the_handler() {
    // Every test here logs into its own subscriber: tracing caches what a call site may
    // log, and a test without one would make another's capture miss lines.
    let _log = common::log::Log::default().install("info");
    let runs = Runs::default();
    let handoff = Handoff::new(Broken::default());
    let journal = handoff.handle();
    let app = app(stack(handoff), runs.clone(), Behaviour::Quick);
    let wechat = WeChat::new(serve(app).await, TOKEN);
    let answer = wechat.deliver(&text_message("nowhere to store", 505)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(runs.of(505).is_empty(), "not run: nothing acknowledged");
    let stats = journal.stats();
    assert_eq!((stats.refused, stats.errors, stats.appended), (1, 1, 0));
}

#[tokio::test]
async fn an_unreachable_journal_fails_open_when_chosen() {
    // Every test here logs into its own subscriber: tracing caches what a call site may
    // log, and a test without one would make another's capture miss lines.
    let _log = common::log::Log::default().install("info");
    let runs = Runs::default();
    let handoff = Handoff::new(Broken::default()).fail_open();
    let journal = handoff.handle();
    let app = app(stack(handoff), runs.clone(), Behaviour::Quick);
    let wechat = WeChat::new(serve(app).await, TOKEN);
    let answer = wechat.deliver(&text_message("run anyway", 506)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("quick reply"));
    assert_eq!(runs.of(506), [(1, false)]);
    assert_eq!(journal.stats().unjournaled, 1);
}

#[tokio::test]
async fn a_recovered_entry_that_dedup_knows_finished_is_a_duplicate_not_a_second_run() {
    // Every test here logs into its own subscriber: tracing caches what a call site may
    // log, and a test without one would make another's capture miss lines.
    let _log = common::log::Log::default().install("info");
    let runs = Runs::default();
    let memory = Arc::new(MemoryJournal::new());
    let handoff = Handoff::from_arc(memory.clone())
        .lease(Duration::from_millis(100))
        .recovery_interval(Duration::from_millis(50));
    let journal = handoff.handle();
    let app = app(stack(handoff), runs.clone(), Behaviour::Quick);
    let wechat = WeChat::new(serve(app.clone()).await, TOKEN);
    assert!(
        wechat
            .deliver(&text_message("done once", 507))
            .await
            .body
            .contains("quick reply")
    );
    assert_eq!(journal.stats().finished, 1);

    // A crash between the handler's effect and the journal's mark: the entry is still in
    // the journal (put back here by hand), while the dedup store knows it finished.
    let body = text_message("done once", 507);
    let entry = JournalEntry {
        path: "/wechat".into(),
        query: tower_wechat::message::CallbackQuery {
            timestamp: common::now(),
            nonce: "1".into(),
            openid: None,
            encrypted: false,
            redelivered: false,
        },
        body: body.into(),
        key: Some("gh_account:msg:507".into()),
        arrival_unix_ms: 0,
        attempt: 1,
        trace_context: None,
    };
    let id = memory.append(&entry).await.unwrap();
    memory.release(&id).await.unwrap();
    let recovery = journal.spawn_recovery(app);
    eventually(Duration::from_secs(5), || journal.stats().duplicates == 1).await;
    assert_eq!(runs.of(507), [(1, false)], "never run twice");
    assert_eq!(journal.pending().await.unwrap(), 0);
    recovery.stop().await;
}

#[tokio::test]
async fn a_recovered_run_is_logged_with_its_attempt() {
    let log = common::log::Log::default();
    let _guard = log.install("info");
    let runs = Runs::default();
    let handoff = quick(MemoryJournal::new());
    let journal = handoff.handle();
    let app = app(
        stack(handoff),
        runs.clone(),
        Behaviour::Slow {
            ms: 250,
            succeed_from: 2,
        },
    );
    let recovery = journal.spawn_recovery(app.clone());
    let wechat = WeChat::new(serve(app).await, TOKEN);
    wechat.deliver(&text_message("logged", 508)).await;
    eventually(Duration::from_secs(5), || journal.stats().finished == 1).await;
    recovery.stop().await;
    let lines = log.lines();
    let recovered: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("callback answered") && line.contains("recovered=true"))
        .collect();
    assert_eq!(recovered.len(), 1, "{lines:#?}");
    assert!(recovered[0].contains("attempt=2"), "{}", recovered[0]);
    assert!(recovered[0].contains("msg_id=508"), "{}", recovered[0]);
}
