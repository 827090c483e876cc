//! The XML parser on any bytes: `Message::parse` and `Reply::parse` never panic, their
//! errors are short fixed texts, a reply to any parsed message reads back, and the plain
//! scanner reads every document it accepts as the quick-xml walk does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_wechat::{Message, Reply, ReplyContent};

fn check_error(text: &str) {
    assert!(text.len() <= 100, "{text}");
    assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text:?}");
}

/// What the reply writer does to characters XML 1.0 cannot carry.
fn xml_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}' => {
                '\u{FFFD}'
            }
            c => c,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    tower_wechat::__fuzz::xml_scanner_agrees(data);
    match Message::parse(data) {
        Ok(message) => {
            let _ = (message.msg_type(), message.event(), message.field("Content"));
            let reply = message.reply(ReplyContent::text("ok"));
            let back = Reply::parse(reply.to_xml().as_bytes()).expect("a reply parses");
            assert_eq!(
                back.to_user_name(),
                Some(xml_safe(&message.from_user_name).as_str())
            );
            assert_eq!(
                back.from_user_name(),
                Some(xml_safe(&message.to_user_name).as_str())
            );
        }
        Err(error) => check_error(&error.to_string()),
    }
    if let Err(error) = Reply::parse(data) {
        check_error(&error.to_string());
    }
});
