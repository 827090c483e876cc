//! How the crate's layers tell each other about a callback without depending on each other.
//!
//! An outer layer that wants to hear what inner layers learn about a callback (such as
//! [`TimingLayer`](crate::TimingLayer), which names the message in its log line and times
//! background work) puts one [`CallbackHook`] in the request's extensions. The inner layers
//! look for it and call it:
//!
//! - [`VerifyLayer`](crate::VerifyLayer) calls [`CallbackObserver::message_parsed`] as soon
//!   as it has verified and parsed the message;
//! - [`FastAckLayer`](crate::FastAckLayer) calls
//!   [`background_started`](CallbackObserver::background_started) when it acknowledges a
//!   callback whose handler keeps running, and
//!   [`background_finished`](CallbackObserver::background_finished) when that handler ends.
//!   It also runs the background task inside the tracing span that was current when the
//!   callback reached it, so the handler's events stay under the callback's span.
//!
//! No layer imports another: each knows only this module. Write your own observer to feed
//! your own metrics or audit log:
//!
//! ```
//! use std::time::Duration;
//! use tower_wechat::Message;
//! use tower_wechat::hook::{BackgroundOutcome, CallbackHook, CallbackObserver};
//!
//! struct Print;
//!
//! impl CallbackObserver for Print {
//!     fn message_parsed(&self, message: &Message) {
//!         println!("a {} message", message.msg_type());
//!     }
//!
//!     fn background_finished(&self, outcome: BackgroundOutcome, elapsed: Duration) {
//!         println!("background work {outcome} after {elapsed:?}");
//!     }
//! }
//!
//! let mut request = http::Request::new(());
//! request.extensions_mut().insert(CallbackHook::new(Print));
//! ```
//!
//! One hook per request: a layer that inserts its own replaces the one already there, so
//! compose observers yourself if you need several.
//!
//! The outermost of the crate's layers also puts an [`Arrival`] in the extensions: when the
//! callback reached the server. Every deadline is counted from it, so time spent by outer
//! layers (reading a slow body, waiting for a dedup store) comes out of the same budget.
//!
//! A layer that logs its answers in a summary (refusals under a flood) marks the response
//! with [`Summarized`], so outer layers do not log each one.
//!
//! # The durable hand-off
//!
//! When a [journal](crate::journal) is configured, the layers agree through a few more
//! neutral types, so that a message acknowledged to WeChat is neither lost nor run twice:
//!
//! - [`VerifiedBody`] (from VerifyLayer) and [`DedupKey`] (from DedupLayer) in the request
//!   extensions: what FastAck stores in the journal with the [`CallbackQuery`].
//! - [`Completion`] (from DedupLayer) in the request extensions: whoever runs the handler
//!   (FastAck) tells it how the run ended — *when it ended*, which for a handler that went
//!   on in the background is long after `success` went back — and waits for it to be
//!   recorded before it marks the journal entry done. FastAck marks its response
//!   [`Recorded`] (it reported already) or [`Deferred`] (it will report when the background
//!   run ends), so DedupLayer does not record the early `success` as if it were the end.
//! - [`Recovery`] in the request extensions: a callback the recovery worker runs again from
//!   the journal. VerifyLayer takes it as verified (it was, the first time), FastAck runs
//!   it under its existing entry, and the handler finds a [`Delivery`] with its attempt.
//!
//! [`CallbackQuery`]: crate::message::CallbackQuery

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::body::StoredResponse;
use crate::message::Message;

/// What became of a handler that finished in the background.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackgroundOutcome {
    /// The handler returned a response whose status is not a server error.
    Completed,
    /// The handler returned an error or a 5xx response.
    Failed,
    /// The handler panicked; the panic was caught and logged.
    Panicked,
}

impl BackgroundOutcome {
    /// A short lowercase name, for logs and metric labels: `completed`, `failed`, `panicked`.
    ///
    /// ```
    /// use tower_wechat::hook::BackgroundOutcome;
    ///
    /// assert_eq!(BackgroundOutcome::Panicked.as_str(), "panicked");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Panicked => "panicked",
        }
    }
}

impl fmt::Display for BackgroundOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Told what inner layers learn about a callback; every method does nothing by default.
///
/// See the [module docs](self) for an example.
pub trait CallbackObserver: Send + Sync + 'static {
    /// The callback was verified and its message parsed (called at most once per callback).
    fn message_parsed(&self, _message: &Message) {}

    /// The handler moved to the background: the callback was acknowledged without its reply
    /// (or its client went away before any answer).
    fn background_started(&self) {}

    /// The background work ended with `outcome`, `elapsed` after the handler was called (the
    /// whole run of the handler, not only its time in the background).
    fn background_finished(&self, _outcome: BackgroundOutcome, _elapsed: Duration) {}
}

