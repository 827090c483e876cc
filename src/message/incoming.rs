//! [`Message`]: a callback WeChat pushed, parsed once into plain data.

use std::borrow::Cow;
use std::fmt;

use super::events::{
    self, BatchJob, ContactChange, ExternalChatChange, ExternalContactChange, ExternalTagChange,
    SubscribeChange, SubscribePopup, SubscribeSent, TemplateCardEvent,
};
use super::fields::{Field, Fields, leaf_fields};
use super::format::Format;
use super::reply::{Reply, ReplyContent};
use super::{ParseError, json, mask_openid};
use crate::clock::unix_now;

/// A message or event pushed to the callback URL, as XML or as JSON: both parse into this one
/// model (see [`Format`]).
///
/// Fields that the typed model does not name are kept in [`extra`](Self::extra), in document
/// order, so nothing WeChat sends is lost: unknown message and event types carry all their
/// fields there. Nested elements are named by their path below the root
/// (`ScanCodeInfo/ScanType`); in JSON, nested objects the same way (`{"ScanCodeInfo":
/// {"ScanType": …}}` is `ScanCodeInfo/ScanType`) and each item of an array under the array's
/// own path, as a repeated XML element would be (see the [`message`](super) module docs).
///
/// `Debug` masks the sender's openid.
#[derive(Clone, PartialEq)]
pub struct Message {
    /// The account that received the message (`ToUserName`, the original id `gh_…`).
    pub to_user_name: String,
    /// The sender (`FromUserName`, an openid; `sys` for WeCom's system events). Empty for
    /// `InfoType` pushes and for the events that name no sender (WeCom customer service's
    /// `kf_msg_or_event`).
    pub from_user_name: String,
    /// `CreateTime`, Unix seconds.
    pub create_time: u64,
    /// `MsgId`, present on ordinary messages (events have none).
    pub msg_id: Option<u64>,
    /// What kind of message it is, with its typed fields.
    pub kind: MessageKind,
    /// Every field not mapped to a typed field, as `(path, text)`.
    pub extra: Vec<(String, String)>,
    /// The format it came in; [`reply`](Self::reply) answers in the same one.
    pub format: Format,
    /// A digest of every field as received, for callbacks without a `MsgId`.
    fingerprint: Option<u64>,
}

/// The kinds of message WeChat documents, with their fields.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum MessageKind {
    /// `text`.
    Text {
        /// `Content`.
        content: String,
    },
    /// `image`.
    Image {
        /// `PicUrl`.
        pic_url: String,
        /// `MediaId`.
        media_id: String,
    },
    /// `voice`.
    Voice {
        /// `MediaId`.
        media_id: String,
        /// `Format` (amr, speex…).
        format: String,
        /// `Recognition`: the speech-to-text result, when recognition is on.
        recognition: Option<String>,
    },
    /// `video`.
    Video {
        /// `MediaId`.
        media_id: String,
        /// `ThumbMediaId`.
        thumb_media_id: String,
    },
    /// `shortvideo`.
    ShortVideo {
        /// `MediaId`.
        media_id: String,
        /// `ThumbMediaId`.
        thumb_media_id: String,
    },
    /// `location`.
    Location {
        /// `Location_X`: latitude.
        location_x: f64,
        /// `Location_Y`: longitude.
        location_y: f64,
        /// `Scale`: map zoom.
        scale: u32,
        /// `Label`: the place's description.
        label: String,
    },
    /// `link`.
    Link {
        /// `Title`.
        title: String,
        /// `Description`.
        description: String,
        /// `Url`.
        url: String,
    },
    /// `event`: an event push.
    Event(Event),
    /// A `MsgType` this crate does not know; its fields are in [`Message::extra`].
    Unknown {
        /// The `MsgType` as sent.
        msg_type: String,
    },
    /// A push with `InfoType` and no `MsgType`: third-party platform notices
    /// (`component_verify_ticket`, `authorized`…) and WeCom suite notices (`suite_ticket`…).
    /// They carry no `ToUserName`/`FromUserName` (those fields are then empty), and their
    /// fields (`AppId`, `ComponentVerifyTicket`, `SuiteId`…) are in [`Message::extra`].
    Info {
        /// The `InfoType` as sent.
        info_type: String,
    },
    /// A WeCom third-party suite's `InfoType=change_contact` push: a contact change in a
    /// corp that authorised the suite. Like [`Info`](Self::Info) it has no
    /// `ToUserName`/`FromUserName`; `TimeStamp` is the message's
    /// [`create_time`](Message::create_time).
    SuiteChangeContact {
        /// `SuiteId`.
        suite_id: String,
        /// `AuthCorpId`: the corp the change happened in.
        auth_corp_id: String,
        /// What changed, by `ChangeType`.
        change: ContactChange,
    },
}

