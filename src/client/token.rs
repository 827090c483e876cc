//! [`AccessTokenLayer`]: puts a cached access_token on every call, refreshes it ahead of
//! expiry with one fetch in flight, and recovers once from a refused token.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use futures_util::FutureExt;

use super::error::is_token_errcode;
use super::read_body::errcode;
use super::source::{MAX_TOKEN_LIFETIME, TokenRequest, TokenSource};
use super::url::{BaseUrl, Origin};
use super::{ApiToken, ClientError, WECHAT_API_BASE};
use crate::macros::define_inner_service_accessors;

/// Applies [`AccessToken`]: appends `access_token=...` to each request's query.
///
/// - **Cache.** The token is fetched from the [`TokenSource`] once and reused.
/// - **Ahead of expiry.** From `expires_in − margin` (margin 5 min by default, at most half
///   the lifetime) the next caller starts a refresh in the background and every caller goes
///   on with the still-valid token; nobody waits for a refresh unless the token is missing
///   or expired.
/// - **No stampede.** One fetch at a time: however many callers wait for a token, one
///   fetch is made and they all get its result (its error too, so a failing endpoint is not
///   hammered). The fetch runs in its own task, so a caller that gives up does not cancel it.
/// - **Refused token.** On errcode 40001 / 40014 / 42001 the layer drops the token, fetches
///   a new one (once for all the callers that saw it refused, and not at all if a newer
///   token already replaced it) and retries the call once with it.
/// - **Only to the API.** The token is put only on requests to the configured API origin
///   (scheme, host and port; [`WECHAT_API_BASE`] unless set with [`base_url`](Self::base_url)).
///   Any other request is refused with [`ClientError::InvalidInput`] and not sent.
/// - **Bounded wait.** A caller waits for a token at most [`token_wait`](Self::token_wait)
///   (5 s by default); then it fails with [`ClientError::Token`] holding
///   [`ClientError::Timeout`] — nothing was sent, so [`ClientError::not_sent`] is `true`.
///   The fetch itself goes on for the next callers. Put a per-attempt
///   [`TimeoutLayer`](super::TimeoutLayer) *inside* this layer, so that it times the HTTP
///   exchange only: a timeout there means the request may have been carried out, and a
///   slow token must not be reported so.
///
/// One layer is one cache, shared by every service it builds; clone the layer to share it.
///
/// ```no_run
/// use tower_wechat::client::{
///     AccessTokenLayer, AppSecret, ReadBodyLayer, WECHAT_API_BASE, WeChatTokenSource, http_client,
/// };
///
/// # fn main() -> Result<(), tower_wechat::client::ClientError> {
/// let http = ReadBodyLayer::new().layer(http_client()?);
/// let source = WeChatTokenSource::new(http.clone(), WECHAT_API_BASE, "wx1234", AppSecret::new("secret"))?;
/// let service = tower::ServiceBuilder::new()
///     .layer(AccessTokenLayer::new(source).base_url(WECHAT_API_BASE)?)
///     .service(http);
/// # let _ = service;
/// # Ok(())
/// # }
/// # use tower_layer::Layer;
/// ```
#[derive(Clone)]
#[must_use]
pub struct AccessTokenLayer {
    cache: Arc<TokenCache>,
    origin: Arc<Origin>,
    wait: Duration,
}

impl AccessTokenLayer {
    /// How long before expiry a token is refreshed by default: 5 minutes (WeChat's tokens
    /// last 7200 s; after a new one is issued the old one works for 5 more minutes).
    pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(300);

    /// How long a caller waits for a token by default: 5 s.
    pub const DEFAULT_TOKEN_WAIT: Duration = Duration::from_secs(5);

    /// A layer with an empty cache over `source`, for requests to [`WECHAT_API_BASE`].
    pub fn new(source: impl TokenSource) -> Self {
        let origin = BaseUrl::parse(WECHAT_API_BASE)
            .map(|base| base.origin())
            .unwrap_or_else(|_| Origin::nowhere());
        Self {
            cache: TokenCache::new(Arc::new(source), Self::DEFAULT_REFRESH_MARGIN),
            origin: Arc::new(origin),
            wait: Self::DEFAULT_TOKEN_WAIT,
        }
    }

    /// Where the API is: only requests to this URL's scheme, host and port get the token.
    pub fn base_url(mut self, url: &str) -> Result<Self, ClientError> {
        self.origin = Arc::new(BaseUrl::parse(url)?.origin());
        Ok(self)
    }

