//! The state every service of one [`AllowLayer`](super::AllowLayer) shares: its settings,
//! the live list, the counters, and the summarized refusal log.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
#[cfg(feature = "metrics")]
use std::time::SystemTime;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderName;
use http::{Extensions, HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;

use super::cidr::IpSet;
use super::forwarded::{Unreadable, client_from_hops};
use crate::Message;
use crate::body::plain_text;
use crate::hook::Summarized;

/// The `target` of the events the layer logs.
pub(crate) const TARGET: &str = "tower_wechat::allow";

/// What the builder sets.
#[derive(Clone)]
pub(crate) struct Settings {
    /// Off: every request passes, nothing is looked at.
    pub(crate) enabled: bool,
    /// The list the layer starts with.
    pub(crate) initial: IpSet,
    /// Peers whose forwarded header is believed.
    pub(crate) trusted: IpSet,
    /// The forwarded header read behind a trusted proxy.
    pub(crate) header: HeaderName,
    /// At most one refusal line per interval.
    pub(crate) log_interval: Duration,
}

/// The list now, and when it was set.
struct Listed {
    set: Arc<IpSet>,
    since: Instant,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address is not on the list.
    Unlisted,
    /// No peer address in the request extensions.
    NoAddress,
    /// The forwarded header of a trusted proxy could not be read.
    Unreadable(Unreadable),
}

impl Refusal {
    /// The answer: `403` with a short fixed reason, marked [`Summarized`].
    pub(crate) fn response(self) -> Response<Full<Bytes>> {
        let mut response = plain_text(StatusCode::FORBIDDEN, self.body());
        response.extensions_mut().insert(Summarized);
        response
    }

    /// The response body: short and fixed.
    fn body(self) -> &'static str {
        match self {
            Self::Unlisted => "address not allowed",
            Self::NoAddress => "client address unknown",
            Self::Unreadable(_) => "forwarded address unreadable",
        }
    }

    /// A metric label.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Unlisted => "unlisted",
            Self::NoAddress => "no_address",
            Self::Unreadable(_) => "unreadable",
        }
    }
}

/// Counters; see [`AllowStats`](super::AllowStats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) refused_unlisted: AtomicU64,
    pub(crate) refused_no_address: AtomicU64,
    pub(crate) refused_unreadable: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) refresh_failures: AtomicU64,
}

/// At most one refusal line per interval, with the count since the last one.
struct Flood {
    base: Instant,
    /// Milliseconds after `base` before which no line is logged.
    next_line_ms: AtomicU64,
    /// Refusals since the last line.
    unlogged: AtomicU64,
}

impl Flood {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            next_line_ms: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// Counts a refusal; `Some(n)` when this one gets a line, `n` being the refusals since
    /// the last line, this one included.
    fn note(&self, interval: Duration) -> Option<u64> {
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = self.base.elapsed().as_millis() as u64;
        let next = self.next_line_ms.load(Ordering::Relaxed);
        if now < next {
            return None;
        }
        let after = now.saturating_add(interval.as_millis() as u64);
        self.next_line_ms
            .compare_exchange(next, after, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.unlogged.swap(0, Ordering::Relaxed).max(1))
    }
}

/// Settings, list, counters, shared by a layer, its services and its handle.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    list: RwLock<Listed>,
    pub(crate) counters: Counters,
    flood: Flood,
    warned_no_address: AtomicBool,
    warned_order: AtomicBool,
}

impl Shared {
    pub(crate) fn new(settings: Settings) -> Self {
        let set = Arc::new(settings.initial.clone());
        #[cfg(feature = "metrics")]
        if settings.enabled {
            super::metrics::record_list(set.len(), SystemTime::now());
        }
        Self {
            list: RwLock::new(Listed {
                set,
                since: Instant::now(),
            }),
            settings,
            counters: Counters::default(),
            flood: Flood::new(),
            warned_no_address: AtomicBool::new(false),
            warned_order: AtomicBool::new(false),
        }
    }

    /// Whether `request` may pass; why not if not (already counted and, when its turn
    /// comes, logged).
    pub(crate) fn check<B>(&self, request: &Request<B>) -> Result<(), Refusal> {
        self.check_order(request.extensions());
        let Some(peer) = peer(request.extensions()) else {
            return Err(self.refuse(Refusal::NoAddress, None, None));
        };
        let client = match self.client(peer, request.headers()) {
            Ok(client) => client,
            Err(unreadable) => {
                return Err(self.refuse(Refusal::Unreadable(unreadable), Some(peer), None));
            }
        };
        if self.read().set.contains(client) {
            Ok(())
        } else {
            Err(self.refuse(Refusal::Unlisted, Some(peer), Some(client)))
        }
    }

