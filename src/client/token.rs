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

use super::error::is_token_errcode;
use super::read_body::errcode;
use super::source::{TokenRequest, TokenSource};
use super::{ApiToken, ClientError};

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
///     .layer(AccessTokenLayer::new(source))
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
}

impl AccessTokenLayer {
    /// How long before expiry a token is refreshed by default: 5 minutes (WeChat's tokens
    /// last 7200 s; after a new one is issued the old one works for 5 more minutes).
    pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(300);

    /// A layer with an empty cache over `source`.
    pub fn new(source: impl TokenSource) -> Self {
        Self::with(Arc::new(source), Self::DEFAULT_REFRESH_MARGIN)
    }

    /// Refreshes `margin` before expiry (at most half the token's lifetime). Starts an
    /// empty cache.
    pub fn refresh_margin(self, margin: Duration) -> Self {
        Self::with(self.cache.source.clone(), margin)
    }

    /// The current token, fetched if need be.
    pub async fn token(&self) -> Result<ApiToken, ClientError> {
        self.cache.get().await
    }

    /// How many times the cache has called its token source.
    pub fn fetches(&self) -> u64 {
        self.cache.fetches.load(Ordering::Relaxed)
    }

    fn with(source: Arc<dyn TokenSource>, margin: Duration) -> Self {
        Self {
            cache: Arc::new(TokenCache {
                source,
                margin,
                state: RwLock::new(State::default()),
                refresh: Arc::new(tokio::sync::Mutex::new(())),
                fetches: AtomicU64::new(0),
            }),
        }
    }
}

impl fmt::Debug for AccessTokenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenLayer")
            .field("refresh_margin", &self.cache.margin)
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
        // In its own task, holding the lock: a caller that gives up does not cancel it.
        let cache = self.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            cache.fetch(rejected).await
        });
        match task.await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Token(Box::new(ClientError::InvalidResponse(
                "the token fetch panicked".into(),
            )))),
        }
    }

    /// Calls the source (under the refresh lock) and stores the outcome.
    async fn fetch(&self, rejected: Option<ApiToken>) -> Result<ApiToken, ClientError> {
        let started = Instant::now();
        let mut request = TokenRequest::new(self.margin);
        request.rejected = rejected;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.source.fetch(&request).await;
        let mut state = self.write();
        state.epoch += 1;
        match result {
            Ok(issued) => {
                let lifetime = issued.expires_in;
                let ahead = self.margin.min(lifetime / 2);
                state.current = Some(Cached {
                    token: issued.token.clone(),
                    refresh_at: started + (lifetime - ahead),
                    expires_at: started + lifetime,
                });
                state.last_error = None;
                tracing::debug!(expires_in = ?lifetime, "fetched a WeChat access_token");
                Ok(issued.token)
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

/// Puts the access_token on each call; see [`AccessTokenLayer`].
#[derive(Clone)]
pub struct AccessToken<S> {
    inner: S,
    cache: Arc<TokenCache>,
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
        ResponseFuture(Box::pin(async move {
            let token = cache.get().await?;
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
            let token = cache.replace_rejected(&token).await?;
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
