//! [`AllowHandle`]: an [`AllowLayer`](super::AllowLayer)'s list and counters.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::cidr::IpSet;
#[cfg(feature = "client")]
use super::refresh::{self, CallbackIps, RefreshTask};
use super::state::Shared;
#[cfg(feature = "client")]
use crate::client::ClientError;

/// Reads an [`AllowLayer`](super::AllowLayer)'s counters and replaces its list; cheap to
/// clone.
///
/// ```
/// use tower_wechat::AllowLayer;
/// use tower_wechat::allow::IpSet;
///
/// let layer = AllowLayer::new(IpSet::parse("192.0.2.0/24").unwrap());
/// let handle = layer.handle(); // after the last builder call
/// handle.replace(IpSet::parse("101.226.103.0/25, 101.226.62.0/26").unwrap());
/// let stats = handle.stats();
/// assert_eq!((stats.entries, stats.refused), (2, 0));
/// ```
#[derive(Clone)]
pub struct AllowHandle {
    pub(crate) shared: Arc<Shared>,
}

/// A snapshot of an [`AllowLayer`](super::AllowLayer)'s list and counters (counts since
/// start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AllowStats {
    /// Whether the layer checks addresses at all (`false` for
    /// [`AllowLayer::off`](super::AllowLayer::off)).
    pub enabled: bool,
    /// Entries (addresses and ranges) on the list now.
    pub entries: usize,
    /// Time since the list was set: built, [replaced](AllowHandle::replace), or last
    /// refreshed successfully. A refresh that fails leaves it growing.
    pub age: Duration,
    /// Requests refused because their address is not on the list.
    pub refused: u64,
    /// Requests refused because no peer address was in their extensions (the server does
    /// not record it; see the [module docs](super)).
    pub refused_no_address: u64,
    /// Requests from a trusted proxy refused because its forwarded header gave no readable
    /// client address.
    pub refused_unreadable: u64,
    /// Refreshes from WeChat that replaced the list.
    pub refreshes: u64,
    /// Refreshes from WeChat that failed (the list was kept).
    pub refresh_failures: u64,
}

impl AllowHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The list and counters now.
    pub fn stats(&self) -> AllowStats {
        let counters = &self.shared.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        AllowStats {
            enabled: self.shared.settings.enabled,
            entries: self.shared.list().len(),
            age: self.shared.age(),
            refused: read(&counters.refused_unlisted),
            refused_no_address: read(&counters.refused_no_address),
            refused_unreadable: read(&counters.refused_unreadable),
            refreshes: read(&counters.refreshes),
            refresh_failures: read(&counters.refresh_failures),
        }
    }

    /// The list now.
    ///
    /// ```
    /// use tower_wechat::AllowLayer;
    /// use tower_wechat::allow::IpSet;
    ///
    /// let handle = AllowLayer::new(IpSet::loopback()).handle();
    /// assert_eq!(*handle.list(), IpSet::loopback());
    /// ```
    pub fn list(&self) -> Arc<IpSet> {
        self.shared.list()
    }

    /// Replaces the list; requests from now on are checked against `list`. Returns whether
    /// it differs from the list it replaced. An empty list refuses everything.
    ///
    /// Has no effect on requests while the layer is [off](super::AllowLayer::off).
    pub fn replace(&self, list: IpSet) -> bool {
        self.shared.replace(list)
    }

    /// Fetches WeChat's callback addresses once and, if the answer is a good list, makes it
    /// the list; returns its number of entries. On failure the list is kept, the failure
    /// counted ([`AllowStats::refresh_failures`]) and returned (not logged).
    ///
    /// See [`CallbackIps`] for an example.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub async fn refresh(&self, source: &CallbackIps) -> Result<usize, ClientError> {
        refresh::refresh_once(&self.shared, source).await
    }

    /// Keeps the list fresh in a tokio task: refreshes now, then every `every` (±10 %
    /// jitter; an hour is plenty, WeChat's list changes rarely). A failed refresh keeps the
    /// last good list, is tried again after `min(every, 5 min)`, and is logged at WARN at
    /// most once per `every` (with the count of failures since the last line). Dropping
    /// the returned task stops it. Call it inside a tokio runtime.
    ///
    /// With an empty starting list every request is refused until the first refresh
    /// succeeds; start with a static list, or await [`refresh`](Self::refresh) first.
    ///
    /// See [`CallbackIps`] for an example.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn spawn_refresh(&self, source: CallbackIps, every: Duration) -> RefreshTask {
        refresh::spawn(self.shared.clone(), source, every)
    }
}

impl fmt::Debug for AllowHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AllowHandle").field(&self.stats()).finish()
    }
}
