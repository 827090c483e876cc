//! [`Reply`]: a passive reply, written as WeChat's reply XML or JSON.

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::Full;

use super::ParseError;
use super::fields::Fields;
use super::fields::leaf_fields;
use super::format::Format;
use super::json;

/// A passive reply: a message sent back in the HTTP response, or the plain `success` ack that
/// tells WeChat the callback was handled and nothing is sent to the user.
///
/// A reply message has a [`Format`]: [`Message::reply`](super::Message::reply) gives it the
/// callback's, so a handler answers JSON callbacks in JSON without knowing it; `success` has
/// none (it is the same bare word in both). [`VerifyLayer`](crate::VerifyLayer) also makes
/// sure the answer to a JSON callback goes out as JSON (and in safe mode, sealed in the
/// envelope of the callback's format).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply(Inner);

#[derive(Clone, Debug, PartialEq)]
enum Inner {
    Success,
    Message {
        to_user_name: String,
        from_user_name: String,
        create_time: u64,
        content: ReplyContent,
        format: Format,
    },
}

/// What a passive reply sends to the user.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ReplyContent {
    /// A text message.
    Text {
        /// The text.
        content: String,
    },
    /// An image already uploaded as media.
    Image {
        /// Its `MediaId`.
        media_id: String,
    },
    /// A voice message already uploaded as media.
    Voice {
        /// Its `MediaId`.
        media_id: String,
    },
    /// A video already uploaded as media.
    Video {
        /// Its `MediaId`.
        media_id: String,
        /// Title shown with it.
        title: Option<String>,
        /// Description shown with it.
        description: Option<String>,
    },
    /// A music message.
    Music(Music),
    /// News: 1 to 8 article cards.
    News(News),
    /// Hands the conversation to the customer-service system.
    TransferCustomerService {
        /// A specific agent (`KfAccount`), or any.
        kf_account: Option<String>,
    },
}

/// The fields of a music reply.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Music {
    /// `Title`.
    pub title: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `MusicUrl`.
    pub music_url: Option<String>,
    /// `HQMusicUrl`, used on Wi-Fi.
    pub hq_music_url: Option<String>,
    /// `ThumbMediaId`: the cover, uploaded as media.
    pub thumb_media_id: String,
}

/// One article card of a news reply.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Article {
    /// `Title`.
    pub title: String,
    /// `Description`.
    pub description: String,
    /// `PicUrl`: the cover image.
    pub pic_url: String,
    /// `Url`: opened on tap.
    pub url: String,
}

/// 1 to 8 articles, as WeChat allows in a passive news reply.
#[derive(Clone, Debug, PartialEq)]
pub struct News(Vec<Article>);

impl News {
    /// The most articles WeChat shows in one passive reply.
    pub const MAX_ARTICLES: usize = 8;

    /// Checks the count: 1 to [`Self::MAX_ARTICLES`].
    pub fn new(articles: Vec<Article>) -> Result<Self, ReplyError> {
        match articles.len() {
            0 => Err(ReplyError::NoArticles),
            count if count > Self::MAX_ARTICLES => Err(ReplyError::TooManyArticles(count)),
            _ => Ok(Self(articles)),
        }
    }

    /// The articles.
    pub fn articles(&self) -> &[Article] {
        &self.0
    }
}

/// A reply WeChat would not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// A news reply needs at least one article.
    NoArticles,
    /// A news reply holds at most 8 articles (the count given).
    TooManyArticles(usize),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoArticles => f.write_str("a news reply needs at least one article"),
            Self::TooManyArticles(count) => {
                write!(f, "a news reply holds at most 8 articles, got {count}")
            }
        }
    }
}

impl std::error::Error for ReplyError {}

impl ReplyContent {
    /// A text reply.
    pub fn text(content: impl Into<String>) -> Self {
        Self::Text {
            content: content.into(),
        }
    }

    /// An image reply.
    pub fn image(media_id: impl Into<String>) -> Self {
        Self::Image {
            media_id: media_id.into(),
        }
    }

    /// A voice reply.
    pub fn voice(media_id: impl Into<String>) -> Self {
        Self::Voice {
            media_id: media_id.into(),
        }
    }