/// The event pushes WeChat documents, with their fields.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `subscribe`: a follow, possibly by scanning a parametric QR code.
    Subscribe {
        /// `EventKey` (`qrscene_` + scene) when the follow came from a QR code.
        event_key: Option<String>,
        /// `Ticket` of that QR code.
        ticket: Option<String>,
    },
    /// `unsubscribe`.
    Unsubscribe,
    /// `SCAN`: a follower scanned a parametric QR code.
    Scan {
        /// `EventKey`: the scene value.
        event_key: String,
        /// `Ticket`.
        ticket: Option<String>,
    },
    /// `LOCATION`: a reported location.
    Location {
        /// `Latitude`.
        latitude: f64,
        /// `Longitude`.
        longitude: f64,
        /// `Precision`.
        precision: f64,
    },
    /// `CLICK`: a menu click.
    Click {
        /// `EventKey`: the menu key.
        event_key: String,
    },
    /// `VIEW`: a menu link opened.
    View {
        /// `EventKey`: the URL.
        url: String,
        /// `MenuId`, for personalised menus.
        menu_id: Option<String>,
    },
    /// `scancode_push`.
    ScancodePush {
        /// `EventKey`.
        event_key: String,
        /// `ScanCodeInfo/ScanType`.
        scan_type: String,
        /// `ScanCodeInfo/ScanResult`.
        scan_result: String,
    },
    /// `scancode_waitmsg`.
    ScancodeWaitmsg {
        /// `EventKey`.
        event_key: String,
        /// `ScanCodeInfo/ScanType`.
        scan_type: String,
        /// `ScanCodeInfo/ScanResult`.
        scan_result: String,
    },
    /// `pic_sysphoto`.
    PicSysphoto {
        /// `EventKey`.
        event_key: String,
        /// `SendPicsInfo/Count`.
        count: u32,
        /// Each `SendPicsInfo/PicList/item/PicMd5Sum`.
        pic_md5_sums: Vec<String>,
    },
    /// `pic_photo_or_album`.
    PicPhotoOrAlbum {
        /// `EventKey`.
        event_key: String,
        /// `SendPicsInfo/Count`.
        count: u32,
        /// Each `SendPicsInfo/PicList/item/PicMd5Sum`.
        pic_md5_sums: Vec<String>,
    },
    /// `pic_weixin`.
    PicWeixin {
        /// `EventKey`.
        event_key: String,
        /// `SendPicsInfo/Count`.
        count: u32,
        /// Each `SendPicsInfo/PicList/item/PicMd5Sum`.
        pic_md5_sums: Vec<String>,
    },
    /// `location_select`.
    LocationSelect {
        /// `EventKey`.
        event_key: String,
        /// `SendLocationInfo/Location_X`.
        location_x: f64,
        /// `SendLocationInfo/Location_Y`.
        location_y: f64,
        /// `SendLocationInfo/Scale`.
        scale: u32,
        /// `SendLocationInfo/Label`.
        label: String,
        /// `SendLocationInfo/Poiname`.
        poiname: Option<String>,
    },
    /// `view_miniprogram`: a menu opened a Mini Program page.
    ViewMiniprogram {
        /// `EventKey`: the page path.
        page_path: String,
        /// `MenuId`.
        menu_id: Option<String>,
    },
    /// `TEMPLATESENDJOBFINISH`: the outcome of a template message.
    TemplateSendJobFinish {
        /// `MsgID` of the template message.
        msg_id: u64,
        /// `Status` (`success`, `failed:user block`…).
        status: String,
    },
    /// `MASSSENDJOBFINISH`: the outcome of a mass send.
    MassSendJobFinish {
        /// `MsgID` of the mass send.
        msg_id: u64,
        /// `Status`.
        status: String,
        /// `TotalCount`.
        total_count: u64,
        /// `FilterCount`.
        filter_count: u64,
        /// `SentCount`.
        sent_count: u64,
        /// `ErrorCount`.
        error_count: u64,
    },
    /// `subscribe_msg_popup_event`: the user answered a subscribe-message pop-up, one item
    /// per template. (JSON sends `List` as an object for one item and an array for several;
    /// both are read.)
    SubscribeMsgPopup {
        /// Each `List` item.
        list: Vec<SubscribePopup>,
    },
    /// `subscribe_msg_change_event`: the user changed subscriptions in the settings.
    SubscribeMsgChange {
        /// Each `List` item.
        list: Vec<SubscribeChange>,
    },
    /// `subscribe_msg_sent_event`: the outcome of subscribe messages sent.
    SubscribeMsgSent {
        /// Each `List` item.
        list: Vec<SubscribeSent>,
    },
    /// WeCom `change_contact`: a member, department or tag changed (sent by `sys`).
    ChangeContact(ContactChange),
    /// WeCom `change_external_contact`: a customer changed.
    ChangeExternalContact(ExternalContactChange),
    /// WeCom `change_external_chat`: a customer group changed.
    ChangeExternalChat(ExternalChatChange),
    /// WeCom `change_external_tag`: a customer tag changed.
    ChangeExternalTag(ExternalTagChange),
    /// WeCom `batch_job_result`: an asynchronous job finished.
    BatchJobResult(BatchJob),
    /// WeCom `enter_agent`: a member opened the app.
    EnterAgent {
        /// `EventKey` (usually empty).
        event_key: Option<String>,
        /// `AgentID`: the app.
        agent_id: Option<String>,
    },
    /// WeCom `template_card_event`: a template card was used.
    TemplateCardEvent(TemplateCardEvent),
    /// WeCom customer service (微信客服) `kf_msg_or_event`: new messages or events wait to be
    /// fetched with `kf/sync_msg`.
    KfMsgOrEvent {
        /// `Token`: pass it to `kf/sync_msg` (valid 10 minutes).
        token: String,
        /// `OpenKfId`: the customer-service account.
        open_kf_id: Option<String>,
    },
    /// An `Event` this crate does not know; its fields are in [`Message::extra`].
    Unknown {
        /// The `Event` as sent.
        event: String,
        /// `EventKey`, if any.
        event_key: Option<String>,
    },
}