    /// Refreshes `margin` before expiry (at most half the token's lifetime). Starts an
    /// empty cache.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.cache = TokenCache::new(self.cache.source.clone(), margin);
        self
    }

    /// How long a caller waits for a token (default [`Self::DEFAULT_TOKEN_WAIT`]) before it
    /// fails with [`ClientError::Token`]`(`[`ClientError::Timeout`]`)`.
    pub fn token_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The current token, fetched if need be (waiting at most the
    /// [`token_wait`](Self::token_wait)).
    pub async fn token(&self) -> Result<ApiToken, ClientError> {
        bounded(self.wait, self.cache.get()).await
    }

    /// How many times the cache has called its token source.
    pub fn fetches(&self) -> u64 {
        self.cache.fetches.load(Ordering::Relaxed)
    }

    /// Names the cache's `account` metrics label, unless it already has one.
    pub(crate) fn name(&self, account: &str) {
        let _ = self.cache.label.set(account.to_owned());
    }
}

/// `token`, or a [`ClientError::Token`] timeout after `wait`.
async fn bounded(
    wait: Duration,
    token: impl Future<Output = Result<ApiToken, ClientError>>,
) -> Result<ApiToken, ClientError> {
    match tokio::time::timeout(wait, token).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                ?wait,
                "no WeChat access_token in time; the call was not sent"
            );
            Err(ClientError::Token(Box::new(ClientError::Timeout(wait))))
        }
    }
}

impl fmt::Debug for AccessTokenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenLayer")
            .field("origin", &self.origin)
            .field("refresh_margin", &self.cache.margin)
            .field("token_wait", &self.wait)
            .field("fetches", &self.fetches())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AccessTokenLayer {
    type Service = AccessToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessToken {
            inner,
            cache: self.cache.clone(),
            origin: self.origin.clone(),
            wait: self.wait,
        }
    }
}

struct TokenCache {
    source: Arc<dyn TokenSource>,
    margin: Duration,
    state: RwLock<State>,
    /// Held by the one fetch in flight (inside its task).
    refresh: Arc<tokio::sync::Mutex<()>>,
    fetches: AtomicU64,
    /// The `account` label of its metrics (set once by `WeChatClient`'s builder).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    label: std::sync::OnceLock<String>,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// Finished fetches; a waiter that sees it move knows a fetch ended while it waited.
    epoch: u64,
    /// The last fetch's error, handed to the callers that waited for it.
    last_error: Option<ClientError>,
}

struct Cached {
    token: ApiToken,
    refresh_at: Instant,
    expires_at: Instant,
}

impl TokenCache {
    fn new(source: Arc<dyn TokenSource>, margin: Duration) -> Arc<Self> {
        Arc::new(Self {
            source,
            margin,
            state: RwLock::new(State::default()),
            refresh: Arc::new(tokio::sync::Mutex::new(())),
            fetches: AtomicU64::new(0),
            label: std::sync::OnceLock::new(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn get(self: &Arc<Self>) -> Result<ApiToken, ClientError> {
        let now = Instant::now();
        let (epoch, still_valid) = {
            let state = self.read();
            match &state.current {
                Some(cached) if now < cached.refresh_at => return Ok(cached.token.clone()),
                Some(cached) if now < cached.expires_at => {
                    (state.epoch, Some(cached.token.clone()))
                }
                _ => (state.epoch, None),
            }
        };
        if let Some(token) = still_valid {
            // Due for refresh: start one in the background unless one is under way.
            if let Ok(guard) = self.refresh.clone().try_lock_owned() {
                let cache = self.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    if cache.read().epoch == epoch {
                        let _ = cache.fetch(None).await;
                    }
                });
            }
            return Ok(token);
        }
        self.refresh_once(epoch, None).await
    }

    /// Replaces `rejected` unless a newer token already did.
    async fn replace_rejected(
        self: &Arc<Self>,
        rejected: &ApiToken,
    ) -> Result<ApiToken, ClientError> {
        let epoch = {
            let mut state = self.write();
            match &state.current {
                // New callers now wait for the new token instead of using the refused one.
                Some(cached) if cached.token == *rejected => state.current = None,
                Some(cached) if Instant::now() < cached.expires_at => {
                    return Ok(cached.token.clone());
                }
                _ => {}
            }
            state.epoch
        };
        self.refresh_once(epoch, Some(rejected.clone())).await
    }

    /// Waits for the refresh lock; fetches unless a fetch ended while waiting (then its
    /// token, or its error, is the answer).
    async fn refresh_once(
        self: &Arc<Self>,
        seen_epoch: u64,
        rejected: Option<ApiToken>,
    ) -> Result<ApiToken, ClientError> {
        let guard = self.refresh.clone().lock_owned().await;
        {
            let state = self.read();
            if state.epoch != seen_epoch {
                match &state.current {
                    Some(cached)
                        if Instant::now() < cached.expires_at
                            && Some(&cached.token) != rejected.as_ref() =>
                    {
                        return Ok(cached.token.clone());
                    }
                    _ => {
                        if let Some(error) = &state.last_error {
                            return Err(error.clone());
                        }
                    }
                }
            }
        }
        // In its own task, holding the lock: a caller that gives up does not cancel it. The
        // task runs in the span of the call that needed the token (its trace, with `otel`).
        let cache = self.clone();
        let task = tokio::spawn(
            async move {
                let _guard = guard;
                cache.fetch(rejected).await
            }
            .instrument(tracing::Span::current()),
        );
        match task.await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Token(Box::new(ClientError::InvalidResponse(
                "the token fetch panicked".into(),
            )))),
        }
    }

