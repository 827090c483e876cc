//! The typed fields of subscribe-message events and of WeCom's contact, customer, job,
//! app and customer-service events.
//!
//! Field names follow WeChat's, in snake case (`ExternalUserID` → `external_user_id`).
//! Values are kept as WeChat sends them, as text: WeCom documents several of them as numbers
//! in one place and as strings in another. Fields this model does not name stay in
//! [`Message::extra`](super::Message::extra) (or, inside a list item, in the item's
//! `extra`).

use std::borrow::Cow;

use super::ParseError;
use super::fields::{Fields, Group};

/// One template of a `subscribe_msg_popup_event`: the user's choice in the subscribe pop-up.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscribePopup {
    /// `TemplateId`.
    pub template_id: String,
    /// `SubscribeStatusString`: `accept` or `reject`.
    pub subscribe_status_string: String,
    /// `PopupScene`: where the pop-up came from (`0` Mini Program, `1` H5 page, `2` article).
    pub popup_scene: Option<String>,
    /// The item's other fields, as `(name, text)`.
    pub extra: Vec<(String, String)>,
}

/// One template of a `subscribe_msg_change_event`: the user changed a subscription in the
/// settings (WeChat only reports rejections).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscribeChange {
    /// `TemplateId`.
    pub template_id: String,
    /// `SubscribeStatusString`: `reject` (or `accept`).
    pub subscribe_status_string: String,
    /// The item's other fields, as `(name, text)`.
    pub extra: Vec<(String, String)>,
}

/// One template of a `subscribe_msg_sent_event`: the outcome of a subscribe message sent.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscribeSent {
    /// `TemplateId`.
    pub template_id: String,
    /// `MsgID` of the message sent.
    pub msg_id: Option<String>,
    /// `ErrorCode`: `0` when delivered.
    pub error_code: Option<String>,
    /// `ErrorStatus`: `success`, `fail:user refuse to accept the msg`…
    pub error_status: Option<String>,
    /// The item's other fields, as `(name, text)`.
    pub extra: Vec<(String, String)>,
}

/// What a WeCom `change_contact` event (or a suite's `InfoType=change_contact` push)
/// changed, by its `ChangeType`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContactChange {
    /// `create_user`.
    CreateUser(Box<ContactUser>),
    /// `update_user`.
    UpdateUser(Box<ContactUser>),
    /// `delete_user`.
    DeleteUser(Box<ContactUser>),
    /// `create_party`: a department was created.
    CreateParty(ContactParty),
    /// `update_party`.
    UpdateParty(ContactParty),
    /// `delete_party`.
    DeleteParty(ContactParty),
    /// `update_tag`: a tag's members changed.
    UpdateTag(ContactTag),
    /// A `ChangeType` this crate does not know; its fields are in `extra`.
    Unknown {
        /// The `ChangeType` as sent.
        change_type: String,
    },
}

impl ContactChange {
    /// The `ChangeType` as WeCom spells it.
    ///
    /// ```
    /// use tower_wechat::message::{ContactChange, Event, Message};
    ///
    /// let xml = b"<xml><ToUserName>ww1</ToUserName><FromUserName>sys</FromUserName>\
    ///     <CreateTime>1403610513</CreateTime><MsgType>event</MsgType>\
    ///     <Event>change_contact</Event><ChangeType>delete_user</ChangeType>\
    ///     <UserID>zhangsan</UserID></xml>";
    /// let message = Message::parse(xml).unwrap();
    /// let Some(Event::ChangeContact(change)) = message.event() else { panic!() };
    /// assert_eq!(change.change_type(), "delete_user");
    /// assert!(matches!(change, ContactChange::DeleteUser(user) if user.user_id == "zhangsan"));
    /// ```
    pub fn change_type(&self) -> &str {
        match self {
            Self::CreateUser(_) => "create_user",
            Self::UpdateUser(_) => "update_user",
            Self::DeleteUser(_) => "delete_user",
            Self::CreateParty(_) => "create_party",
            Self::UpdateParty(_) => "update_party",
            Self::DeleteParty(_) => "delete_party",
            Self::UpdateTag(_) => "update_tag",
            Self::Unknown { change_type } => change_type,
        }
    }
}

