//! [`CallbackLayer`]: the whole inbound stack in one layer, in the one order that works.
//!
//! ```text
//! request ─► TimingLayer ─► AllowLayer ─► VerifyLayer ─► DedupLayer ─► FastAckLayer ─► handler
//! ```
//!
//! - [`TimingLayer`] outermost, so the latency it logs is what WeChat waits for, rejections
//!   included;
//! - [`AllowLayer`] next (off unless [configured](CallbackLayer::allow)), so requests from
//!   addresses that are not WeChat's are refused before their body is read;
//! - [`VerifyLayer`] next, so nothing unsigned reaches the others, and the [`Message`] they
//!   need is parsed once;
//! - [`DedupLayer`] outside [`FastAckLayer`], so WeChat's retries are answered (waiting for
//!   or replaying the first attempt) without taking a handler slot.
//!
//! Assembled by hand, the order is easy to get wrong: `Router::layer(a).layer(b)` makes `b`
//! the *outer* layer, the reverse of `ServiceBuilder::new().layer(a).layer(b)`. Dedup and
//! FastAck then see requests without a parsed message, pass them through and de-duplicate
//! nothing (each logs one warning naming the fix). `CallbackLayer` builds the stack in
//! the right order and hands back every handle:
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use tower_wechat::{CallbackLayer, Message, MessageKind, Reply, ReplyContent, Token};
//!
//! async fn echo(message: Message) -> Reply {
//!     match &message.kind {
//!         MessageKind::Text { content } => message.reply(ReplyContent::text(content.clone())),
//!         _ => Reply::success(),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = CallbackLayer::new(Token::new(std::env::var("WECHAT_TOKEN")?)?)
//!     .fast_ack(|layer| layer.deadline(Duration::from_millis(3500)));
//! let handle = stack.handle(); // after the last builder call
//! let app = Router::new().route("/wechat", post(echo)).layer(stack);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! let report = handle.shutdown(Duration::from_secs(10)).await; // let handlers finish
//! println!("{} handlers did not finish", report.unfinished);
//! # Ok(())
//! # }
//! ```
//!
//! Each part keeps its own builder: configure it through the closures
//! ([`timing`](CallbackLayer::timing), [`allow`](CallbackLayer::allow),
//! [`verify`](CallbackLayer::verify),
//! [`dedup`](CallbackLayer::dedup), [`fast_ack`](CallbackLayer::fast_ack)). To assemble the
//! layers yourself, list them in this order in a `tower::ServiceBuilder`.

use std::fmt;
use std::time::Duration;

use tower_layer::Layer;

use crate::ack::{FastAck, FastAckHandle, FastAckLayer, ShutdownReport};
use crate::allow::{Allow, AllowHandle, AllowLayer};
use crate::dedup::{Dedup, DedupHandle, DedupLayer, MemoryStore};
use crate::journal::{Handoff, JournalHandle};
use crate::signature::Token;
use crate::timing::{LatencyStats, Timing, TimingLayer};
#[cfg(feature = "crypto")]
use crate::verify::SafeMode;
use crate::verify::{Verify, VerifyHandle, VerifyLayer};
#[cfg(doc)]
use crate::{Message, Reply};

/// The inbound stack, `Timing → Allow → Verify → Dedup → FastAck`, as one layer; see the
/// [module docs](self).
///
/// Defaults: those of each layer — no address check, 300 s timestamp window, 64 KiB bodies, replies kept 5
/// minutes for WeChat's retries in this process's memory, a 4 s ack deadline with at most
/// 1024 handlers in flight, a 1 s latency budget. Every builder method returns a stack with
/// fresh shared state, so take the [`handle`](Self::handle) after the last one, and clone
/// the built layer (not rebuild it) to use it on several routers.
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::{CallbackLayer, Token};
///
/// let stack = CallbackLayer::new(Token::new("mytoken").unwrap())
///     .verify(|verify| verify.body_limit(16 * 1024))
///     .dedup(|dedup| dedup.ttl(Duration::from_secs(600)))
///     .fast_ack(|fast_ack| fast_ack.max_in_flight(256))
///     .timing(|timing| timing.budget(Duration::from_millis(500)));
/// let handle = stack.handle();
/// assert_eq!(handle.fast_ack().max_in_flight(), 256);
/// ```
#[must_use]
pub struct CallbackLayer<St = MemoryStore> {
    timing: TimingLayer,
    allow: AllowLayer,
    verify: VerifyLayer,
    dedup: DedupLayer<St>,
    fast_ack: FastAckLayer,
}

/// The service a [`CallbackLayer`] makes of a handler `S`.
pub type CallbackService<S, St = MemoryStore> = Timing<Allow<Verify<Dedup<FastAck<S>, St>>>>;