    /// Calls the source (under the refresh lock) and stores the outcome: the new token, or
    /// the error (a panic of the source included) for every caller that waited for it.
    async fn fetch(&self, rejected: Option<ApiToken>) -> Result<ApiToken, ClientError> {
        let started = Instant::now();
        let mut request = TokenRequest::new(self.margin);
        request.rejected = rejected;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = std::panic::AssertUnwindSafe(self.source.fetch(&request))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::InvalidResponse(
                    "the token source panicked".into(),
                ))
            })
            .and_then(|issued| self.to_cache(started, issued.token, issued.expires_in));
        #[cfg(feature = "metrics")]
        super::metrics::record_token_fetch(
            self.label.get().map_or("", String::as_str),
            result.is_ok(),
        );
        // Everything that can fail is done: the epoch and the outcome change together.
        let mut state = self.write();
        state.epoch += 1;
        match result {
            Ok(cached) => {
                let token = cached.token.clone();
                state.current = Some(cached);
                state.last_error = None;
                Ok(token)
            }
            Err(error) => {
                tracing::warn!(%error, "fetching a WeChat access_token failed");
                let now = Instant::now();
                if let Some(cached) = &mut state.current {
                    // Still valid: try again a little later, not on every call.
                    let left = cached.expires_at.saturating_duration_since(now);
                    cached.refresh_at = now + (left / 2).min(Duration::from_secs(5));
                }
                let error = ClientError::Token(Box::new(error));
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }
}

impl TokenCache {
    /// A fetched token's cache entry. Its lifetime is capped at [`MAX_TOKEN_LIFETIME`] (a
    /// source's `u64::MAX` seconds must not overflow the clock); none at all is an error.
    fn to_cache(
        &self,
        started: Instant,
        token: ApiToken,
        expires_in: Duration,
    ) -> Result<Cached, ClientError> {
        let lifetime = expires_in.min(MAX_TOKEN_LIFETIME);
        if lifetime.is_zero() {
            return Err(ClientError::InvalidResponse(
                "the token source gave a token with no validity".into(),
            ));
        }
        let ahead = self.margin.min(lifetime / 2);
        let overflow =
            || ClientError::InvalidResponse("the token's expiry is beyond the clock".into());
        let expires_at = started.checked_add(lifetime).ok_or_else(overflow)?;
        let refresh_at = started.checked_add(lifetime - ahead).ok_or_else(overflow)?;
        tracing::debug!(expires_in = ?lifetime, "fetched a WeChat access_token");
        Ok(Cached {
            token,
            refresh_at,
            expires_at,
        })
    }
}

/// Puts the access_token on each call; see [`AccessTokenLayer`].
#[derive(Clone)]
pub struct AccessToken<S> {
    inner: S,
    cache: Arc<TokenCache>,
    origin: Arc<Origin>,
    wait: Duration,
}

