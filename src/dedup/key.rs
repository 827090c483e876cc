//! Which callbacks count as the same one.

use crate::Message;

/// The default dedup key: the account (`ToUserName`) plus `MsgId`; for callbacks without a
/// `MsgId` (events), the sender (`FromUserName`), `CreateTime` and the event name (or the
/// message type).
///
/// WeChat's retries of one callback carry the same `MsgId`, or for events the same sender
/// and `CreateTime`. The account is part of every key, so several accounts can share one
/// store.
pub fn default_key(message: &Message) -> Option<String> {
    let account = &message.to_user_name;
    Some(match (message.msg_id, message.event()) {
        (Some(msg_id), _) => format!("{account}:msg:{msg_id}"),
        (None, Some(event)) => format!(
            "{account}:event:{}:{}:{}",
            message.from_user_name,
            message.create_time,
            event.name()
        ),
        (None, None) => format!(
            "{account}:{}:{}:{}",
            message.msg_type(),
            message.from_user_name,
            message.create_time
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
    fn messages_are_keyed_by_account_and_msg_id() {
        let text = parse(
            "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
             <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>a</Content>\
             <MsgId>42</MsgId></xml>",
        );
        assert_eq!(default_key(&text).unwrap(), "gh_1:msg:42");
    }

    #[test]
    fn events_are_keyed_by_sender_time_and_event() {
        let event = |name: &str, time: u64| {
            parse(&format!(
                "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
                 <CreateTime>{time}</CreateTime><MsgType>event</MsgType>\
                 <Event>{name}</Event></xml>"
            ))
        };
        let subscribe = default_key(&event("subscribe", 100)).unwrap();
        assert_eq!(subscribe, "gh_1:event:o1:100:subscribe");
        assert_ne!(subscribe, default_key(&event("subscribe", 101)).unwrap());
        assert_ne!(subscribe, default_key(&event("unsubscribe", 100)).unwrap());
    }
}