impl Message {
    /// Parses a callback body (plaintext XML or JSON) in one pass.
    ///
    /// The format is told by the body's first byte that is not whitespace (`{`: JSON; see
    /// [`Format::detect`]), never by a header. Both formats give the same model, with the
    /// same bounds (see [`ParseError`]). `MsgType` and `Event` are matched ignoring ASCII
    /// case. A missing header field or a documented field of a known type that is absent or
    /// malformed is an error; an unknown type never is.
    ///
    /// ```
    /// use tower_wechat::message::{Format, Message, MessageKind};
    ///
    /// let json = br#"{"ToUserName":"gh_1","FromUserName":"oUser","CreateTime":1714112445,
    ///     "MsgType":"text","Content":"hi","MsgId":42}"#;
    /// let message = Message::parse(json).unwrap();
    /// assert_eq!(message.format, Format::Json);
    /// assert_eq!(message.kind, MessageKind::Text { content: "hi".into() });
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let format = Format::detect(body);
        let leaves = match format {
            Format::Xml => leaf_fields(body)?,
            Format::Json => json::leaf_fields(body)?,
        };
        Self::from_leaves(leaves, format)
    }

    fn from_leaves(leaves: Vec<Option<Field<'_>>>, format: Format) -> Result<Self, ParseError> {
        let fingerprint = fingerprint(&leaves);
        let mut fields = Fields::new(leaves);
        if !fields.has("MsgType")
            && let Some(info_type) = fields.optional("InfoType")
        {
            return Self::info(info_type, fields, format, fingerprint);
        }
        let to_user_name = fields.required("ToUserName")?;
        let from_user_name = fields.optional("FromUserName");
        let create_time = fields.number("CreateTime")?;
        let msg_type = fields.required_text("MsgType")?;
        // System events may name no sender (WeCom customer service's `kf_msg_or_event`);
        // messages always do.
        let from_user_name = match from_user_name {
            Some(from) => from,
            None if msg_type.eq_ignore_ascii_case("event") => String::new(),
            None => return Err(ParseError::MissingField("FromUserName")),
        };
        let msg_id = fields.optional_number("MsgId")?;
        let kind = MessageKind::from_fields(msg_type, &mut fields)?;
        Ok(Self {
            to_user_name,
            from_user_name,
            create_time,
            msg_id,
            kind,
            extra: fields.into_extra(),
            format,
            fingerprint,
        })
    }

    /// An `InfoType` push: no header but a time (`CreateTime`, or WeCom's `TimeStamp`).
    fn info(
        info_type: String,
        mut fields: Fields<'_>,
        format: Format,
        fingerprint: Option<u64>,
    ) -> Result<Self, ParseError> {
        let create_time = match fields.optional_number("CreateTime")? {
            Some(time) => time,
            None => fields.optional_number("TimeStamp")?.unwrap_or(0),
        };
        let kind = if info_type == "change_contact" && fields.has("ChangeType") {
            MessageKind::SuiteChangeContact {
                suite_id: fields.optional("SuiteId").unwrap_or_default(),
                auth_corp_id: fields.optional("AuthCorpId").unwrap_or_default(),
                change: events::contact_change(&mut fields)?,
            }
        } else {
            MessageKind::Info { info_type }
        };
        Ok(Self {
            to_user_name: fields.optional("ToUserName").unwrap_or_default(),
            from_user_name: fields.optional("FromUserName").unwrap_or_default(),
            create_time,
            msg_id: None,
            kind,
            extra: fields.into_extra(),
            format,
            fingerprint,
        })
    }

    /// A 64-bit digest of every field of the callback as it was received (each path and
    /// text, in document order), for callbacks without a `MsgId` (events, `InfoType`
    /// pushes); `None` for messages with one. WeChat's retries of a callback carry the same
    /// fields, so they have the same fingerprint; two distinct events differ in some field,
    /// so their fingerprints differ (barring a 64-bit collision). It is what
    /// `tower_wechat::dedup::default_key` uses to tell events apart; it depends on
    /// the format and is stable for a given version of this crate.
    ///
    /// ```
    /// use tower_wechat::message::Message;
    ///
    /// let event = |user: &str| format!("<xml><ToUserName>ww1</ToUserName>\
    ///     <FromUserName>sys</FromUserName><CreateTime>1403610513</CreateTime>\
    ///     <MsgType>event</MsgType><Event>change_contact</Event>\
    ///     <ChangeType>delete_user</ChangeType><UserID>{user}</UserID></xml>");
    /// let a = Message::parse(event("zhangsan").as_bytes()).unwrap();
    /// let again = Message::parse(event("zhangsan").as_bytes()).unwrap();
    /// let b = Message::parse(event("lisi").as_bytes()).unwrap();
    /// assert_eq!(a.fingerprint(), again.fingerprint());
    /// assert_ne!(a.fingerprint(), b.fingerprint());
    /// ```
    pub fn fingerprint(&self) -> Option<u64> {
        self.fingerprint
    }

    /// The `MsgType`: `"text"`, `"event"`…, or the raw value of an unknown type (`""` for an
    /// `InfoType` push).
    pub fn msg_type(&self) -> &str {
        self.kind.msg_type()
    }

    /// The event, for `event` messages.
    pub fn event(&self) -> Option<&Event> {
        match &self.kind {
            MessageKind::Event(event) => Some(event),
            _ => None,
        }
    }

    /// The first field in [`extra`](Self::extra) at `path`.
    pub fn field(&self, path: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(name, _)| name == path)
            .map(|(_, value)| value.as_str())
    }

    /// A passive reply to this message: sender and receiver swapped, `CreateTime` now, in
    /// the message's [`format`](Self::format) (XML to an XML callback, JSON to a JSON one).
    pub fn reply(&self, content: ReplyContent) -> Reply {
        Reply::new(
            self.from_user_name.clone(),
            self.to_user_name.clone(),
            unix_now(),
            content,
        )
        .with_format(self.format)
    }

    /// [`reply`](Self::reply), consuming the message: its names move into the reply
    /// instead of being copied.
    ///
    /// ```
    /// use tower_wechat::{Message, MessageKind, Reply, ReplyContent};
    ///
    /// fn echo(message: Message) -> Reply {
    ///     let text = match &message.kind {
    ///         MessageKind::Text { content } => format!("You said: {content}"),
    ///         _ => return Reply::success(),
    ///     };
    ///     message.into_reply(ReplyContent::text(text))
    /// }
    /// # let _ = echo;
    /// ```
    pub fn into_reply(self, content: ReplyContent) -> Reply {
        Reply::new(self.from_user_name, self.to_user_name, unix_now(), content)
            .with_format(self.format)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("to_user_name", &self.to_user_name)
            .field("from_user_name", &mask_openid(&self.from_user_name))
            .field("create_time", &self.create_time)
            .field("msg_id", &self.msg_id)
            .field("kind", &self.kind)
            .field("extra", &self.extra)
            .field("format", &self.format)
            .finish()
    }
}

