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
        if !plaintext.contains("<MsgType>") && !plaintext.contains("\"MsgType\"") {
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
    assert!(messages >= 5, "only {messages} messages parsed");
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
                | "safe_mode_decrypt_json"
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
        assert_eq!(checked, 12);
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

    /// The JSON envelope carries the documented `Encrypt` and `MsgSignature` (the same
    /// scheme as XML), the timestamp as a number, and reads as JSON.
    #[test]
    fn documented_reply_envelopes_in_json() {
        use tower_wechat::crypto::seal_reply_json_with_random;
        let mut checked = 0;
        for vector in vectors()
            .iter()
            .filter(|v| v["kind"] == "encrypt_reply_deterministic")
        {
            let token = Token::new(text(vector, "token")).unwrap();
            let envelope = seal_reply_json_with_random(
                &key(vector),
                &token,
                text(vector, "receive_id"),
                text(vector, "plaintext").as_bytes(),
                text(vector, "timestamp").parse().unwrap(),
                text(vector, "nonce"),
                &random(vector),
            );
            let envelope: Value = serde_json::from_str(&envelope).unwrap();
            assert_eq!(
                envelope["Encrypt"],
                text(vector, "encrypt"),
                "{}",
                vector["id"]
            );
            assert_eq!(envelope["MsgSignature"], text(vector, "msg_signature"));
            assert_eq!(
                envelope["TimeStamp"].as_u64().unwrap().to_string(),
                text(vector, "timestamp")
            );
            assert_eq!(envelope["Nonce"], text(vector, "nonce"));
            checked += 1;
        }
        assert_eq!(checked, 2);
    }

    /// V16, WeChat's official JSON safe-mode sample (pad 19): through VerifyLayer with the
    /// window off, it verifies (both signatures), decrypts and parses into the same
    /// `Message` model; a reply to it comes back as a JSON envelope that verifies and opens
    /// to a JSON reply. A wrong `msg_signature` or a changed `Encrypt` is refused.
    #[tokio::test]
    async fn official_json_safe_mode_sample_through_the_layer() {
        use std::sync::{Arc, Mutex};
        use tower_wechat::message::{Event, Format, ReplyContent};
        use tower_wechat::verify::SafeMode;

        let vectors = vectors();
        let v16 = vectors.iter().find(|v| v["id"] == "V16").unwrap();
        assert_eq!(text(v16, "kind"), "safe_mode_decrypt_json");
        let seen: Arc<Mutex<Vec<Message>>> = Arc::default();
        let record = seen.clone();
        let layer = VerifyLayer::new(token(v16).unwrap())
            .disable_timestamp_window()
            .safe_mode(SafeMode::new(key(v16), text(v16, "receive_id")));
        let router = Router::new()
            .route(
                "/wechat",
                post(move |message: Message| async move {
                    record.lock().unwrap().push(message.clone());
                    message.reply(ReplyContent::text("收到"))
                }),
            )
            .layer(layer);
        let addr = common::serve(router).await;
        let wechat = common::WeChat::new(addr, text(v16, "token"));
        let query = |msg_signature: &str| {
            format!(
                "/wechat?signature={}&timestamp={}&nonce={}&msg_signature={msg_signature}&encrypt_type=aes",
                text(v16, "signature"),
                text(v16, "timestamp"),
                text(v16, "nonce"),
            )
        };
        let answer = wechat
            .send(
                http::Method::POST,
                &query(text(v16, "msg_signature")),
                text(v16, "body").to_owned(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(
            answer.headers[http::header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );

        let message = seen.lock().unwrap().pop().expect("the handler ran");
        assert_eq!(message.format, Format::Json);
        assert_eq!(message.to_user_name, "gh_97417a04a28d");
        assert_eq!(message.from_user_name, "o9AgO5Kd5ggOC-bXrbNODIiE3bGY");
        assert_eq!(message.create_time, 1_714_112_445);
        assert!(
            matches!(message.event(), Some(Event::Unknown { event, .. }) if event == "debug_demo")
        );
        assert_eq!(message.field("debug_str"), Some("hello world"));
        assert_eq!(
            Message::parse(text(v16, "plaintext").as_bytes()).unwrap(),
            message
        );

        // The reply: a JSON envelope, signed with the token, holding a JSON reply.
        let envelope: Value = serde_json::from_str(&answer.body).unwrap();
        let encrypt = envelope["Encrypt"].as_str().unwrap();
        let timestamp = envelope["TimeStamp"].as_u64().unwrap().to_string();
        let nonce = envelope["Nonce"].as_str().unwrap();
        let signed = Signature::message(&token(v16).unwrap(), &timestamp, nonce, encrypt);
        let documented = Signature::from_hex(envelope["MsgSignature"].as_str().unwrap()).unwrap();
        assert!(signed.verify(&documented));
        let opened = decrypt(&key(v16), encrypt).unwrap();
        assert_eq!(opened.receive_id, text(v16, "receive_id"));
        let reply: Value = serde_json::from_slice(&opened.message).unwrap();
        assert_eq!(reply["ToUserName"], "o9AgO5Kd5ggOC-bXrbNODIiE3bGY");
        assert_eq!(reply["FromUserName"], "gh_97417a04a28d");
        assert_eq!(reply["Content"], "收到");
        let parsed = Reply::parse(&opened.message).unwrap();
        assert_eq!(parsed.format(), Some(Format::Json));

        // A wrong msg_signature: refused, the handler not run.
        let wrong = "0".repeat(40);
        let answer = wechat
            .send(
                http::Method::POST,
                &query(&wrong),
                text(v16, "body").to_owned(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_eq!(answer.body, "msg_signature does not match");
        // The Encrypt changed (its signature no longer covers it).
        let tampered = text(v16, "body").replacen("+qdx", "+qdy", 1);
        let answer = wechat
            .send(
                http::Method::POST,
                &query(text(v16, "msg_signature")),
                tampered,
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert!(seen.lock().unwrap().is_empty());
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