/// A member in a `change_contact` event. Since August 2022 WeCom sends most attributes only
/// to apps allowed to read them, so all but `UserID` are optional.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ContactUser {
    /// `UserID`.
    pub user_id: String,
    /// `NewUserID`, when the id changed.
    pub new_user_id: Option<String>,
    /// `OpenUserID` (third-party apps).
    pub open_user_id: Option<String>,
    /// `Name`.
    pub name: Option<String>,
    /// `Department`: department ids, comma-separated.
    pub department: Option<String>,
    /// `MainDepartment`.
    pub main_department: Option<String>,
    /// `IsLeaderInDept`: `1`/`0` per department, comma-separated.
    pub is_leader_in_dept: Option<String>,
    /// `DirectLeader`: comma-separated user ids.
    pub direct_leader: Option<String>,
    /// `Position`.
    pub position: Option<String>,
    /// `Mobile`.
    pub mobile: Option<String>,
    /// `Gender`: `1` male, `2` female.
    pub gender: Option<String>,
    /// `Email`.
    pub email: Option<String>,
    /// `BizMail`.
    pub biz_mail: Option<String>,
    /// `Status`: `1` active, `2` disabled, `4` not yet active.
    pub status: Option<String>,
    /// `Avatar`: a URL.
    pub avatar: Option<String>,
    /// `Alias`.
    pub alias: Option<String>,
    /// `Telephone`.
    pub telephone: Option<String>,
    /// `Address`.
    pub address: Option<String>,
}

/// A department in a `change_contact` event.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ContactParty {
    /// `Id`.
    pub id: String,
    /// `Name`.
    pub name: Option<String>,
    /// `ParentId`.
    pub parent_id: Option<String>,
    /// `Order`.
    pub order: Option<String>,
}

/// A tag's member changes in a `change_contact` event (`update_tag`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ContactTag {
    /// `TagId`.
    pub tag_id: String,
    /// `AddUserItems`: comma-separated user ids.
    pub add_user_items: Option<String>,
    /// `DelUserItems`.
    pub del_user_items: Option<String>,
    /// `AddPartyItems`: comma-separated department ids.
    pub add_party_items: Option<String>,
    /// `DelPartyItems`.
    pub del_party_items: Option<String>,
}

/// WeCom `change_external_contact`: a customer was added, edited, deleted, or a transfer
/// failed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExternalContactChange {
    /// `ChangeType`: `add_external_contact`, `edit_external_contact`,
    /// `add_half_external_contact`, `del_external_contact`, `del_follow_user`,
    /// `transfer_fail`…
    pub change_type: String,
    /// `UserID`: the member.
    pub user_id: Option<String>,
    /// `ExternalUserID`: the customer.
    pub external_user_id: Option<String>,
    /// `State`: the `state` of the contact-me QR code used.
    pub state: Option<String>,
    /// `WelcomeCode`: lets the app send a welcome message, for 20 s.
    pub welcome_code: Option<String>,
    /// `FailReason` (`transfer_fail`).
    pub fail_reason: Option<String>,
    /// `Source` (`del_external_contact`: `DELETE_BY_TRANSFER`).
    pub source: Option<String>,
}

/// WeCom `change_external_chat`: a customer group was created, changed or dismissed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExternalChatChange {
    /// `ChangeType`: `create`, `update`, `dismiss`.
    pub change_type: String,
    /// `ChatId`.
    pub chat_id: String,
    /// `UpdateDetail`: `add_member`, `del_member`, `change_owner`, `change_name`,
    /// `change_notice`.
    pub update_detail: Option<String>,
    /// `JoinScene`.
    pub join_scene: Option<String>,
    /// `QuitScene`.
    pub quit_scene: Option<String>,
    /// `MemChangeCnt`.
    pub mem_change_cnt: Option<String>,
    /// `MemChangeList`: each `Item` (or the list's text as sent, if it has no items).
    pub mem_change_list: Vec<String>,
    /// `LastMemVer`.
    pub last_mem_ver: Option<String>,
    /// `CurMemVer`.
    pub cur_mem_ver: Option<String>,
}

/// WeCom `change_external_tag`: a customer tag or tag group changed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExternalTagChange {
    /// `ChangeType`: `create`, `update`, `delete`, `shuffle`.
    pub change_type: String,
    /// `Id`: the tag or tag group.
    pub id: Option<String>,
    /// `TagType`: `tag` or `tag_group`.
    pub tag_type: Option<String>,
    /// `StrategyId`, for tags of a rule group.
    pub strategy_id: Option<String>,
}

/// WeCom `batch_job_result`: an asynchronous job finished.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchJob {
    /// `BatchJob/JobId`.
    pub job_id: String,
    /// `BatchJob/JobType`: `sync_user`, `replace_user`, `invite_user`, `replace_party`,
    /// `export_user`…
    pub job_type: Option<String>,
    /// `BatchJob/ErrCode`: `0` on success.
    pub err_code: Option<String>,
    /// `BatchJob/ErrMsg`.
    pub err_msg: Option<String>,
}

/// WeCom `template_card_event`: a button or choice on a template card was used.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TemplateCardEvent {
    /// `EventKey`: the button's key.
    pub event_key: String,
    /// `TaskId`.
    pub task_id: String,
    /// `CardType`: `text_notice`, `button_interaction`, `vote_interaction`…
    pub card_type: Option<String>,
    /// `ResponseCode`: lets the app update the card, once, within 72 h.
    pub response_code: Option<String>,
    /// `AgentID`.
    pub agent_id: Option<String>,
    /// `SelectedItems`: the choices made.
    pub selected_items: Vec<SelectedItem>,
}

