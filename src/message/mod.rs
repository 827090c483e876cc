//! WeChat's XML messages: parse what WeChat pushes, write passive replies.
//!
//! Pure data and pure functions, no tower types: [`Message::parse`] walks the body once
//! with quick-xml's pull parser (no serde), and [`Reply::to_xml`] writes WeChat's reply
//! shapes directly into a string.
//!
//! ```
//! use tower_wechat::message::{Message, MessageKind, ReplyContent};
//!
//! let xml = b"<xml><ToUserName><![CDATA[gh_123]]></ToUserName>\
//!     <FromUserName><![CDATA[oUser]]></FromUserName><CreateTime>1348831860</CreateTime>\
//!     <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content>\
//!     <MsgId>1234567890123456</MsgId></xml>";
//! let message = Message::parse(xml).unwrap();
//! assert_eq!(message.kind, MessageKind::Text { content: "hello".into() });
//! assert_eq!(message.msg_id, Some(1234567890123456));
//!
//! let reply = message.reply(ReplyContent::text("hi"));
//! assert_eq!(reply.to_user_name(), Some("oUser"));
//! assert!(reply.to_xml().contains("<Content><![CDATA[hi]]></Content>"));
//! ```

mod error;
mod fields;
mod incoming;
mod query;
mod reply;

pub use error::ParseError;
pub use incoming::{Event, Message, MessageKind};
pub use query::CallbackQuery;
pub use reply::{Article, Music, News, Reply, ReplyContent, ReplyError};

/// The top-level `<Encrypt>` of a safe-mode body, if it has one.
pub(crate) fn encrypt_field(xml: &[u8]) -> Result<Option<String>, ParseError> {
    Ok(fields::leaf_fields(xml)?
        .into_iter()
        .flatten()
        .find(|field| field.path == "Encrypt")
        .map(|field| field.value.into_owned()))
}

/// An openid shortened for logs: its first 4 and last 2 characters.
pub(crate) fn mask_openid(openid: &str) -> String {
    let count = openid.chars().count();
    if count <= 8 {
        return "****".to_owned();
    }
    let head: String = openid.chars().take(4).collect();
    let tail: String = openid.chars().skip(count - 2).collect();
    format!("{head}****{tail}")
}

#[cfg(test)]
mod tests;