impl MessageKind {
    fn from_fields(msg_type: Cow<'_, str>, fields: &mut Fields<'_>) -> Result<Self, ParseError> {
        let kind = match lowercase(&msg_type, &mut [0; 16]) {
            "text" => Self::Text {
                content: fields.required("Content")?,
            },
            "image" => Self::Image {
                pic_url: fields.required("PicUrl")?,
                media_id: fields.required("MediaId")?,
            },
            "voice" => Self::Voice {
                media_id: fields.required("MediaId")?,
                format: fields.required("Format")?,
                recognition: fields.optional("Recognition"),
            },
            "video" => Self::Video {
                media_id: fields.required("MediaId")?,
                thumb_media_id: fields.required("ThumbMediaId")?,
            },
            "shortvideo" => Self::ShortVideo {
                media_id: fields.required("MediaId")?,
                thumb_media_id: fields.required("ThumbMediaId")?,
            },
            "location" => Self::Location {
                location_x: fields.number("Location_X")?,
                location_y: fields.number("Location_Y")?,
                scale: fields.number("Scale")?,
                label: fields.required("Label")?,
            },
            "link" => Self::Link {
                title: fields.required("Title")?,
                description: fields.required("Description")?,
                url: fields.required("Url")?,
            },
            "event" => Self::Event(Event::from_fields(fields)?),
            _ => Self::Unknown {
                msg_type: msg_type.into_owned(),
            },
        };
        Ok(kind)
    }

