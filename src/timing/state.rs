//! The settings every service of one [`TimingLayer`](super::TimingLayer) shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::Request;

use super::stats::LatencyStats;
use crate::Message;

/// The `target` of the span and events the timing layer logs.
pub(crate) const TARGET: &str = "tower_wechat::timing";

/// Budget, deadline and the statistics to record into.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) budget: Duration,
    pub(crate) deadline: Duration,
    pub(crate) stats: LatencyStats,
    /// Set once the layer has warned that it sits inside VerifyLayer.
    pub(crate) warned_order: Arc<AtomicBool>,
    /// Whether the callback span continues an incoming `traceparent` (feature `otel`).
    #[cfg(feature = "otel")]
    pub(crate) incoming_traceparent: bool,
    /// Whether callbacks are also recorded as OpenTelemetry's `http.server.request.duration`
    /// (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) semconv_metrics: bool,
}

impl Settings {
    /// Warns once if `request` already carries a parsed [`Message`]: this layer sits inside
    /// `VerifyLayer`, so rejections go untimed and the message is never named.
    pub(crate) fn check_order<B>(&self, request: &Request<B>) {
        if request.extensions().get::<Message>().is_some()
            && !self.warned_order.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: TARGET,
                "TimingLayer got a request that VerifyLayer already handled, so rejections \
                 are not timed and callbacks are not named: put TimingLayer outside \
                 VerifyLayer. tower::ServiceBuilder lists layers outermost first, while \
                 Router::layer(a).layer(b) puts b outside a; tower_wechat::CallbackLayer \
                 builds the whole stack in the right order (this warning is logged once)"
            );
        }
    }
}