impl<S> AccessToken<S> {
    /// Wraps `inner`, taking tokens from `source` with the defaults of
    /// [`AccessTokenLayer::new`].
    ///
    /// ```no_run
    /// use tower_wechat::client::{AccessToken, AppSecret, ReadBody, WECHAT_API_BASE, WeChatTokenSource, http_client};
    ///
    /// # fn main() -> Result<(), tower_wechat::client::ClientError> {
    /// let http = ReadBody::new(http_client()?);
    /// let source = WeChatTokenSource::new(http.clone(), WECHAT_API_BASE, "wx1234", AppSecret::new("secret"))?;
    /// let service = AccessToken::new(http, source);
    /// # let _ = service;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: S, source: impl TokenSource) -> Self {
        AccessTokenLayer::new(source).layer(inner)
    }

    /// An [`AccessTokenLayer`] taking tokens from `source`.
    ///
    /// ```no_run
    /// use tower_wechat::client::{AccessToken, AppSecret, ReadBody, WECHAT_API_BASE, WeChatTokenSource, http_client};
    ///
    /// # fn main() -> Result<(), tower_wechat::client::ClientError> {
    /// let http = ReadBody::new(http_client()?);
    /// let source = WeChatTokenSource::new(http, WECHAT_API_BASE, "wx1234", AppSecret::new("secret"))?;
    /// let layer = AccessToken::<()>::layer(source);
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn layer(source: impl TokenSource) -> AccessTokenLayer {
        AccessTokenLayer::new(source)
    }

    define_inner_service_accessors!();
}

impl<S> fmt::Debug for AccessToken<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken").finish_non_exhaustive()
    }
}

impl<S> Service<Request<Full<Bytes>>> for AccessToken<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Bytes>> + Clone + Send + 'static,
    S::Error: Into<ClientError>,
    S::Future: Send,
{
    type Response = Response<Bytes>;
    type Error = ClientError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        // The clone goes back into `self`; the one that was polled ready is used.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cache = self.cache.clone();
        let on_origin = Origin::of(request.uri()).as_ref() == Some(&*self.origin);
        let wait = self.wait;
        ResponseFuture(Box::pin(async move {
            if !on_origin {
                tracing::warn!("refused a request off the WeChat API's origin: no access_token");
                return Err(ClientError::InvalidInput(
                    "the request's URL is not on the API's scheme, host and port; \
                     the access_token is not sent there"
                        .into(),
                ));
            }
            let token = bounded(wait, cache.get()).await?;
            let again = request.clone();
            let response = inner
                .call(with_token(request, &token)?)
                .await
                .map_err(Into::into)?;
            match errcode(&response) {
                Some(code) if is_token_errcode(code) => {
                    tracing::info!(
                        errcode = code,
                        "WeChat refused the access_token; refreshing"
                    );
                }
                _ => return Ok(response),
            }
            let token = bounded(wait, cache.replace_rejected(&token)).await?;
            let inner = inner.ready().await.map_err(Into::into)?;
            inner
                .call(with_token(again, &token)?)
                .await
                .map_err(Into::into)
        }))
    }
}

/// Response future of [`AccessToken`].
pub struct ResponseFuture(
    Pin<Box<dyn Future<Output = Result<Response<Bytes>, ClientError>> + Send>>,
);

impl Future for ResponseFuture {
    type Output = Result<Response<Bytes>, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

/// `request` with `access_token=...` appended to its query.
fn with_token(
    mut request: Request<Full<Bytes>>,
    token: &ApiToken,
) -> Result<Request<Full<Bytes>>, ClientError> {
    let uri = request.uri();
    let encoded: String = form_urlencoded::byte_serialize(token.expose().as_bytes()).collect();
    let path_and_query = match uri.query() {
        Some(query) if !query.is_empty() => {
            format!("{}?{query}&access_token={encoded}", uri.path())
        }
        _ => format!("{}?access_token={encoded}", uri.path()),
    };
    let mut parts = uri.clone().into_parts();
    let invalid = || ClientError::InvalidInput("the request URL could not take the token".into());
    parts.path_and_query = Some(path_and_query.parse().map_err(|_| invalid())?);
    *request.uri_mut() = Uri::from_parts(parts).map_err(|_| invalid())?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_appended_to_the_query() {
        let token = ApiToken::new("AB+c/=d");
        let request = Request::post("http://h/cgi-bin/message/custom/send")
            .body(Full::default())
            .unwrap();
        let request = with_token(request, &token).unwrap();
        assert_eq!(
            request.uri(),
            "http://h/cgi-bin/message/custom/send?access_token=AB%2Bc%2F%3Dd"
        );
        let request = Request::get("http://h/x?a=1")
            .body(Full::default())
            .unwrap();
        assert_eq!(
            with_token(request, &token).unwrap().uri(),
            "http://h/x?a=1&access_token=AB%2Bc%2F%3Dd"
        );
    }
}
