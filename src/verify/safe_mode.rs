//! [`SafeMode`]: the EncodingAESKey(s) and receive id for encrypted callbacks.

use std::fmt;

use crate::crypto::{self, EncodingAesKey};
use crate::message::Format;
use crate::signature::Token;

use super::rejection::Rejection;

/// Settings for safe mode ("安全模式") and compatibility mode: the EncodingAESKey from the
/// WeChat console and the receive id that every encrypted message must carry (the app id
/// for Official Accounts and Mini Programs, the CorpID for WeCom, the suite id for
/// third-party apps).
///
/// During a key change, the previous key can be kept for decryption; replies always use the
/// current key. `Debug` never shows the keys.
///
/// ```
/// use tower_wechat::crypto::EncodingAesKey;
/// use tower_wechat::verify::SafeMode;
///
/// let current = EncodingAesKey::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
/// let previous = EncodingAesKey::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
/// let safe_mode = SafeMode::new(current, "wx1234567890abcdef").previous_key(previous);
/// # let _ = safe_mode;
/// ```
#[derive(Clone)]
#[must_use]
pub struct SafeMode {
    /// The current key first, then previous ones.
    keys: Vec<EncodingAesKey>,
    receive_id: String,
    accept_plain: bool,
}

impl SafeMode {
    /// Safe mode with `key`, accepting messages encrypted for `receive_id`.
    pub fn new(key: EncodingAesKey, receive_id: impl Into<String>) -> Self {
        Self {
            keys: vec![key],
            receive_id: receive_id.into(),
            accept_plain: false,
        }
    }

    /// Also accepts plain-mode messages (signed only by `signature`), e.g. while the
    /// console's message mode is switched. Off by default: in plain mode the body is not
    /// signed, so anyone who has seen one callback URL could post any message with it.
    /// The GET handshake, which WeChat signs the plain way in safe mode too, is always
    /// accepted.
    pub fn accept_plain_mode(mut self) -> Self {
        self.accept_plain = true;
        self
    }

    pub(crate) fn accepts_plain(&self) -> bool {
        self.accept_plain
    }

    /// Also decrypts with `key`, e.g. the key being replaced while WeChat switches over.
    pub fn previous_key(mut self, key: EncodingAesKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Decrypts `encrypted` with the current key, then the previous ones, and checks the
    /// receive id.
    pub(crate) fn open(&self, encrypted: &str) -> Result<Vec<u8>, Rejection> {
        let mut rejection = None;
        for key in &self.keys {
            // A key that is not the sender's can, rarely, still unpad cleanly; so a wrong
            // receive id is only the verdict once every key has been tried.
            let outcome = match crypto::decrypt(key, encrypted) {
                Ok(decrypted) if decrypted.receive_id == self.receive_id => {
                    return Ok(decrypted.message);
                }
                Ok(_) => Rejection::WrongReceiveId,
                Err(error) => Rejection::Decrypt(error),
            };
            if !matches!(rejection, Some(Rejection::WrongReceiveId)) {
                rejection = Some(outcome);
            }
        }
        Err(rejection.unwrap_or(Rejection::Decrypt(crypto::CryptoError::CiphertextLength)))
    }

    /// Encrypts a passive reply into WeChat's envelope of `format` (XML or JSON) with a
    /// fresh timestamp, nonce and random prefix (drawn from the OS in one call).
    pub(crate) fn seal(&self, token: &Token, reply: &[u8], format: Format) -> String {
        let random: [u8; 20] = crypto::random_bytes();
        let (prefix, nonce) = random.split_at(16);
        let nonce = u32::from_le_bytes([nonce[0], nonce[1], nonce[2], nonce[3]]) % 1_000_000_000;
        let seal = match format {
            Format::Xml => crypto::seal_reply_with_random,
            Format::Json => crypto::seal_reply_json_with_random,
        };
        seal(
            &self.keys[0],
            token,
            &self.receive_id,
            reply,
            crate::clock::unix_now(),
            &nonce.to_string(),
            prefix.try_into().expect("16 bytes"),
        )
    }
}

impl fmt::Debug for SafeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeMode")
            .field("keys", &self.keys.len())
            .field("receive_id", &self.receive_id)
            .field("accept_plain_mode", &self.accept_plain)
            .finish()
    }
}
