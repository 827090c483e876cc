//! The state every service of one [`VerifyLayer`](super::VerifyLayer) shares: its settings,
//! the nonce memory, and the checks made with them.

use std::fmt;
use std::time::Duration;

use subtle::Choice;

use crate::message::Format;
use crate::signature::{Signature, Token};

use super::query::RawQuery;
use super::rejection::{Rejection, RejectionLog};
use super::replay::{Delivery, ReplayGuard};
#[cfg(feature = "crypto")]
use super::safe_mode::SafeMode;

/// What one remembered timestamp + nonce pair costs; see
/// [`VerifyLayer::NONCE_BYTES_PER_PAIR`](super::VerifyLayer::NONCE_BYTES_PER_PAIR).
pub(crate) const NONCE_BYTES_PER_PAIR: usize = 48;

/// What the query proved.
pub(crate) struct Verified {
    pub(crate) timestamp: u64,
    /// The query says the message is encrypted (`msg_signature` or `encrypt_type=aes`).
    pub(crate) encrypted: bool,
    /// A `msg_signature` to check over the body's `Encrypt`, in safe mode.
    pub(crate) pending: Option<PendingSignature>,
}

/// A `msg_signature` that can only be checked once the encrypted text is known.
#[cfg_attr(not(feature = "crypto"), allow(dead_code))]
pub(crate) struct PendingSignature {
    pub(crate) msg_signature: Signature,
    pub(crate) timestamp_text: String,
}

/// The settings, the nonce memory and the rejection counters.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    replay: ReplayGuard,
    pub(crate) rejections: RejectionLog,
}

/// What the builder sets.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) tokens: Vec<Token>,
    #[cfg(feature = "crypto")]
    pub(crate) safe_mode: Option<SafeMode>,
    pub(crate) window: Option<Duration>,
    pub(crate) nonce_capacity: usize,
    pub(crate) nonce_bytes: usize,
    pub(crate) refuse_repeats: bool,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Option<Duration>,
}

impl Shared {
    /// The state for `settings`, with an empty nonce memory.
    pub(crate) fn new(settings: Settings) -> Self {
        let by_bytes = settings.nonce_bytes / NONCE_BYTES_PER_PAIR;
        let replay = ReplayGuard::new(
            settings.window,
            settings.nonce_capacity.min(by_bytes),
            settings.refuse_repeats,
        );
        Self {
            settings,
            replay,
            rejections: RejectionLog::default(),
        }
    }

    pub(crate) fn body_limit(&self) -> usize {
        self.settings.body_limit
    }

    /// The body-read deadline, counted from the request's arrival.
    pub(crate) fn body_timeout(&self) -> Option<Duration> {
        self.settings.body_timeout
    }

    /// Checks what the query alone can prove: the plain `signature` (when sent) against
    /// every token, and the timestamp window. A `msg_signature` is returned pending, to be
    /// checked over the body's `Encrypt` (or the `echostr`).
    pub(crate) fn verify(&self, query: &RawQuery<'_>) -> Result<Verified, Rejection> {
        let parts = query.signed_parts()?;
        if let Some(signature) = &parts.signature {
            let matched = self.any_token(|token| {
                Signature::plain(token, parts.timestamp_text, parts.nonce).verify(signature)
            });
            if !matched {
                return Err(Rejection::SignatureMismatch);
            }
        }
        let encrypted =
            parts.msg_signature.is_some() || query.encrypt_type.as_deref() == Some("aes");
        let pending = match (encrypted, self.has_safe_mode(), parts.msg_signature) {
            (false, _, _) => None,
            (true, true, Some(msg_signature)) => Some(PendingSignature {
                msg_signature,
                timestamp_text: parts.timestamp_text.to_owned(),
            }),
            (true, true, None) => return Err(Rejection::MissingParameter("msg_signature")),
            // Compatibility mode without a key: the plain signature was checked, and the
            // body's plaintext fields are used as in plain mode.
            (true, false, _) if parts.signature.is_some() => None,
            (true, false, _) => return Err(Rejection::EncryptedWithoutKey),
        };
        self.replay
            .check_window(parts.timestamp)
            .map_err(|_| Rejection::StaleTimestamp)?;
        Ok(Verified {
            timestamp: parts.timestamp,
            encrypted,
            pending,
        })
    }

