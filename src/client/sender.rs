//! [`BackgroundSender`]: fire-and-forget sends through a bounded queue, drained on shutdown;
//! messages that were never sent are tried again later, and handed back if they cannot be.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{
    BizSubscribeMessage, ClientError, CustomMessage, SubscribeMessage, TemplateMessage,
    WeChatClient, WeComMessage,
};

/// A message for the [`BackgroundSender`]. WeCom app messages go through the sender of that
/// app's account ([`WeChatClient::account`]), the others through the sender of the Official
/// Account or Mini Program that sends them.
///
/// ```
/// use tower_wechat::client::{CustomMessage, Outgoing, SubscribeMessage, WeComMessage};
///
/// let messages: [Outgoing; 3] = [
///     CustomMessage::text("oUser1234", "hello").into(),
///     SubscribeMessage::new("oUser1234", "template-id").data("thing1", "paid").into(),
///     WeComMessage::text("deployed").to_users(["zhangsan"]).into(),
/// ];
/// # let _ = messages;
/// ```
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// A template message.
    Template(TemplateMessage),
    /// A customer-service message.
    Custom(CustomMessage),
    /// A Mini Program subscribe message. A dropped connection after it was sent is a
    /// failure, never sent again (it may have used the user's one-time subscription).
    Subscribe(SubscribeMessage),
    /// An Official Account subscribe message (`bizsend`).
    BizSubscribe(BizSubscribeMessage),
    /// A WeCom app message. Recipients WeChat could not reach (a partial success) are
    /// logged at WARN, masked; the message counts as sent.
    WeCom(WeComMessage),
}

impl From<SubscribeMessage> for Outgoing {
    fn from(message: SubscribeMessage) -> Self {
        Self::Subscribe(message)
    }
}

impl From<BizSubscribeMessage> for Outgoing {
    fn from(message: BizSubscribeMessage) -> Self {
        Self::BizSubscribe(message)
    }
}

impl From<WeComMessage> for Outgoing {
    fn from(message: WeComMessage) -> Self {
        Self::WeCom(message)
    }
}

impl From<TemplateMessage> for Outgoing {
    fn from(message: TemplateMessage) -> Self {
        Self::Template(message)
    }
}

impl From<CustomMessage> for Outgoing {
    fn from(message: CustomMessage) -> Self {
        Self::Custom(message)
    }
}

/// Why a message was not queued; it is handed back.
#[derive(Debug)]
pub enum QueueError {
    /// The queue is full (from [`BackgroundSender::try_send`]).
    Full(Box<Outgoing>),
    /// The sender is shutting down.
    Closed(Box<Outgoing>),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the background send queue is full"),
            Self::Closed(_) => f.write_str("the background sender is shut down"),
        }
    }
}

impl std::error::Error for QueueError {}

/// What a [`BackgroundSender`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SenderReport {
    /// Messages WeChat accepted.
    pub sent: u64,
    /// Messages that failed after reaching WeChat, or perhaps reaching it (refused with an
    /// errcode, timed out, ...; after the client's retries); each is logged with its error.
    /// Also messages that could not be sent while the list of [`Unsent`] ones was full.
    pub failed: u64,
    /// Messages handed back as [`Unsent`]: never sent, and given up on (see
    /// [`SenderRetry`]) or still waiting at shutdown.
    pub unsent: u64,
    /// Times a message that was not sent (breaker open, no connection, no token) was put
    /// back to be tried again later.
    pub requeued: u64,
}

/// A message the [`BackgroundSender`] could not send, handed back: WeChat never got it
/// (its [`error`](Self::error)'s [`not_sent`](ClientError::not_sent) is `true`), so it is
/// safe to send again, or to keep somewhere until it can be.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Unsent {
    /// The message.
    pub message: Outgoing,
    /// Why its last attempt was not sent.
    pub error: ClientError,
    /// Attempts made.
    pub attempts: u32,
}

