//! [`Format`]: whether a callback came as XML or as JSON.

/// The wire format of a callback body, and so of its passive reply.
///
/// Official Accounts and WeCom push XML. Mini Programs, mini games, the open platform and
/// the stores (微信小店, 视频号小店) can be set to push JSON in the console's message-push
/// settings ("数据格式"), and the stores push JSON only. The format is told by the body
/// itself — its first byte that is not whitespace, `{` for JSON — never by `Content-Type`,
/// which WeChat does not set reliably.
///
/// ```
/// use tower_wechat::message::Format;
///
/// assert_eq!(Format::detect(b"  {\"ToUserName\":\"gh_1\"}"), Format::Json);
/// assert_eq!(Format::detect(b"<xml></xml>"), Format::Xml);
/// assert_eq!(Format::detect(b""), Format::Xml);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// `<xml>…</xml>`: every Official Account and WeCom callback, and the default.
    #[default]
    Xml,
    /// `{…}`: Mini Program, mini game and store pushes set to JSON.
    Json,
}

impl Format {
    /// The format of `body`: JSON when its first byte that is not whitespace is `{`, XML
    /// otherwise (anything else is then refused by the XML parser).
    pub fn detect(body: &[u8]) -> Self {
        match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
            Some(b'{') => Self::Json,
            _ => Self::Xml,
        }
    }

    /// The `Content-Type` of a passive reply in this format.
    ///
    /// ```
    /// use tower_wechat::message::Format;
    ///
    /// assert_eq!(Format::Json.content_type(), "application/json; charset=utf-8");
    /// ```
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Xml => "application/xml; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}
