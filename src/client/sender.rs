//! [`BackgroundSender`]: fire-and-forget sends through a bounded queue, drained on shutdown.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{CustomMessage, TemplateMessage, WeChatClient};

/// A message for the [`BackgroundSender`].
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// A template message.
    Template(TemplateMessage),
    /// A customer-service message.
    Custom(CustomMessage),
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
    /// Messages that failed (after the client's retries); each is logged with its error.
    pub failed: u64,
}

/// Sends messages in the background through a [`WeChatClient`]: a bounded queue (so a
/// burst cannot grow memory without limit), a fixed number of sends in flight, and a
/// [`shutdown`](Self::shutdown) that sends everything queued before returning.
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
/// let report = sender.shutdown().await; // waits for the queue to drain
/// println!("sent {}, failed {}", report.sent, report.failed);
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
    sent: AtomicU64,
    failed: AtomicU64,
}

impl WeChatClient {
    /// A background sender with room for `capacity` queued messages and `concurrency`
    /// sends in flight (each at least 1). Spawns its worker on the current tokio runtime.
    pub fn background_sender(&self, capacity: usize, concurrency: usize) -> BackgroundSender {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Shared {
            closing: CancellationToken::new(),
            worker: Mutex::new(None),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
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
        })
    }

    /// Queues `message`, waiting for room.
    pub async fn send(&self, message: Outgoing) -> Result<(), QueueError> {
        if self.shared.closing.is_cancelled() {
            return Err(QueueError::Closed(Box::new(message)));
        }
        self.queue
            .send(message)
            .await
            .map_err(|error| QueueError::Closed(Box::new(error.0)))
    }

    /// What was sent so far.
    pub fn report(&self) -> SenderReport {
        SenderReport {
            sent: self.shared.sent.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops taking messages, sends every queued one, waits for the sends in flight, and
    /// reports. Calls on other clones return at once (with the report so far); bound the
    /// wait with `tokio::time::timeout` if need be.
    pub async fn shutdown(self) -> SenderReport {
        self.shared.closing.cancel();
        let worker = self.shared.worker.lock().await.take();
        if let Some(worker) = worker
            && let Err(error) = worker.await
        {
            tracing::error!(%error, "the background sender's worker failed");
        }
        self.report()
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
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let client = client.clone();
        let shared = shared.clone();
        in_flight.spawn(async move {
            let _permit = permit;
            let result = match &message {
                Outgoing::Template(message) => {
                    client.send_template_message(message).await.map(drop)
                }
                Outgoing::Custom(message) => client.send_custom_message(message).await,
            };
            match result {
                Ok(()) => shared.sent.fetch_add(1, Ordering::Relaxed),
                Err(error) => {
                    tracing::warn!(%error, ?message, "a background WeChat send failed");
                    shared.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        });
        // Reap finished sends so the set does not grow.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}