/// What [`BackgroundSender::shutdown`] hands back.
#[derive(Debug)]
#[non_exhaustive]
pub struct SenderShutdown {
    /// The counters at the end.
    pub report: SenderReport,
    /// Every message that was not sent and not yet taken with
    /// [`take_unsent`](BackgroundSender::take_unsent).
    pub unsent: Vec<Unsent>,
}

/// How a [`BackgroundSender`] retries a message that was *not sent* (the client's error is
/// [`not_sent`](ClientError::not_sent): circuit breaker open, no connection, no
/// access_token, the token store down). Such a message is kept and tried again after a
/// backoff — while the breaker is open, not before it may half-open — up to
/// [`max_attempts`](Self::max_attempts) attempts and [`max_age`](Self::max_age) since the
/// first; then it is handed back as [`Unsent`]. It keeps its slot of the sender's
/// concurrency while it waits, so during an outage the queue fills and
/// [`try_send`](BackgroundSender::try_send) refuses new messages instead of memory growing.
///
/// Messages that may have reached WeChat are never repeated by the sender (the client's
/// retry policy decides that); they count as [`failed`](SenderReport::failed).
///
/// Defaults: 10 attempts, 5 minutes, 500 ms base delay doubling up to 30 s, jittered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct SenderRetry {
    max_attempts: u32,
    max_age: Duration,
    base_delay: Duration,
    max_delay: Duration,
}

impl SenderRetry {
    /// The defaults.
    pub fn new() -> Self {
        Self {
            max_attempts: 10,
            max_age: Duration::from_secs(300),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }

    /// Attempts in all at a message that is not sent (at least 1; 1 hands it back at once).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// How long after its first attempt a message is still tried.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The wait before retry *n* is between half and all of `min(max, base × 2ⁿ⁻¹)`.
    pub fn delays(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max.max(base);
        self
    }

    fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let ceiling = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos / 2 + fastrand::u64(0..=nanos / 2))
    }
}

impl Default for SenderRetry {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends messages in the background through a [`WeChatClient`]: a bounded queue (so a
/// burst cannot grow memory without limit), a fixed number of sends in flight, and a
/// [`shutdown`](Self::shutdown) that tries everything queued before returning.
///
/// A message that was **not sent** (breaker open, no connection, no token) is not dropped:
/// it is tried again later (see [`SenderRetry`]) and, if it still cannot be sent, handed
/// back as [`Unsent`] — by [`take_unsent`](Self::take_unsent) while running (at most the
/// queue's capacity are kept; beyond that they are logged and counted as failed), and by
/// [`shutdown`](Self::shutdown), which does not wait for retries: what is waiting for one
/// then, or not sent on its one attempt during the drain, comes back in its
/// [`SenderShutdown`]. A message that may have reached WeChat is never repeated here.
///
/// Cheap to clone; clones feed the same queue.
///
/// ```no_run
/// use tower_wechat::client::{AppSecret, CustomMessage, WeChatClient};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = WeChatClient::builder("wx1234567890abcdef", AppSecret::new("appsecret")).build()?;
/// let sender = client.background_sender(1_000, 16);
/// sender.try_send(CustomMessage::text("oUser1234", "Thanks for your order").into())?;
/// let shutdown = sender.shutdown().await; // waits for the queue to drain
/// println!("sent {}, failed {}", shutdown.report.sent, shutdown.report.failed);
/// for unsent in shutdown.unsent {
///     // Never sent: keep it to send later.
///     # let _ = unsent.message;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BackgroundSender {
    queue: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
}

struct Shared {
    closing: CancellationToken,
    worker: Mutex<Option<JoinHandle<()>>>,
    retry: SenderRetry,
    sent: AtomicU64,
    failed: AtomicU64,
    unsent_count: AtomicU64,
    requeued: AtomicU64,
    /// Handed-back messages not yet taken; at most `unsent_limit` while running.
    unsent: StdMutex<Vec<Unsent>>,
    unsent_limit: usize,
    /// The client's label, for metrics.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    account: String,
}

impl Shared {
    /// Counts a message's outcome (`sent`, `failed`, `unsent`, `requeued`).
    fn count(&self, outcome: &'static str) {
        let counter = match outcome {
            "sent" => &self.sent,
            "failed" => &self.failed,
            "unsent" => &self.unsent_count,
            _ => &self.requeued,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        super::metrics::record_sender(&self.account, outcome);
    }

    /// Publishes the queue's depth.
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    fn depth(&self, depth: usize) {
        #[cfg(feature = "metrics")]
        super::metrics::record_queue_depth(&self.account, depth);
        #[cfg(not(feature = "metrics"))]
        let _ = depth;
    }

    fn unsent(&self) -> std::sync::MutexGuard<'_, Vec<Unsent>> {
        self.unsent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands `unsent` back; while running and with the list full, logs it as failed.
    fn give_back(&self, unsent: Unsent) {
        let mut list = self.unsent();
        if list.len() >= self.unsent_limit && !self.closing.is_cancelled() {
            drop(list);
            tracing::error!(
                error = %unsent.error,
                message = ?unsent.message,
                "a background WeChat message was not sent, and the list of unsent ones is full"
            );
            self.count("failed");
            return;
        }
        tracing::warn!(
            error = %unsent.error,
            attempts = unsent.attempts,
            message = ?unsent.message,
            "a background WeChat message was not sent; handed back"
        );
        list.push(unsent);
        self.count("unsent");
    }
}

impl WeChatClient {
    /// A background sender with room for `capacity` queued messages and `concurrency`
    /// sends in flight (each at least 1), retrying unsent messages with
    /// [`SenderRetry::new`]. Spawns its worker on the current tokio runtime.
    pub fn background_sender(&self, capacity: usize, concurrency: usize) -> BackgroundSender {
        self.background_sender_with(capacity, concurrency, SenderRetry::new())
    }