    /// Whether `matches` holds for any token. Every token is tried, so timing does not tell
    /// which one matched.
    fn any_token(&self, matches: impl Fn(&Token) -> bool) -> bool {
        let matched = self
            .settings
            .tokens
            .iter()
            .fold(Choice::from(0), |matched, token| {
                matched | Choice::from(u8::from(matches(token)))
            });
        matched.into()
    }

    /// Safe mode is on and plain-mode messages were not opted into.
    pub(crate) fn refuses_plain_messages(&self) -> bool {
        #[cfg(feature = "crypto")]
        return self
            .settings
            .safe_mode
            .as_ref()
            .is_some_and(|safe_mode| !safe_mode.accepts_plain());
        #[cfg(not(feature = "crypto"))]
        return false;
    }

    fn has_safe_mode(&self) -> bool {
        #[cfg(feature = "crypto")]
        return self.settings.safe_mode.is_some();
        #[cfg(not(feature = "crypto"))]
        return false;
    }

    /// Checks a pending `msg_signature` over `encrypted` and decrypts it.
    #[cfg(feature = "crypto")]
    pub(crate) fn open(
        &self,
        pending: &PendingSignature,
        nonce: &str,
        encrypted: &str,
    ) -> Result<Vec<u8>, Rejection> {
        let signed = self.any_token(|token| {
            Signature::message(token, &pending.timestamp_text, nonce, encrypted)
                .verify(&pending.msg_signature)
        });
        if !signed {
            return Err(Rejection::MessageSignatureMismatch);
        }
        match &self.settings.safe_mode {
            Some(safe_mode) => safe_mode.open(encrypted),
            None => Err(Rejection::EncryptedWithoutKey),
        }
    }

    /// Without the `crypto` feature nothing is ever pending.
    #[cfg(not(feature = "crypto"))]
    pub(crate) fn open(
        &self,
        _pending: &PendingSignature,
        _nonce: &str,
        _encrypted: &str,
    ) -> Result<Vec<u8>, Rejection> {
        Err(Rejection::EncryptedWithoutKey)
    }

    /// Encrypts a passive reply with the current key, signed with the first token, into the
    /// envelope of `format`; `None` without safe mode.
    pub(crate) fn seal(&self, reply: &[u8], format: Format) -> Option<String> {
        #[cfg(feature = "crypto")]
        return self
            .settings
            .safe_mode
            .as_ref()
            .map(|safe_mode| safe_mode.seal(&self.settings.tokens[0], reply, format));
        #[cfg(not(feature = "crypto"))]
        {
            let _ = (reply, format);
            None
        }
    }

    /// Records the verified pair with `body`; `true` when it is an identical repeat.
    pub(crate) fn remember(
        &self,
        timestamp: u64,
        nonce: &str,
        body: &[u8],
    ) -> Result<bool, Rejection> {
        let fingerprint = self.replay.fingerprint(body);
        match self.replay.remember(timestamp, nonce, fingerprint) {
            Ok(delivery) => Ok(delivery == Delivery::Repeat),
            Err(_) => Err(Rejection::ReplayedNonce),
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.settings;
        f.debug_struct("VerifyLayer")
            .field("tokens", &settings.tokens.len())
            .field("timestamp_window", &settings.window)
            .field("nonce_cache_capacity", &settings.nonce_capacity)
            .field("nonce_cache_bytes", &settings.nonce_bytes)
            .field("refuse_identical_repeats", &settings.refuse_repeats)
            .field("safe_mode", &self.has_safe_mode())
            .field("body_limit", &settings.body_limit)
            .field("body_timeout", &settings.body_timeout)
            .finish()
    }
}
