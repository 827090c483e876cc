//! Safe mode end to end: the quick start's router in safe mode on a real loopback port,
//! driven by an independent implementation (tests/peer/wechat_peer.py, Python +
//! `cryptography`) and by WeChat's documented samples.

mod common;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

use aes::cipher::array::Array;
use aes::cipher::{BlockModeEncrypt, KeyIvInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{WeChat, now, peer, serve};
use http::{Method, StatusCode};
use serde_json::Value;
use tower_wechat::crypto::{EncodingAesKey, decrypt, encrypt};
use tower_wechat::signature::Signature;
use tower_wechat::verify::SafeMode;
use tower_wechat::{CallbackLayer, Message, MessageKind, Reply, ReplyContent, Token, VerifyLayer};

const TOKEN: &str = "safemode1";
const KEY: &str = "Yq3kR8vTz1LmN0pQs5uWx7yZa2bC4dE6fG8hJ9kL1mN";
const APP_ID: &str = "wxf00dcafe12345678";

fn key(encoded: &str) -> EncodingAesKey {
    EncodingAesKey::new(encoded).unwrap()
}

fn safe_layer() -> VerifyLayer {
    VerifyLayer::new(Token::new(TOKEN).unwrap()).safe_mode(SafeMode::new(key(KEY), APP_ID))
}

async fn start(layer: VerifyLayer) -> WeChat {
    let stack = CallbackLayer::with_verify(layer);
    WeChat::new(serve(quickstart::app(stack)).await, TOKEN)
}

/// Has the peer send `content` as WeChat would (`--compat` for compatibility mode).
async fn peer_message(wechat: &WeChat, key: &str, content: &str, flags: &[&str]) -> (bool, Value) {
    let url = format!("http://{}/wechat", wechat.addr());
    let mut args = vec!["message", &url, TOKEN, key, APP_ID, content];
    args.extend_from_slice(flags);
    peer(args.into_iter().map(String::from).collect()).await
}

#[tokio::test]
#[ignore = "needs python3 with cryptography: run scripts/test"]
async fn an_independent_peer_gets_an_encrypted_reply_that_verifies_and_decrypts() {
    let wechat = start(safe_layer()).await;
    let (ok, result) = peer_message(&wechat, KEY, "你好 <safe> & sound", &[]).await;
    assert!(ok, "{result}");
    assert_eq!(result["msg_type"], "text");
    assert_eq!(result["content"], "You said: 你好 <safe> & sound");
}

#[tokio::test]
#[ignore = "needs python3 with cryptography: run scripts/test"]
async fn compatibility_mode_is_answered_encrypted_too() {
    let wechat = start(safe_layer()).await;
    let (ok, result) = peer_message(&wechat, KEY, "compat", &["--compat"]).await;
    assert!(ok, "{result}");
    assert_eq!(result["content"], "You said: compat");
}

#[tokio::test]
#[ignore = "needs python3 with cryptography: run scripts/test"]
async fn the_peer_notices_a_server_with_another_key() {
    let other = VerifyLayer::new(Token::new(TOKEN).unwrap()).safe_mode(SafeMode::new(
        key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        APP_ID,
    ));
    let wechat = start(other).await;
    let (ok, result) = peer_message(&wechat, KEY, "x", &[]).await;
    assert!(!ok);
    assert_eq!(result["status"], 400, "{result}");
}

#[tokio::test]
#[ignore = "needs python3 with cryptography: run scripts/test"]
async fn wecom_encrypted_handshake_from_the_peer() {
    let wechat = start(safe_layer()).await;
    let url = format!("http://{}/wechat", wechat.addr());
    let args = ["handshake", &url, TOKEN, KEY, APP_ID, "8471024786934759"];
    let (ok, result) = peer(args.map(String::from).to_vec()).await;
    assert!(ok, "{result}");
}

fn vectors() -> Vec<Value> {
    serde_json::from_str(include_str!("data/vectors.json")).unwrap()
}

fn field<'v>(vector: &'v Value, name: &str) -> &'v str {
    vector[name].as_str().unwrap()
}

/// A layer configured like the vector's account, with the window off for its old timestamp.
fn vector_layer(vector: &Value) -> VerifyLayer {
    VerifyLayer::new(Token::new(field(vector, "token")).unwrap())
        .disable_timestamp_window()
        .safe_mode(SafeMode::new(
            key(field(vector, "encoding_aes_key")),
            field(vector, "receive_id"),
        ))
}

