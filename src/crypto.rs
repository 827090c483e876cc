//! WeChat's safe-mode message encryption ("安全模式"), as pure functions.
//!
//! The scheme, shared by Official Accounts, WeCom and Mini Programs:
//!
//! - the 43-character EncodingAESKey, with `=` appended, base64-decodes to a 32-byte AES-256
//!   key; many real keys have non-zero trailing bits, so decoding is lenient about them;
//! - AES-256-CBC, with the key's first 16 bytes as the IV;
//! - PKCS#7 padding to **32-byte** blocks (pad bytes 1 to 32);
//! - plaintext = 16 random bytes ‖ 4-byte big-endian message length ‖ message ‖ receive id
//!   (the app id for Official Accounts, the CorpID for WeCom, the suite id for third-party
//!   apps);
//! - the result is base64-encoded into `Encrypt`, and signed by `msg_signature` (see
//!   [`Signature::message`](crate::signature::Signature::message)).
//!
//! ```
//! use tower_wechat::crypto::{EncodingAesKey, decrypt, encrypt};
//!
//! let key = EncodingAesKey::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
//! let encrypted = encrypt(&key, b"<xml>hello</xml>", "wxb11529c136998cb6");
//! let decrypted = decrypt(&key, &encrypted).unwrap();
//! assert_eq!(decrypted.message, b"<xml>hello</xml>");
//! assert_eq!(decrypted.receive_id, "wxb11529c136998cb6");
//! ```

use std::fmt;

use aes::Aes256;
use aes::cipher::array::Array;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::signature::{Signature, Token};

/// Standard base64 that accepts non-zero trailing bits and optional padding: WeChat's own
/// sample keys need it.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard base64 with padding, as WeChat writes it.
const STRICT: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// WeChat pads to 32-byte blocks, not AES's 16.
const PAD_BLOCK: usize = 32;
const RANDOM_LEN: usize = 16;
const LENGTH_LEN: usize = 4;

/// A decoded EncodingAESKey. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodingAesKey([u8; 32]);

impl EncodingAesKey {
    /// Decodes the 43-character key from the WeChat console.
    pub fn new(encoded: &str) -> Result<Self, InvalidAesKey> {
        let encoded = encoded.as_bytes();
        if encoded.len() != 43 {
            return Err(InvalidAesKey::Length(encoded.len()));
        }
        let mut key = [0u8; 32];
        match LENIENT.decode_slice(encoded, &mut key) {
            Ok(32) => Ok(Self(key)),
            _ => Err(InvalidAesKey::Base64),
        }
    }

    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.0[..16]);
        iv
    }
}

impl fmt::Debug for EncodingAesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncodingAesKey(<redacted>)")
    }
}

/// Why an EncodingAESKey was refused. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidAesKey {
    /// The key is not 43 characters long (the length it had).
    Length(usize),
    /// The key is not base64.
    Base64,
}

impl fmt::Display for InvalidAesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length(len) => write!(f, "EncodingAESKey must be 43 characters, got {len}"),
            Self::Base64 => f.write_str("EncodingAESKey is not valid base64"),
        }
    }
}

impl std::error::Error for InvalidAesKey {}

/// A decrypted message and the receive id it was encrypted for. `Debug` shows the message's
/// length, not its content (which names the user).
#[derive(Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The message (for callbacks, the plaintext XML).
    pub message: Vec<u8>,
    /// The app id, CorpID or suite id appended after the message.
    pub receive_id: String,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("message", &format_args!("<{} bytes>", self.message.len()))
            .field("receive_id", &self.receive_id)
            .finish()
    }
}

/// Why an `Encrypt` text could not be decrypted. Never contains key or plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// `Encrypt` is not base64.
    Base64,
    /// The ciphertext is empty or not a whole number of 32-byte blocks.
    CiphertextLength,
    /// The padding is not PKCS#7 over 32-byte blocks (often: the wrong key).
    Padding,
    /// The length field points past the end of the data (often: the wrong key).
    MessageLength,
    /// The receive id is not UTF-8.
    ReceiveId,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Base64 => "Encrypt is not valid base64",
            Self::CiphertextLength => "ciphertext is not a whole number of 32-byte blocks",
            Self::Padding => "bad padding after decryption (wrong EncodingAESKey?)",
            Self::MessageLength => "message length field is out of range (wrong EncodingAESKey?)",
            Self::ReceiveId => "receive id is not UTF-8",
        })
    }
}

