//! Outgoing messages: [`TemplateMessage`] and [`CustomMessage`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::secret::MaskedId;

/// A template message (`POST /cgi-bin/message/template/send`).
///
/// Give it a [`client_msg_id`](Self::client_msg_id) to make sending it safe to retry: WeChat
/// sends one message per openid + `client_msg_id` within 10 minutes, so a retry after a
/// timeout cannot deliver it twice.
///
/// ```
/// use tower_wechat::client::TemplateMessage;
///
/// let message = TemplateMessage::new("oUser1234", "TEMPLATE_ID")
///     .data("thing1", "Your order has shipped")
///     .data("time2", "2024-05-01 12:00")
///     .url("https://example.com/orders/42")
///     .client_msg_id("order-42-shipped");
/// # let _ = message;
/// ```
#[derive(Clone, Serialize)]
pub struct TemplateMessage {
    touser: String,
    template_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    miniprogram: Option<MiniProgram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_msg_id: Option<String>,
    data: BTreeMap<String, TemplateValue>,
}

#[derive(Clone, Debug, Serialize)]
struct MiniProgram {
    appid: String,
    pagepath: String,
}

#[derive(Clone, Debug, Serialize)]
struct TemplateValue {
    value: String,
}

impl TemplateMessage {
    /// A message to `openid` from template `template_id`, without data yet.
    pub fn new(openid: impl Into<String>, template_id: impl Into<String>) -> Self {
        Self {
            touser: openid.into(),
            template_id: template_id.into(),
            url: None,
            miniprogram: None,
            client_msg_id: None,
            data: BTreeMap::new(),
        }
    }

    /// Sets the template field `key` (e.g. `thing1`) to `value`.
    pub fn data(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data.insert(
            key.into(),
            TemplateValue {
                value: value.into(),
            },
        );
        self
    }

    /// The page opened when the message is tapped.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The Mini Program page opened when the message is tapped (takes precedence over
    /// [`url`](Self::url) where supported).
    pub fn miniprogram(mut self, appid: impl Into<String>, pagepath: impl Into<String>) -> Self {
        self.miniprogram = Some(MiniProgram {
            appid: appid.into(),
            pagepath: pagepath.into(),
        });
        self
    }

    /// WeChat's de-duplication id (at most 64 characters): one message per openid + id
    /// within 10 minutes. Makes the send safe to retry after a timeout.
    pub fn client_msg_id(mut self, id: impl Into<String>) -> Self {
        self.client_msg_id = Some(id.into());
        self
    }

    /// The de-duplication id, if set.
    pub fn get_client_msg_id(&self) -> Option<&str> {
        self.client_msg_id.as_deref()
    }
}

impl fmt::Debug for TemplateMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateMessage")
            .field("touser", &MaskedId(&self.touser))
            .field("template_id", &self.template_id)
            .field("client_msg_id", &self.client_msg_id)
            .field("fields", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// A customer-service message (`POST /cgi-bin/message/custom/send`), sendable within 48
/// hours of the user's last message.
///
/// These carry no de-duplication id, so a send whose outcome is unknown (a timeout, a
/// dropped connection) is not retried: it may have been delivered.
///
/// ```
/// use tower_wechat::client::CustomMessage;
///
/// let message = CustomMessage::text("oUser1234", "Hello!");
/// # let _ = message;
/// ```
#[derive(Clone, Serialize)]
pub struct CustomMessage {
    touser: String,
    #[serde(flatten)]
    content: CustomContent,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "msgtype", rename_all = "lowercase")]
enum CustomContent {
    Text { text: Text },
    Image { image: Media },
}

#[derive(Clone, Debug, Serialize)]
struct Text {
    content: String,
}

#[derive(Clone, Debug, Serialize)]
struct Media {
    media_id: String,
}

impl CustomMessage {
    /// A text message.
    pub fn text(openid: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            touser: openid.into(),
            content: CustomContent::Text {
                text: Text {
                    content: content.into(),
                },
            },
        }
    }

    /// An image already uploaded as media `media_id`.
    pub fn image(openid: impl Into<String>, media_id: impl Into<String>) -> Self {
        Self {
            touser: openid.into(),
            content: CustomContent::Image {
                image: Media {
                    media_id: media_id.into(),
                },
            },
        }
    }
}

impl fmt::Debug for CustomMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.content {
            CustomContent::Text { .. } => "text",
            CustomContent::Image { .. } => "image",
        };
        f.debug_struct("CustomMessage")
            .field("touser", &MaskedId(&self.touser))
            .field("msgtype", &kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_serialize_as_wechat_documents_them() {
        let template = TemplateMessage::new("oUser1234", "T1")
            .data("thing1", "shipped")
            .miniprogram("wxmini", "pages/index")
            .client_msg_id("m-1");
        assert_eq!(
            serde_json::to_value(&template).unwrap(),
            json!({"touser":"oUser1234","template_id":"T1","client_msg_id":"m-1",
                   "miniprogram":{"appid":"wxmini","pagepath":"pages/index"},
                   "data":{"thing1":{"value":"shipped"}}})
        );
        assert_eq!(
            serde_json::to_value(CustomMessage::text("oUser1234", "hi")).unwrap(),
            json!({"touser":"oUser1234","msgtype":"text","text":{"content":"hi"}})
        );
        assert_eq!(
            serde_json::to_value(CustomMessage::image("oUser1234", "M1")).unwrap(),
            json!({"touser":"oUser1234","msgtype":"image","image":{"media_id":"M1"}})
        );
    }

    #[test]
    fn debug_masks_the_openid() {
        let shown = format!(
            "{:?} {:?}",
            TemplateMessage::new("oUser1234567", "T1"),
            CustomMessage::text("oUser1234567", "secret words")
        );
        assert!(
            !shown.contains("oUser1234567") && !shown.contains("secret words"),
            "{shown}"
        );
        assert!(shown.contains("\"oUse****67\""), "{shown}");
    }
}