#[tokio::test]
async fn documented_encrypted_messages_through_the_quick_start() {
    let mut checked = 0;
    for vector in vectors()
        .iter()
        .filter(|v| field(v, "kind").starts_with("safe_mode_decrypt"))
    {
        let id = field(vector, "id");
        let wechat = start(vector_layer(vector)).await;
        let plaintext = field(vector, "plaintext");
        let encrypted = field(vector, "encrypt");
        let body = if field(vector, "kind") == "safe_mode_decrypt_json" {
            field(vector, "body").to_owned() // V16: WeChat's JSON envelope as sent
        } else if field(vector, "kind") == "safe_mode_decrypt_compat" {
            plaintext.replace(
                "</xml>",
                &format!("<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"),
            )
        } else {
            format!(
                "<xml><ToUserName><![CDATA[x]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
            )
        };
        let mut query = format!(
            "timestamp={}&nonce={}&msg_signature={}&encrypt_type=aes",
            field(vector, "timestamp"),
            field(vector, "nonce"),
            field(vector, "msg_signature")
        );
        if let Some(signature) = vector.get("signature").and_then(Value::as_str) {
            query.push_str(&format!("&signature={signature}"));
        }
        let answer = wechat
            .send(Method::POST, &format!("/wechat?{query}"), body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{id}: {}", answer.body);

        let message = Message::parse(plaintext.as_bytes()).unwrap();
        match message.kind {
            MessageKind::Text { content } => {
                let reply = open_reply(vector, &answer.body);
                assert_eq!(
                    reply.content(),
                    Some(&ReplyContent::text(format!("You said: {content}"))),
                    "{id}"
                );
                assert_eq!(reply.to_user_name(), Some(message.from_user_name.as_str()));
            }
            // The quick start answers unknown events with the plain ack, never encrypted.
            _ => assert_eq!(answer.body, "success", "{id}"),
        }
        checked += 1;
    }
    assert_eq!(
        checked, 5,
        "V3c, V5, V8 (compatibility mode), V10a and V16 (JSON)"
    );
}

/// Checks an encrypted reply's signature with the vector's token and decrypts it.
fn open_reply(vector: &Value, body: &str) -> Reply {
    let envelope = tower_wechat_envelope(body);
    let token = Token::new(field(vector, "token")).unwrap();
    let expected = Signature::from_hex(&envelope.signature).unwrap();
    assert!(
        Signature::message(
            &token,
            &envelope.timestamp,
            &envelope.nonce,
            &envelope.encrypt
        )
        .verify(&expected),
        "reply signature"
    );
    let decrypted = decrypt(&key(field(vector, "encoding_aes_key")), &envelope.encrypt).unwrap();
    assert_eq!(decrypted.receive_id, field(vector, "receive_id"));
    Reply::parse(&decrypted.message).unwrap()
}

struct Envelope {
    encrypt: String,
    signature: String,
    timestamp: String,
    nonce: String,
}

/// Reads the envelope with a plain string search, independent of the crate's XML parser.
fn tower_wechat_envelope(body: &str) -> Envelope {
    let inner = |name: &str| {
        let open = format!("<{name}>");
        let start = body
            .find(&open)
            .unwrap_or_else(|| panic!("no <{name}> in {body}"))
            + open.len();
        let end = body[start..].find(&format!("</{name}>")).unwrap() + start;
        body[start..end]
            .trim_start_matches("<![CDATA[")
            .trim_end_matches("]]>")
            .to_owned()
    };
    Envelope {
        encrypt: inner("Encrypt"),
        signature: inner("MsgSignature"),
        timestamp: inner("TimeStamp"),
        nonce: inner("Nonce"),
    }
}

#[tokio::test]
async fn documented_wecom_handshakes() {
    for vector in vectors()
        .iter()
        .filter(|v| field(v, "kind") == "echostr_encrypted")
    {
        let wechat = start(vector_layer(vector)).await;
        let echostr: String =
            form_urlencoded::byte_serialize(field(vector, "echostr").as_bytes()).collect();
        let path = format!(
            "/wechat?msg_signature={}&timestamp={}&nonce={}&echostr={echostr}",
            field(vector, "msg_signature"),
            field(vector, "timestamp"),
            field(vector, "nonce"),
        );
        let answer = wechat.send(Method::GET, &path, "").await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}: {}",
            vector["id"],
            answer.body
        );
        assert_eq!(answer.body, field(vector, "respond"));
        // V3a's note: the same parameters with nonce 437374424 must be rejected.
        let tampered = path.replace("nonce=437374425", "nonce=437374424");
        if tampered != path {
            let answer = wechat.send(Method::GET, &tampered, "").await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN);
            assert_eq!(answer.body, "msg_signature does not match");
        }
    }
}