/// One `SelectedItem` of a template card event.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SelectedItem {
    /// `QuestionKey`.
    pub question_key: String,
    /// Each `OptionIds/OptionId`.
    pub option_ids: Vec<String>,
    /// The item's other fields, as `(name below SelectedItem, text)`.
    pub extra: Vec<(String, String)>,
}

/// The event names WeChat uses for subscribe messages, their XML wrapper element.
pub(crate) const SUBSCRIBE_POPUP: &str = "SubscribeMsgPopupEvent";
pub(crate) const SUBSCRIBE_CHANGE: &str = "SubscribeMsgChangeEvent";
pub(crate) const SUBSCRIBE_SENT: &str = "SubscribeMsgSentEvent";

/// The templates of a subscribe-message event, one group of `(name, text)` per template.
///
/// WeChat writes them in three shapes, all read here: XML repeats `<List>` inside the
/// wrapper (`SubscribeMsgPopupEvent/List/TemplateId`); JSON puts `List` at the top, an
/// object for one template and an array for several (`List/TemplateId`); some JSON pushes
/// (and the docs' first example) keep the wrapper, with or without `List`.
pub(crate) fn subscribe_list<'a>(fields: &mut Fields<'a>, wrapper: &str) -> Vec<Group<'a>> {
    let mut groups = fields.groups(&format!("{wrapper}/List/"));
    groups.extend(fields.groups("List/"));
    groups.extend(fields.groups(&format!("{wrapper}/")));
    groups
}

/// Takes the item field `name` out of `group`.
fn take(group: &mut Group<'_>, name: &str) -> Option<String> {
    let at = group.iter().position(|(field, _)| field == name)?;
    Some(group.remove(at).1.into_owned())
}

