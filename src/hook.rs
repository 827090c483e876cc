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

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