    /// A video reply without title or description.
    pub fn video(media_id: impl Into<String>) -> Self {
        Self::Video {
            media_id: media_id.into(),
            title: None,
            description: None,
        }
    }

    /// A music reply with the cover `thumb_media_id` (an uploaded thumbnail) and the
    /// track's URL; set the title, description and Wi-Fi URL on [`Music`] as needed.
    ///
    /// ```
    /// use tower_wechat::message::{Music, ReplyContent};
    ///
    /// let content = ReplyContent::music("thumb_media_id", "https://example.com/a.mp3");
    /// assert!(matches!(content, ReplyContent::Music(Music { .. })));
    /// ```
    pub fn music(thumb_media_id: impl Into<String>, music_url: impl Into<String>) -> Self {
        Self::Music(Music {
            thumb_media_id: thumb_media_id.into(),
            music_url: Some(music_url.into()),
            ..Music::default()
        })
    }

    /// A news reply; 1 to 8 articles.
    pub fn news(articles: Vec<Article>) -> Result<Self, ReplyError> {
        News::new(articles).map(Self::News)
    }

    /// Hands the conversation to any customer-service agent.
    pub fn transfer_customer_service() -> Self {
        Self::TransferCustomerService { kf_account: None }
    }

    fn msg_type(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Image { .. } => "image",
            Self::Voice { .. } => "voice",
            Self::Video { .. } => "video",
            Self::Music(_) => "music",
            Self::News(_) => "news",
            Self::TransferCustomerService { .. } => "transfer_customer_service",
        }
    }
}

impl Reply {
    /// The plain `success` ack: WeChat stops retrying and sends the user nothing.
    pub fn success() -> Self {
        Self(Inner::Success)
    }

    /// A reply from `from_user_name` (the account) to `to_user_name` (the user), in XML
    /// (see [`with_format`](Self::with_format)). Usually built with
    /// [`Message::reply`](super::Message::reply), which fills these in and takes the
    /// message's format.
    pub fn new(
        to_user_name: impl Into<String>,
        from_user_name: impl Into<String>,
        create_time: u64,
        content: ReplyContent,
    ) -> Self {
        Self(Inner::Message {
            to_user_name: to_user_name.into(),
            from_user_name: from_user_name.into(),
            create_time,
            content,
            format: Format::Xml,
        })
    }

    /// The same reply in `format`; `success` stays as it is.
    ///
    /// ```
    /// use tower_wechat::message::{Format, Reply, ReplyContent};
    ///
    /// let reply = Reply::new("oUser", "gh_1", 1, ReplyContent::text("hi")).with_format(Format::Json);
    /// assert_eq!(reply.content_type(), "application/json; charset=utf-8");
    /// assert_eq!(
    ///     reply.to_bytes(),
    ///     r#"{"ToUserName":"oUser","FromUserName":"gh_1","CreateTime":1,"MsgType":"text","Content":"hi"}"#
    /// );
    /// assert_eq!(Reply::success().with_format(Format::Json).to_bytes(), "success");
    /// ```
    #[must_use]
    pub fn with_format(mut self, format: Format) -> Self {
        if let Inner::Message { format: slot, .. } = &mut self.0 {
            *slot = format;
        }
        self
    }

    /// The reply's format; `None` for `success`.
    pub fn format(&self) -> Option<Format> {
        match &self.0 {
            Inner::Success => None,
            Inner::Message { format, .. } => Some(*format),
        }
    }

    /// Whether this is the plain `success` ack.
    pub fn is_success(&self) -> bool {
        self.0 == Inner::Success
    }

    /// What the reply sends, unless it is the `success` ack.
    pub fn content(&self) -> Option<&ReplyContent> {
        match &self.0 {
            Inner::Success => None,
            Inner::Message { content, .. } => Some(content),
        }
    }

    /// The user the reply goes to.
    pub fn to_user_name(&self) -> Option<&str> {
        match &self.0 {
            Inner::Success => None,
            Inner::Message { to_user_name, .. } => Some(to_user_name),
        }
    }

    /// The account the reply comes from.
    pub fn from_user_name(&self) -> Option<&str> {
        match &self.0 {
            Inner::Success => None,
            Inner::Message { from_user_name, .. } => Some(from_user_name),
        }
    }

