//! [`FastAckLayer`]: the settings and builder of [`FastAck`], and its `Layer` impl.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::handle::FastAckHandle;
use super::service::FastAck;
use super::state::{Mode, Settings, State};
use crate::journal::{Handoff, JournalHandle};

/// Answers each callback within a deadline and finishes slow handlers in the background;
/// see the [module docs](super) for the behaviour and an example.
///
/// All services made by one layer (and its clones) share one bound, one set of counters and
/// one [`FastAckHandle`]. Each builder method returns a layer with fresh shared state, so
/// take the [handle](Self::handle) after the last one.
///
/// Needs a tokio runtime: handlers are spawned as tokio tasks.
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::FastAckLayer;
///
/// let layer = FastAckLayer::new()
///     .deadline(Duration::from_millis(3500))
///     .max_in_flight(256);
/// let handle = layer.handle(); // after the last builder call
/// # let _ = handle;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct FastAckLayer {
    state: Arc<State>,
}

impl FastAckLayer {
    /// Deadline mode with a 4 s deadline and at most 1024 handlers in flight.
    pub fn new() -> Self {
        Self::from_settings(Settings::default())
    }

    /// Answers with the handler's response if it is ready within `deadline`, else with
    /// `success` while the handler keeps running (the default mode, 4 s).
    ///
    /// The deadline counts from the callback's [`Arrival`](crate::hook::Arrival) (recorded by
    /// the outermost of the crate's layers), so time the layers outside already spent — a
    /// slow body, a slow dedup store — comes out of it. Keep it under WeChat's 5 s with room
    /// for the network.
    pub fn deadline(self, deadline: Duration) -> Self {
        self.with(|settings| settings.mode = Mode::Deadline(deadline))
    }

    /// Answers `success` at once and always runs the handler in the background (no passive
    /// replies).
    pub fn always_ack(self) -> Self {
        self.with(|settings| settings.mode = Mode::AlwaysAck)
    }

    /// At most `max` handlers run at once (1024 by default); a callback beyond that is
    /// answered `503` so WeChat retries it later. To change the bound while the server
    /// runs, use [`FastAckHandle::set_max_in_flight`].
    pub fn max_in_flight(self, max: usize) -> Self {
        self.with(|settings| settings.max_in_flight = max)
    }

    /// Stores each callback in `journal` before running its handler, and takes it out only
    /// when a handler has finished it: see [`journal`](crate::journal). Give a
    /// [`Handoff`] to change its settings; a plain [`Journal`](crate::journal::Journal)
    /// gets the defaults (fail closed: `503` when the journal cannot be reached).
    ///
    /// ```
    /// use tower_wechat::FastAckLayer;
    /// use tower_wechat::journal::{Handoff, MemoryJournal};
    ///
    /// let handoff = Handoff::new(MemoryJournal::new()).max_deliveries(3);
    /// let journal = handoff.handle();
    /// let layer = FastAckLayer::new().journal(handoff);
    /// # let _ = (layer, journal);
    /// ```
    pub fn journal(self, journal: impl Into<Handoff>) -> Self {
        let handoff = journal.into();
        self.with(|settings| settings.handoff = Some(handoff))
    }

    /// The hand-off's handle, when a journal is configured.
    pub fn journal_handle(&self) -> Option<JournalHandle> {
        self.state.settings.handoff.as_ref().map(Handoff::handle)
    }

    /// The handle for counters and graceful shutdown of this layer's background work.
    pub fn handle(&self) -> FastAckHandle {
        FastAckHandle::new(self.state.clone())
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.state.settings.clone();
        change(&mut settings);
        Self::from_settings(settings)
    }

    fn from_settings(settings: Settings) -> Self {
        Self {
            state: Arc::new(State::new(settings)),
        }
    }
}

impl Default for FastAckLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for FastAckLayer {
    type Service = FastAck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FastAck {
            inner,
            state: self.state.clone(),
        }
    }
}

impl<S> FastAck<S> {
    /// Wraps `inner` with the default settings (its handle is out of reach; use
    /// [`FastAckLayer`] to keep one).
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_wechat::ack::FastAck;
    ///
    /// let service = FastAck::new(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// }));
    /// # let _ = service;
    /// ```
    pub fn new(inner: S) -> Self {
        FastAckLayer::new().layer(inner)
    }

    /// A [`FastAckLayer`] with the default settings.
    ///
    /// ```
    /// use tower_wechat::ack::FastAck;
    ///
    /// let layer = FastAck::<()>::layer();
    /// let handle = layer.handle();
    /// # let _ = handle;
    /// ```
    pub fn layer() -> FastAckLayer {
        FastAckLayer::new()
    }
}
