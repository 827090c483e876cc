//! WeCom (企业微信) app messages: [`WeComMessage`] (`POST /cgi-bin/message/send`) and its
//! answer [`WeComSent`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::message::mask_openid;

/// A WeCom app message (`POST /cgi-bin/message/send` on
/// [`WECOM_API_BASE`](super::WECOM_API_BASE)): text, markdown, image, file, text card,
/// news or template card, to members, departments and tags of the corp.
///
/// **Duplicate check on by default.** WeCom's `enable_duplicate_check` makes it deliver a
/// message with the same content (the same request JSON) at most once within
/// `duplicate_check_interval` (1800 s by default here and at WeCom, at most 4 hours). That is
/// what makes a send whose outcome is unknown (a timeout, a dropped connection, a 502) safe
/// to retry, so [`WeChatClient::send_wecom_message`](super::WeChatClient::send_wecom_message)
/// retries those while the check is on. The price: sending the same text to the same people
/// twice within the interval delivers it once; turn the check off with
/// [`without_duplicate_check`](Self::without_duplicate_check) for such messages (they are then
/// not retried after an ambiguous failure).
///
/// The `agentid` is the app's: set it here, or once on the client
/// ([`WeChatClientBuilder::agent_id`](super::WeChatClientBuilder::agent_id)).
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::client::WeComMessage;
///
/// let message = WeComMessage::text("Build 42 passed")
///     .to_users(["zhangsan", "lisi"])
///     .to_parties([2])
///     .agent_id(1000002)
///     .duplicate_check_interval(Duration::from_secs(600));
/// # let _ = message;
/// ```
#[derive(Clone, Serialize)]
pub struct WeComMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    touser: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    toparty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    totag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agentid: Option<u32>,
    #[serde(flatten)]
    content: Content,
    #[serde(skip_serializing_if = "is_zero")]
    safe: u8,
    enable_duplicate_check: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_check_interval: Option<u64>,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(value: &u8) -> bool {
    *value == 0
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "msgtype", rename_all = "snake_case")]
enum Content {
    Text { text: Text },
    Markdown { markdown: Text },
    Image { image: Media },
    File { file: Media },
    Textcard { textcard: TextCard },
    News { news: News },
    TemplateCard { template_card: serde_json::Value },
}