    /// The reply's `CreateTime`.
    pub fn create_time(&self) -> Option<u64> {
        match &self.0 {
            Inner::Success => None,
            Inner::Message { create_time, .. } => Some(*create_time),
        }
    }

    /// The `Content-Type` of the body: by its [`format`](Self::format), `text/plain` for
    /// `success`.
    pub fn content_type(&self) -> &'static str {
        match self.0 {
            Inner::Success => "text/plain; charset=utf-8",
            Inner::Message { format, .. } => format.content_type(),
        }
    }

    /// The body: `success`, or the reply XML in WeChat's documented shape.
    ///
    /// Text goes in CDATA sections; a `]]>` inside is split across two sections, so any text
    /// round-trips exactly and can never close the section early or inject elements.
    /// Characters that XML 1.0 cannot carry at all (C0 controls other than tab, CR and LF,
    /// U+FFFE, U+FFFF) are replaced with U+FFFD.
    pub fn to_xml(&self) -> String {
        let Inner::Message {
            to_user_name,
            from_user_name,
            create_time,
            content,
            ..
        } = &self.0
        else {
            return "success".to_owned();
        };
        // The fixed text of the largest replies (news) is about 400 bytes; a text reply's
        // is under 200: room for it and the names (and the content) without growing.
        let text_len = match content {
            ReplyContent::Text { content } => content.len(),
            _ => 256,
        };
        let mut xml =
            XmlWriter::with_capacity(192 + to_user_name.len() + from_user_name.len() + text_len);
        xml.open("xml");
        xml.cdata("ToUserName", to_user_name);
        xml.cdata("FromUserName", from_user_name);
        xml.number("CreateTime", *create_time);
        xml.cdata("MsgType", content.msg_type());
        match content {
            ReplyContent::Text { content } => xml.cdata("Content", content),
            ReplyContent::Image { media_id } => {
                xml.open("Image");
                xml.cdata("MediaId", media_id);
                xml.close("Image");
            }
            ReplyContent::Voice { media_id } => {
                xml.open("Voice");
                xml.cdata("MediaId", media_id);
                xml.close("Voice");
            }
            ReplyContent::Video {
                media_id,
                title,
                description,
            } => {
                xml.open("Video");
                xml.cdata("MediaId", media_id);
                xml.optional_cdata("Title", title.as_deref());
                xml.optional_cdata("Description", description.as_deref());
                xml.close("Video");
            }
            ReplyContent::Music(music) => {
                xml.open("Music");
                xml.optional_cdata("Title", music.title.as_deref());
                xml.optional_cdata("Description", music.description.as_deref());
                xml.optional_cdata("MusicUrl", music.music_url.as_deref());
                xml.optional_cdata("HQMusicUrl", music.hq_music_url.as_deref());
                xml.cdata("ThumbMediaId", &music.thumb_media_id);
                xml.close("Music");
            }
            ReplyContent::News(news) => {
                xml.number("ArticleCount", news.articles().len() as u64);
                xml.open("Articles");
                for article in news.articles() {
                    xml.open("item");
                    xml.cdata("Title", &article.title);
                    xml.cdata("Description", &article.description);
                    xml.cdata("PicUrl", &article.pic_url);
                    xml.cdata("Url", &article.url);
                    xml.close("item");
                }
                xml.close("Articles");
            }
            ReplyContent::TransferCustomerService { kf_account } => {
                if let Some(kf_account) = kf_account {
                    xml.open("TransInfo");
                    xml.cdata("KfAccount", kf_account);
                    xml.close("TransInfo");
                }
            }
        }
        xml.close("xml");
        xml.0
    }

    /// The body in JSON, WeChat's JSON reply shape: the XML shape's elements as keys, in
    /// the same order, `CreateTime` and `ArticleCount` as numbers, each wrapping element
    /// (`Image`, `Music`, `TransInfo`…) an object, and the news articles an array of
    /// objects (`"Articles":[{"Title":…}]`); `success` for the ack. Strings are escaped as
    /// JSON requires (control characters, `"` and `\` included), so any text round-trips.
    pub fn to_json(&self) -> String {
        let Inner::Message {
            to_user_name,
            from_user_name,
            create_time,
            content,
            ..
        } = &self.0
        else {
            return "success".to_owned();
        };
        let mut out = JsonWriter::with_capacity(256);
        out.open();
        out.string("ToUserName", to_user_name);
        out.string("FromUserName", from_user_name);
        out.number("CreateTime", *create_time);
        out.string("MsgType", content.msg_type());
        match content {
            ReplyContent::Text { content } => out.string("Content", content),
            ReplyContent::Image { media_id } => {
                out.object("Image");
                out.string("MediaId", media_id);
                out.close();
            }
            ReplyContent::Voice { media_id } => {
                out.object("Voice");
                out.string("MediaId", media_id);
                out.close();
            }
            ReplyContent::Video {
                media_id,
                title,
                description,
            } => {
                out.object("Video");
                out.string("MediaId", media_id);
                out.optional("Title", title.as_deref());
                out.optional("Description", description.as_deref());
                out.close();
            }
            ReplyContent::Music(music) => {
                out.object("Music");
                out.optional("Title", music.title.as_deref());
                out.optional("Description", music.description.as_deref());
                out.optional("MusicUrl", music.music_url.as_deref());
                out.optional("HQMusicUrl", music.hq_music_url.as_deref());
                out.string("ThumbMediaId", &music.thumb_media_id);
                out.close();
            }
            ReplyContent::News(news) => {
                out.number("ArticleCount", news.articles().len() as u64);
                out.key("Articles");
                out.0.push('[');
                for (index, article) in news.articles().iter().enumerate() {
                    if index > 0 {
                        out.0.push(',');
                    }
                    out.open();
                    out.string("Title", &article.title);
                    out.string("Description", &article.description);
                    out.string("PicUrl", &article.pic_url);
                    out.string("Url", &article.url);
                    out.close();
                }
                out.0.push(']');
            }
            ReplyContent::TransferCustomerService { kf_account } => {
                if let Some(kf_account) = kf_account {
                    out.object("TransInfo");
                    out.string("KfAccount", kf_account);
                    out.close();
                }
            }
        }
        out.close();
        out.0
    }

    /// The body in the reply's format ([`to_xml`](Self::to_xml) or
    /// [`to_json`](Self::to_json)) as bytes; `success` for the ack.
    pub fn to_bytes(&self) -> Bytes {
        match self.0 {
            Inner::Success => Bytes::from_static(b"success"),
            Inner::Message {
                format: Format::Xml,
                ..
            } => Bytes::from(self.to_xml()),
            Inner::Message {
                format: Format::Json,
                ..
            } => Bytes::from(self.to_json()),
        }
    }

    /// Parses a passive reply: what [`to_xml`](Self::to_xml) or [`to_json`](Self::to_json)
    /// writes (told apart like callbacks, by the first byte that is not whitespace),
    /// `success`, or an empty body (which WeChat treats like `success`). For tests and for
    /// clients that check what a server answered.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let trimmed = body.trim_ascii();
        if trimmed.is_empty() || trimmed == b"success" {
            return Ok(Self::success());
        }
        let format = Format::detect(body);
        let leaves = match format {
            Format::Xml => leaf_fields(body)?,
            Format::Json => json::leaf_fields(body)?,
        };
        let mut fields = Fields::new(leaves);
        let to_user_name = fields.required("ToUserName")?;
        let from_user_name = fields.required("FromUserName")?;
        let create_time = fields.number("CreateTime")?;
        let msg_type = fields.required("MsgType")?;
        let content = match msg_type.as_str() {
            "text" => ReplyContent::text(fields.required("Content")?),
            "image" => ReplyContent::image(fields.required("Image/MediaId")?),
            "voice" => ReplyContent::voice(fields.required("Voice/MediaId")?),
            "video" => ReplyContent::Video {
                media_id: fields.required("Video/MediaId")?,
                title: fields.optional("Video/Title"),
                description: fields.optional("Video/Description"),
            },
            "music" => ReplyContent::Music(Music {
                title: fields.optional("Music/Title"),
                description: fields.optional("Music/Description"),
                music_url: fields.optional("Music/MusicUrl"),
                hq_music_url: fields.optional("Music/HQMusicUrl"),
                thumb_media_id: fields.required("Music/ThumbMediaId")?,
            }),
            "news" => {
                let mut groups = fields.groups("Articles/item/");
                groups.extend(fields.groups("Articles/"));
                let articles = groups
                    .into_iter()
                    .map(|group| {
                        let mut article = Article::default();
                        for (name, value) in group {
                            let slot = match name.as_ref() {
                                "Title" => &mut article.title,
                                "Description" => &mut article.description,
                                "PicUrl" => &mut article.pic_url,
                                "Url" => &mut article.url,
                                _ => continue,
                            };
                            *slot = value.into_owned();
                        }
                        article
                    })
                    .collect();
                ReplyContent::news(articles).map_err(|_| ParseError::InvalidField("Articles"))?
            }
            "transfer_customer_service" => ReplyContent::TransferCustomerService {
                kf_account: fields.optional("TransInfo/KfAccount"),
            },
            _ => return Err(ParseError::InvalidField("MsgType")),
        };
        Ok(Self::new(to_user_name, from_user_name, create_time, content).with_format(format))
    }
}