    /// The `MsgType` as WeChat spells it.
    pub fn msg_type(&self) -> &str {
        match self {
            Self::Text { .. } => "text",
            Self::Image { .. } => "image",
            Self::Voice { .. } => "voice",
            Self::Video { .. } => "video",
            Self::ShortVideo { .. } => "shortvideo",
            Self::Location { .. } => "location",
            Self::Link { .. } => "link",
            Self::Event(_) => "event",
            Self::Unknown { msg_type } => msg_type,
            Self::Info { .. } | Self::SuiteChangeContact { .. } => "",
        }
    }
}

impl Event {
    fn from_fields(fields: &mut Fields<'_>) -> Result<Self, ParseError> {
        let event = fields.required_text("Event")?;
        let event = match lowercase(&event, &mut [0; 32]) {
            "subscribe" => Self::Subscribe {
                event_key: fields.optional("EventKey").filter(|key| !key.is_empty()),
                ticket: fields
                    .optional("Ticket")
                    .filter(|ticket| !ticket.is_empty()),
            },
            "unsubscribe" => Self::Unsubscribe,
            "scan" => Self::Scan {
                event_key: fields.required("EventKey")?,
                ticket: fields
                    .optional("Ticket")
                    .filter(|ticket| !ticket.is_empty()),
            },
            "location" => Self::Location {
                latitude: fields.number("Latitude")?,
                longitude: fields.number("Longitude")?,
                precision: fields.number("Precision")?,
            },
            "click" => Self::Click {
                event_key: fields.required("EventKey")?,
            },
            "view" => Self::View {
                url: fields.required("EventKey")?,
                menu_id: fields.optional("MenuId"),
            },
            name @ ("scancode_push" | "scancode_waitmsg") => {
                let event_key = fields.required("EventKey")?;
                let scan_type = fields.required("ScanCodeInfo/ScanType")?;
                let scan_result = fields.required("ScanCodeInfo/ScanResult")?;
                if name == "scancode_push" {
                    Self::ScancodePush {
                        event_key,
                        scan_type,
                        scan_result,
                    }
                } else {
                    Self::ScancodeWaitmsg {
                        event_key,
                        scan_type,
                        scan_result,
                    }
                }
            }
            name @ ("pic_sysphoto" | "pic_photo_or_album" | "pic_weixin") => {
                let event_key = fields.required("EventKey")?;
                let count = fields.number("SendPicsInfo/Count")?;
                let pic_md5_sums = fields.all("SendPicsInfo/PicList/item/PicMd5Sum");
                match name {
                    "pic_sysphoto" => Self::PicSysphoto {
                        event_key,
                        count,
                        pic_md5_sums,
                    },
                    "pic_photo_or_album" => Self::PicPhotoOrAlbum {
                        event_key,
                        count,
                        pic_md5_sums,
                    },
                    _ => Self::PicWeixin {
                        event_key,
                        count,
                        pic_md5_sums,
                    },
                }
            }
            "location_select" => Self::LocationSelect {
                event_key: fields.required("EventKey")?,
                location_x: fields.number("SendLocationInfo/Location_X")?,
                location_y: fields.number("SendLocationInfo/Location_Y")?,
                scale: fields.number("SendLocationInfo/Scale")?,
                label: fields.required("SendLocationInfo/Label")?,
                poiname: fields.optional("SendLocationInfo/Poiname"),
            },
            "view_miniprogram" => Self::ViewMiniprogram {
                page_path: fields.required("EventKey")?,
                menu_id: fields.optional("MenuId"),
            },
            "templatesendjobfinish" => Self::TemplateSendJobFinish {
                msg_id: fields.number("MsgID")?,
                status: fields.required("Status")?,
            },
            "masssendjobfinish" => Self::MassSendJobFinish {
                msg_id: fields.number("MsgID")?,
                status: fields.required("Status")?,
                total_count: fields.number("TotalCount")?,
                filter_count: fields.number("FilterCount")?,
                sent_count: fields.number("SentCount")?,
                error_count: fields.number("ErrorCount")?,
            },
            "subscribe_msg_popup_event" => Self::SubscribeMsgPopup {
                list: events::subscribe_list(fields, events::SUBSCRIBE_POPUP)
                    .into_iter()
                    .map(events::popup)
                    .collect::<Result<_, _>>()?,
            },
            "subscribe_msg_change_event" => Self::SubscribeMsgChange {
                list: events::subscribe_list(fields, events::SUBSCRIBE_CHANGE)
                    .into_iter()
                    .map(events::change)
                    .collect::<Result<_, _>>()?,
            },
            "subscribe_msg_sent_event" => Self::SubscribeMsgSent {
                list: events::subscribe_list(fields, events::SUBSCRIBE_SENT)
                    .into_iter()
                    .map(events::sent)
                    .collect::<Result<_, _>>()?,
            },
            "change_contact" => Self::ChangeContact(events::contact_change(fields)?),
            "change_external_contact" => {
                Self::ChangeExternalContact(events::external_contact(fields)?)
            }
            "change_external_chat" => Self::ChangeExternalChat(events::external_chat(fields)?),
            "change_external_tag" => Self::ChangeExternalTag(events::external_tag(fields)?),
            "batch_job_result" => Self::BatchJobResult(events::batch_job(fields)?),
            "enter_agent" => Self::EnterAgent {
                event_key: fields.optional("EventKey"),
                agent_id: fields.optional("AgentID"),
            },
            "template_card_event" => Self::TemplateCardEvent(events::template_card(fields)?),
            "kf_msg_or_event" => Self::KfMsgOrEvent {
                token: fields.required("Token")?,
                open_kf_id: fields.optional("OpenKfId"),
            },
            _ => Self::Unknown {
                event_key: fields.optional("EventKey"),
                event: event.into_owned(),
            },
        };
        Ok(event)
    }