impl CallbackLayer<MemoryStore> {
    /// The stack for callbacks signed with `token`, every layer at its defaults.
    pub fn new(token: Token) -> Self {
        Self::with_verify(VerifyLayer::new(token))
    }

    /// The stack around a [`VerifyLayer`] configured already (the other layers at their
    /// defaults).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_wechat::{CallbackLayer, Token, VerifyLayer};
    ///
    /// let verify = VerifyLayer::new(Token::new("mytoken").unwrap())
    ///     .timestamp_window(Duration::from_secs(60));
    /// let stack = CallbackLayer::with_verify(verify);
    /// # let _ = stack;
    /// ```
    pub fn with_verify(verify: VerifyLayer) -> Self {
        Self {
            timing: TimingLayer::new(),
            allow: AllowLayer::off(),
            verify,
            dedup: DedupLayer::new(),
            fast_ack: FastAckLayer::new(),
        }
    }
}

impl<St> CallbackLayer<St> {
    /// Safe mode (or compatibility mode): the same as
    /// `.verify(|verify| verify.safe_mode(safe_mode))`; see [`VerifyLayer::safe_mode`].
    ///
    /// ```
    /// use tower_wechat::crypto::EncodingAesKey;
    /// use tower_wechat::verify::SafeMode;
    /// use tower_wechat::{CallbackLayer, Token};
    ///
    /// let key = EncodingAesKey::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
    /// let stack = CallbackLayer::new(Token::new("mytoken").unwrap())
    ///     .safe_mode(SafeMode::new(key, "wx1234567890abcdef"));
    /// # let _ = stack;
    /// ```
    #[cfg(feature = "crypto")]
    #[cfg_attr(docsrs, doc(cfg(feature = "crypto")))]
    pub fn safe_mode(self, safe_mode: SafeMode) -> Self {
        self.verify(|verify| verify.safe_mode(safe_mode))
    }

    /// Configures the [`TimingLayer`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_wechat::{CallbackLayer, Token};
    ///
    /// let stack = CallbackLayer::new(Token::new("mytoken").unwrap())
    ///     .timing(|timing| timing.budget(Duration::from_millis(300)));
    /// # let _ = stack;
    /// ```
    pub fn timing(mut self, configure: impl FnOnce(TimingLayer) -> TimingLayer) -> Self {
        self.timing = configure(self.timing);
        self
    }

    /// Configures the [`AllowLayer`]: which source addresses may call (off by default;
    /// see [`allow`](crate::allow) for proxies and WeChat's published list).
    ///
    /// ```
    /// use tower_wechat::allow::IpSet;
    /// use tower_wechat::{AllowLayer, CallbackLayer, Token};
    ///
    /// let stack = CallbackLayer::new(Token::new("mytoken").unwrap()).allow(|_| {
    ///     AllowLayer::new(IpSet::parse("101.226.103.0/25, 101.226.62.0/26").unwrap())
    ///         .trusted_proxies(IpSet::loopback())
    /// });
    /// assert_eq!(stack.handle().allow().stats().entries, 2);
    /// ```
    pub fn allow(mut self, configure: impl FnOnce(AllowLayer) -> AllowLayer) -> Self {
        self.allow = configure(self.allow);
        self
    }

    /// Configures the [`VerifyLayer`] (tokens, safe mode, timestamp window, nonce memory,
    /// body limit).
    ///
    /// ```
    /// use tower_wechat::{CallbackLayer, Token};
    ///
    /// let stack = CallbackLayer::new(Token::new("mytoken").unwrap())
    ///     .verify(|verify| verify.also_accept(Token::new("oldtoken").unwrap()));
    /// # let _ = stack;
    /// ```
    pub fn verify(mut self, configure: impl FnOnce(VerifyLayer) -> VerifyLayer) -> Self {
        self.verify = configure(self.verify);
        self
    }

    /// Configures the [`DedupLayer`]; the closure may return one with another store, e.g.
    /// Redis for several replicas.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_wechat::dedup::{DedupLayer, MemoryStore};
    /// use tower_wechat::{CallbackLayer, Token};
    ///
    /// let stack = CallbackLayer::new(Token::new("mytoken").unwrap())
    ///     .dedup(|_| DedupLayer::with_store(MemoryStore::with_capacity(10_000)).fail_closed());
    /// # let _ = stack;
    /// ```
    pub fn dedup<St2>(
        self,
        configure: impl FnOnce(DedupLayer<St>) -> DedupLayer<St2>,
    ) -> CallbackLayer<St2> {
        CallbackLayer {
            timing: self.timing,
            allow: self.allow,
            verify: self.verify,
            dedup: configure(self.dedup),
            fast_ack: self.fast_ack,
        }
    }

