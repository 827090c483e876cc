//! [`VerifyLayer`]: the settings and builder of [`Verify`], and its `Layer` impl.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::signature::Token;

use super::handle::VerifyHandle;
#[cfg(feature = "crypto")]
use super::safe_mode::SafeMode;
use super::service::Verify;
use super::state::{Settings, Shared};

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

impl VerifyLayer {
    /// How far a timestamp may be from the server's clock by default: 300 s.
    pub const DEFAULT_TIMESTAMP_WINDOW: Duration = Duration::from_secs(300);
    /// How many timestamp + nonce pairs are remembered by default: 100 000, within
    /// [`Self::DEFAULT_NONCE_CACHE_BYTES`].
    pub const DEFAULT_NONCE_CAPACITY: usize = 100_000;
    /// The nonce memory's default byte budget: 4 MiB.
    pub const DEFAULT_NONCE_CACHE_BYTES: usize = 4 * 1024 * 1024;
    /// What one remembered pair costs, counted against the byte budget: a keyed 64-bit hash
    /// of the pair and one of the body in a hash map, and its place in the eviction queue,
    /// with the slack of both growing by doubling. Nonces are hashed, so a pair's cost does
    /// not depend on what the request held.
    pub const NONCE_BYTES_PER_PAIR: usize = super::state::NONCE_BYTES_PER_PAIR;
    /// The default body-read deadline: 3 s from the request's arrival (feature
    /// `body-timeout`). WeChat sends its few KiB at once and gives up after 5 s, so a body
    /// still arriving after 3 s is not WeChat's; answering 408 then frees the connection
    /// with time to spare.
    #[cfg(feature = "body-timeout")]
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(3);
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
            nonce_bytes: Self::DEFAULT_NONCE_CACHE_BYTES,
            refuse_repeats: false,
            body_limit: Self::DEFAULT_BODY_LIMIT,
            #[cfg(feature = "body-timeout")]
            body_timeout: Some(Self::DEFAULT_BODY_TIMEOUT),
            #[cfg(not(feature = "body-timeout"))]
            body_timeout: None,
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
    /// a forgotten pair inside the window is no longer refused. The bound is the smaller of
    /// `capacity` and what [`nonce_cache_bytes`](Self::nonce_cache_bytes) allows (by default
    /// 87 381 pairs: 290 s of traffic at 300 callbacks per second).
    pub fn nonce_cache_capacity(self, capacity: usize) -> Self {
        self.with(|settings| settings.nonce_capacity = capacity)
    }

    /// The nonce memory's byte budget (default [`Self::DEFAULT_NONCE_CACHE_BYTES`]): it holds
    /// at most `bytes /` [`Self::NONCE_BYTES_PER_PAIR`] pairs, and forgets the oldest past
    /// that, as described in [`nonce_cache_capacity`](Self::nonce_cache_capacity).
    ///
    /// ```
    /// use tower_wechat::{Token, VerifyLayer};
    ///
    /// // About 21 000 pairs.
    /// let layer = VerifyLayer::new(Token::new("mytoken").unwrap()).nonce_cache_bytes(1 << 20);
    /// # let _ = layer;
    /// ```
    pub fn nonce_cache_bytes(self, bytes: usize) -> Self {
        self.with(|settings| settings.nonce_bytes = bytes)
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

    /// Gives up reading a body that has not fully arrived `timeout` after the request did
    /// (counted from [`Arrival`](crate::hook::Arrival): TimingLayer's clock, else when this
    /// layer got the request), answering 408 and closing the connection. Default
    /// [`Self::DEFAULT_BODY_TIMEOUT`].
    ///
    /// This is what cuts off a client that sends its body slowly (or an endless chunked one)
    /// whatever server runs the layer. In safe mode the `msg_signature` covers the body, so
    /// the body must be read before anything proves the request came from WeChat: the limit
    /// and this deadline bound what an unsigned request can cost. The timer runs on tokio
    /// and is only made for a body that is not there at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_wechat::{Token, VerifyLayer};
    ///
    /// let layer = VerifyLayer::new(Token::new("mytoken").unwrap())
    ///     .body_timeout(Duration::from_secs(2));
    /// # let _ = layer;
    /// ```
    #[cfg(feature = "body-timeout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "body-timeout")))]
    pub fn body_timeout(self, timeout: Duration) -> Self {
        self.with(|settings| settings.body_timeout = Some(timeout))
    }

    /// Reads bodies without a deadline (the server's own timeouts, if any, still apply).
    ///
    /// ```
    /// use tower_wechat::{Token, VerifyLayer};
    ///
    /// let layer = VerifyLayer::new(Token::new("mytoken").unwrap()).disable_body_timeout();
    /// # let _ = layer;
    /// ```
    pub fn disable_body_timeout(self) -> Self {
        self.with(|settings| settings.body_timeout = None)
    }

    /// This layer's rejection counters (take it after the last builder call: each builder
    /// method makes a layer with fresh state).
    ///
    /// ```
    /// use tower_wechat::{Token, VerifyLayer};
    ///
    /// let layer = VerifyLayer::new(Token::new("mytoken").unwrap());
    /// assert_eq!(layer.handle().stats().rejected, 0);
    /// ```
    pub fn handle(&self) -> VerifyHandle {
        VerifyHandle::new(self.shared.clone())
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings.clone();
        change(&mut settings);
        Self::from_settings(settings)
    }

    fn from_settings(settings: Settings) -> Self {
        Self {
            shared: Arc::new(Shared::new(settings)),
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

impl<S> Verify<S> {
    /// Wraps `inner` with the default settings for `token`.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_wechat::{Token, Verify};
    ///
    /// let service = Verify::new(
    ///     service_fn(|_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
    ///     }),
    ///     Token::new("mytoken").unwrap(),
    /// );
    /// # let _ = service;
    /// ```
    pub fn new(inner: S, token: Token) -> Self {
        VerifyLayer::new(token).layer(inner)
    }

    /// A [`VerifyLayer`] with the default settings for `token`.
    ///
    /// ```
    /// use tower_wechat::{Token, Verify};
    ///
    /// let layer = Verify::<()>::layer(Token::new("mytoken").unwrap());
    /// # let _ = layer;
    /// ```
    pub fn layer(token: Token) -> VerifyLayer {
        VerifyLayer::new(token)
    }
}

impl fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}
