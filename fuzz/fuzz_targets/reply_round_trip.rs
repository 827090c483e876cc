//! The reply writer round trip: any reply is written, parsed back and equal to what was
//! written (modulo the characters XML 1.0 cannot carry, which become U+FFFD).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_wechat::message::{Article, Music};
use tower_wechat::{Reply, ReplyContent};

#[derive(Arbitrary, Debug)]
enum Content {
    Text(String),
    Image(String),
    Voice(String),
    Video(String, Option<String>, Option<String>),
    Music(Option<String>, Option<String>, Option<String>, Option<String>, String),
    News(Vec<(String, String, String, String)>),
    Transfer(Option<String>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    to: String,
    from: String,
    time: u64,
    content: Content,
}

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

fn build(input: &Input, text: &dyn Fn(&str) -> String) -> Option<Reply> {
    let opt = |value: &Option<String>| value.as_deref().map(text);
    let content = match &input.content {
        Content::Text(content) => ReplyContent::text(text(content)),
        Content::Image(id) => ReplyContent::image(text(id)),
        Content::Voice(id) => ReplyContent::voice(text(id)),
        Content::Video(id, title, description) => ReplyContent::Video {
            media_id: text(id),
            title: opt(title),
            description: opt(description),
        },
        Content::Music(title, description, url, hq_url, thumb) => ReplyContent::Music(Music {
            title: opt(title),
            description: opt(description),
            music_url: opt(url),
            hq_music_url: opt(hq_url),
            thumb_media_id: text(thumb),
        }),
        Content::News(articles) => ReplyContent::news(
            articles
                .iter()
                .map(|(title, description, pic_url, url)| Article {
                    title: text(title),
                    description: text(description),
                    pic_url: text(pic_url),
                    url: text(url),
                })
                .collect(),
        )
        .ok()?,
        Content::Transfer(account) => ReplyContent::TransferCustomerService {
            kf_account: opt(account),
        },
    };
    Some(Reply::new(text(&input.to), text(&input.from), input.time, content))
}

fuzz_target!(|input: Input| {
    let Some(reply) = build(&input, &|s| s.to_owned()) else {
        return;
    };
    let expected = build(&input, &xml_safe).unwrap();
    let xml = reply.to_xml();
    assert_eq!(Reply::parse(xml.as_bytes()), Ok(expected), "{xml}");
});
