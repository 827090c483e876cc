//! Outgoing messages of Official Accounts and Mini Programs: [`TemplateMessage`],
//! [`CustomMessage`], [`SubscribeMessage`] and [`BizSubscribeMessage`].

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

    /// The template's id.
    pub fn template_id(&self) -> &str {
        &self.template_id
    }

    /// What WeChat's 2023 template rules will change in this message: the `first` and
    /// `remark` fields are no longer shown, and other fields are cut to 20 characters. The
    /// message is still sent as it is; [`WeChatClient`](super::WeChatClient) logs these once
    /// per template and field.
    ///
    /// ```
    /// use tower_wechat::client::{TemplateMessage, TemplateWarning};
    ///
    /// let message = TemplateMessage::new("oUser1234", "T1")
    ///     .data("first", "Hello")
    ///     .data("thing1", "a value well over twenty characters long");
    /// assert_eq!(
    ///     message.warnings(),
    ///     [
    ///         TemplateWarning::Dropped("first".into()),
    ///         TemplateWarning::TooLong { field: "thing1".into(), chars: 40 },
    ///     ]
    /// );
    /// ```
    pub fn warnings(&self) -> Vec<TemplateWarning> {
        self.data
            .iter()
            .filter_map(|(field, value)| {
                if field == "first" || field == "remark" {
                    Some(TemplateWarning::Dropped(field.clone()))
                } else {
                    let chars = value.value.chars().count();
                    (chars > TEMPLATE_FIELD_CHARS).then(|| TemplateWarning::TooLong {
                        field: field.clone(),
                        chars,
                    })
                }
            })
            .collect()
    }
}

/// The longest value WeChat shows in a template message's field since 2023: 20 characters.
const TEMPLATE_FIELD_CHARS: usize = 20;

/// A field of a [`TemplateMessage`] that WeChat's 2023 template rules change; see
/// [`TemplateMessage::warnings`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateWarning {
    /// `first` or `remark`: no longer shown.
    Dropped(String),
    /// A value over 20 characters: cut short.
    TooLong {
        /// The field's key.
        field: String,
        /// Its length in characters.
        chars: usize,
    },
}

impl fmt::Display for TemplateWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dropped(field) => write!(
                f,
                "template field {field:?} is no longer shown (WeChat's 2023 template rules)"
            ),
            Self::TooLong { field, chars } => write!(
                f,
                "template field {field:?} has {chars} characters; WeChat shows 20 \
                 (2023 template rules)"
            ),
        }
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

/// A Mini Program's subscribe message (`POST /cgi-bin/message/subscribe/send`), sendable
/// to a user who accepted the template in `wx.requestSubscribeMessage` (a one-time
/// subscription allows one message).
///
/// It has no de-duplication id: a send whose outcome is unknown (a timeout, a dropped
/// connection, a 5xx other than 503) is not retried, since it may have used the user's
/// subscription and been delivered. errcode 43101 (the user refused, or has no subscription
/// left) is [`ErrorClass::UserRefused`](super::ErrorClass::UserRefused): permanent for that
/// user until they subscribe again.
///
/// ```
/// use tower_wechat::client::{MiniProgramState, SubscribeMessage};
///
/// let message = SubscribeMessage::new("oUser1234", "TEMPLATE_ID")
///     .data("thing1", "Your order has shipped")
///     .page("pages/order?id=42")
///     .state(MiniProgramState::Trial)
///     .lang("en_US");
/// # let _ = message;
/// ```
#[derive(Clone, Serialize)]
pub struct SubscribeMessage {
    touser: String,
    template_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    data: BTreeMap<String, TemplateValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    miniprogram_state: Option<MiniProgramState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lang: Option<String>,
}

/// Which version of the Mini Program a subscribe message opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MiniProgramState {
    /// The development version (`developer`).
    Developer,
    /// The trial version (`trial`).
    Trial,
    /// The released version (`formal`, WeChat's default).
    Formal,
}