/// A [`CallbackObserver`] to put in a request's extensions; cheap to clone.
///
/// ```
/// use tower_wechat::hook::{CallbackHook, CallbackObserver};
///
/// struct Nothing;
/// impl CallbackObserver for Nothing {}
///
/// let hook = CallbackHook::new(Nothing);
/// hook.background_started(); // what FastAckLayer does when it acknowledges early
/// ```
#[derive(Clone)]
pub struct CallbackHook(Arc<dyn CallbackObserver>);

impl CallbackHook {
    /// Wraps `observer`.
    pub fn new(observer: impl CallbackObserver) -> Self {
        Self(Arc::new(observer))
    }

    /// Wraps an observer that is already shared.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_wechat::hook::{CallbackHook, CallbackObserver};
    ///
    /// struct Nothing;
    /// impl CallbackObserver for Nothing {}
    ///
    /// let shared = Arc::new(Nothing);
    /// let hook = CallbackHook::from_arc(shared.clone());
    /// # let _ = hook;
    /// ```
    pub fn from_arc(observer: Arc<dyn CallbackObserver>) -> Self {
        Self(observer)
    }

    /// Tells the observer the message was parsed.
    pub fn message_parsed(&self, message: &Message) {
        self.0.message_parsed(message);
    }

    /// Tells the observer the handler moved to the background.
    pub fn background_started(&self) {
        self.0.background_started();
    }

    /// Tells the observer the background work ended.
    pub fn background_finished(&self, outcome: BackgroundOutcome, elapsed: Duration) {
        self.0.background_finished(outcome, elapsed);
    }
}

/// When a callback reached the server: the start of its deadline budget.
///
/// [`TimingLayer`](crate::TimingLayer) puts it in the request extensions with the instant
/// its clock starts; [`VerifyLayer`](crate::VerifyLayer) puts one there if no outer layer
/// did. [`FastAckLayer`](crate::FastAckLayer) acknowledges by `arrival + deadline`, however
/// much of it the layers outside already spent.
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::hook::Arrival;
///
/// let mut request = http::Request::new(());
/// Arrival::insert_if_absent(&mut request);
/// let arrival = *request.extensions().get::<Arrival>().unwrap();
/// assert!(arrival.elapsed() < Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Arrival(pub Instant);

impl Arrival {
    /// Now.
    pub fn now() -> Self {
        Self(Instant::now())
    }

    /// Time since arrival.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    /// Time since the arrival recorded in `request`, or zero if none was.
    pub fn elapsed_for<B>(request: &http::Request<B>) -> Duration {
        request
            .extensions()
            .get::<Self>()
            .map_or(Duration::ZERO, Self::elapsed)
    }

    /// Records now as the arrival of `request`, unless an outer layer already did.
    pub fn insert_if_absent<B>(request: &mut http::Request<B>) {
        let extensions = request.extensions_mut();
        if extensions.get::<Self>().is_none() {
            extensions.insert(Self::now());
        }
    }
}

/// A mark in a *response's* extensions: the layer that wrote this answer logs such answers
/// in a summary (at most one line per interval under a flood), so outer layers should not
/// log each of them at INFO either.
///
/// [`AllowLayer`](crate::AllowLayer) marks its refusals; [`TimingLayer`](crate::TimingLayer)
/// logs a marked callback's access line at DEBUG instead of INFO (its statistics still count
/// it), so a flood from an address that is not WeChat's does not flood the log.
///
/// ```
/// use tower_wechat::hook::Summarized;
///
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(Summarized);
/// assert!(response.extensions().get::<Summarized>().is_some());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summarized;

impl fmt::Debug for CallbackHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallbackHook")
    }
}

/// The verified request body as the handler gets it (the plaintext in safe mode); put in the
/// request extensions by [`VerifyLayer`](crate::VerifyLayer), for the journal.
///
/// ```
/// use bytes::Bytes;
/// use tower_wechat::hook::VerifiedBody;
///
/// let body = VerifiedBody(Bytes::from_static(b"<xml>...</xml>"));
/// assert_eq!(body.0.len(), 14);
/// ```
#[derive(Clone, Debug)]
pub struct VerifiedBody(pub Bytes);

/// The key [`DedupLayer`](crate::DedupLayer) keeps the callback under; put in the request
/// extensions for the journal.
///
/// ```
/// use tower_wechat::hook::DedupKey;
///
/// let key = DedupKey("gh_1:msg:42".into());
/// assert_eq!(&*key.0, "gh_1:msg:42");
/// ```
#[derive(Clone, Debug)]
pub struct DedupKey(pub Arc<str>);

/// How a handler's run ended, as told to a [`Completion`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RunOutcome {
    /// The handler finished; `answered` is what WeChat got (its passive reply, or the
    /// `success` sent at the deadline) and should get again on a repeat.
    Completed {
        /// The response to replay to repeats.
        answered: StoredResponse,
    },
    /// The handler returned an error or a 5xx, or panicked: the callback was not processed.
    Failed,
}