/// A signed safe-mode POST of `encrypted` (any text), as WeChat would send it.
async fn post_encrypted(wechat: &WeChat, token: &str, encrypted: &str) -> common::Answer {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let nonce = NONCE
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string();
    let timestamp = now().to_string();
    let token = Token::new(token).unwrap();
    let msg_signature = Signature::message(&token, &timestamp, &nonce, encrypted);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    );
    let path = format!(
        "/wechat?timestamp={timestamp}&nonce={nonce}&msg_signature={msg_signature}&encrypt_type=aes"
    );
    wechat.send(Method::POST, &path, body).await
}

fn text_xml(content: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[oUserSafe1]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>1</MsgId></xml>",
        now()
    )
}

/// Encrypts raw `content` (already laid out and padded) with `key`, bypassing the crate's
/// own encoder so that malformed plaintexts can be built.
fn raw_encrypt(encoded_key: &str, mut content: Vec<u8>) -> String {
    let key_bytes = BASE64
        .decode(format!("{encoded_key}="))
        .unwrap_or_else(|_| {
            base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
            )
            .decode(format!("{encoded_key}="))
            .unwrap()
        });
    let key: [u8; 32] = key_bytes.try_into().unwrap();
    let iv: [u8; 16] = key[..16].try_into().unwrap();
    let (blocks, rest) = Array::slice_as_chunks_mut(&mut content);
    assert!(rest.is_empty());
    cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into()).encrypt_blocks(blocks);
    BASE64.encode(content)
}

/// WeChat's plaintext layout with a chosen length field, correctly padded.
fn laid_out(length_field: u32, message: &[u8], receive_id: &str) -> Vec<u8> {
    let mut content = vec![7u8; 16];
    content.extend_from_slice(&length_field.to_be_bytes());
    content.extend_from_slice(message);
    content.extend_from_slice(receive_id.as_bytes());
    let fill = 32 - content.len() % 32;
    content.extend(std::iter::repeat_n(fill as u8, fill));
    content
}

#[tokio::test]
async fn bad_encrypted_input_gets_a_clear_4xx_and_the_server_stays_healthy() {
    let wechat = start(safe_layer()).await;
    let message = text_xml("hi");
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "wrong key",
            encrypt(
                &key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                message.as_bytes(),
                APP_ID,
            ),
            StatusCode::BAD_REQUEST,
            "cannot decrypt",
        ),
        (
            "bad base64",
            "@@not base64@@".into(),
            StatusCode::BAD_REQUEST,
            "cannot decrypt: Encrypt is not valid base64",
        ),
        (
            "not whole blocks",
            BASE64.encode([1u8; 40]),
            StatusCode::BAD_REQUEST,
            "cannot decrypt: ciphertext is not a whole number",
        ),
        (
            "length past the data",
            raw_encrypt(KEY, laid_out(5_000, message.as_bytes(), APP_ID)),
            StatusCode::BAD_REQUEST,
            "cannot decrypt: message length field is out of range",
        ),
        (
            "bad padding",
            raw_encrypt(KEY, {
                let mut content = laid_out(message.len() as u32, message.as_bytes(), APP_ID);
                *content.last_mut().unwrap() = 0;
                content
            }),
            StatusCode::BAD_REQUEST,
            "cannot decrypt: bad padding",
        ),
        (
            "wrong receive id",
            encrypt(&key(KEY), message.as_bytes(), "wxsomeoneelse00000"),
            StatusCode::FORBIDDEN,
            "message is encrypted for another app id",
        ),
        (
            "decrypts but is not a message",
            encrypt(&key(KEY), b"not xml at all", APP_ID),
            StatusCode::BAD_REQUEST,
            "malformed XML",
        ),
    ];
    for (case, encrypted, status, reason) in cases {
        let answer = post_encrypted(&wechat, TOKEN, &encrypted).await;
        assert_eq!(answer.status, status, "{case}: {}", answer.body);
        assert!(answer.body.starts_with(reason), "{case}: {}", answer.body);
    }

    // A msg_signature made with another token.
    let encrypted = encrypt(&key(KEY), message.as_bytes(), APP_ID);
    let answer = post_encrypted(&wechat, "othertoken", &encrypted).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::FORBIDDEN, "msg_signature does not match")
    );

    // An envelope without Encrypt.
    let (timestamp, nonce) = (now().to_string(), "4242".to_owned());
    let msg_signature = Signature::message(&Token::new(TOKEN).unwrap(), &timestamp, &nonce, "");
    let answer = wechat
        .send(
            Method::POST,
            &format!("/wechat?timestamp={timestamp}&nonce={nonce}&msg_signature={msg_signature}&encrypt_type=aes"),
            "<xml><ToUserName>gh</ToUserName></xml>",
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "encrypted callback has no <Encrypt>"
        )
    );

    // encrypt_type=aes without msg_signature.
    let query = wechat.signed_query();
    let answer = wechat
        .send(
            Method::POST,
            &format!("/wechat?{query}&encrypt_type=aes"),
            text_xml("x"),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "missing query parameter `msg_signature`"
        )
    );

    // Still healthy: a good encrypted message is answered.
    let answer = post_encrypted(
        &wechat,
        TOKEN,
        &encrypt(&key(KEY), text_xml("ok").as_bytes(), APP_ID),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.contains("<Encrypt>"));
}