/// `200 OK` with the body and `Content-Type`, for hyper and other non-axum servers.
impl From<Reply> for Response<Full<Bytes>> {
    fn from(reply: Reply) -> Self {
        let content_type = HeaderValue::from_static(reply.content_type());
        let mut response = Response::new(Full::new(reply.to_bytes()));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
        response
    }
}

/// Appends WeChat-shaped JSON to a string: `open`/`object` start an object, `close` ends
/// it, and the comma before a member is written when the object already has one.
struct JsonWriter(String);

impl JsonWriter {
    fn with_capacity(capacity: usize) -> Self {
        Self(String::with_capacity(capacity))
    }

    fn open(&mut self) {
        self.0.push('{');
    }

    fn close(&mut self) {
        self.0.push('}');
    }

    fn key(&mut self, name: &str) {
        if !self.0.ends_with(['{', '[']) {
            self.0.push(',');
        }
        json::push_string(&mut self.0, name);
        self.0.push(':');
    }

    fn object(&mut self, name: &str) {
        self.key(name);
        self.open();
    }

    fn string(&mut self, name: &str, value: &str) {
        self.key(name);
        json::push_string(&mut self.0, value);
    }

    fn optional(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.string(name, value);
        }
    }

    fn number(&mut self, name: &str, value: u64) {
        self.key(name);
        super::push_decimal(&mut self.0, value);
    }
}