    /// Configures the [`FastAckLayer`].
    ///
    /// ```
    /// use tower_wechat::{CallbackLayer, Token};
    ///
    /// let stack = CallbackLayer::new(Token::new("mytoken").unwrap())
    ///     .fast_ack(|fast_ack| fast_ack.always_ack());
    /// # let _ = stack;
    /// ```
    pub fn fast_ack(mut self, configure: impl FnOnce(FastAckLayer) -> FastAckLayer) -> Self {
        self.fast_ack = configure(self.fast_ack);
        self
    }

    /// The durable hand-off: stores each verified callback in `journal` before its handler
    /// runs, so an acknowledged callback survives a crash; the same as
    /// `.fast_ack(|fast_ack| fast_ack.journal(journal))`. See [`journal`](crate::journal),
    /// and start the recovery worker with
    /// [`JournalHandle::spawn_recovery`](crate::journal::JournalHandle::spawn_recovery).
    ///
    /// ```
    /// use tower_wechat::journal::MemoryJournal;
    /// use tower_wechat::{CallbackLayer, Token};
    ///
    /// let stack = CallbackLayer::new(Token::new("mytoken").unwrap()).journal(MemoryJournal::new());
    /// assert!(stack.handle().journal().is_some());
    /// ```
    pub fn journal(self, journal: impl Into<Handoff>) -> Self {
        let handoff = journal.into();
        self.fast_ack(|fast_ack| fast_ack.journal(handoff))
    }

    /// The handles of every part: background work and shutdown, dedup counters, latency
    /// statistics, the allow-list, the journal. Take it after the last builder call.
    pub fn handle(&self) -> CallbackHandle {
        CallbackHandle {
            allow: self.allow.handle(),
            verify: self.verify.handle(),
            fast_ack: self.fast_ack.handle(),
            dedup: self.dedup.handle(),
            latency: self.timing.stats(),
            journal: self.fast_ack.journal_handle(),
        }
    }
}

impl<St> Clone for CallbackLayer<St> {
    fn clone(&self) -> Self {
        Self {
            timing: self.timing.clone(),
            allow: self.allow.clone(),
            verify: self.verify.clone(),
            dedup: self.dedup.clone(),
            fast_ack: self.fast_ack.clone(),
        }
    }
}

impl<S, St> Layer<S> for CallbackLayer<St> {
    type Service = CallbackService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        let fast_ack = self.fast_ack.layer(inner);
        let dedup = self.dedup.layer(fast_ack);
        let verify = self.verify.layer(dedup);
        let allow = self.allow.layer(verify);
        self.timing.layer(allow)
    }
}

impl<St: fmt::Debug> fmt::Debug for CallbackLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackLayer")
            .field("timing", &self.timing)
            .field("allow", &self.allow)
            .field("verify", &self.verify)
            .field("dedup", &self.dedup)
            .field("fast_ack", &self.fast_ack)
            .finish()
    }
}

/// The handles of a [`CallbackLayer`]'s parts; cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use tower_wechat::{CallbackLayer, Token};
///
/// let stack = CallbackLayer::new(Token::new("mytoken").unwrap());
/// let handle = stack.handle();
/// // ... serve, then after the server stopped:
/// let report = handle.shutdown(Duration::from_secs(10)).await;
/// assert_eq!(report.unfinished, 0);
/// println!("{}", handle.latency().snapshot());
/// println!("{:?}", handle.dedup().stats());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CallbackHandle {
    allow: AllowHandle,
    verify: VerifyHandle,
    fast_ack: FastAckHandle,
    dedup: DedupHandle,
    latency: LatencyStats,
    journal: Option<JournalHandle>,
}

impl CallbackHandle {
    /// FastAck's counters, bound and shutdown.
    pub fn fast_ack(&self) -> &FastAckHandle {
        &self.fast_ack
    }

    /// Dedup's counters.
    pub fn dedup(&self) -> &DedupHandle {
        &self.dedup
    }

    /// The allow-list: its size, age and counters; replace or refresh it.
    pub fn allow(&self) -> &AllowHandle {
        &self.allow
    }

    /// VerifyLayer's counters: callbacks rejected, and the rejection warnings summarized
    /// during a flood.
    ///
    /// ```
    /// use tower_wechat::{CallbackLayer, Token};
    ///
    /// let handle = CallbackLayer::new(Token::new("mytoken").unwrap()).handle();
    /// assert_eq!(handle.verify().stats().rejected, 0);
    /// ```
    pub fn verify(&self) -> &VerifyHandle {
        &self.verify
    }

    /// Latency percentiles per message type.
    pub fn latency(&self) -> &LatencyStats {
        &self.latency
    }

    /// The durable hand-off's counters and recovery worker, when a journal is configured.
    pub fn journal(&self) -> Option<&JournalHandle> {
        self.journal.as_ref()
    }

    /// Stops taking callbacks and lets running handlers finish, up to `grace`; see
    /// [`FastAckHandle::shutdown`]. Call it after the HTTP server has stopped.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.fast_ack.shutdown(grace).await
    }
}
