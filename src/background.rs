//! How a layer learns what became of work that [`FastAckLayer`](crate::ack::FastAckLayer)
//! moved to the background.
//!
//! When a handler misses the ack deadline, the callback is answered `success` and the handler
//! keeps running in a background task. A layer further out (such as the timing layer) that
//! wants to time that work puts a [`BackgroundHook`] in the request's extensions; FastAck
//! calls it once, when the background work ends. FastAck also runs the background task inside
//! the tracing span that was current when the callback reached it, so events logged by the
//! handler and by FastAck stay under the callback's span.
//!
//! ```
//! use std::time::Duration;
//! use tower_wechat::background::{BackgroundHook, BackgroundObserver, BackgroundOutcome};
//!
//! struct Print;
//!
//! impl BackgroundObserver for Print {
//!     fn background_finished(&self, outcome: BackgroundOutcome, elapsed: Duration) {
//!         println!("background work {outcome:?} after {elapsed:?}");
//!     }
//! }
//!
//! let mut request = http::Request::new(());
//! request.extensions_mut().insert(BackgroundHook::new(Print));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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

/// Told when a callback's background work ends.
pub trait BackgroundObserver: Send + Sync + 'static {
    /// The handler moved to the background (the callback was acknowledged without its reply).
    fn background_started(&self) {}

    /// The background work ended with `outcome`, `elapsed` after the handler was called
    /// (the whole run of the handler, not only its time in the background).
    fn background_finished(&self, outcome: BackgroundOutcome, elapsed: Duration);
}

/// A [`BackgroundObserver`] to put in a request's extensions; cheap to clone.
#[derive(Clone)]
pub struct BackgroundHook(Arc<dyn BackgroundObserver>);

impl BackgroundHook {
    /// Wraps `observer`.
    pub fn new(observer: impl BackgroundObserver) -> Self {
        Self(Arc::new(observer))
    }

    /// Wraps an observer that is already shared.
    pub fn from_arc(observer: Arc<dyn BackgroundObserver>) -> Self {
        Self(observer)
    }

    /// Tells the observer the handler moved to the background.
    pub fn started(&self) {
        self.0.background_started();
    }

    /// Tells the observer the background work ended.
    pub fn finished(&self, outcome: BackgroundOutcome, elapsed: Duration) {
        self.0.background_finished(outcome, elapsed);
    }
}

impl fmt::Debug for BackgroundHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackgroundHook")
    }
}
