//! [`CallbackTiming`]: the per-callback handle that inner layers record into, and the
//! access line and background line it logs.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use tracing::Span;
use tracing::field::Empty;

use crate::hook::{BackgroundOutcome, CallbackHook, CallbackObserver, Recovery};
use crate::message::{Event, Message, MessageKind, mask_openid};
use crate::redact::{Untrusted, bounded};

use super::state::{Settings, TARGET};
use super::stats::MsgType;

/// One callback's timing: its span, its start, and what inner layers learnt about it.
///
/// [`Timing`](super::Timing) puts one in each request's extensions. Whoever holds the parsed
/// [`Message`] calls [`record_message`](Self::record_message), so the span and the access
/// line name the message type, `MsgId` and event; [`RecordMessageLayer`](super::RecordMessageLayer)
/// does it for you. Cheap to clone (one `Arc`).
///
/// ```
/// use http::Request;
/// use tower_wechat::timing::CallbackTiming;
///
/// fn in_a_handler(request: &Request<()>) {
///     if let Some(timing) = request.extensions().get::<CallbackTiming>() {
///         let _so_far = timing.elapsed();
///         let _span = timing.span(); // e.g. to instrument a task spawned for this callback
///     }
/// }
/// # in_a_handler(&Request::new(()));
/// ```
#[derive(Clone)]
pub struct CallbackTiming(Arc<State>);

struct State {
    span: Span,
    start: Instant,
    settings: Arc<Settings>,
    message: OnceLock<Facts>,
    background: AtomicBool,
    /// The delivery's attempt, for a callback the journal's recovery worker runs again.
    recovered: Option<u32>,
    /// The request method as OpenTelemetry's `http.request.method` names it.
    #[cfg(feature = "metrics")]
    method: &'static str,
}

/// What is logged about a message: no body text beyond names and keys.
struct Facts {
    msg_type: MsgType,
    /// The type as logged: the label, or the `MsgType` as sent for [`MsgType::Other`].
    type_name: Cow<'static, str>,
    msg_id: Option<u64>,
    /// The `Event`, or the `InfoType` of an info push.
    event: Option<Box<str>>,
    event_key: Option<Box<str>>,
}

/// How a callback ended.
pub(crate) enum Ending {
    /// The inner service answered with this status.
    Answered(StatusCode),
    /// An inner layer answered with this status and logs such answers in a summary
    /// ([`Summarized`](crate::hook::Summarized)): the line goes out at DEBUG.
    Summarized(StatusCode),
    /// The inner service returned an error (no response).
    Failed,
    /// The response future was dropped before it was ready.
    Cancelled,
}

impl Ending {
    #[cfg(feature = "metrics")]
    pub(crate) fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Answered(status) | Self::Summarized(status) => Some(*status),
            Self::Failed | Self::Cancelled => None,
        }
    }
}

#[derive(Clone, Copy)]
enum Severity {
    Debug,
    Info,
    Warn,
    Error,
}

/// An event at a level chosen at run time (tracing's levels are per call site).
macro_rules! event_at {
    ($severity:expr, $($rest:tt)+) => {
        match $severity {
            Severity::Debug => tracing::debug!(target: TARGET, $($rest)+),
            Severity::Info => tracing::info!(target: TARGET, $($rest)+),
            Severity::Warn => tracing::warn!(target: TARGET, $($rest)+),
            Severity::Error => tracing::error!(target: TARGET, $($rest)+),
        }
    };
}

impl CallbackTiming {
    /// Starts the clock and opens the `wechat_callback` span (a child of the current span).
    pub(crate) fn start<B>(settings: &Arc<Settings>, request: &Request<B>) -> Self {
        let start = Instant::now();
        // Held while the span is made: its OpenTelemetry parent (feature `otel`).
        #[cfg(feature = "otel")]
        let _parent = super::otel::attach_parent(settings, request);
        let span = tracing::info_span!(
            target: TARGET,
            "wechat_callback",
            method = %request.method(),
            path = %Untrusted(request.uri().path()),
            msg_type = Empty,
            msg_id = Empty,
            event = Empty,
            event_key = Empty,
            openid = Empty,
            status = Empty,
            latency_ms = Empty,
        );
        Self(Arc::new(State {
            span,
            start,
            settings: settings.clone(),
            message: OnceLock::new(),
            background: AtomicBool::new(false),
            recovered: request
                .extensions()
                .get::<Recovery>()
                .map(|recovery| recovery.entry.attempt),
            #[cfg(feature = "metrics")]
            method: super::metrics::method_label(request.method()),
        }))
    }

