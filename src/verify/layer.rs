//! [`VerifyLayer`]: configuration for [`Verify`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use subtle::Choice;
use tower_layer::Layer;

use crate::signature::{Signature, Token};

use super::Verify;
use super::query::RawQuery;
use super::rejection::Rejection;
use super::replay::{Delivery, ReplayGuard};
#[cfg(feature = "crypto")]
use super::safe_mode::SafeMode;

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

/// Applies [`Verify`] to a service: checks WeChat's signature, answers the GET handshake,
/// refuses replays and oversized bodies, and parses the XML message once.
///
/// One layer shares one nonce memory between every service it builds (axum's `Router::layer`
/// builds one per route), so clone the layer rather than building it twice.
///
/// # Example
///
/// ```
/// use tower_wechat::{Token, VerifyLayer};
/// use std::time::Duration;
///
/// let layer = VerifyLayer::new(Token::new("mytoken").unwrap())
///     .also_accept(Token::new("oldtoken").unwrap()) // during a token change
///     .timestamp_window(Duration::from_secs(120))
///     .body_limit(32 * 1024);
/// # let _ = layer;
/// ```
#[derive(Clone)]
#[must_use]
pub struct VerifyLayer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    settings: Settings,
    replay: ReplayGuard,
}

#[derive(Clone)]
struct Settings {
    tokens: Vec<Token>,
    #[cfg(feature = "crypto")]
    safe_mode: Option<SafeMode>,
    window: Option<Duration>,
    nonce_capacity: usize,
    refuse_repeats: bool,
    body_limit: usize,
}

impl VerifyLayer {
    /// How far a timestamp may be from the server's clock by default: 300 s.
    pub const DEFAULT_TIMESTAMP_WINDOW: Duration = Duration::from_secs(300);
    /// How many timestamp + nonce pairs are remembered by default: 100 000 (about 4 MB).
    pub const DEFAULT_NONCE_CAPACITY: usize = 100_000;
    /// The default body limit: 64 KiB. WeChat's largest pushes (mass-send reports) are a
    /// few KiB; text messages are limited to 2 048 bytes of content.
    pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

    /// A layer that accepts callbacks signed with `token`, with replay protection on and
    /// the default limits.
    pub fn new(token: Token) -> Self {
        Self::from_settings(Settings {
            tokens: vec![token],
            #[cfg(feature = "crypto")]
            safe_mode: None,
            window: Some(Self::DEFAULT_TIMESTAMP_WINDOW),
            nonce_capacity: Self::DEFAULT_NONCE_CAPACITY,
            refuse_repeats: false,
            body_limit: Self::DEFAULT_BODY_LIMIT,
        })
    }

    /// Also accepts signatures made with `token`, so the token can be changed in the WeChat
    /// console without refusing callbacks signed with the other one in the meantime.
    pub fn also_accept(self, token: Token) -> Self {
        self.with(|settings| settings.tokens.push(token))
    }

    /// Handles safe mode and compatibility mode: checks `msg_signature` over `Encrypt`,
    /// decrypts the message (the handler sees the plaintext XML, and the parsed
    /// [`Message`](crate::Message), exactly as in plain mode), checks its receive id, and
    /// encrypts the handler's passive reply on the way out (`success` and empty answers go
    /// out as they are). Answers WeCom's encrypted URL handshake too. Plain-mode messages
    /// are refused (400, missing `msg_signature`) unless
    /// [`SafeMode::accept_plain_mode`] is set, e.g. while switching the console's mode.
    ///
    /// ```
    /// use tower_wechat::crypto::EncodingAesKey;
    /// use tower_wechat::verify::SafeMode;
    /// use tower_wechat::{Token, VerifyLayer};
    ///
    /// let key = EncodingAesKey::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
    /// let layer = VerifyLayer::new(Token::new("mytoken").unwrap())
    ///     .safe_mode(SafeMode::new(key, "wx1234567890abcdef"));
    /// # let _ = layer;
    /// ```
    #[cfg(feature = "crypto")]
    #[cfg_attr(docsrs, doc(cfg(feature = "crypto")))]
    pub fn safe_mode(self, safe_mode: SafeMode) -> Self {
        self.with(|settings| settings.safe_mode = Some(safe_mode))
    }