impl std::error::Error for CryptoError {}

/// Decrypts a base64 `Encrypt` text.
///
/// The receive id is returned, not checked: compare it with your app id or CorpID.
pub fn decrypt(key: &EncodingAesKey, encrypted: &str) -> Result<Decrypted, CryptoError> {
    let mut buffer = LENIENT
        .decode(encrypted.trim().as_bytes())
        .map_err(|_| CryptoError::Base64)?;
    if buffer.is_empty() || buffer.len() % PAD_BLOCK != 0 {
        return Err(CryptoError::CiphertextLength);
    }
    let (blocks, rest) = Array::slice_as_chunks_mut(&mut buffer);
    debug_assert!(rest.is_empty());
    cbc::Decryptor::<Aes256>::new(&key.0.into(), &key.iv().into()).decrypt_blocks(blocks);

    let pad = usize::from(*buffer.last().unwrap_or(&0));
    if !(1..=PAD_BLOCK).contains(&pad) || buffer.len() < pad {
        return Err(CryptoError::Padding);
    }
    let content_len = buffer.len() - pad;
    if buffer[content_len..]
        .iter()
        .any(|&byte| usize::from(byte) != pad)
    {
        return Err(CryptoError::Padding);
    }
    let content = &buffer[..content_len];
    let header = RANDOM_LEN + LENGTH_LEN;
    if content.len() < header {
        return Err(CryptoError::MessageLength);
    }
    let mut length = [0u8; LENGTH_LEN];
    length.copy_from_slice(&content[RANDOM_LEN..header]);
    let message_len = u32::from_be_bytes(length) as usize;
    if message_len > content.len() - header {
        return Err(CryptoError::MessageLength);
    }
    let (message, receive_id) = content[header..].split_at(message_len);
    let receive_id = std::str::from_utf8(receive_id).map_err(|_| CryptoError::ReceiveId)?;
    Ok(Decrypted {
        receive_id: receive_id.to_owned(),
        message: message.to_vec(),
    })
}

/// Encrypts `message` for `receive_id` with 16 fresh random bytes from the OS.
pub fn encrypt(key: &EncodingAesKey, message: &[u8], receive_id: &str) -> String {
    encrypt_with_random(key, message, receive_id, &random_bytes())
}

/// `N` bytes from the operating system's random number generator, in one call.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut random = [0u8; N];
    // The OS RNG failing is not recoverable, and going on would make replies predictable.
    getrandom::fill(&mut random).expect("the operating system's random number generator failed");
    random
}

/// Encrypts with the given 16 "random" bytes: deterministic, for tests and test vectors.
/// Use [`encrypt`] for real replies.
pub fn encrypt_with_random(
    key: &EncodingAesKey,
    message: &[u8],
    receive_id: &str,
    random: &[u8; 16],
) -> String {
    let content_len = RANDOM_LEN + LENGTH_LEN + message.len() + receive_id.len();
    let pad = PAD_BLOCK - content_len % PAD_BLOCK;
    let mut buffer = Vec::with_capacity(content_len + pad);
    buffer.extend_from_slice(random);
    // WeChat messages are far below 4 GiB; a longer one could not be sent anyway.
    buffer.extend_from_slice(&(message.len() as u32).to_be_bytes());
    buffer.extend_from_slice(message);
    buffer.extend_from_slice(receive_id.as_bytes());
    buffer.resize(content_len + pad, pad as u8);
    let (blocks, _) = Array::slice_as_chunks_mut(&mut buffer);
    cbc::Encryptor::<Aes256>::new(&key.0.into(), &key.iv().into()).encrypt_blocks(blocks);
    STRICT.encode(&buffer)
}

/// `content` padded and encrypted as it is, for the fuzz targets.
#[cfg(fuzzing)]
pub(crate) fn encrypt_raw(key: &EncodingAesKey, content: &[u8]) -> String {
    let pad = PAD_BLOCK - content.len() % PAD_BLOCK;
    let mut buffer = content.to_vec();
    buffer.resize(content.len() + pad, pad as u8);
    let (blocks, _) = Array::slice_as_chunks_mut(&mut buffer);
    cbc::Encryptor::<Aes256>::new(&key.0.into(), &key.iv().into()).encrypt_blocks(blocks);
    STRICT.encode(&buffer)
}