/// Told when the handler's run for a callback ended; see [`Completion`].
pub trait CompletionObserver: Send + Sync + 'static {
    /// Records the end of the run; the future resolves once it is recorded.
    fn record(self: Arc<Self>, outcome: RunOutcome) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Put in the request extensions by [`DedupLayer`](crate::DedupLayer) for the attempt that
/// claimed a callback: whoever runs the handler reports how the run ended, when it ended.
/// [`FastAckLayer`](crate::FastAckLayer) does, and marks its response [`Recorded`] or
/// [`Deferred`].
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::sync::Arc;
/// use tower_wechat::hook::{Completion, CompletionObserver, RunOutcome};
///
/// struct Print;
///
/// impl CompletionObserver for Print {
///     fn record(self: Arc<Self>, outcome: RunOutcome) -> Pin<Box<dyn Future<Output = ()> + Send>> {
///         println!("{outcome:?}");
///         Box::pin(async {})
///     }
/// }
///
/// let completion = Completion::new(Print);
/// # let _ = completion;
/// ```
#[derive(Clone)]
pub struct Completion(Arc<dyn CompletionObserver>);

impl Completion {
    /// Wraps `observer`.
    pub fn new(observer: impl CompletionObserver) -> Self {
        Self(Arc::new(observer))
    }

    /// Wraps an observer that is shared already.
    pub fn from_arc(observer: Arc<dyn CompletionObserver>) -> Self {
        Self(observer)
    }

    /// Reports the end of the run; resolves once it is recorded.
    pub fn record(&self, outcome: RunOutcome) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.0.clone().record(outcome)
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Completion")
    }
}

/// In the response extensions: the layer that ran the handler has already reported the run's
/// end to the request's [`Completion`]; layers outside must not record it again.
///
/// ```
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(tower_wechat::hook::Recorded);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Recorded;

/// In the response extensions: the callback was acknowledged before its handler finished;
/// the run's end is reported to the request's [`Completion`] later, when it ends.
///
/// ```
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(tower_wechat::hook::Deferred);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Deferred;

/// Which delivery of a callback the handler is running; put in the request extensions by
/// [`FastAckLayer`](crate::FastAckLayer) when a journal is configured. Handlers whose side
/// effects must not repeat can look at it (and at the `MsgId`) to stay idempotent.
///
/// ```
/// use axum::Extension;
/// use tower_wechat::hook::Delivery;
/// use tower_wechat::{Message, Reply};
///
/// async fn handler(Extension(delivery): Extension<Delivery>, message: Message) -> Reply {
///     if delivery.recovered {
///         tracing::info!(attempt = delivery.attempt, "running a recovered callback again");
///     }
///     let _ = message;
///     Reply::success()
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::post(handler);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// 1 for the first run, 2 for the first re-run from the journal, and so on.
    pub attempt: u32,
    /// Run by the recovery worker from the journal, not as WeChat delivered it.
    pub recovered: bool,
}

impl Delivery {
    /// A delivery (for tests and for layers outside this crate).
    ///
    /// ```
    /// let first = tower_wechat::hook::Delivery::new(1, false);
    /// assert!(!first.recovered);
    /// ```
    pub fn new(attempt: u32, recovered: bool) -> Self {
        Self { attempt, recovered }
    }
}

/// In the request extensions: a callback the recovery worker runs again from the journal.
/// Only code in this process can put it there; VerifyLayer trusts it (the callback was
/// verified when it arrived) and FastAck runs it under its existing journal entry.
#[derive(Clone, Debug)]
pub struct Recovery {
    /// The journal entry.
    pub id: crate::journal::EntryId,
    /// What was stored, `attempt` counting this delivery.
    pub entry: crate::journal::JournalEntry,
    taken: Arc<AtomicBool>,
}

impl Recovery {
    /// A recovered callback to run.
    ///
    /// ```
    /// use tower_wechat::hook::Recovery;
    /// use tower_wechat::journal::{EntryId, JournalEntry};
    /// # let entry = JournalEntry { path: "/wechat".into(),
    /// #     query: tower_wechat::message::CallbackQuery { timestamp: 1, nonce: "1".into(),
    /// #     openid: None, encrypted: false, redelivered: false }, body: bytes::Bytes::new(),
    /// #     key: None, arrival_unix_ms: 0, attempt: 2, trace_context: None };
    /// let recovery = Recovery::new(EntryId::new("7"), entry);
    /// assert!(!recovery.taken());
    /// ```
    pub fn new(id: crate::journal::EntryId, entry: crate::journal::JournalEntry) -> Self {
        Self {
            id,
            entry,
            taken: Arc::default(),
        }
    }

    /// Marks the entry as taken in charge by the layer that runs the handler (which then
    /// finishes or releases it).
    pub fn take(&self) {
        self.taken.store(true, Ordering::Release);
    }

    /// Whether a layer took the entry in charge.
    pub fn taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }
}
