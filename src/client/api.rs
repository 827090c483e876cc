//! [`WeChatClient`]: the layers assembled, with typed calls for WeChat's message APIs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body::Body;
use http_body_util::Full;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_layer::Layer;
use tower_service::Service;

use super::read_body::errcode;
use super::source::{Endpoint, TokenSource, WeChatTokenSource};
use super::url::BaseUrl;
use super::{
    AccessTokenLayer, ApiError, ApiToken, AppSecret, BreakerStats, CircuitBreakerLayer,
    ClientError, CustomMessage, Idempotent, ReadBodyLayer, RetryPolicy, RetryStats,
    TemplateMessage, TimeoutLayer, WECHAT_API_BASE,
};

use crate::BoxError;

/// The assembled stack: `CircuitBreaker → Retry → AccessToken → Timeout → ReadBody → HTTP`.
pub type ClientService = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, ClientError>;

/// A WeChat API client: one call sends a message, with the access_token, retries, per-attempt
/// timeout and circuit breaker handled. Cheap to clone; clones share everything.
///
/// ```no_run
/// use tower_wechat::client::{AppSecret, TemplateMessage, WeChatClient};
///
/// # async fn run() -> Result<(), tower_wechat::client::ClientError> {
/// let client = WeChatClient::builder("wx1234567890abcdef", AppSecret::new("appsecret")).build()?;
/// let message = TemplateMessage::new("oUser1234", "TEMPLATE_ID")
///     .data("thing1", "Your order has shipped")
///     .client_msg_id("order-42-shipped");
/// let msgid = client.send_template_message(&message).await?;
/// # let _ = msgid;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct WeChatClient {
    inner: Arc<Inner>,
}

struct Inner {
    service: ClientService,
    base: BaseUrl,
    tokens: AccessTokenLayer,
    breaker: CircuitBreakerLayer,
    retry: RetryPolicy,
}