/// Seals a passive reply for safe mode: encrypts `reply_xml` for `receive_id` and wraps it in
/// WeChat's envelope, signed with `token`:
///
/// ```text
/// <xml><Encrypt><![CDATA[…]]></Encrypt><MsgSignature><![CDATA[…]]></MsgSignature>
/// <TimeStamp>…</TimeStamp><Nonce><![CDATA[…]]></Nonce></xml>
/// ```
pub fn seal_reply(
    key: &EncodingAesKey,
    token: &Token,
    receive_id: &str,
    reply_xml: &[u8],
    timestamp: u64,
    nonce: &str,
) -> String {
    seal_reply_with_random(
        key,
        token,
        receive_id,
        reply_xml,
        timestamp,
        nonce,
        &random_bytes(),
    )
}

/// [`seal_reply`] with fixed "random" bytes: deterministic, for tests and test vectors.
pub fn seal_reply_with_random(
    key: &EncodingAesKey,
    token: &Token,
    receive_id: &str,
    reply_xml: &[u8],
    timestamp: u64,
    nonce: &str,
    random: &[u8; 16],
) -> String {
    let encrypted = encrypt_with_random(key, reply_xml, receive_id, random);
    envelope(token, &encrypted, timestamp, nonce)
}

/// Seals a passive reply to a JSON callback (Mini Programs, stores): as [`seal_reply`], in
/// WeChat's JSON envelope:
///
/// ```text
/// {"Encrypt":"…","MsgSignature":"…","TimeStamp":1714112445,"Nonce":"…"}
/// ```
///
/// ```
/// use tower_wechat::crypto::{EncodingAesKey, decrypt, seal_reply_json};
/// use tower_wechat::signature::Token;
///
/// let key = EncodingAesKey::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
/// let token = Token::new("pamtest").unwrap();
/// let reply = br#"{"ToUserName":"oUser","FromUserName":"gh_1","CreateTime":1,"MsgType":"text","Content":"hi"}"#;
/// let envelope = seal_reply_json(&key, &token, "wx1234", reply, 1714112445, "42");
/// let envelope: serde_json::Value = serde_json::from_str(&envelope).unwrap();
/// assert_eq!(envelope["TimeStamp"], 1714112445);
/// let opened = decrypt(&key, envelope["Encrypt"].as_str().unwrap()).unwrap();
/// assert_eq!(opened.message, reply);
/// ```
pub fn seal_reply_json(
    key: &EncodingAesKey,
    token: &Token,
    receive_id: &str,
    reply_json: &[u8],
    timestamp: u64,
    nonce: &str,
) -> String {
    seal_reply_json_with_random(
        key,
        token,
        receive_id,
        reply_json,
        timestamp,
        nonce,
        &random_bytes(),
    )
}

/// [`seal_reply_json`] with fixed "random" bytes: deterministic, for tests and test vectors.
pub fn seal_reply_json_with_random(
    key: &EncodingAesKey,
    token: &Token,
    receive_id: &str,
    reply_json: &[u8],
    timestamp: u64,
    nonce: &str,
    random: &[u8; 16],
) -> String {
    let encrypted = encrypt_with_random(key, reply_json, receive_id, random);
    let signature = Signature::message(token, &timestamp.to_string(), nonce, &encrypted);
    // Base64 and hex need no escaping; the nonce is escaped like any JSON string.
    let mut nonce_json = String::with_capacity(nonce.len() + 2);
    crate::message::push_json_string(&mut nonce_json, nonce);
    format!(
        "{{\"Encrypt\":\"{encrypted}\",\"MsgSignature\":\"{signature}\",\
         \"TimeStamp\":{timestamp},\"Nonce\":{nonce_json}}}"
    )
}