    /// Records what the callback carries, once parsed: its type, `MsgId`, event name and
    /// key, and the sender's openid (masked: first 4 and last 2 characters), into the span
    /// now and into the access line and statistics when the response is sent. The first
    /// call wins; later ones are ignored.
    pub fn record_message(&self, message: &Message) {
        self.0.record_message(message);
    }

    /// The callback's `wechat_callback` span.
    pub fn span(&self) -> &Span {
        &self.0.span
    }

    /// When the callback reached [`Timing`](super::Timing).
    pub(crate) fn started(&self) -> Instant {
        self.0.start
    }

    /// Time since the callback reached [`Timing`](super::Timing).
    pub fn elapsed(&self) -> Duration {
        self.0.start.elapsed()
    }

    /// The recorded message's type; [`MsgType::NoMessage`] until one is recorded.
    pub fn msg_type(&self) -> MsgType {
        self.0
            .message
            .get()
            .map_or(MsgType::NoMessage, |facts| facts.msg_type)
    }

    /// The hook inner layers call (message parsed, background work), sharing this handle's
    /// allocation.
    pub(crate) fn hook(&self) -> CallbackHook {
        CallbackHook::from_arc(self.0.clone())
    }

    /// Records the latency, logs the access line and closes the span's fields.
    pub(crate) fn finish(&self, ending: Ending) {
        let state = &*self.0;
        let latency = state.start.elapsed();
        let settings = &state.settings;
        let over_budget = latency > settings.budget;
        let over_deadline = latency > settings.deadline;
        let msg_type = self.msg_type();
        settings
            .stats
            .record_timed(msg_type, latency, over_budget, over_deadline);
        #[cfg(feature = "metrics")]
        super::metrics::record_callback(
            msg_type,
            ending.status(),
            matches!(ending, Ending::Cancelled),
            latency,
            over_budget,
            over_deadline,
            settings.semconv_metrics.then_some(state.method),
        );

        let (severity, text) = match ending {
            Ending::Summarized(_) => (Severity::Debug, "callback refused (summarized)"),
            Ending::Answered(_) if over_deadline => (
                Severity::Error,
                "callback answered after WeChat's deadline; WeChat retries it",
            ),
            Ending::Answered(_) if over_budget => (Severity::Warn, "callback answered over budget"),
            // Refused before its message was known: the layer that refused it logged why
            // (VerifyLayer: one bounded, rate-limited warning), so a flood of bad requests
            // does not also cost an access line each.
            Ending::Answered(status)
                if status.is_client_error() && state.message.get().is_none() =>
            {
                (Severity::Debug, "callback refused")
            }
            Ending::Answered(_) => (Severity::Info, "callback answered"),
            Ending::Failed => (Severity::Error, "callback failed without a response"),
            Ending::Cancelled if over_deadline => (
                Severity::Error,
                "callback dropped unanswered after WeChat's deadline",
            ),
            Ending::Cancelled => (Severity::Warn, "callback dropped unanswered"),
        };
        let status = match ending {
            Ending::Answered(status) | Ending::Summarized(status) => Some(status.as_u16()),
            Ending::Failed | Ending::Cancelled => None,
        };
        let latency_ms = millis(latency);
        let facts = state.message.get();
        let budget_ms = over_budget.then(|| settings.budget.as_millis() as u64);
        let background = state.background.load(Relaxed).then_some(true);
        let recovered = state.recovered.map(|_| true);
        let attempt = state.recovered;
        event_at!(
            severity,
            parent: &state.span,
            msg_type = facts.map_or(MsgType::NoMessage.as_str(), |f| &*f.type_name),
            msg_id = facts.and_then(|f| f.msg_id),
            event = facts.and_then(|f| f.event.as_deref()),
            event_key = facts.and_then(|f| f.event_key.as_deref()),
            status,
            latency_ms,
            budget_ms,
            background,
            recovered,
            attempt,
            // A `&str` rather than `"{text}"`: the same message for every subscriber, and a
            // formatter can copy it instead of running `format_args!`.
            message = text
        );
        if !state.span.is_disabled() {
            tracing::record_all!(state.span, status = status, latency_ms = latency_ms);
        }
    }
}