impl WeChatClient {
    /// Starts a client for `appid`, authenticated by `secret`.
    pub fn builder(appid: impl Into<String>, secret: AppSecret) -> WeChatClientBuilder {
        WeChatClientBuilder {
            appid: appid.into(),
            secret,
            base_url: WECHAT_API_BASE.to_owned(),
            endpoint: Endpoint::Token,
            source: None,
            refresh_margin: AccessTokenLayer::DEFAULT_REFRESH_MARGIN,
            timeout: WeChatClientBuilder::DEFAULT_TIMEOUT,
            token_wait: None,
            retry: RetryPolicy::new(),
            breaker: CircuitBreakerLayer::new(),
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// Sends a template message; returns WeChat's `msgid`.
    ///
    /// Retried after errcode -1, 503 and connect failures; after a timeout, a dropped
    /// connection, a 502 or another 5xx only when the message has a
    /// [`client_msg_id`](TemplateMessage::client_msg_id) (WeChat then de-duplicates).
    pub async fn send_template_message(
        &self,
        message: &TemplateMessage,
    ) -> Result<i64, ClientError> {
        #[derive(serde::Deserialize)]
        struct Sent {
            msgid: i64,
        }
        let idempotent = message.get_client_msg_id().is_some();
        let sent: Sent = self
            .post_json("/cgi-bin/message/template/send", message, idempotent)
            .await?;
        Ok(sent.msgid)
    }

    /// Sends a customer-service message. Not retried when the outcome is unknown (timeout,
    /// dropped connection, HTTP 502 or another 5xx but 503): it may have been delivered.
    pub async fn send_custom_message(&self, message: &CustomMessage) -> Result<(), ClientError> {
        let _: serde::de::IgnoredAny = self
            .post_json("/cgi-bin/message/custom/send", message, false)
            .await?;
        Ok(())
    }

    /// The current access_token (fetched if need be), e.g. for a call this client does
    /// not wrap.
    pub async fn access_token(&self) -> Result<ApiToken, ClientError> {
        self.inner.tokens.token().await
    }

    /// POSTs `body` as JSON to `path` (e.g. `/cgi-bin/message/custom/send`) through the
    /// stack and reads the answer: a non-zero errcode is an [`ApiError`]. `idempotent`
    /// allows retries whose first attempt may have been carried out.
    ///
    /// `path` must start with `/` and hold no `//`, `@`, `\\` or `#`; otherwise it is
    /// refused with [`ClientError::InvalidInput`] and nothing is sent (pasted after the base
    /// URL, such a path could name another host, and the access_token would go there).
    pub async fn post_json<R: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        idempotent: bool,
    ) -> Result<R, ClientError> {
        let json = serde_json::to_vec(body).map_err(|_| {
            ClientError::InvalidInput("the body could not be written as JSON".into())
        })?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.inner.base.join(path)?)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))
            .map_err(|_| ClientError::InvalidInput("the request could not be formed".into()))?;
        if idempotent {
            request.extensions_mut().insert(Idempotent);
        }
        let response = self.call(request).await?;
        read_answer(&response)
    }

    /// Sends `request` (its URI under the base URL, without `access_token`) through the
    /// stack, and returns the buffered answer as it came. A request to another scheme, host
    /// or port than the base URL's is refused with [`ClientError::InvalidInput`], unsent
    /// and without the token.
    pub async fn call(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, ClientError> {
        self.inner.service.clone().oneshot(request).await
    }

    /// The assembled service, to wrap in more layers.
    pub fn service(&self) -> ClientService {
        self.inner.service.clone()
    }

    /// How many times the token cache called its source (fetches from WeChat, or reads
    /// from the shared store).
    pub fn token_fetches(&self) -> u64 {
        self.inner.tokens.fetches()
    }

    /// The circuit breaker's state and counters.
    pub fn breaker_stats(&self) -> BreakerStats {
        self.inner.breaker.stats()
    }

    /// How long the circuit breaker stays open from now; `None` unless it is open.
    pub(crate) fn breaker_open_for(&self) -> Option<Duration> {
        self.inner.breaker.open_for()
    }

    /// Retries made, and retries the budget refused.
    pub fn retry_stats(&self) -> RetryStats {
        self.inner.retry.stats()
    }
}

/// Reads WeChat's JSON answer: errcode, then status, then the typed body.
fn read_answer<R: DeserializeOwned>(response: &Response<Bytes>) -> Result<R, ClientError> {
    if let Some(code) = errcode(response).filter(|code| *code != 0) {
        #[derive(serde::Deserialize)]
        struct Message {
            #[serde(default)]
            errmsg: String,
        }
        let errmsg = serde_json::from_slice::<Message>(response.body())
            .map(|message| message.errmsg)
            .unwrap_or_default();
        return Err(ClientError::Api(ApiError {
            errcode: code,
            errmsg,
        }));
    }
    if !response.status().is_success() {
        return Err(ClientError::Status(response.status()));
    }
    // The position and kind only: serde's message could quote the answer.
    serde_json::from_slice(response.body()).map_err(|error| {
        ClientError::InvalidResponse(format!(
            "JSON answer ({:?} error at line {} column {})",
            error.classify(),
            error.line(),
            error.column()
        ))
    })
}

impl fmt::Debug for WeChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatClient")
            .field("base", &self.inner.base)
            .field("tokens", &self.inner.tokens)
            .field("breaker", &self.inner.breaker)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// Configures a [`WeChatClient`]; from [`WeChatClient::builder`].
#[must_use]
pub struct WeChatClientBuilder {
    appid: String,
    secret: AppSecret,
    base_url: String,
    endpoint: Endpoint,
    source: Option<Arc<dyn TokenSource>>,
    refresh_margin: Duration,
    timeout: Duration,
    token_wait: Option<Duration>,
    retry: RetryPolicy,
    breaker: CircuitBreakerLayer,
    #[cfg(feature = "redis")]
    redis: Option<super::RedisTokenStoreBuilder>,
}

