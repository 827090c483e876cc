//! [`AllowLayer`]: the settings and builder of [`Allow`], and its `Layer` impl.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use tower_layer::Layer;

use super::cidr::IpSet;
use super::handle::AllowHandle;
use super::service::Allow;
use super::state::{Settings, Shared};

/// Applies [`Allow`] to a service: only requests from addresses on the list get through;
/// the others are answered `403` before their body is read. See the [module docs](super)
/// for where the address comes from, proxies, and the live list.
///
/// One layer shares one list (and one [`AllowHandle`]) between every service it builds;
/// each builder method returns a layer with fresh state, so take the handle after the last
/// one.
///
/// ```
/// use tower_wechat::AllowLayer;
/// use tower_wechat::allow::IpSet;
///
/// let layer = AllowLayer::new(IpSet::parse("101.226.103.0/25, 101.226.62.0/26").unwrap())
///     .trusted_proxies(IpSet::loopback()); // an nginx on this machine
/// let handle = layer.handle();
/// assert_eq!(handle.stats().entries, 2);
/// ```
#[derive(Clone)]
#[must_use]
pub struct AllowLayer {
    pub(crate) shared: Arc<Shared>,
}

impl AllowLayer {
    /// At most one refusal line per this interval by default: 10 s.
    pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(10);

    /// Lets through only requests whose client address is in `list` (replace it later
    /// through the [handle](Self::handle), e.g. from WeChat's published list).
    ///
    /// An empty list refuses everything.
    pub fn new(list: IpSet) -> Self {
        Self::off().allowed(list)
    }

    /// No check: every request passes, nothing is looked at (one branch per request). What
    /// [`CallbackLayer`](crate::CallbackLayer) starts with.
    ///
    /// ```
    /// use tower_wechat::AllowLayer;
    ///
    /// assert!(!AllowLayer::off().handle().stats().enabled);
    /// ```
    pub fn off() -> Self {
        Self::from_settings(Settings {
            enabled: false,
            initial: IpSet::new(),
            trusted: IpSet::new(),
            header: HeaderName::from_static("x-forwarded-for"),
            log_interval: Self::DEFAULT_LOG_INTERVAL,
        })
    }

    /// Turns the check on with `list` as the allowed addresses and ranges.
    ///
    /// ```
    /// use tower_wechat::AllowLayer;
    /// use tower_wechat::allow::IpSet;
    ///
    /// let layer = AllowLayer::off().allowed(IpSet::parse("127.0.0.1").unwrap());
    /// assert!(layer.handle().stats().enabled);
    /// ```
    pub fn allowed(self, list: IpSet) -> Self {
        self.with(|settings| {
            settings.enabled = true;
            settings.initial = list;
        })
    }

    /// Peers whose forwarded header is believed: your reverse proxies or load balancers
    /// (default: none, so the peer address decides).
    ///
    /// For a request from one of them, the client is the right-most address in the
    /// forwarded header that is not itself a trusted proxy (if every address there is
    /// trusted, the left-most; without the header, the peer). Never list addresses that
    /// clients can reach you from directly: whoever connects from a trusted address can
    /// claim any client address.
    ///
    /// ```
    /// use tower_wechat::AllowLayer;
    /// use tower_wechat::allow::IpSet;
    ///
    /// let layer = AllowLayer::new(IpSet::parse("101.226.103.0/25").unwrap())
    ///     .trusted_proxies(IpSet::parse("10.0.0.0/8").unwrap()); // the load balancer's subnet
    /// # let _ = layer;
    /// ```
    pub fn trusted_proxies(self, proxies: IpSet) -> Self {
        self.with(|settings| settings.trusted = proxies)
    }

    /// The header that trusted proxies put the client address in (default
    /// `X-Forwarded-For`). It is read as a comma-separated list, so a single-address header
    /// such as `X-Real-IP` works too. Choose the one your proxy *overwrites* or *appends
    /// to*: a header it passes through unchanged is whatever the client wrote.
    ///
    /// ```
    /// use http::header::HeaderName;
    /// use tower_wechat::AllowLayer;
    /// use tower_wechat::allow::IpSet;
    ///
    /// let layer = AllowLayer::new(IpSet::parse("101.226.103.0/25").unwrap())
    ///     .trusted_proxies(IpSet::loopback())
    ///     .forwarded_header(HeaderName::from_static("x-real-ip"));
    /// # let _ = layer;
    /// ```
    pub fn forwarded_header(self, header: HeaderName) -> Self {
        self.with(|settings| settings.header = header)
    }

    /// At most one refusal is logged per `interval` (default
    /// [`Self::DEFAULT_LOG_INTERVAL`]), with the number of refusals since the line before;
    /// the others are only counted.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_wechat::AllowLayer;
    ///
    /// let layer = AllowLayer::off().log_interval(Duration::from_secs(60));
    /// # let _ = layer;
    /// ```
    pub fn log_interval(self, interval: Duration) -> Self {
        self.with(|settings| settings.log_interval = interval)
    }

    /// The handle to this layer's list and counters: read [`stats`](AllowHandle::stats),
    /// [`replace`](AllowHandle::replace) the list, refresh it from WeChat (feature
    /// `client`). Take it after the last builder call.
    pub fn handle(&self) -> AllowHandle {
        AllowHandle::new(self.shared.clone())
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

impl Default for AllowLayer {
    /// [`AllowLayer::off`].
    fn default() -> Self {
        Self::off()
    }
}

impl<S> Layer<S> for AllowLayer {
    type Service = Allow<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Allow {
            inner,
            shared: self.shared.clone(),
        }
    }
}

impl<S> Allow<S> {
    /// Wraps `inner`, letting through only requests from addresses in `list`.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_wechat::allow::{Allow, IpSet};
    ///
    /// let service = Allow::new(
    ///     service_fn(|_: http::Request<()>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    ///     }),
    ///     IpSet::parse("127.0.0.1").unwrap(),
    /// );
    /// # let _ = service;
    /// ```
    pub fn new(inner: S, list: IpSet) -> Self {
        AllowLayer::new(list).layer(inner)
    }

    /// An [`AllowLayer`] for `list`.
    ///
    /// ```
    /// use tower_wechat::allow::{Allow, IpSet};
    ///
    /// let layer = Allow::<()>::layer(IpSet::loopback());
    /// # let _ = layer;
    /// ```
    pub fn layer(list: IpSet) -> AllowLayer {
        AllowLayer::new(list)
    }
}

impl fmt::Debug for AllowLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}