#[tokio::test]
async fn a_previous_key_decrypts_while_replies_use_the_current_one() {
    const OLD: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let layer = VerifyLayer::new(Token::new(TOKEN).unwrap())
        .safe_mode(SafeMode::new(key(KEY), APP_ID).previous_key(key(OLD)));
    let wechat = start(layer).await;
    let encrypted = encrypt(&key(OLD), text_xml("rotating").as_bytes(), APP_ID);
    let answer = post_encrypted(&wechat, TOKEN, &encrypted).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let envelope = tower_wechat_envelope(&answer.body);
    assert!(
        decrypt(&key(OLD), &envelope.encrypt).is_err() || {
            // A wrong key can, rarely, still unpad; the receive id then cannot match.
            decrypt(&key(OLD), &envelope.encrypt).unwrap().receive_id != APP_ID
        }
    );
    let reply = decrypt(&key(KEY), &envelope.encrypt).unwrap();
    assert_eq!(reply.receive_id, APP_ID);
    let reply = Reply::parse(&reply.message).unwrap();
    assert_eq!(
        reply.content(),
        Some(&ReplyContent::text("You said: rotating"))
    );
}

/// The reviewer's downgrade: with safe mode on, a plain-signed query (seen in a log) must not
/// carry a forged plaintext body past the layer.
#[tokio::test]
async fn safe_mode_refuses_plain_messages_unless_opted_in() {
    let wechat = start(safe_layer()).await;
    let answer = wechat
        .deliver(&common::text_message("FORGED: transfer all", 5))
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "missing query parameter `msg_signature`"
        )
    );
    // The plain handshake (how Official Accounts verify the URL in safe mode too) still works.
    assert_eq!(wechat.handshake("123").await.body, "123");

    let lenient = VerifyLayer::new(Token::new(TOKEN).unwrap())
        .safe_mode(SafeMode::new(key(KEY), APP_ID).accept_plain_mode());
    let wechat = start(lenient).await;
    let answer = wechat.deliver(&common::text_message("plain", 6)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("You said: plain"));
    assert!(!answer.body.contains("<Encrypt>"));
}

/// The reviewer's openid swap: the unsigned `openid` must be the signed sender.
#[tokio::test]
async fn an_openid_that_is_not_the_sender_is_refused() {
    let wechat = start(safe_layer()).await;
    let encrypted = encrypt(&key(KEY), text_xml("x").as_bytes(), APP_ID);
    let (timestamp, nonce) = (now().to_string(), "77001".to_owned());
    let msg_signature =
        Signature::message(&Token::new(TOKEN).unwrap(), &timestamp, &nonce, &encrypted);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    );
    let path = format!(
        "/wechat?timestamp={timestamp}&nonce={nonce}&msg_signature={msg_signature}&encrypt_type=aes"
    );
    let answer = wechat
        .send(
            Method::POST,
            &format!("{path}&openid=oMallory999"),
            body.clone(),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::FORBIDDEN, "openid does not match FromUserName")
    );
    let answer = wechat
        .send(Method::POST, &format!("{path}&openid=oUserSafe1"), body)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn without_a_key_encrypted_callbacks_name_the_missing_setting() {
    let wechat = start(VerifyLayer::new(Token::new(TOKEN).unwrap())).await;
    let encrypted = encrypt(&key(KEY), text_xml("x").as_bytes(), APP_ID);
    let answer = post_encrypted(&wechat, TOKEN, &encrypted).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "message is encrypted (safe mode) but no EncodingAESKey is configured"
        )
    );
}