impl State {
    fn record_message(&self, message: &Message) {
        let state = self;
        if state.message.get().is_some() {
            return;
        }
        let facts = Facts::of(message);
        let span = &state.span;
        // Recording into a disabled span still costs (tracing's `log` feature, which axum
        // turns on, looks at each field), so only an enabled span is told.
        // One record of all five (absent ones left empty): a subscriber looks the span up
        // and formats its fields once, not once per field.
        if !span.is_disabled() {
            let openid =
                (!message.from_user_name.is_empty()).then(|| mask_openid(&message.from_user_name));
            tracing::record_all!(
                span,
                msg_type = &*facts.type_name,
                msg_id = facts.msg_id,
                event = facts.event.as_deref(),
                event_key = facts.event_key.as_deref(),
                openid = openid.as_deref(),
            );
        }
        let _ = state.message.set(facts);
    }
}

impl CallbackObserver for State {
    fn message_parsed(&self, message: &Message) {
        self.record_message(message);
    }

    fn background_started(&self) {
        self.background.store(true, Relaxed);
        self.settings.stats.record_background_started();
        #[cfg(feature = "metrics")]
        super::metrics::record_background_started();
        tracing::debug!(target: TARGET, parent: &self.span, "handler moved to the background");
    }

    fn background_finished(&self, outcome: BackgroundOutcome, elapsed: Duration) {
        self.settings.stats.record_background(outcome, elapsed);
        #[cfg(feature = "metrics")]
        super::metrics::record_background(outcome, elapsed);
        let severity = match outcome {
            BackgroundOutcome::Completed => Severity::Info,
            _ => Severity::Warn,
        };
        let facts = self.message.get();
        event_at!(
            severity,
            parent: &self.span,
            msg_type = facts.map_or(MsgType::NoMessage.as_str(), |f| &*f.type_name),
            msg_id = facts.and_then(|f| f.msg_id),
            event = facts.and_then(|f| f.event.as_deref()),
            event_key = facts.and_then(|f| f.event_key.as_deref()),
            outcome = outcome.as_str(),
            background_ms = millis(elapsed),
            "background work finished"
        );
    }
}

impl Facts {
    fn of(message: &Message) -> Self {
        let msg_type = MsgType::of(message);
        let type_name = match msg_type {
            MsgType::Other => Cow::Owned(bounded(message.msg_type()).into()),
            known => Cow::Borrowed(known.as_str()),
        };
        let (event, event_key) = match &message.kind {
            MessageKind::Event(event) => {
                (Some(bounded(event.name())), event_key(event).map(bounded))
            }
            MessageKind::Info { info_type } => (Some(bounded(info_type)), None),
            _ => (None, None),
        };
        Self {
            msg_type,
            type_name,
            msg_id: message.msg_id,
            event,
            event_key,
        }
    }
}

/// The key an event carries: menu key, QR scene, URL or page path.
fn event_key(event: &Event) -> Option<&str> {
    match event {
        Event::Subscribe { event_key, .. } | Event::Unknown { event_key, .. } => {
            event_key.as_deref()
        }
        Event::Scan { event_key, .. }
        | Event::Click { event_key }
        | Event::ScancodePush { event_key, .. }
        | Event::ScancodeWaitmsg { event_key, .. }
        | Event::PicSysphoto { event_key, .. }
        | Event::PicPhotoOrAlbum { event_key, .. }
        | Event::PicWeixin { event_key, .. }
        | Event::LocationSelect { event_key, .. } => Some(event_key),
        Event::View { url, .. } => Some(url),
        Event::ViewMiniprogram { page_path, .. } => Some(page_path),
        _ => None,
    }
}

/// Milliseconds with microsecond precision.
fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

impl fmt::Debug for CallbackTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackTiming")
            .field("elapsed", &self.elapsed())
            .field("msg_type", &self.msg_type())
            .finish_non_exhaustive()
    }
}
