//! The JSON parser on any bytes: `Message::parse` and `Reply::parse` never panic, their
//! errors are short fixed texts, they never accept what serde_json itself refuses, a JSON
//! reply to any parsed message is valid JSON that reads back exactly, and the safe-mode
//! `Encrypt` lookup never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_wechat::message::{Format, ParseError};
use tower_wechat::{Message, Reply, ReplyContent};

fn check_error(text: &str) {
    assert!(text.len() <= 100, "{text}");
    assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text:?}");
}

fuzz_target!(|data: &[u8]| {
    // Most inputs are made JSON by their first byte; the rest exercise the dispatch.
    let owned;
    let body = if Format::detect(data) == Format::Json || data.first() == Some(&b'!') {
        data
    } else {
        owned = [b"{".as_slice(), data].concat();
        &owned
    };
    let parsed = Message::parse(body);
    let strict = serde_json::from_slice::<serde_json::Value>(body);
    if Format::detect(body) == Format::Json {
        // Never more lenient than serde_json's own reader.
        if strict.is_err() {
            assert!(parsed.is_err(), "accepted what serde_json refuses");
        }
        if let Err(ParseError::Syntax(_)) = &parsed {
            assert!(strict.is_err(), "a syntax error serde_json does not see");
        }
    }
    match parsed {
        Ok(message) => {
            let _ = (message.msg_type(), message.event(), message.fingerprint());
            let reply = message.reply(ReplyContent::text("ok"));
            let json = reply.to_json();
            assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{json}");
            let back = Reply::parse(reply.to_bytes().as_ref()).expect("a reply parses");
            assert_eq!(back.to_user_name(), Some(message.from_user_name.as_str()));
            assert_eq!(back.from_user_name(), Some(message.to_user_name.as_str()));
            assert_eq!(back.format(), Some(message.format));
        }
        Err(error) => check_error(&error.to_string()),
    }
    if let Err(error) = Reply::parse(body) {
        check_error(&error.to_string());
    }
    let _ = tower_wechat::__fuzz::encrypt_field(body);
});