impl Content {
    fn kind(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Markdown { .. } => "markdown",
            Self::Image { .. } => "image",
            Self::File { .. } => "file",
            Self::Textcard { .. } => "textcard",
            Self::News { .. } => "news",
            Self::TemplateCard { .. } => "template_card",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
struct Text {
    content: String,
}

#[derive(Clone, Debug, Serialize)]
struct Media {
    media_id: String,
}

#[derive(Clone, Debug, Serialize)]
struct TextCard {
    title: String,
    description: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    btntxt: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct News {
    articles: Vec<WeComArticle>,
}

/// One article of a WeCom [`news`](WeComMessage::news) message (at most 8).
///
/// ```
/// use tower_wechat::client::WeComArticle;
///
/// let article = WeComArticle::new("Release 1.2", "https://example.com/1.2")
///     .description("What changed")
///     .picture("https://example.com/1.2.png");
/// # let _ = article;
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct WeComArticle {
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    picurl: Option<String>,
}

impl WeComArticle {
    /// An article titled `title` that opens `url`.
    pub fn new(title: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            description: None,
            url: url.into(),
            picurl: None,
        }
    }

    /// Its description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Its picture's URL.
    pub fn picture(mut self, url: impl Into<String>) -> Self {
        self.picurl = Some(url.into());
        self
    }
}

impl WeComMessage {
    /// WeCom's default duplicate-check interval, used here too: 1800 s.
    pub const DEFAULT_DUPLICATE_CHECK_INTERVAL: Duration = Duration::from_secs(1800);
    /// The longest duplicate-check interval WeCom takes: 4 hours.
    pub const MAX_DUPLICATE_CHECK_INTERVAL: Duration = Duration::from_secs(4 * 3600);

    fn with(content: Content) -> Self {
        Self {
            touser: None,
            toparty: None,
            totag: None,
            agentid: None,
            content,
            safe: 0,
            enable_duplicate_check: 1,
            duplicate_check_interval: Some(Self::DEFAULT_DUPLICATE_CHECK_INTERVAL.as_secs()),
        }
    }

    /// A text message (at most 2048 bytes).
    pub fn text(content: impl Into<String>) -> Self {
        Self::with(Content::Text {
            text: Text {
                content: content.into(),
            },
        })
    }

    /// A markdown message (WeCom's subset of markdown; at most 2048 bytes).
    pub fn markdown(content: impl Into<String>) -> Self {
        Self::with(Content::Markdown {
            markdown: Text {
                content: content.into(),
            },
        })
    }

    /// An image already uploaded as media `media_id`.
    pub fn image(media_id: impl Into<String>) -> Self {
        Self::with(Content::Image {
            image: Media {
                media_id: media_id.into(),
            },
        })
    }

    /// A file already uploaded as media `media_id`.
    pub fn file(media_id: impl Into<String>) -> Self {
        Self::with(Content::File {
            file: Media {
                media_id: media_id.into(),
            },
        })
    }

    /// A text card: a title, a description (WeCom's limited HTML) and a link.
    pub fn textcard(
        title: impl Into<String>,
        description: impl Into<String>,
        url: impl Into<String>,
    ) -> Self {
        Self::with(Content::Textcard {
            textcard: TextCard {
                title: title.into(),
                description: description.into(),
                url: url.into(),
                btntxt: None,
            },
        })
    }

    /// The button text of a [`textcard`](Self::textcard) (default "详情"); ignored by
    /// other types.
    pub fn button_text(mut self, text: impl Into<String>) -> Self {
        if let Content::Textcard { textcard } = &mut self.content {
            textcard.btntxt = Some(text.into());
        }
        self
    }

    /// A news message of 1 to 8 articles.
    pub fn news(articles: impl IntoIterator<Item = WeComArticle>) -> Self {
        Self::with(Content::News {
            news: News {
                articles: articles.into_iter().collect(),
            },
        })
    }

    /// A template card; `card` is the `template_card` object as WeCom documents it
    /// (`card_type`, `main_title`, ...), sent as it is.
    pub fn template_card(card: serde_json::Value) -> Self {
        Self::with(Content::TemplateCard {
            template_card: card,
        })
    }

    /// Adds members by userid (at most 1000 in all).
    pub fn to_users<I>(mut self, users: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        append(&mut self.touser, users);
        self
    }

    /// Every member the app can reach (`touser: "@all"`).
    pub fn to_all(mut self) -> Self {
        self.touser = Some("@all".to_owned());
        self
    }

    /// Adds departments by id (at most 100).
    pub fn to_parties(mut self, parties: impl IntoIterator<Item = u64>) -> Self {
        append(
            &mut self.toparty,
            parties.into_iter().map(|id| id.to_string()),
        );
        self
    }

    /// Adds tags by id (at most 100).
    pub fn to_tags(mut self, tags: impl IntoIterator<Item = u64>) -> Self {
        append(&mut self.totag, tags.into_iter().map(|id| id.to_string()));
        self
    }

    /// The app's agentid (when the client has none, or to override it).
    pub fn agent_id(mut self, agentid: u32) -> Self {
        self.agentid = Some(agentid);
        self
    }

    /// Marks the message confidential (`safe: 1`: watermarked, not forwardable).
    pub fn confidential(mut self) -> Self {
        self.safe = 1;
        self
    }

    /// The duplicate-check window (at most [`Self::MAX_DUPLICATE_CHECK_INTERVAL`], at least
    /// 1 s); turns the check on.
    pub fn duplicate_check_interval(mut self, interval: Duration) -> Self {
        let seconds = interval
            .min(Self::MAX_DUPLICATE_CHECK_INTERVAL)
            .as_secs()
            .max(1);
        self.enable_duplicate_check = 1;
        self.duplicate_check_interval = Some(seconds);
        self
    }

    /// Turns WeCom's duplicate check off: the same content can be delivered again within the
    /// interval, and the send is no longer retried after an ambiguous failure.
    pub fn without_duplicate_check(mut self) -> Self {
        self.enable_duplicate_check = 0;
        self.duplicate_check_interval = None;
        self
    }

    /// Whether WeCom's duplicate check is on (then a retry cannot deliver it twice).
    pub fn duplicate_check(&self) -> bool {
        self.enable_duplicate_check == 1
    }

    /// The agentid set on the message, if any.
    pub fn get_agent_id(&self) -> Option<u32> {
        self.agentid
    }

    /// Whether it names any recipient.
    pub(crate) fn has_recipients(&self) -> bool {
        [&self.touser, &self.toparty, &self.totag]
            .iter()
            .any(|to| to.as_deref().is_some_and(|to| !to.is_empty()))
    }
}

/// Appends `items` to a `|`-separated list.
fn append<I>(list: &mut Option<String>, items: I)
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let list = list.get_or_insert_with(String::new);
    for item in items {
        if !list.is_empty() {
            list.push('|');
        }
        list.push_str(item.as_ref());
    }
}

impl fmt::Debug for WeComMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |list: &Option<String>| list.as_deref().map_or(0, |l| l.split('|').count());
        f.debug_struct("WeComMessage")
            .field("msgtype", &self.content.kind())
            .field("agentid", &self.agentid)
            .field("users", &count(&self.touser))
            .field("parties", &count(&self.toparty))
            .field("tags", &count(&self.totag))
            .field("duplicate_check", &self.duplicate_check())
            .finish_non_exhaustive()
    }
}