    /// Refuses timestamps further than `window` from the server's clock, either way
    /// (default [`Self::DEFAULT_TIMESTAMP_WINDOW`]).
    pub fn timestamp_window(self, window: Duration) -> Self {
        self.with(|settings| settings.window = Some(window))
    }

    /// Accepts any timestamp, e.g. to replay WeChat's documented samples. Nonces are still
    /// remembered (until evicted) unless [`nonce_cache_capacity`](Self::nonce_cache_capacity)
    /// is 0.
    pub fn disable_timestamp_window(self) -> Self {
        self.with(|settings| settings.window = None)
    }

    /// How many timestamp + nonce pairs to remember (default
    /// [`Self::DEFAULT_NONCE_CAPACITY`]); 0 turns the reused-nonce check off.
    ///
    /// Each accepted pair is remembered with a fingerprint of its body. The same pair with a
    /// different body is refused (403): in plain mode the body is not signed, so that is a
    /// captured query reused with a forged message. A byte-identical repeat is let through
    /// with [`CallbackQuery::redelivered`](super::CallbackQuery::redelivered) set, because
    /// WeChat's own retries of a slow or failed delivery reuse the signed query; see
    /// [`refuse_identical_repeats`](Self::refuse_identical_repeats).
    ///
    /// A pair is remembered until its timestamp leaves the window. At the bound the oldest
    /// pair is forgotten (and a warning logged once): memory stays bounded, and a replay of
    /// a forgotten pair inside the window is no longer refused. The default holds 300 s of
    /// traffic at 330 callbacks per second.
    pub fn nonce_cache_capacity(self, capacity: usize) -> Self {
        self.with(|settings| settings.nonce_capacity = capacity)
    }

    /// Refuses byte-identical repeats of an accepted request too (403).
    ///
    /// WeChat retries a delivery that was not answered in 5 s, or answered with an error,
    /// with the same signed query and body. With this set, those retries are refused, so a
    /// message whose first attempt failed is lost and the user sees "该公众号暂时无法提供服务".
    /// Use it only where every callback is answered in time.
    pub fn refuse_identical_repeats(self) -> Self {
        self.with(|settings| settings.refuse_repeats = true)
    }

    /// The largest body accepted, in bytes (default [`Self::DEFAULT_BODY_LIMIT`]); larger
    /// ones get 413. Checked against `Content-Length` first and while reading.
    pub fn body_limit(self, bytes: usize) -> Self {
        self.with(|settings| settings.body_limit = bytes)
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings.clone();
        change(&mut settings);
        Self::from_settings(settings)
    }

    fn from_settings(settings: Settings) -> Self {
        let replay = ReplayGuard::new(
            settings.window,
            settings.nonce_capacity,
            settings.refuse_repeats,
        );
        Self {
            shared: Arc::new(Shared { settings, replay }),
        }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Verify {
            inner,
            shared: self.shared.clone(),
        }
    }
}

impl Shared {
    pub(crate) fn body_limit(&self) -> usize {
        self.settings.body_limit
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

    /// Encrypts a passive reply with the current key, signed with the first token; `None`
    /// without safe mode.
    pub(crate) fn seal(&self, reply_xml: &[u8]) -> Option<String> {
        #[cfg(feature = "crypto")]
        return self
            .settings
            .safe_mode
            .as_ref()
            .map(|safe_mode| safe_mode.seal(&self.settings.tokens[0], reply_xml));
        #[cfg(not(feature = "crypto"))]
        {
            let _ = reply_xml;
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

impl fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.settings;
        f.debug_struct("VerifyLayer")
            .field("tokens", &settings.tokens.len())
            .field("timestamp_window", &settings.window)
            .field("nonce_cache_capacity", &settings.nonce_capacity)
            .field("refuse_identical_repeats", &settings.refuse_repeats)
            .field("safe_mode", &self.has_safe_mode())
            .field("body_limit", &settings.body_limit)
            .finish()
    }
}
