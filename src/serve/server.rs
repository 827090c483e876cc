//! [`Server`]: the builder, the accept loop and the bounded shutdown.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower_service::Service;

use crate::BoxError;
use crate::redact::{LogBudget, Permit};

/// Serves a tower service over HTTP/1.1 with timeouts, a connection cap and a bounded
/// graceful shutdown; see the [module docs](super) for the defaults and why.
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::serve::Server;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = Server::new(listener)
///     .header_read_timeout(Duration::from_secs(3))
///     .max_connections(2_000)
///     .shutdown_timeout(Duration::from_secs(8));
/// # let _ = server;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct Server {
    listener: TcpListener,
    header_read_timeout: Duration,
    max_header_bytes: usize,
    max_connections: usize,
    shutdown_timeout: Duration,
}

/// What a [`Server`] did, returned when it has shut down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeReport {
    /// Connections served.
    pub connections: u64,
    /// Connections closed at once because [`Server::max_connections`] were open.
    pub refused: u64,
    /// Connections closed without a single complete request head within
    /// [`Server::header_read_timeout`] (slow or silent clients).
    pub header_timeouts: u64,
    /// Connections still open at the shutdown deadline, dropped.
    pub dropped_at_shutdown: u64,
}

impl Server {
    /// The default [`header_read_timeout`](Self::header_read_timeout): 5 s.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default [`max_header_bytes`](Self::max_header_bytes): 16 KiB.
    pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
    /// The default [`max_connections`](Self::max_connections): 512.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
    /// The default [`shutdown_timeout`](Self::shutdown_timeout): 5 s.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

    /// A server on `listener` with the default settings.
    pub fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: Self::DEFAULT_MAX_HEADER_BYTES,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// Closes a connection whose request head (request line and headers) is not complete
    /// `timeout` after the connection began waiting for it: after it opened, or after the
    /// previous response on a keep-alive connection, so this is the idle keep-alive timeout
    /// too. Default [`Self::DEFAULT_HEADER_READ_TIMEOUT`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The largest request head, in bytes (hyper answers 431 past it and closes the
    /// connection); at least 1 KiB. Default [`Self::DEFAULT_MAX_HEADER_BYTES`].
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(1024);
        self
    }

    /// How many connections may be open at once (at least 1); more are accepted and closed
    /// at once. Default [`Self::DEFAULT_MAX_CONNECTIONS`]; keep it under the process's file
    /// descriptor limit (`ulimit -n`) minus what the rest of the process uses.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How long shutdown waits for open connections before dropping them. Default
    /// [`Self::DEFAULT_SHUTDOWN_TIMEOUT`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `service` until `shutdown` resolves, then shuts down as the
    /// [module docs](super) describe. Fails only if the listener's address cannot be read;
    /// accept errors (such as running out of file descriptors) are logged and retried.
    pub async fn serve<S, B>(
        self,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<ServeReport>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let Self {
            listener,
            header_read_timeout,
            max_header_bytes,
            max_connections,
            shutdown_timeout,
        } = self;
        let local = listener.local_addr()?;
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_header_size(max_header_bytes);
        let permits = Arc::new(Semaphore::new(max_connections));
        let graceful = GracefulShutdown::new();
        let mut tasks = JoinSet::new();
        let counters = Arc::new(Counters::default());
        let refusals = LogBudget::default();
        let accept_errors = LogBudget::default();
        let mut shutdown = std::pin::pin!(shutdown);
        tracing::info!(%local, max_connections, "serving");

        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            while tasks.try_join_next().is_some() {}
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if let Permit::Log { suppressed } = accept_errors.permit() {
                        tracing::error!(%error, suppressed, "accepting a connection failed");
                    }
                    // Out of descriptors or memory: give open connections a moment to close
                    // rather than spinning on the error.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                counters.refused.fetch_add(1, Relaxed);
                if let Permit::Log { suppressed } = refusals.permit() {
                    tracing::warn!(
                        max_connections,
                        closed_since_last_line = suppressed + 1,
                        "connection cap reached: closing new connections at once \
                         (raise Server::max_connections if this is real traffic)"
                    );
                }
                drop(stream);
                continue;
            };
            counters.connections.fetch_add(1, Relaxed);
            let _ = stream.set_nodelay(true);
            let served = Arc::new(AtomicU64::new(0));
            let service = TowerToHyperService::new(WithPeer {
                inner: service.clone(),
                peer,
                served: served.clone(),
            });
            let connection =
                graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            let counters = counters.clone();
            tasks.spawn(async move {
                if let Err(error) = connection.await {
                    if error.is_timeout() && served.load(Relaxed) == 0 {
                        counters.header_timeouts.fetch_add(1, Relaxed);
                        if let Permit::Log { suppressed } = counters.timeouts_log.permit() {
                            tracing::info!(
                                peer = %peer.ip(),
                                suppressed,
                                "closed a connection that sent no complete request head in time"
                            );
                        }
                    } else {
                        tracing::debug!(peer = %peer.ip(), %error, "connection ended with an error");
                    }
                }
                drop(permit);
            });
        }

        drop(listener);
        let open = graceful.count();
        tracing::info!(open, "shutting down: listener closed, draining connections");
        let dropped = match tokio::time::timeout(shutdown_timeout, graceful.shutdown()).await {
            Ok(()) => 0,
            Err(_) => {
                while tasks.try_join_next().is_some() {}
                let left = tasks.len() as u64;
                tracing::warn!(
                    connections = left,
                    timeout_ms = shutdown_timeout.as_millis() as u64,
                    "shutdown deadline passed: dropping the connections still open"
                );
                tasks.abort_all();
                left
            }
        };
        while tasks.join_next().await.is_some() {}
        Ok(ServeReport {
            connections: counters.connections.load(Relaxed),
            refused: counters.refused.load(Relaxed),
            header_timeouts: counters.header_timeouts.load(Relaxed),
            dropped_at_shutdown: dropped,
        })
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    timeouts_log: LogBudget,
}

/// Puts the peer's address in each request's extensions and counts the requests of its
/// connection.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
    served: Arc<AtomicU64>,
}

impl<S, B> Service<Request<B>> for WithPeer<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.served.fetch_add(1, Relaxed);
        request.extensions_mut().insert(self.peer);
        self.inner.call(request)
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_connections", &self.max_connections)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}