/// WeCom's answer to a sent app message. errcode 0 can still be a partial success: the
/// recipients WeCom could not reach are listed here (lowercased userids, as WeCom gives
/// them). When none could be reached WeCom answers errcode 81013 instead, an error.
///
/// ```
/// use tower_wechat::client::WeComSent;
///
/// let sent = WeComSent::default();
/// assert!(!sent.is_partial());
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct WeComSent {
    /// The message id (to recall it), when WeCom gives one.
    #[serde(default)]
    pub msgid: Option<String>,
    /// Userids that are not members, or not in the app's range (`invaliduser`).
    #[serde(default, rename = "invaliduser", deserialize_with = "split")]
    pub invalid_users: Vec<String>,
    /// Department ids that are not valid (`invalidparty`).
    #[serde(default, rename = "invalidparty", deserialize_with = "split")]
    pub invalid_parties: Vec<String>,
    /// Tag ids that are not valid (`invalidtag`).
    #[serde(default, rename = "invalidtag", deserialize_with = "split")]
    pub invalid_tags: Vec<String>,
    /// Userids without a basic API licence (`unlicenseduser`).
    #[serde(default, rename = "unlicenseduser", deserialize_with = "split")]
    pub unlicensed_users: Vec<String>,
    /// For interactive template cards: the code to update the card (72 h, once).
    #[serde(default)]
    pub response_code: Option<String>,
}

impl WeComSent {
    /// Whether some recipients were not reached.
    pub fn is_partial(&self) -> bool {
        !(self.invalid_users.is_empty()
            && self.invalid_parties.is_empty()
            && self.invalid_tags.is_empty()
            && self.unlicensed_users.is_empty())
    }
}

/// `"a|b"` (or absent, or `""`) as a list.
fn split<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let joined: Option<String> = Option::deserialize(deserializer)?;
    Ok(joined
        .unwrap_or_default()
        .split('|')
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect())
}

impl fmt::Debug for WeComSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = |users: &[String]| {
            users
                .iter()
                .map(|user| mask_openid(user))
                .collect::<Vec<_>>()
        };
        f.debug_struct("WeComSent")
            .field("msgid", &self.msgid.is_some())
            .field("invalid_users", &masked(&self.invalid_users))
            .field("invalid_parties", &self.invalid_parties)
            .field("invalid_tags", &self.invalid_tags)
            .field("unlicensed_users", &masked(&self.unlicensed_users))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_serialize_as_wecom_documents_them() {
        let message = WeComMessage::text("hi")
            .to_users(["zhangsan", "lisi"])
            .to_parties([2, 3])
            .to_tags([7])
            .agent_id(1000002);
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"touser":"zhangsan|lisi","toparty":"2|3","totag":"7","agentid":1000002,
                   "msgtype":"text","text":{"content":"hi"},
                   "enable_duplicate_check":1,"duplicate_check_interval":1800})
        );
        let card = WeComMessage::textcard("T", "<div>d</div>", "https://e.x")
            .button_text("More")
            .to_all()
            .confidential()
            .without_duplicate_check();
        assert_eq!(
            serde_json::to_value(&card).unwrap(),
            json!({"touser":"@all","msgtype":"textcard","safe":1,"enable_duplicate_check":0,
                   "textcard":{"title":"T","description":"<div>d</div>","url":"https://e.x","btntxt":"More"}})
        );
        let news = WeComMessage::news([WeComArticle::new("A", "https://a").picture("https://p")])
            .duplicate_check_interval(Duration::from_secs(86_400));
        assert_eq!(
            serde_json::to_value(&news).unwrap()["duplicate_check_interval"],
            14_400
        );
        assert_eq!(
            serde_json::to_value(WeComMessage::template_card(
                json!({"card_type":"text_notice"})
            ))
            .unwrap()["msgtype"],
            "template_card"
        );
        assert_eq!(
            serde_json::to_value(WeComMessage::markdown("**b**")).unwrap()["markdown"],
            json!({"content":"**b**"})
        );
        assert!(!WeComMessage::text("x").has_recipients());
    }

    #[test]
    fn the_answer_lists_the_recipients_not_reached_and_debug_masks_them() {
        let sent: WeComSent = serde_json::from_value(json!({
            "errcode":0,"errmsg":"ok","invaliduser":"ghost1|ghost2","invalidparty":"",
            "invalidtag":"9","msgid":"MSGID"}))
        .unwrap();
        assert_eq!(sent.invalid_users, ["ghost1", "ghost2"]);
        assert!(sent.invalid_parties.is_empty());
        assert_eq!(sent.invalid_tags, ["9"]);
        assert!(sent.is_partial());
        let shown = format!(
            "{sent:?} {:?}",
            WeComMessage::text("secret").to_users(["zhangsan1"])
        );
        assert!(
            !shown.contains("ghost1") && !shown.contains("zhangsan1") && !shown.contains("secret"),
            "{shown}"
        );
        let plain: WeComSent = serde_json::from_str(r#"{"errcode":0,"errmsg":"ok"}"#).unwrap();
        assert!(!plain.is_partial());
    }
}