impl WeChatClientBuilder {
    /// The per-attempt timeout by default: 5 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Where WeChat's API is (default [`WECHAT_API_BASE`]); tests and staging point it at
    /// a stand-in.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Fetches tokens from `/cgi-bin/stable_token` instead of `/cgi-bin/token`.
    pub fn stable_token(mut self) -> Self {
        self.endpoint = Endpoint::Stable;
        self
    }

    /// Gets tokens from `source` instead of WeChat's token endpoint (e.g. a central token
    /// service).
    pub fn token_source(mut self, source: impl TokenSource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Shares tokens between replicas through Redis; see
    /// [`RedisTokenStore`](super::RedisTokenStore).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_store(mut self, store: super::RedisTokenStoreBuilder) -> Self {
        self.redis = Some(store);
        self
    }

    /// How long before expiry the token is refreshed; see
    /// [`AccessTokenLayer::refresh_margin`].
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The per-attempt timeout (default [`Self::DEFAULT_TIMEOUT`]). It times the HTTP
    /// exchange only, not the wait for an access_token: [`ClientError::Timeout`] means the
    /// request went out and may have been carried out.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a call waits for an access_token (default: the per-attempt
    /// [`timeout`](Self::timeout)). A call that waits longer fails with
    /// [`ClientError::Token`]`(`[`ClientError::Timeout`]`)`, whose
    /// [`not_sent`](ClientError::not_sent) is `true`; the token fetch goes on for later calls.
    pub fn token_wait(mut self, wait: Duration) -> Self {
        self.token_wait = Some(wait);
        self
    }

    /// The retry policy for API calls (token fetches get their own copy of it, with its
    /// own budget).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The circuit breaker.
    pub fn circuit_breaker(mut self, breaker: CircuitBreakerLayer) -> Self {
        self.breaker = breaker;
        self
    }

    /// Builds the client over a pooled HTTPS client ([`http_client`](super::http_client)).
    /// Needs a tokio runtime when used.
    pub fn build(self) -> Result<WeChatClient, ClientError> {
        self.build_with(super::http_client()?)
    }

    /// Builds the client over any tower HTTP client service.
    pub fn build_with<S, B>(self, http: S) -> Result<WeChatClient, ClientError>
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let base = BaseUrl::parse(&self.base_url)?;
        let http = ReadBodyLayer::new().layer(http);
        let source: Arc<dyn TokenSource> = match self.source {
            Some(source) => source,
            None => {
                let token_retry = self.retry.clone().budget(Default::default());
                let token_http = ServiceBuilder::new()
                    .retry(token_retry)
                    .layer(TimeoutLayer::new(self.timeout))
                    .service(http.clone());
                Arc::new(
                    WeChatTokenSource::new(
                        token_http,
                        &self.base_url,
                        self.appid.clone(),
                        self.secret,
                    )?
                    .endpoint(self.endpoint),
                )
            }
        };
        #[cfg(feature = "redis")]
        let source: Arc<dyn TokenSource> = match self.redis {
            Some(store) => Arc::new(store.build(&self.appid, source)?),
            None => source,
        };
        let tokens = AccessTokenLayer::new(source)
            .base_url(&self.base_url)?
            .refresh_margin(self.refresh_margin)
            .token_wait(self.token_wait.unwrap_or(self.timeout));
        // The timeout inside the token layer: it times the HTTP exchange, not the token wait.
        let stack = ServiceBuilder::new()
            .layer(self.breaker.clone())
            .retry(self.retry.clone())
            .layer(tokens.clone())
            .layer(TimeoutLayer::new(self.timeout))
            .service(http);
        Ok(WeChatClient {
            inner: Arc::new(Inner {
                service: BoxCloneSyncService::new(stack),
                base,
                tokens,
                breaker: self.breaker,
                retry: self.retry,
            }),
        })
    }
}

impl fmt::Debug for WeChatClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatClientBuilder")
            .field("appid", &self.appid)
            .field("secret", &self.secret)
            .field("base_url", &self.base_url)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("token_wait", &self.token_wait)
            .finish_non_exhaustive()
    }
}