    /// The `Event` as WeChat spells it (`"subscribe"`, `"SCAN"`, `"CLICK"`…), or the raw
    /// value of an unknown event.
    pub fn name(&self) -> &str {
        match self {
            Self::Subscribe { .. } => "subscribe",
            Self::Unsubscribe => "unsubscribe",
            Self::Scan { .. } => "SCAN",
            Self::Location { .. } => "LOCATION",
            Self::Click { .. } => "CLICK",
            Self::View { .. } => "VIEW",
            Self::ScancodePush { .. } => "scancode_push",
            Self::ScancodeWaitmsg { .. } => "scancode_waitmsg",
            Self::PicSysphoto { .. } => "pic_sysphoto",
            Self::PicPhotoOrAlbum { .. } => "pic_photo_or_album",
            Self::PicWeixin { .. } => "pic_weixin",
            Self::LocationSelect { .. } => "location_select",
            Self::ViewMiniprogram { .. } => "view_miniprogram",
            Self::TemplateSendJobFinish { .. } => "TEMPLATESENDJOBFINISH",
            Self::MassSendJobFinish { .. } => "MASSSENDJOBFINISH",
            Self::SubscribeMsgPopup { .. } => "subscribe_msg_popup_event",
            Self::SubscribeMsgChange { .. } => "subscribe_msg_change_event",
            Self::SubscribeMsgSent { .. } => "subscribe_msg_sent_event",
            Self::ChangeContact(_) => "change_contact",
            Self::ChangeExternalContact(_) => "change_external_contact",
            Self::ChangeExternalChat(_) => "change_external_chat",
            Self::ChangeExternalTag(_) => "change_external_tag",
            Self::BatchJobResult(_) => "batch_job_result",
            Self::EnterAgent { .. } => "enter_agent",
            Self::TemplateCardEvent(_) => "template_card_event",
            Self::KfMsgOrEvent { .. } => "kf_msg_or_event",
            Self::Unknown { event, .. } => event,
        }
    }

