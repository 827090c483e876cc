//! The parent of a callback's span, with the feature `otel`: the trace an incoming
//! `traceparent` names, or for a run the journal's recovery worker makes, the original
//! callback's span. See [`otel`](crate::otel).

use http::Request;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, ContextGuard};

use super::state::Settings;
use crate::hook::Recovery;

/// Makes the remote parent of `request`'s callback the current OpenTelemetry context until
/// the guard drops; create the span while it is held. `None`: no remote parent (no valid
/// `traceparent`, or one that the current span already continues).
pub(super) fn attach_parent<B>(settings: &Settings, request: &Request<B>) -> Option<ContextGuard> {
    let parent = match request.extensions().get::<Recovery>() {
        Some(recovery) => crate::otel::parse(recovery.entry.trace_context.as_deref()?, None)?,
        None if settings.incoming_traceparent => crate::otel::extract(request.headers())?,
        None => return None,
    };
    let current = Context::current();
    if current.span().span_context().trace_id() == parent.trace_id() {
        // An outer layer already continued this trace: its span stays the parent.
        return None;
    }
    Some(current.with_remote_span_context(parent).attach())
}