impl SubscribeMessage {
    /// A message to `openid` from subscription template `template_id`, without data yet.
    pub fn new(openid: impl Into<String>, template_id: impl Into<String>) -> Self {
        Self {
            touser: openid.into(),
            template_id: template_id.into(),
            page: None,
            data: BTreeMap::new(),
            miniprogram_state: None,
            lang: None,
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

    /// The Mini Program page opened when the message is tapped (`index?foo=bar`).
    pub fn page(mut self, page: impl Into<String>) -> Self {
        self.page = Some(page.into());
        self
    }

    /// Which version of the Mini Program the page opens in (default: the released one).
    pub fn state(mut self, state: MiniProgramState) -> Self {
        self.miniprogram_state = Some(state);
        self
    }

    /// The language of "open the Mini Program": `zh_CN` (default), `en_US`, `zh_HK`, `zh_TW`.
    pub fn lang(mut self, lang: impl Into<String>) -> Self {
        self.lang = Some(lang.into());
        self
    }
}

impl fmt::Debug for SubscribeMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeMessage")
            .field("touser", &MaskedId(&self.touser))
            .field("template_id", &self.template_id)
            .field("fields", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// An Official Account's subscribe message (`POST /cgi-bin/message/subscribe/bizsend`,
/// 订阅通知): a different endpoint from the Mini Program's, whose answer carries no msgid.
///
/// Like [`SubscribeMessage`], it has no de-duplication id, so it is not retried after an
/// ambiguous failure; 43101 is [`ErrorClass::UserRefused`](super::ErrorClass::UserRefused).
///
/// ```
/// use tower_wechat::client::BizSubscribeMessage;
///
/// let message = BizSubscribeMessage::new("oUser1234", "TEMPLATE_ID")
///     .data("thing1", "Your order has shipped")
///     .page("https://example.com/orders/42");
/// # let _ = message;
/// ```
#[derive(Clone, Serialize)]
pub struct BizSubscribeMessage {
    touser: String,
    template_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    miniprogram: Option<MiniProgram>,
    data: BTreeMap<String, TemplateValue>,
}

impl BizSubscribeMessage {
    /// A message to `openid` from subscription template `template_id`, without data yet.
    pub fn new(openid: impl Into<String>, template_id: impl Into<String>) -> Self {
        Self {
            touser: openid.into(),
            template_id: template_id.into(),
            page: None,
            miniprogram: None,
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

    /// The web page opened when the message is tapped.
    pub fn page(mut self, url: impl Into<String>) -> Self {
        self.page = Some(url.into());
        self
    }

    /// The Mini Program page opened when the message is tapped (takes precedence over
    /// [`page`](Self::page)).
    pub fn miniprogram(mut self, appid: impl Into<String>, pagepath: impl Into<String>) -> Self {
        self.miniprogram = Some(MiniProgram {
            appid: appid.into(),
            pagepath: pagepath.into(),
        });
        self
    }
}

impl fmt::Debug for BizSubscribeMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BizSubscribeMessage")
            .field("touser", &MaskedId(&self.touser))
            .field("template_id", &self.template_id)
            .field("fields", &self.data.len())
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
    fn subscribe_messages_serialize_as_wechat_documents_them() {
        let message = SubscribeMessage::new("oUser1234", "T1")
            .data("thing1", "shipped")
            .page("index?foo=bar")
            .state(MiniProgramState::Developer)
            .lang("zh_CN");
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"touser":"oUser1234","template_id":"T1","page":"index?foo=bar",
                   "miniprogram_state":"developer","lang":"zh_CN",
                   "data":{"thing1":{"value":"shipped"}}})
        );
        let biz = BizSubscribeMessage::new("oUser1234", "T2")
            .data("thing1", "x")
            .miniprogram("wxmini", "pages/index");
        assert_eq!(
            serde_json::to_value(&biz).unwrap(),
            json!({"touser":"oUser1234","template_id":"T2",
                   "miniprogram":{"appid":"wxmini","pagepath":"pages/index"},
                   "data":{"thing1":{"value":"x"}}})
        );
        let shown = format!("{message:?} {biz:?}");
        assert!(!shown.contains("oUser1234"), "{shown}");
    }

    #[test]
    fn template_warnings_name_the_2023_rules_without_the_values() {
        let message = TemplateMessage::new("oUser1234", "T1")
            .data("remark", "r")
            .data("thing1", "二十个字以内二十个字以内二十个字以内") // 18 characters
            .data("thing2", "x".repeat(21));
        let warnings = message.warnings();
        assert_eq!(
            warnings,
            [
                TemplateWarning::Dropped("remark".into()),
                TemplateWarning::TooLong {
                    field: "thing2".into(),
                    chars: 21
                }
            ]
        );
        assert!(!warnings[1].to_string().contains("xxx"));
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
