//! [`Message`]: a callback WeChat pushed, parsed once into plain data.

use std::borrow::Cow;
use std::fmt;

use super::fields::{Fields, leaf_fields};
use super::reply::{Reply, ReplyContent};
use super::{ParseError, mask_openid};
use crate::clock::unix_now;

/// A message or event pushed to the callback URL.
///
/// Fields that the typed model does not name are kept in [`extra`](Self::extra), in document
/// order, so nothing WeChat sends is lost: unknown message and event types carry all their
/// fields there. Nested elements are named by their path below the root
/// (`ScanCodeInfo/ScanType`).
///
/// `Debug` masks the sender's openid.
#[derive(Clone, PartialEq)]
pub struct Message {
    /// The account that received the message (`ToUserName`, the original id `gh_…`).
    pub to_user_name: String,
    /// The sender (`FromUserName`, an openid).
    pub from_user_name: String,
    /// `CreateTime`, Unix seconds.
    pub create_time: u64,
    /// `MsgId`, present on ordinary messages (events have none).
    pub msg_id: Option<u64>,
    /// What kind of message it is, with its typed fields.
    pub kind: MessageKind,
    /// Every field not mapped to a typed field, as `(path, text)`.
    pub extra: Vec<(String, String)>,
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
    /// An `Event` this crate does not know; its fields are in [`Message::extra`].
    Unknown {
        /// The `Event` as sent.
        event: String,
        /// `EventKey`, if any.
        event_key: Option<String>,
    },
}

impl Message {
    /// Parses a callback body (plaintext XML) in one pass.
    ///
    /// `MsgType` and `Event` are matched ignoring ASCII case. A missing header field or a
    /// documented field of a known type that is absent or malformed is an error; an unknown
    /// type never is.
    pub fn parse(xml: &[u8]) -> Result<Self, ParseError> {
        let mut fields = Fields::new(leaf_fields(xml)?);
        if !fields.has("MsgType")
            && let Some(info_type) = fields.optional("InfoType")
        {
            return Self::info(info_type, fields);
        }
        let to_user_name = fields.required("ToUserName")?;
        let from_user_name = fields.required("FromUserName")?;
        let create_time = fields.number("CreateTime")?;
        let msg_type = fields.required_text("MsgType")?;
        let msg_id = fields.optional_number("MsgId")?;
        let kind = MessageKind::from_fields(msg_type, &mut fields)?;
        Ok(Self {
            to_user_name,
            from_user_name,
            create_time,
            msg_id,
            kind,
            extra: fields.into_extra(),
        })
    }

    /// An `InfoType` push: no header but a time (`CreateTime`, or WeCom's `TimeStamp`).
    fn info(info_type: String, mut fields: Fields<'_>) -> Result<Self, ParseError> {
        let create_time = match fields.optional_number("CreateTime")? {
            Some(time) => time,
            None => fields.optional_number("TimeStamp")?.unwrap_or(0),
        };
        Ok(Self {
            to_user_name: fields.optional("ToUserName").unwrap_or_default(),
            from_user_name: fields.optional("FromUserName").unwrap_or_default(),
            create_time,
            msg_id: None,
            kind: MessageKind::Info { info_type },
            extra: fields.into_extra(),
        })
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

    /// A passive reply to this message: sender and receiver swapped, `CreateTime` now.
    pub fn reply(&self, content: ReplyContent) -> Reply {
        Reply::new(
            self.from_user_name.clone(),
            self.to_user_name.clone(),
            unix_now(),
            content,
        )
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
            Self::Info { .. } => "",
        }
    }
}

impl Event {
    fn from_fields(fields: &mut Fields<'_>) -> Result<Self, ParseError> {
        let event = fields.required_text("Event")?;
        let event = match lowercase(&event, &mut [0; 24]) {
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
