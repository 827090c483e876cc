//! Which callbacks count as the same one.

use crate::Message;
use crate::message::push_decimal;

/// The default dedup key: WeChat's retries of a callback get the same key, and two different
/// callbacks never do.
///
/// - A message with a `MsgId`: the account (`ToUserName`) and the `MsgId` —
///   `gh_1:msg:42`. WeChat retries a message with the same `MsgId`.
/// - Anything else (events, `InfoType` pushes): the account, the sender (`FromUserName`),
///   `CreateTime`, the event name (or message type) **and the callback's
///   [fingerprint](Message::fingerprint)**, a digest of all its fields as received —
///   `ww1:event:sys:1403610513:change_contact:9f86d081884c7d65`. A retry repeats the
///   callback field for field, so it matches; two distinct events differ in some field, so
///   they never merge, even when they share a sender and a second.
///
/// The fingerprint is what makes the event key safe. WeCom sends its contact and customer
/// events from `FromUserName=sys`, several in the same `CreateTime` second (a batch import
/// creates many members at once; one customer added by two members gives two
/// `add_external_contact` events that differ only in `UserID`): a key of sender + time +
/// event would run only the first and drop the rest as "retries". The account is part of
/// every key, so several accounts can share one store.
///
/// ```
/// use tower_wechat::Message;
/// use tower_wechat::dedup::default_key;
///
/// let created = |user: &str| {
///     Message::parse(format!(
///         "<xml><ToUserName>ww1</ToUserName><FromUserName>sys</FromUserName>\
///          <CreateTime>1403610513</CreateTime><MsgType>event</MsgType>\
///          <Event>change_contact</Event><ChangeType>create_user</ChangeType>\
///          <UserID>{user}</UserID></xml>"
///     ).as_bytes()).unwrap()
/// };
/// let zhangsan = default_key(&created("zhangsan")).unwrap();
/// assert!(zhangsan.starts_with("ww1:event:sys:1403610513:change_contact:"));
/// assert_eq!(zhangsan, default_key(&created("zhangsan")).unwrap()); // a retry
/// assert_ne!(zhangsan, default_key(&created("lisi")).unwrap()); // another event
/// ```
pub fn default_key(message: &Message) -> Option<String> {
    let account = &message.to_user_name;
    let from = &message.from_user_name;
    let time = message.create_time;
    let fingerprint = message.fingerprint().unwrap_or_default();
    Some(match (message.msg_id, message.event()) {
        (Some(msg_id), _) => {
            // The common case, built without the formatting machinery.
            let mut key = String::with_capacity(account.len() + ":msg:".len() + 20);
            key.push_str(account);
            key.push_str(":msg:");
            push_decimal(&mut key, msg_id);
            key
        }
        (None, Some(event)) => format!(
            "{account}:event:{from}:{time}:{}:{fingerprint:016x}",
            event.name()
        ),
        (None, None) => format!(
            "{account}:{}:{from}:{time}:{fingerprint:016x}",
            message.msg_type()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Message {
        Message::parse(xml.as_bytes()).unwrap()
    }

    #[test]
    fn decimals_are_written_as_format_writes_them() {
        for value in [0, 7, 10, 42, 999, 1_000, 24_567_890_123_456_789, u64::MAX] {
            let mut out = String::from("x");
            push_decimal(&mut out, value);
            assert_eq!(out, format!("x{value}"));
        }
    }

    #[test]
    fn messages_are_keyed_by_account_and_msg_id() {
        let text = parse(
            "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
             <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>a</Content>\
             <MsgId>42</MsgId></xml>",
        );
        assert_eq!(default_key(&text).unwrap(), "gh_1:msg:42");
    }

    #[test]
    fn events_are_keyed_by_sender_time_event_and_fingerprint() {
        let event = |name: &str, time: u64| {
            parse(&format!(
                "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
                 <CreateTime>{time}</CreateTime><MsgType>event</MsgType>\
                 <Event>{name}</Event></xml>"
            ))
        };
        let subscribe = default_key(&event("subscribe", 100)).unwrap();
        assert!(
            subscribe.starts_with("gh_1:event:o1:100:subscribe:"),
            "{subscribe}"
        );
        assert_eq!(subscribe, default_key(&event("subscribe", 100)).unwrap());
        assert_ne!(subscribe, default_key(&event("subscribe", 101)).unwrap());
        assert_ne!(subscribe, default_key(&event("unsubscribe", 100)).unwrap());
    }

    /// WxJava #3445, Senparc NeuChar #123: distinct WeCom events from `sys` in one second.
    #[test]
    fn distinct_same_second_wecom_events_never_share_a_key() {
        let event = |body: &str| {
            parse(&format!(
                "<xml><ToUserName><![CDATA[ww1]]></ToUserName>\
                 <FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime>\
                 <MsgType><![CDATA[event]]></MsgType>{body}</xml>"
            ))
        };
        let events = [
            "<Event>change_contact</Event><ChangeType>create_user</ChangeType><UserID>zhangsan</UserID>",
            "<Event>change_contact</Event><ChangeType>create_user</ChangeType><UserID>lisi</UserID>",
            "<Event>change_contact</Event><ChangeType>update_user</ChangeType><UserID>zhangsan</UserID>",
            "<Event>change_contact</Event><ChangeType>delete_user</ChangeType><UserID>zhangsan</UserID>",
            "<Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType>\
             <UserID>zhangsan</UserID><ExternalUserID>wmA</ExternalUserID>",
            "<Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType>\
             <UserID>lisi</UserID><ExternalUserID>wmA</ExternalUserID>",
            "<Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType>\
             <UserID>zhangsan</UserID><ExternalUserID>wmB</ExternalUserID>",
            "<Event>change_external_chat</Event><ChangeType>update</ChangeType><ChatId>wr1</ChatId>\
             <UpdateDetail>add_member</UpdateDetail>",
            "<Event>change_external_chat</Event><ChangeType>update</ChangeType><ChatId>wr1</ChatId>\
             <UpdateDetail>del_member</UpdateDetail>",
        ];
        let keys: std::collections::HashSet<_> = events
            .iter()
            .map(|body| default_key(&event(body)).unwrap())
            .collect();
        assert_eq!(keys.len(), events.len());
        // And each is stable: the byte-identical retry has the same key.
        for body in events {
            assert_eq!(default_key(&event(body)), default_key(&event(body)));
        }
    }

    #[test]
    fn info_type_pushes_in_one_second_are_told_apart() {
        let push = |user: &str| {
            parse(&format!(
                "<xml><SuiteId>ww4a</SuiteId><AuthCorpId>wxf8</AuthCorpId>\
                 <InfoType>change_contact</InfoType><TimeStamp>1403610513</TimeStamp>\
                 <ChangeType>create_user</ChangeType><UserID>{user}</UserID></xml>"
            ))
        };
        assert_ne!(default_key(&push("a")), default_key(&push("b")));
        assert_eq!(default_key(&push("a")), default_key(&push("a")));
    }
}
