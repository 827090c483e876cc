//! axum integration (feature `axum`): extractors for the verified message and query, and
//! `IntoResponse` for [`Reply`].

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};

use crate::message::CallbackQuery;
use crate::message::{Message, Reply};

/// The handler was reached without [`VerifyLayer`](crate::VerifyLayer) in front of it: a
/// server misconfiguration, answered with 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingVerifyLayer;

impl std::fmt::Display for MissingVerifyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no verified WeChat message: is VerifyLayer applied to this route? (a handler \
             extracts the Message once: the extractor takes it out of the request)",
        )
    }
}

impl std::error::Error for MissingVerifyLayer {}

impl IntoResponse for MissingVerifyLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// Extracts the message that [`VerifyLayer`](crate::VerifyLayer) verified and parsed.
///
/// It takes the message out of the request's extensions rather than copying it (the layers
/// in front of the handler have read it by then), so extract it once per handler: a second
/// `Message` extractor, or an `Extension<Message>` after this one, finds none and answers
/// 500 with [`MissingVerifyLayer`].
///
/// ```
/// use tower_wechat::{Message, MessageKind, Reply, ReplyContent};
///
/// async fn handler(message: Message) -> Reply {
///     match &message.kind {
///         MessageKind::Text { content } => message.reply(ReplyContent::text(content.clone())),
///         _ => Reply::success(),
///     }
/// }
/// let route: axum::routing::MethodRouter = axum::routing::post(handler);
/// # let _ = route;
/// ```
impl<S: Send + Sync> FromRequestParts<S> for Message {
    type Rejection = MissingVerifyLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Taken, not cloned: the handler is the message's last reader (the layers in front of
        // it read it before calling it), and a copy costs an allocation per string.
        parts
            .extensions
            .remove::<Message>()
            .ok_or(MissingVerifyLayer)
    }
}

/// Extracts the verified timestamp, nonce and openid of the callback.
impl<S: Send + Sync> FromRequestParts<S> for CallbackQuery {
    type Rejection = MissingVerifyLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CallbackQuery>()
            .cloned()
            .ok_or(MissingVerifyLayer)
    }
}

/// `200` with the reply's XML (`application/xml`), or the plain `success` ack.
impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let content_type = HeaderValue::from_static(self.content_type());
        ([(header::CONTENT_TYPE, content_type)], self.to_bytes()).into_response()
    }
}
