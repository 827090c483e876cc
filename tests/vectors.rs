//! WeChat's protocol vectors (tests/data/vectors.json, copied from the team's shared vectors:
//! WeChat's documentation and other SDKs' test suites).

mod common;

use axum::Router;
use axum::routing::post;
use http::StatusCode;
use serde_json::Value;
use tower_wechat::signature::Signature;
use tower_wechat::{Message, Reply, Token, VerifyLayer};

fn vectors() -> Vec<Value> {
    serde_json::from_str(include_str!("data/vectors.json")).unwrap()
}

fn text<'v>(vector: &'v Value, field: &str) -> &'v str {
    vector[field]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no {field}", vector["id"]))
}

/// Vectors whose token is not a valid console token (only used for raw crypto).
fn token(vector: &Value) -> Option<Token> {
    Token::new(text(vector, "token")).ok()
}

#[test]
fn plain_signatures() {
    let mut checked = 0;
    for vector in vectors().iter().filter(|v| v.get("signature").is_some()) {
        let token = token(vector).unwrap();
        let computed = Signature::plain(&token, text(vector, "timestamp"), text(vector, "nonce"));
        let expected = Signature::from_hex(text(vector, "signature")).unwrap();
        assert!(computed.verify(&expected), "{}", vector["id"]);
        if let Some(wrong) = vector.get("wrong_signature").and_then(Value::as_str) {
            assert!(!computed.verify(&Signature::from_hex(wrong).unwrap()));
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} plain signature vectors");
}

#[test]
fn message_signatures() {
    let mut checked = 0;
    for vector in vectors()
        .iter()
        .filter(|v| v.get("msg_signature").is_some())
    {
        let Some(token) = token(vector) else { continue };
        // The signed fourth part is `Encrypt`, or the encrypted echostr for WeCom's handshake.
        let encrypted = vector
            .get("encrypt")
            .or_else(|| vector.get("echostr"))
            .and_then(Value::as_str)
            .unwrap();
        let expected = Signature::from_hex(text(vector, "msg_signature")).unwrap();
        let computed = Signature::message(
            &token,
            text(vector, "timestamp"),
            text(vector, "nonce"),
            encrypted,
        );
        assert!(computed.verify(&expected), "{}", vector["id"]);
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} msg_signature vectors");
}

/// V3a's note: the same parameters with another nonce must be rejected.
#[test]
fn message_signature_depends_on_the_nonce() {
    let vectors = vectors();
    let v3a = vectors.iter().find(|v| v["id"] == "V3a").unwrap();
    let expected = Signature::from_hex(text(v3a, "msg_signature")).unwrap();
    let computed = Signature::message(
        &token(v3a).unwrap(),
        text(v3a, "timestamp"),
        "437374424",
        text(v3a, "echostr"),
    );
    assert!(!computed.verify(&expected));
}

/// Every decrypted plaintext that is a pushed message parses as a `Message`; every one that
/// is a passive reply parses as a `Reply`.
#[test]
fn documented_plaintexts_parse() {
    let (mut messages, mut replies) = (0, 0);
    for vector in vectors() {
        let Some(plaintext) = vector.get("plaintext").and_then(Value::as_str) else {
            continue;
        };
        if !plaintext.contains("<MsgType>") {
            continue; // V4a's free text and V10b's demo body are neither
        }
        let id = &vector["id"];
        if vector["kind"]
            .as_str()
            .unwrap()
            .starts_with("safe_mode_decrypt")
        {
            let message = Message::parse(plaintext.as_bytes())
                .unwrap_or_else(|error| panic!("{id}: {error}"));
            assert!(!message.to_user_name.is_empty(), "{id}");
            messages += 1;
        } else {
            let reply =
                Reply::parse(plaintext.as_bytes()).unwrap_or_else(|error| panic!("{id}: {error}"));
            assert!(reply.content().is_some(), "{id}");
            replies += 1;
        }
    }
    assert!(messages >= 4, "only {messages} messages parsed");
    assert!(replies >= 2, "only {replies} replies parsed");
}

/// The documented handshake through the layer, with the window off for its old timestamp.
#[tokio::test]
async fn documented_handshake_through_the_layer() {
    let vectors = vectors();
    for vector in vectors.iter().filter(|v| v["kind"] == "echostr_plain") {
        let layer = VerifyLayer::new(token(vector).unwrap()).disable_timestamp_window();
        let router = Router::new()
            .route("/wechat", post(|| async { Reply::success() }))
            .layer(layer);
        let addr = common::serve(router).await;
        let wechat = common::WeChat::new(addr, text(vector, "token"));
        let path = format!(
            "/wechat?signature={}&timestamp={}&nonce={}&echostr={}",
            text(vector, "signature"),
            text(vector, "timestamp"),
            text(vector, "nonce"),
            text(vector, "echostr"),
        );
        let answer = wechat.send(http::Method::GET, &path, "").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", vector["id"]);
        assert_eq!(answer.body, text(vector, "respond"));
    }
}

#[cfg(feature = "crypto")]
mod crypto {
    use super::*;
    use tower_wechat::crypto::{
        EncodingAesKey, decrypt, encrypt_with_random, seal_reply_with_random,
    };

    fn key(vector: &Value) -> EncodingAesKey {
        EncodingAesKey::new(text(vector, "encoding_aes_key")).unwrap()
    }

    fn random(vector: &Value) -> [u8; 16] {
        text(vector, "random").as_bytes().try_into().unwrap()
    }

    /// Every documented ciphertext decrypts to its documented plaintext and receive id
    /// (pads of 1, 2, 7, 21 and 22 bytes; keys with non-zero trailing bits).
    #[test]
    fn documented_ciphertexts_decrypt() {
        let mut checked = 0;
        for vector in vectors() {
            let (encrypted, expected) = match text(&vector, "kind") {
                "safe_mode_decrypt"
                | "safe_mode_decrypt_compat"
                | "encrypt_deterministic"
                | "encrypt_reply_deterministic" => {
                    (text(&vector, "encrypt"), text(&vector, "plaintext"))
                }
                "echostr_encrypted" => (text(&vector, "echostr"), text(&vector, "respond")),
                _ => continue,
            };
            let decrypted = decrypt(&key(&vector), encrypted)
                .unwrap_or_else(|error| panic!("{}: {error}", vector["id"]));
            assert_eq!(decrypted.message, expected.as_bytes(), "{}", vector["id"]);
            assert_eq!(decrypted.receive_id, text(&vector, "receive_id"));
            checked += 1;
        }
        assert_eq!(checked, 11);
    }

    /// With the documented "random" bytes, encryption matches byte for byte.
    #[test]
    fn documented_encryptions_match_byte_for_byte() {
        let mut checked = 0;
        for vector in vectors()
            .iter()
            .filter(|v| text(v, "kind").starts_with("encrypt_"))
        {
            let encrypted = encrypt_with_random(
                &key(vector),
                text(vector, "plaintext").as_bytes(),
                text(vector, "receive_id"),
                &random(vector),
            );
            assert_eq!(encrypted, text(vector, "encrypt"), "{}", vector["id"]);
            checked += 1;
        }
        assert_eq!(checked, 5);
    }

    /// Sealed replies carry the documented Encrypt and MsgSignature.
    #[test]
    fn documented_reply_envelopes() {
        for vector in vectors()
            .iter()
            .filter(|v| v["kind"] == "encrypt_reply_deterministic")
        {
            let token = Token::new(text(vector, "token")).unwrap();
            let envelope = seal_reply_with_random(
                &key(vector),
                &token,
                text(vector, "receive_id"),
                text(vector, "plaintext").as_bytes(),
                text(vector, "timestamp").parse().unwrap(),
                text(vector, "nonce"),
                &random(vector),
            );
            assert!(envelope.contains(&format!(
                "<Encrypt><![CDATA[{}]]></Encrypt>",
                text(vector, "encrypt")
            )));
            assert!(envelope.contains(&format!(
                "<MsgSignature><![CDATA[{}]]></MsgSignature>",
                text(vector, "msg_signature")
            )));
            assert!(envelope.contains(&format!(
                "<TimeStamp>{}</TimeStamp>",
                text(vector, "timestamp")
            )));
            assert!(envelope.contains(&format!(
                "<Nonce><![CDATA[{}]]></Nonce>",
                text(vector, "nonce")
            )));
        }
    }

    /// V4b's note: with token 12345 instead of pamtest the msg_signature check must fail.
    /// V5 is the pamtest vector that carries a documented msg_signature.
    #[test]
    fn another_token_fails_the_documented_message_signature() {
        let vectors = vectors();
        let v5 = vectors.iter().find(|v| v["id"] == "V5").unwrap();
        let documented = Signature::from_hex(text(v5, "msg_signature")).unwrap();
        let sign = |token: &str| {
            Signature::message(
                &Token::new(token).unwrap(),
                text(v5, "timestamp"),
                text(v5, "nonce"),
                text(v5, "encrypt"),
            )
        };
        assert!(sign("pamtest").verify(&documented));
        assert!(!sign("12345").verify(&documented));
    }
}
