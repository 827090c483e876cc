//! The live list (feature `client`): WeChat's published callback addresses, fetched from
//! `GET /cgi-bin/getcallbackip` through a [`WeChatClient`], once or on an interval.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::cidr::IpSet;
use super::state::{Shared, TARGET};
use crate::client::{ClientError, WeChatClient};

/// A refreshed list may hold at most this many entries (WeChat's has a few hundred); a
/// longer answer is refused and the last good list kept.
pub const MAX_REFRESHED_ENTRIES: usize = 4096;

/// WeChat's published callback addresses: `GET /cgi-bin/getcallbackip`, fetched through a
/// [`WeChatClient`] (so with its access_token, retries and circuit breaker, from its base
/// URL: `https://qyapi.weixin.qq.com` for WeCom, a stand-in in tests). Cheap to clone.
///
/// Give it to [`AllowHandle::refresh`](super::AllowHandle::refresh) or
/// [`AllowHandle::spawn_refresh`](super::AllowHandle::spawn_refresh).
///
/// ```no_run
/// use std::time::Duration;
/// use tower_wechat::AllowLayer;
/// use tower_wechat::allow::{CallbackIps, IpSet};
/// use tower_wechat::client::{AppSecret, WeChatClient};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = WeChatClient::builder("wx1234567890abcdef", AppSecret::new("appsecret")).build()?;
/// let layer = AllowLayer::new(IpSet::new());
/// let allow = layer.handle();
/// let source = CallbackIps::new(client);
/// allow.refresh(&source).await?; // start with WeChat's list, or do not start
/// let _task = allow.spawn_refresh(source, Duration::from_secs(3600)); // keep it fresh
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CallbackIps {
    client: WeChatClient,
}

impl CallbackIps {
    /// The path of WeChat's endpoint, under the client's base URL.
    pub const PATH: &'static str = "/cgi-bin/getcallbackip";

    /// Fetches through `client`.
    pub fn new(client: WeChatClient) -> Self {
        Self { client }
    }

    /// Fetches the list once. Every entry must be an address or CIDR range; an answer with
    /// a bad entry, no entry or more than [`MAX_REFRESHED_ENTRIES`] is an error
    /// ([`ClientError::InvalidResponse`], naming the bad entry), so that a list this crate
    /// cannot read whole never replaces a good one.
    pub async fn fetch(&self) -> Result<IpSet, ClientError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            ip_list: Vec<String>,
        }
        // A GET: retried after ambiguous failures too.
        let answer: Answer = self.client.get_json(Self::PATH).await?;
        let invalid = |why: String| ClientError::InvalidResponse(format!("getcallbackip: {why}"));
        if answer.ip_list.is_empty() {
            return Err(invalid("the list is empty".into()));
        }
        if answer.ip_list.len() > MAX_REFRESHED_ENTRIES {
            return Err(invalid(format!(
                "{} entries, more than the limit of {MAX_REFRESHED_ENTRIES}",
                answer.ip_list.len()
            )));
        }
        answer
            .ip_list
            .iter()
            .map(|entry| entry.parse())
            .collect::<Result<IpSet, _>>()
            .map_err(|error| invalid(error.to_string()))
    }
}

impl fmt::Debug for CallbackIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackIps")
            .field("path", &Self::PATH)
            .finish_non_exhaustive()
    }
}

/// One refresh: fetch, then replace the list or count the failure.
pub(crate) async fn refresh_once(
    shared: &Shared,
    source: &CallbackIps,
) -> Result<usize, ClientError> {
    let counters = &shared.counters;
    match source.fetch().await {
        Ok(list) => {
            let entries = list.len();
            counters.refreshes.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            super::metrics::record_refresh(true);
            if shared.replace(list) {
                tracing::info!(
                    target: TARGET,
                    entries,
                    "allow-list refreshed from WeChat's callback addresses"
                );
            } else {
                tracing::debug!(target: TARGET, entries, "allow-list refreshed, unchanged");
            }
            Ok(entries)
        }
        Err(error) => {
            counters.refresh_failures.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            super::metrics::record_refresh(false);
            Err(error)
        }
    }
}

/// The refresher: refreshes now, then every `every` (±10 %); after a failure, again
/// sooner (`min(every, 5 min)`), logging failures at most once per `every`.
pub(crate) fn spawn(shared: Arc<Shared>, source: CallbackIps, every: Duration) -> RefreshTask {
    let every = every.max(Duration::from_millis(1));
    let retry = every.min(Duration::from_secs(300));
    let task = tokio::spawn(async move {
        let mut last_line: Option<Instant> = None;
        let mut failures = 0_u64;
        loop {
            let delay = match refresh_once(&shared, &source).await {
                Ok(_) => {
                    if last_line.is_some() {
                        tracing::info!(
                            target: TARGET,
                            "allow-list refresh from WeChat works again"
                        );
                    }
                    failures = 0;
                    last_line = None;
                    every
                }
                Err(error) => {
                    failures += 1;
                    if last_line.is_none_or(|at| at.elapsed() >= every) {
                        tracing::warn!(
                            target: TARGET,
                            %error,
                            failures,
                            entries = shared.list().len(),
                            list_age_s = shared.age().as_secs(),
                            "could not refresh the allow-list from WeChat; keeping the last \
                             good list (failures counts those since the last such line)"
                        );
                        last_line = Some(Instant::now());
                        failures = 0;
                    }
                    retry
                }
            };
            tokio::time::sleep(jitter(delay)).await;
        }
    });
    RefreshTask { task }
}

/// `delay` ±10 %.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// The task that keeps an allow-list fresh; from
/// [`AllowHandle::spawn_refresh`](super::AllowHandle::spawn_refresh).
///
/// Dropping it stops the refreshing (the list stays as it was), so keep it for as long as
/// the server runs.
#[must_use = "dropping the RefreshTask stops the refreshing"]
pub struct RefreshTask {
    task: tokio::task::JoinHandle<()>,
}

impl RefreshTask {
    /// Stops the refreshing now (the same as dropping it).
    pub fn stop(self) {}
}

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for RefreshTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTask")
            .field("running", &!self.task.is_finished())
            .finish()
    }
}