    /// The client's address: the peer, or behind a trusted proxy, the forwarded one.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, Unreadable> {
        let trusted = &self.settings.trusted;
        if trusted.is_empty() || !trusted.contains(peer) {
            return Ok(peer);
        }
        let values = headers
            .get_all(&self.settings.header)
            .iter()
            .map(|value| value.as_bytes());
        Ok(client_from_hops(values, trusted)?.unwrap_or(peer))
    }

    /// Counts and logs (summarized) a refusal.
    fn refuse(&self, refusal: Refusal, peer: Option<IpAddr>, client: Option<IpAddr>) -> Refusal {
        let counters = &self.counters;
        let counter = match refusal {
            Refusal::Unlisted => &counters.refused_unlisted,
            Refusal::NoAddress => &counters.refused_no_address,
            Refusal::Unreadable(_) => &counters.refused_unreadable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        super::metrics::record_refused(refusal.label());
        match refusal {
            Refusal::NoAddress => {
                if !self.warned_no_address.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: TARGET,
                        "AllowLayer found no client address in the request, so it refuses \
                         every request (403): serve the app with \
                         into_make_service_with_connect_info::<SocketAddr>() (axum), or insert \
                         the peer's SocketAddr into each request's extensions (hyper). This \
                         warning is logged once"
                    );
                }
            }
            Refusal::Unlisted | Refusal::Unreadable(_) => {
                if let Some(refused) = self.flood.note(self.settings.log_interval) {
                    let interval_s = self.settings.log_interval.as_secs_f64();
                    let via = peer.filter(|peer| Some(*peer) != client);
                    match refusal {
                        Refusal::Unreadable(why) => tracing::warn!(
                            target: TARGET,
                            peer = peer.map(tracing::field::display),
                            header = %self.settings.header,
                            why = why.as_str(),
                            refused,
                            interval_s,
                            "refused a request: the trusted proxy's forwarded header gives no \
                             readable client address (one line per interval; refused = count \
                             since the last line)"
                        ),
                        _ => tracing::warn!(
                            target: TARGET,
                            address = client.map(tracing::field::display),
                            via = via.map(tracing::field::display),
                            refused,
                            interval_s,
                            "refused a request from an address not on the allow-list (one line \
                             per interval; refused = count since the last line)"
                        ),
                    }
                }
            }
        }
        refusal
    }

    /// Warns once if `extensions` hold a parsed [`Message`]: this layer sits inside
    /// `VerifyLayer`, so bodies are read before the check.
    fn check_order(&self, extensions: &Extensions) {
        if extensions.get::<Message>().is_some() && !self.warned_order.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: TARGET,
                "AllowLayer got a request that VerifyLayer already read and parsed, so \
                 refused addresses cost a body read first: put AllowLayer outside \
                 VerifyLayer. tower::ServiceBuilder lists layers outermost first, while \
                 Router::layer(a).layer(b) puts b outside a; tower_wechat::CallbackLayer \
                 builds the whole stack in the right order (this warning is logged once)"
            );
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Listed> {
        self.list.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The list now.
    pub(crate) fn list(&self) -> Arc<IpSet> {
        self.read().set.clone()
    }

    /// Time since the list was set.
    pub(crate) fn age(&self) -> Duration {
        self.read().since.elapsed()
    }

    /// Replaces the list; whether it differs from the one it replaced.
    pub(crate) fn replace(&self, set: IpSet) -> bool {
        #[cfg(feature = "metrics")]
        super::metrics::record_list(set.len(), SystemTime::now());
        let mut listed = self.list.write().unwrap_or_else(PoisonError::into_inner);
        let changed = *listed.set != set;
        *listed = Listed {
            set: Arc::new(set),
            since: Instant::now(),
        };
        changed
    }
}

/// The peer's address as the server put it in the extensions: axum's
/// `ConnectInfo<SocketAddr>` (feature `axum`), or a plain `SocketAddr`.
pub(crate) fn peer(extensions: &Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<::axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip().to_canonical());
    }
    extensions
        .get::<SocketAddr>()
        .map(|addr| addr.ip().to_canonical())
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.settings;
        f.debug_struct("AllowLayer")
            .field("enabled", &settings.enabled)
            .field("entries", &self.read().set.len())
            .field("trusted_proxies", &settings.trusted)
            .field("forwarded_header", &settings.header)
            .field("log_interval", &settings.log_interval)
            .finish()
    }
}