fn envelope(token: &Token, encrypted: &str, timestamp: u64, nonce: &str) -> String {
    let timestamp = timestamp.to_string();
    let signature = Signature::message(token, &timestamp, nonce, encrypted);
    // Base64, hex and the digits of a nonce cannot contain `]]>`.
    format!(
        "<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>\
         <MsgSignature><![CDATA[{signature}]]></MsgSignature>\
         <TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn key(encoded: &str) -> EncodingAesKey {
        EncodingAesKey::new(encoded).unwrap()
    }

    #[test]
    fn keys_with_trailing_bits_decode_like_their_canonical_twin() {
        // V12a: both spellings decode to the same 32 bytes.
        assert_eq!(
            key("kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"),
            key("kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aQ")
        );
        assert_eq!(
            key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            EncodingAesKey::from_bytes([0; 32])
        );
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        assert_eq!(EncodingAesKey::new("short"), Err(InvalidAesKey::Length(5)));
        assert_eq!(
            EncodingAesKey::new(&"!".repeat(43)),
            Err(InvalidAesKey::Base64)
        );
        let shown = format!("{:?}", key(SAMPLE_KEY));
        assert!(!shown.contains("abcdef"), "{shown}");
    }

    #[test]
    fn round_trip_with_padding_of_every_size() {
        let key = key(SAMPLE_KEY);
        for len in 0..100 {
            let message = vec![b'x'; len];
            let encrypted = encrypt(&key, &message, "wxid");
            let decrypted = decrypt(&key, &encrypted).unwrap();
            assert_eq!(decrypted.message, message);
            assert_eq!(decrypted.receive_id, "wxid");
        }
    }

    #[test]
    fn fresh_randomness_makes_each_ciphertext_different() {
        let key = key(SAMPLE_KEY);
        assert_ne!(encrypt(&key, b"same", "id"), encrypt(&key, b"same", "id"));
    }

    #[test]
    fn malformed_ciphertexts_are_typed_errors() {
        let key = key(SAMPLE_KEY);
        assert_eq!(decrypt(&key, "not base64!"), Err(CryptoError::Base64));
        assert_eq!(decrypt(&key, ""), Err(CryptoError::CiphertextLength));
        assert_eq!(
            decrypt(&key, &STRICT.encode([0u8; 16])),
            Err(CryptoError::CiphertextLength)
        );
        // The right length, random content: the padding check catches it (or, rarely, the
        // length field); it must never panic.
        let garbage = STRICT.encode([7u8; 64]);
        assert!(decrypt(&key, &garbage).is_err());
    }

    #[test]
    fn a_wrong_key_fails_cleanly() {
        let encrypted = encrypt(&key(SAMPLE_KEY), b"<xml/>", "wxid");
        let wrong = key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert!(decrypt(&wrong, &encrypted).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_message_round_trips(
            message in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            receive_id in "[a-zA-Z0-9_]{0,32}",
            raw_key in proptest::prelude::any::<[u8; 32]>(),
        ) {
            let key = EncodingAesKey::from_bytes(raw_key);
            let decrypted = decrypt(&key, &encrypt(&key, &message, &receive_id)).unwrap();
            proptest::prop_assert_eq!(decrypted.message, message);
            proptest::prop_assert_eq!(decrypted.receive_id, receive_id);
        }

        #[test]
        fn random_input_is_an_error_never_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            text in ".{0,80}",
        ) {
            let key = key(SAMPLE_KEY);
            let _ = decrypt(&key, &STRICT.encode(&bytes));
            let _ = decrypt(&key, &text);
            let _ = EncodingAesKey::new(&text);
        }
    }

    #[test]
    fn a_length_field_past_the_data_is_refused() {
        let key = key(SAMPLE_KEY);
        // Build a plaintext whose length field claims more than there is, then encrypt it raw.
        let mut content = vec![0u8; RANDOM_LEN];
        content.extend_from_slice(&1000u32.to_be_bytes());
        content.extend_from_slice(b"short");
        let pad = PAD_BLOCK - content.len() % PAD_BLOCK;
        content.resize(content.len() + pad, pad as u8);
        let (blocks, _) = Array::slice_as_chunks_mut(&mut content);
        cbc::Encryptor::<Aes256>::new(&key.0.into(), &key.iv().into()).encrypt_blocks(blocks);
        assert_eq!(
            decrypt(&key, &STRICT.encode(&content)),
            Err(CryptoError::MessageLength)
        );
    }
}
