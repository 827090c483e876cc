//! Safe mode behind `VerifyLayer`: the envelope parse, the `msg_signature` check, the
//! decryption (with a plaintext the fuzzer chooses, length field and receive id included)
//! and the parse of what it decrypts to. Never a panic or a 5xx, refusals are short fixed
//! texts, and every log line stays bounded and free of control characters.
#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_layer::Layer;
use tower_service::Service;
use tower_wechat::Token;
use tower_wechat::crypto::{self, EncodingAesKey};
use tower_wechat::signature::Signature;
use tower_wechat::verify::SafeMode;

const TOKEN: &str = "fuzztoken";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wx1234567890abcdef";
const TIMESTAMP: &str = "1700000000";
const NONCE: &str = "12345";

fuzz_target!(|data: &[u8]| {
    common::install_log();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = EncodingAesKey::new(KEY).unwrap();
    let token = Token::new(TOKEN).unwrap();
    let (body, sign) = match mode % 4 {
        // Any body, signed over whatever `<Encrypt>` it holds.
        0 => (rest.to_vec(), true),
        // Any decrypted bytes: random prefix, length field, message, receive id.
        1 => (envelope(&tower_wechat::__fuzz::encrypt_raw(&key, rest)), true),
        // Any message, encrypted the way WeChat does.
        2 => (
            envelope(&crypto::encrypt_with_random(&key, rest, APP_ID, &[7; 16])),
            true,
        ),
        // Any body with a signature that does not match.
        _ => (rest.to_vec(), false),
    };
    let msg_signature = match tower_wechat::__fuzz::encrypt_field(&body) {
        Some(encrypt) if sign => Signature::message(&token, TIMESTAMP, NONCE, &encrypt),
        _ => Signature::compute(&["not", "signed"]),
    };
    let request = Request::post(format!(
        "/wechat?msg_signature={msg_signature}&timestamp={TIMESTAMP}&nonce={NONCE}\
         &encrypt_type=aes"
    ))
    .body(Full::new(Bytes::from(body)))
    .unwrap();
    let layer = tower_wechat::__fuzz::layer(TOKEN).safe_mode(SafeMode::new(key, APP_ID));
    let mut service = layer.layer(common::Echo);
    let response = common::now(service.call(request)).unwrap();
    common::check_response(response);
});

fn envelope(encrypt: &str) -> Vec<u8> {
    format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
        .into_bytes()
}