    /// [`background_sender`](Self::background_sender) with `retry` for messages that were
    /// not sent.
    pub fn background_sender_with(
        &self,
        capacity: usize,
        concurrency: usize,
        retry: SenderRetry,
    ) -> BackgroundSender {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Shared {
            closing: CancellationToken::new(),
            worker: Mutex::new(None),
            retry,
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unsent_count: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            unsent: StdMutex::new(Vec::new()),
            unsent_limit: capacity.max(1),
            account: self.label().to_owned(),
        });
        let worker = tokio::spawn(run(
            self.clone(),
            receiver,
            concurrency.max(1),
            shared.clone(),
        ));
        *shared.worker.try_lock().expect("not shared yet") = Some(worker);
        BackgroundSender { queue, shared }
    }
}

impl BackgroundSender {
    /// Queues `message` if there is room; hands it back otherwise.
    pub fn try_send(&self, message: Outgoing) -> Result<(), QueueError> {
        if self.shared.closing.is_cancelled() {
            return Err(QueueError::Closed(Box::new(message)));
        }
        self.queue.try_send(message).map_err(|error| match error {
            mpsc::error::TrySendError::Full(message) => QueueError::Full(Box::new(message)),
            mpsc::error::TrySendError::Closed(message) => QueueError::Closed(Box::new(message)),
        })?;
        self.publish_depth();
        Ok(())
    }

    fn publish_depth(&self) {
        self.shared
            .depth(self.queue.max_capacity() - self.queue.capacity());
    }

    /// Queues `message`, waiting for room.
    pub async fn send(&self, message: Outgoing) -> Result<(), QueueError> {
        if self.shared.closing.is_cancelled() {
            return Err(QueueError::Closed(Box::new(message)));
        }
        self.queue
            .send(message)
            .await
            .map_err(|error| QueueError::Closed(Box::new(error.0)))?;
        self.publish_depth();
        Ok(())
    }

    /// What was sent so far.
    pub fn report(&self) -> SenderReport {
        SenderReport {
            sent: self.shared.sent.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            unsent: self.shared.unsent_count.load(Ordering::Relaxed),
            requeued: self.shared.requeued.load(Ordering::Relaxed),
        }
    }