fn rest(group: Group<'_>) -> Vec<(String, String)> {
    group
        .into_iter()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

fn template_id(group: &mut Group<'_>) -> Result<String, ParseError> {
    take(group, "TemplateId").ok_or(ParseError::MissingField("List/TemplateId"))
}

pub(crate) fn popup(mut group: Group<'_>) -> Result<SubscribePopup, ParseError> {
    Ok(SubscribePopup {
        template_id: template_id(&mut group)?,
        subscribe_status_string: take(&mut group, "SubscribeStatusString").unwrap_or_default(),
        popup_scene: take(&mut group, "PopupScene"),
        extra: rest(group),
    })
}

pub(crate) fn change(mut group: Group<'_>) -> Result<SubscribeChange, ParseError> {
    Ok(SubscribeChange {
        template_id: template_id(&mut group)?,
        subscribe_status_string: take(&mut group, "SubscribeStatusString").unwrap_or_default(),
        extra: rest(group),
    })
}

pub(crate) fn sent(mut group: Group<'_>) -> Result<SubscribeSent, ParseError> {
    Ok(SubscribeSent {
        template_id: template_id(&mut group)?,
        msg_id: take(&mut group, "MsgID"),
        error_code: take(&mut group, "ErrorCode"),
        error_status: take(&mut group, "ErrorStatus"),
        extra: rest(group),
    })
}

/// The fields of a `change_contact` change (event or suite push); `ChangeType` is required.
pub(crate) fn contact_change(fields: &mut Fields<'_>) -> Result<ContactChange, ParseError> {
    let change_type = fields.required_text("ChangeType")?;
    let change = match change_type.as_ref() {
        "create_user" => ContactChange::CreateUser(Box::new(contact_user(fields)?)),
        "update_user" => ContactChange::UpdateUser(Box::new(contact_user(fields)?)),
        "delete_user" => ContactChange::DeleteUser(Box::new(contact_user(fields)?)),
        "create_party" => ContactChange::CreateParty(contact_party(fields)?),
        "update_party" => ContactChange::UpdateParty(contact_party(fields)?),
        "delete_party" => ContactChange::DeleteParty(contact_party(fields)?),
        "update_tag" => ContactChange::UpdateTag(ContactTag {
            tag_id: fields.required("TagId")?,
            add_user_items: fields.optional("AddUserItems"),
            del_user_items: fields.optional("DelUserItems"),
            add_party_items: fields.optional("AddPartyItems"),
            del_party_items: fields.optional("DelPartyItems"),
        }),
        _ => ContactChange::Unknown {
            change_type: Cow::into_owned(change_type),
        },
    };
    Ok(change)
}

fn contact_user(fields: &mut Fields<'_>) -> Result<ContactUser, ParseError> {
    Ok(ContactUser {
        user_id: fields.required("UserID")?,
        new_user_id: fields.optional("NewUserID"),
        open_user_id: fields.optional("OpenUserID"),
        name: fields.optional("Name"),
        department: fields.optional("Department"),
        main_department: fields.optional("MainDepartment"),
        is_leader_in_dept: fields.optional("IsLeaderInDept"),
        direct_leader: fields.optional("DirectLeader"),
        position: fields.optional("Position"),
        mobile: fields.optional("Mobile"),
        gender: fields.optional("Gender"),
        email: fields.optional("Email"),
        biz_mail: fields.optional("BizMail"),
        status: fields.optional("Status"),
        avatar: fields.optional("Avatar"),
        alias: fields.optional("Alias"),
        telephone: fields.optional("Telephone"),
        address: fields.optional("Address"),
    })
}

fn contact_party(fields: &mut Fields<'_>) -> Result<ContactParty, ParseError> {
    Ok(ContactParty {
        id: fields.required("Id")?,
        name: fields.optional("Name"),
        parent_id: fields.optional("ParentId"),
        order: fields.optional("Order"),
    })
}

pub(crate) fn external_contact(
    fields: &mut Fields<'_>,
) -> Result<ExternalContactChange, ParseError> {
    Ok(ExternalContactChange {
        change_type: fields.required("ChangeType")?,
        user_id: fields.optional("UserID"),
        external_user_id: fields.optional("ExternalUserID"),
        state: fields.optional("State"),
        welcome_code: fields.optional("WelcomeCode"),
        fail_reason: fields.optional("FailReason"),
        source: fields.optional("Source"),
    })
}

pub(crate) fn external_chat(fields: &mut Fields<'_>) -> Result<ExternalChatChange, ParseError> {
    let change_type = fields.required("ChangeType")?;
    let chat_id = fields.required("ChatId")?;
    let mut mem_change_list = fields.all("MemChangeList/Item");
    mem_change_list.extend(fields.all("MemChangeList"));
    Ok(ExternalChatChange {
        change_type,
        chat_id,
        update_detail: fields.optional("UpdateDetail"),
        join_scene: fields.optional("JoinScene"),
        quit_scene: fields.optional("QuitScene"),
        mem_change_cnt: fields.optional("MemChangeCnt"),
        mem_change_list,
        last_mem_ver: fields.optional("LastMemVer"),
        cur_mem_ver: fields.optional("CurMemVer"),
    })
}

pub(crate) fn external_tag(fields: &mut Fields<'_>) -> Result<ExternalTagChange, ParseError> {
    Ok(ExternalTagChange {
        change_type: fields.required("ChangeType")?,
        id: fields.optional("Id"),
        tag_type: fields.optional("TagType"),
        strategy_id: fields.optional("StrategyId"),
    })
}

/// `batch_job_result`: the fields are inside `<BatchJob>` (WeCom's documented layout), or at
/// the top (as some WeCom pushes have them).
pub(crate) fn batch_job(fields: &mut Fields<'_>) -> Result<BatchJob, ParseError> {
    let mut either = |name: &str| {
        fields
            .optional(&format!("BatchJob/{name}"))
            .or_else(|| fields.optional(name))
    };
    Ok(BatchJob {
        job_id: either("JobId").ok_or(ParseError::MissingField("BatchJob/JobId"))?,
        job_type: either("JobType"),
        err_code: either("ErrCode"),
        err_msg: either("ErrMsg"),
    })
}

pub(crate) fn template_card(fields: &mut Fields<'_>) -> Result<TemplateCardEvent, ParseError> {
    let event_key = fields.required("EventKey")?;
    let task_id = fields.required("TaskId")?;
    // `QuestionKey` and the `OptionIds` of one `SelectedItem` come as separate groups (their
    // parents differ), in document order: a question key starts an item.
    let mut selected_items: Vec<SelectedItem> = Vec::new();
    for group in fields.groups("SelectedItems/SelectedItem/") {
        for (name, value) in group {
            match name.as_ref() {
                "QuestionKey" => selected_items.push(SelectedItem {
                    question_key: value.into_owned(),
                    ..SelectedItem::default()
                }),
                _ => {
                    if selected_items.is_empty() {
                        selected_items.push(SelectedItem::default());
                    }
                    let item = selected_items.last_mut().expect("one was pushed");
                    match name.as_ref() {
                        "OptionIds/OptionId" | "OptionIds" => {
                            item.option_ids.push(value.into_owned());
                        }
                        _ => item.extra.push((name.into_owned(), value.into_owned())),
                    }
                }
            }
        }
    }
    Ok(TemplateCardEvent {
        event_key,
        task_id,
        card_type: fields.optional("CardType"),
        response_code: fields.optional("ResponseCode"),
        agent_id: fields.optional("AgentID"),
        selected_items,
    })
}