    /// The scene of a parametric QR code: `subscribe`'s `EventKey` without its `qrscene_`
    /// prefix, or `SCAN`'s `EventKey`.
    pub fn qr_scene(&self) -> Option<&str> {
        match self {
            Self::Subscribe {
                event_key: Some(key),
                ..
            } => key.strip_prefix("qrscene_"),
            Self::Scan { event_key, .. } => Some(event_key),
            _ => None,
        }
    }
}

/// The digest behind [`Message::fingerprint`]: SHA-1 over each field's path and text, each
/// length-prefixed (so no two field lists encode alike), cut to 64 bits; only for callbacks
/// without a top-level `MsgId` (a message's `MsgId` already identifies it).
fn fingerprint(leaves: &[Option<Field<'_>>]) -> Option<u64> {
    use sha1::{Digest, Sha1};
    let fields = || leaves.iter().flatten();
    if fields().any(|field| field.path == "MsgId") {
        return None;
    }
    let mut hasher = Sha1::new();
    for field in fields() {
        for part in [field.path.as_bytes(), field.value.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    let digest = hasher.finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    Some(u64::from_be_bytes(head))
}

/// `text` in ASCII lower case, in `buffer` (no allocation); `""` if it does not fit, which
/// matches no known name.
fn lowercase<'b>(text: &str, buffer: &'b mut [u8]) -> &'b str {
    let Some(lowered) = buffer.get_mut(..text.len()) else {
        return "";
    };
    lowered.copy_from_slice(text.as_bytes());
    lowered.make_ascii_lowercase();
    std::str::from_utf8(lowered).unwrap_or_default()
}
