//! Safe mode: verify + decrypt of a typical encrypted text message, and sealing a reply.
//!
//! ```text
//! cargo bench --bench crypto
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tower_wechat::crypto::{EncodingAesKey, decrypt, encrypt, seal_reply};
use tower_wechat::signature::{Signature, Token};

const MESSAGE: &str = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\
<FromUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></FromUserName>\
<CreateTime>1715943329</CreateTime><MsgType><![CDATA[text]]></MsgType>\
<Content><![CDATA[你好，我想查一下我的订单状态]]></Content><MsgId>24567890123456789</MsgId></xml>";

const REPLY: &str = "<xml><ToUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></ToUserName>\
<FromUserName><![CDATA[gh_97417a04a28d]]></FromUserName><CreateTime>1715943330</CreateTime>\
<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[您的订单已发货，预计明天送达。]]></Content></xml>";

fn safe_mode(c: &mut Criterion) {
    let key = EncodingAesKey::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
    let token = Token::new("pamtest").unwrap();
    let app_id = "wxb11529c136998cb6";
    let encrypted = encrypt(&key, MESSAGE.as_bytes(), app_id);
    let sent = Signature::message(&token, "1715943329", "1590219412", &encrypted);

    c.bench_function("safe_mode/verify_and_decrypt_text", |b| {
        b.iter(|| {
            let encrypted = black_box(encrypted.as_str());
            assert!(
                Signature::message(&token, "1715943329", "1590219412", encrypted).verify(&sent)
            );
            decrypt(&key, encrypted).unwrap()
        })
    });
    c.bench_function("safe_mode/seal_text_reply", |b| {
        b.iter(|| {
            seal_reply(
                &key,
                &token,
                app_id,
                black_box(REPLY.as_bytes()),
                1715943330,
                "415670741",
            )
        })
    });
}

criterion_group!(benches, safe_mode);
criterion_main!(benches);