/// Appends WeChat-shaped XML to a string.
struct XmlWriter(String);

impl XmlWriter {
    fn with_capacity(capacity: usize) -> Self {
        Self(String::with_capacity(capacity))
    }

    fn open(&mut self, name: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
    }

    fn close(&mut self, name: &str) {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
    }

    fn number(&mut self, name: &str, value: u64) {
        self.open(name);
        super::push_decimal(&mut self.0, value);
        self.close(name);
    }

    fn optional_cdata(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.cdata(name, value);
        }
    }

    fn cdata(&mut self, name: &str, value: &str) {
        self.open(name);
        self.0.push_str("<![CDATA[");
        let mut rest = value;
        while let Some(at) = super::fields::find_cdata_end(rest.as_bytes()) {
            // End the section between `]]` and `>`, and carry the `>` into a new one.
            push_xml_chars(&mut self.0, &rest[..at + 2]);
            self.0.push_str("]]><![CDATA[");
            rest = &rest[at + 2..];
        }
        push_xml_chars(&mut self.0, rest);
        self.0.push_str("]]>");
        self.close(name);
    }
}

/// Appends `text`, replacing characters XML 1.0 cannot represent with U+FFFD.
fn push_xml_chars(out: &mut String, text: &str) {
    // Those characters are C0 controls other than tab, LF and CR (one byte each) and
    // U+FFFE / U+FFFF (which start with 0xEF in UTF-8): a byte scan finds text without them.
    let suspect =
        |byte: &u8| (*byte < 0x20 && !matches!(byte, b'\t' | b'\n' | b'\r')) || *byte == 0xEF;
    if !text.bytes().any(|byte| suspect(&byte)) || !text.chars().any(is_not_xml_char) {
        out.push_str(text);
        return;
    }
    out.extend(
        text.chars()
            .map(|c| if is_not_xml_char(c) { '\u{FFFD}' } else { c }),
    );
}

fn is_not_xml_char(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}
