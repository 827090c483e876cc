//! WeChat's messages, XML and JSON: parse what WeChat pushes, write passive replies.
//!
//! Pure data and pure functions, no tower types: [`Message::parse`] walks the body once —
//! XML with quick-xml's pull parser, JSON with serde_json (see [`Format`]) — into one model,
//! and [`Reply::to_xml`] / [`Reply::to_json`] write WeChat's reply shapes directly into a
//! string. A reply made with [`Message::reply`] has the message's format.
//!
//! # JSON
//!
//! Mini Programs, mini games, the open platform and the stores can push JSON. A JSON body is
//! one object; it is flattened into the same `(path, text)` fields as XML, so the typed model
//! and [`Message::extra`] look the same whichever format was configured:
//!
//! - nested objects give paths joined with `/` (`{"ScanCodeInfo":{"ScanType":"qrcode"}}` is
//!   the field `ScanCodeInfo/ScanType`);
//! - an array is a repeated element: each item keeps the array's path
//!   (`{"List":[{"TemplateId":"a"},{"TemplateId":"b"}]}` is two `List/TemplateId` fields),
//!   and an array of objects reads like repeated XML elements, so WeChat's habit of sending
//!   `List` as an object for one item and an array for several makes no difference;
//! - strings are their text, integers their decimal digits (all of them: 19-digit order ids
//!   are exact), other numbers their shortest exact form, `true`/`false` as such, `null`
//!   and an empty object or array as empty text.
//!
//! Bounds are the XML parser's: at most 8 nested objects/arrays below the root, 2 048
//! values, keys of at most 64 bytes (not empty, without `/`); the body size is capped by
//! [`VerifyLayer::body_limit`](crate::VerifyLayer::body_limit).
//!
//! ```
//! use tower_wechat::message::{Event, Format, Message, ReplyContent};
//!
//! let json = br#"{"ToUserName":"gh_123","FromUserName":"oUser","CreateTime":"1620973045",
//!     "MsgType":"event","Event":"subscribe_msg_popup_event",
//!     "List":{"TemplateId":"tpl-1","SubscribeStatusString":"accept","PopupScene":"0"}}"#;
//! let message = Message::parse(json).unwrap();
//! let Some(Event::SubscribeMsgPopup { list }) = message.event() else { panic!() };
//! assert_eq!(list[0].template_id, "tpl-1");
//!
//! let reply = message.reply(ReplyContent::text("thanks"));
//! assert_eq!(reply.format(), Some(Format::Json));
//! assert!(reply.to_json().contains(r#""Content":"thanks""#));
//! ```
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
mod events;
mod fields;
#[cfg(fuzzing)]
pub(crate) use fields::check_scanner;
mod format;
mod incoming;
mod json;
mod query;
mod reply;

pub use error::ParseError;
pub use events::{
    BatchJob, ContactChange, ContactParty, ContactTag, ContactUser, ExternalChatChange,
    ExternalContactChange, ExternalTagChange, SelectedItem, SubscribeChange, SubscribePopup,
    SubscribeSent, TemplateCardEvent,
};
pub use format::Format;
pub use incoming::{Event, Message, MessageKind};
pub use query::CallbackQuery;
pub use reply::{Article, Music, News, Reply, ReplyContent, ReplyError};

/// The top-level `Encrypt` of a safe-mode body (`<Encrypt>` in XML, `"Encrypt"` in JSON),
/// if it has one.
pub(crate) fn encrypt_field(body: &[u8]) -> Result<Option<String>, ParseError> {
    let leaves = match Format::detect(body) {
        Format::Xml => fields::leaf_fields(body)?,
        Format::Json => json::leaf_fields(body)?,
    };
    Ok(leaves
        .into_iter()
        .flatten()
        .find(|field| field.path == "Encrypt")
        .map(|field| field.value.into_owned()))
}

/// Appends `text` as a JSON string literal.
#[cfg_attr(not(feature = "crypto"), allow(dead_code))]
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    json::push_string(out, text);
}

/// Appends `value` in decimal, as `{}` writes it (without the formatting machinery).
pub(crate) fn push_decimal(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// An openid shortened for logs: its first 4 and last 2 characters.
pub(crate) fn mask_openid(openid: &str) -> String {
    let (head, tail) = if openid.is_ascii() {
        // Every openid WeChat sends: one byte per character, no counting needed.
        if openid.len() <= 8 {
            return "****".to_owned();
        }
        (&openid[..4], &openid[openid.len() - 2..])
    } else {
        let count = openid.chars().count();
        if count <= 8 {
            return "****".to_owned();
        }
        // Byte offsets of the 5th character and of the second-to-last one (char boundaries).
        let head_end = openid
            .char_indices()
            .nth(4)
            .map_or(openid.len(), |(at, _)| at);
        let tail_start = openid
            .char_indices()
            .nth(count - 2)
            .map_or(openid.len(), |(at, _)| at);
        (&openid[..head_end], &openid[tail_start..])
    };
    let mut masked = String::with_capacity(head.len() + 4 + tail.len());
    masked.push_str(head);
    masked.push_str("****");
    masked.push_str(tail);
    masked
}

#[cfg(test)]
mod official;
#[cfg(test)]
mod tests;
