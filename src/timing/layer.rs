//! [`TimingLayer`]: configuration for [`Timing`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::service::Timing;
use super::state::Settings;
use super::stats::LatencyStats;

/// Applies [`Timing`] to a service: a span and an access-log line per callback, latency
/// statistics, a warning over the budget and an error past WeChat's deadline.
///
/// Meant to sit outermost, before [`VerifyLayer`](crate::VerifyLayer), so the latency it
/// measures is what WeChat waits for (minus the network). Every service it builds records
/// into the same [`LatencyStats`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::timing::TimingLayer;
///
/// let layer = TimingLayer::new().budget(Duration::from_millis(500));
/// let stats = layer.stats(); // read percentiles from this handle later
/// # let _ = (layer, stats);
/// ```
#[derive(Clone)]
#[must_use]
pub struct TimingLayer {
    pub(crate) settings: Arc<Settings>,
}

impl TimingLayer {
    /// The default budget: 1 s. A callback answered later is logged at WARN.
    pub const DEFAULT_BUDGET: Duration = Duration::from_secs(1);
    /// WeChat's deadline: 5 s. A callback answered later is logged at ERROR: WeChat has
    /// stopped waiting and will retry it (three tries in all).
    pub const WECHAT_DEADLINE: Duration = Duration::from_secs(5);

    /// A layer with the default budget and deadline and its own, empty statistics.
    pub fn new() -> Self {
        Self {
            settings: Arc::new(Settings {
                warned_order: Arc::default(),
                budget: Self::DEFAULT_BUDGET,
                deadline: Self::WECHAT_DEADLINE,
                stats: LatencyStats::new(),
                #[cfg(feature = "otel")]
                incoming_traceparent: true,
                #[cfg(feature = "metrics")]
                semconv_metrics: false,
            }),
        }
    }

    /// Callbacks answered after `budget` are logged at WARN (instead of INFO) and counted
    /// in [`HistogramSnapshot::over_budget`](super::HistogramSnapshot::over_budget).
    /// Default [`Self::DEFAULT_BUDGET`].
    pub fn budget(self, budget: Duration) -> Self {
        self.with(|settings| settings.budget = budget)
    }

    /// Callbacks answered after `deadline` are logged at ERROR and counted in
    /// [`HistogramSnapshot::over_deadline`](super::HistogramSnapshot::over_deadline).
    /// Default [`Self::WECHAT_DEADLINE`]; change it only if WeChat's changes.
    pub fn deadline(self, deadline: Duration) -> Self {
        self.with(|settings| settings.deadline = deadline)
    }

    /// Records into `stats` instead of this layer's own statistics, e.g. to share one set
    /// between several layers.
    pub fn with_stats(self, stats: LatencyStats) -> Self {
        self.with(|settings| settings.stats = stats)
    }

    /// Whether the `wechat_callback` span continues the trace of an incoming W3C
    /// `traceparent` header (feature `otel`; default `true`). WeChat sends none: the header
    /// comes from a gateway or proxy in front of the server. Turn it off if that edge
    /// passes on what clients send and your sampler follows the parent's `sampled` flag;
    /// then every callback starts its own trace (or continues the current span's). See
    /// [`otel`](crate::otel).
    ///
    /// ```
    /// let layer = tower_wechat::timing::TimingLayer::new().incoming_traceparent(false);
    /// # let _ = layer;
    /// ```
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn incoming_traceparent(self, continue_it: bool) -> Self {
        self.with(|settings| settings.incoming_traceparent = continue_it)
    }

    /// Also records each callback under OpenTelemetry's HTTP semantic-convention name
    /// [`http.server.request.duration`](super::metrics::HTTP_SERVER_REQUEST_DURATION)
    /// (feature `metrics`; default `false`), with the attributes `http.request.method`,
    /// `http.response.status_code` (or `error.type` when no response was sent) and
    /// `wechat.msg_type`, beside the crate's own `wechat_callback_*` metrics (which stay:
    /// dashboards built on them keep working). One more histogram sample per callback; see
    /// [`timing::metrics`](super::metrics) for how the names map.
    ///
    /// ```
    /// let layer = tower_wechat::timing::TimingLayer::new().semconv_metrics(true);
    /// # let _ = layer;
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn semconv_metrics(self, record: bool) -> Self {
        self.with(|settings| settings.semconv_metrics = record)
    }

    /// A handle on the statistics this layer records into.
    pub fn stats(&self) -> LatencyStats {
        self.settings.stats.clone()
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::clone(&self.settings);
        change(&mut settings);
        Self {
            settings: Arc::new(settings),
        }
    }
}

impl Default for TimingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for TimingLayer {
    type Service = Timing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timing {
            inner,
            settings: self.settings.clone(),
        }
    }
}

impl<S> Timing<S> {
    /// Wraps `inner` with the default settings.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_wechat::timing::Timing;
    ///
    /// let service = Timing::new(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// }));
    /// # let _ = service;
    /// ```
    pub fn new(inner: S) -> Self {
        TimingLayer::new().layer(inner)
    }

    /// A [`TimingLayer`] with the default settings.
    ///
    /// ```
    /// use tower_wechat::timing::Timing;
    ///
    /// let layer = Timing::<()>::layer();
    /// # let _ = layer;
    /// ```
    pub fn layer() -> TimingLayer {
        TimingLayer::new()
    }
}

impl fmt::Debug for TimingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimingLayer")
            .field("budget", &self.settings.budget)
            .field("deadline", &self.settings.deadline)
            .finish_non_exhaustive()
    }
}
