//! How layers name a callback in their log lines.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::Request;

use crate::Message;

/// Names a callback in log lines: its `MsgId`, else its event, else its type. Never the
/// sender's openid.
#[derive(Clone, Debug, Default)]
pub(crate) struct Label {
    msg_id: Option<u64>,
    event: Option<Arc<str>>,
}

impl Label {
    pub(crate) fn of<B>(request: &Request<B>) -> Self {
        let Some(message) = request.extensions().get::<Message>() else {
            return Self::default();
        };
        Self {
            msg_id: message.msg_id,
            event: match message.msg_id {
                Some(_) => None,
                None => Some(match message.event() {
                    Some(event) => Arc::from(format!("event:{}", event.name())),
                    None => Arc::from(message.msg_type()),
                }),
            },
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.msg_id, &self.event) {
            (Some(id), _) => write!(f, "msg_id={id}"),
            (None, Some(event)) => f.write_str(event),
            (None, None) => f.write_str("unparsed"),
        }
    }
}

/// Catches a stack assembled in an order that cannot work: a layer that needs the parsed
/// [`Message`] got a request without one (it sits outside `VerifyLayer`, or on a route
/// without it). Warns once per layer, naming the fix.
#[derive(Debug)]
pub(crate) struct OrderCheck {
    layer: &'static str,
    warned: AtomicBool,
}

impl OrderCheck {
    pub(crate) const fn new(layer: &'static str) -> Self {
        Self {
            layer,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether `request` carries a parsed [`Message`]; if not, warns the first time.
    pub(crate) fn has_message<B>(&self, request: &Request<B>) -> bool {
        if request.extensions().get::<Message>().is_some() {
            return true;
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                layer = self.layer,
                "{} got a request without a parsed WeChat message, so it passes callbacks \
                 through untouched: put VerifyLayer outside it. tower::ServiceBuilder lists \
                 layers outermost first, while Router::layer(a).layer(b) puts b outside a; \
                 tower_wechat::CallbackLayer builds the whole stack in the right order \
                 (this warning is logged once)",
                self.layer
            );
        }
        false
    }
}

/// `text` for a log field: at most 64 bytes of it (cut at a character boundary, `…`
/// marking the cut), with control characters escaped, so input cannot forge or flood a line.
pub(crate) fn bounded(text: &str) -> String {
    const MAX: usize = 64;
    let mut end = text.len().min(MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = text[..end].escape_debug().collect();
    if end < text.len() {
        out.push('…');
    }
    out
}