    /// Takes the messages handed back so far (never sent; see [`Unsent`]).
    pub fn take_unsent(&self) -> Vec<Unsent> {
        std::mem::take(&mut *self.shared.unsent())
    }

    /// Stops taking messages, tries every queued one once, waits for the sends in flight,
    /// stops waiting for retries, and hands back every message that was not sent with the
    /// report. Calls on other clones return at once (with the report and the unsent
    /// messages so far); bound the wait with `tokio::time::timeout` if need be.
    pub async fn shutdown(self) -> SenderShutdown {
        self.shared.closing.cancel();
        let worker = self.shared.worker.lock().await.take();
        if let Some(worker) = worker
            && let Err(error) = worker.await
        {
            tracing::error!(%error, "the background sender's worker failed");
        }
        SenderShutdown {
            report: self.report(),
            unsent: self.take_unsent(),
        }
    }
}

impl fmt::Debug for BackgroundSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundSender")
            .field("report", &self.report())
            .field("closing", &self.shared.closing.is_cancelled())
            .finish()
    }
}

async fn run(
    client: WeChatClient,
    mut receiver: mpsc::Receiver<Outgoing>,
    concurrency: usize,
    shared: Arc<Shared>,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut in_flight = JoinSet::new();
    loop {
        let message = tokio::select! {
            message = receiver.recv() => message,
            () = shared.closing.cancelled() => {
                // Refuse new messages, then drain what is queued.
                receiver.close();
                receiver.recv().await
            }
        };
        let Some(message) = message else { break };
        shared.depth(receiver.len());
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let client = client.clone();
        let shared = shared.clone();
        in_flight.spawn(async move {
            // The permit is held through the retries: an outage fills the queue, not memory.
            let _permit = permit;
            deliver(&client, message, &shared).await;
        });
        // Reap finished sends so the set does not grow.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// Sends `message`, again later while it is not sent, until it is sent, fails, or is
/// handed back.
async fn deliver(client: &WeChatClient, message: Outgoing, shared: &Shared) {
    let retry = shared.retry;
    let first = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let result = match &message {
            Outgoing::Template(message) => client.send_template_message(message).await.map(drop),
            Outgoing::Custom(message) => client.send_custom_message(message).await,
            Outgoing::Subscribe(message) => client.send_subscribe_message(message).await.map(drop),
            Outgoing::BizSubscribe(message) => client.send_biz_subscribe_message(message).await,
            Outgoing::WeCom(message) => client.send_wecom_message(message).await.map(|sent| {
                if sent.is_partial() {
                    tracing::warn!(
                        ?sent,
                        "a background WeCom message did not reach every recipient"
                    );
                }
            }),
        };
        let error = match result {
            Ok(()) => {
                shared.count("sent");
                return;
            }
            Err(error) if !error.not_sent() => {
                tracing::warn!(%error, class = %error.class(), ?message, "a background WeChat send failed");
                shared.count("failed");
                return;
            }
            Err(error) => error,
        };
        // Not sent. Bad input will not get better; an outage may.
        let transient = matches!(
            error,
            ClientError::CircuitOpen
                | ClientError::Connect(_)
                | ClientError::Token(_)
                | ClientError::Store(_)
        );
        // While the breaker is open, wait until it may half-open.
        let delay = retry
            .delay(attempts)
            .max(client.breaker_open_for().unwrap_or_default());
        let give_up = !transient
            || attempts >= retry.max_attempts
            || first.elapsed().saturating_add(delay) > retry.max_age
            || shared.closing.is_cancelled();
        if give_up {
            shared.give_back(Unsent {
                message,
                error,
                attempts,
            });
            return;
        }
        shared.count("requeued");
        tracing::debug!(%error, ?delay, attempts, "a background WeChat message was not sent; trying again later");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.closing.cancelled() => {
                shared.give_back(Unsent { message, error, attempts });
                return;
            }
        }
    }
}
