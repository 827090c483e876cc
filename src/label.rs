//! How layers name a callback in their log lines.

use std::fmt;
use std::sync::Arc;

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
