//! [`WeChatClient`]: the layers assembled, with typed calls for WeChat's and WeCom's
//! message APIs, for one account or several ([`Account`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use tracing::Instrument;

use super::read_body::{answer_class, errcode};
use super::source::{Endpoint, TokenSource, WeChatTokenSource};
use super::url::BaseUrl;
use super::{
    AccessTokenLayer, ApiError, ApiToken, AppSecret, BizSubscribeMessage, BreakerStats,
    CircuitBreakerLayer, ClientError, CustomMessage, ErrorClass, Idempotent, ReadBodyLayer,
    RetryPolicy, RetryStats, SubscribeMessage, TemplateMessage, TemplateWarning, TimeoutLayer,
    WECHAT_API_BASE, WECOM_API_BASE, WeComMessage, WeComSent,
};

use crate::BoxError;

/// The assembled stack: `CircuitBreaker → Retry → AccessToken → Timeout → ReadBody → HTTP`.
pub type ClientService = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, ClientError>;

/// The HTTP client under every account's stack, answers buffered.
type HttpService = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, ClientError>;

/// A WeChat API client for one account — an Official Account or Mini Program (appid), or a
/// WeCom app (corp id + the app's secret) — with the access_token, retries, per-attempt
/// timeout and circuit breaker handled. Cheap to clone; clones share everything.
///
/// # Several accounts and apps
///
/// [`account`](Self::account) opens a handle for another account on the same client: it
/// shares the HTTP connection pool, the settings and the retry policy, and the circuit
/// breaker of its API host (one breaker per host: WeChat's and WeCom's are apart), but has a
/// token cache of its own, keyed by the account's kind, API base, id **and secret**. Two
/// WeCom apps of one corp have different secrets and so never use each other's token;
/// opening the same account twice shares one cache (one token fetch).
///
/// ```no_run
/// use tower_wechat::client::{Account, AppSecret, TemplateMessage, WeChatClient, WeComMessage};
///
/// # async fn run() -> Result<(), tower_wechat::client::ClientError> {
/// let client = WeChatClient::builder("wx1234567890abcdef", AppSecret::new("appsecret")).build()?;
/// let message = TemplateMessage::new("oUser1234", "TEMPLATE_ID")
///     .data("thing1", "Your order has shipped")
///     .client_msg_id("order-42-shipped");
/// let msgid = client.send_template_message(&message).await?;
///
/// // A WeCom app on the same client: its own token, WeCom's host and breaker.
/// let alerts = client.account(
///     Account::wecom("ww0123456789abcdef", AppSecret::new("app-secret")).agent_id(1000002),
/// )?;
/// let sent = alerts.send_wecom_message(&WeComMessage::text("Build passed").to_users(["zhangsan"])).await?;
/// # let _ = (msgid, sent);
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
    kind: Kind,
    label: Arc<str>,
    agent_id: Option<u32>,
    hub: Arc<Hub>,
}

/// Which API an account speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// Official Accounts and Mini Programs: `api.weixin.qq.com`, `/cgi-bin/token`.
    WeChat,
    /// WeCom apps: `qyapi.weixin.qq.com`, `/cgi-bin/gettoken`.
    WeCom,
}

impl Kind {
    fn default_base(self) -> &'static str {
        match self {
            Self::WeChat => WECHAT_API_BASE,
            Self::WeCom => WECOM_API_BASE,
        }
    }
}

/// What the accounts of one client share.
struct Hub {
    http: HttpService,
    timeout: Duration,
    token_wait: Duration,
    refresh_margin: Duration,
    endpoint: Endpoint,
    retry: RetryPolicy,
    /// The settings for the breaker of a host met for the first time.
    breaker_template: CircuitBreakerLayer,
    /// One breaker per API origin.
    breakers: Mutex<HashMap<String, CircuitBreakerLayer>>,
    /// One token cache per account (kind, base, id, secret).
    accounts: Mutex<HashMap<AccountKey, AccessTokenLayer>>,
    #[cfg(feature = "redis")]
    redis: Option<super::RedisTokenStoreBuilder>,
    /// (template id, field) already warned about; at most [`MAX_WARNED`].
    warned: Mutex<HashSet<(String, String)>>,
}

/// How many template fields' 2023-rule warnings are remembered (each is logged once).
const MAX_WARNED: usize = 1024;

/// What identifies one token: the secret included (WeCom apps of one corp differ only by it).
#[derive(PartialEq, Eq, Hash)]
struct AccountKey {
    kind: Kind,
    origin: String,
    id: String,
    secret: AppSecret,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Another account to open on a [`WeChatClient`] with [`WeChatClient::account`].
///
/// ```
/// use tower_wechat::client::{Account, AppSecret};
///
/// let mini_program = Account::wechat("wxabcdef0123456789", AppSecret::new("secret"));
/// let wecom_app = Account::wecom("ww0123456789abcdef", AppSecret::new("app-secret"))
///     .agent_id(1000002)
///     .label("ops-alerts");
/// # let _ = (mini_program, wecom_app);
/// ```
#[derive(Clone)]
#[must_use]
pub struct Account {
    kind: Kind,
    id: String,
    secret: AppSecret,
    base_url: Option<String>,
    agent_id: Option<u32>,
    label: Option<String>,
}

impl Account {
    /// An Official Account or Mini Program: `appid` and its appsecret, on
    /// [`WECHAT_API_BASE`].
    pub fn wechat(appid: impl Into<String>, secret: AppSecret) -> Self {
        Self::new(Kind::WeChat, appid.into(), secret)
    }

    /// A WeCom app: the corp id and **the app's** secret, on [`WECOM_API_BASE`].
    pub fn wecom(corpid: impl Into<String>, corpsecret: AppSecret) -> Self {
        Self::new(Kind::WeCom, corpid.into(), corpsecret)
    }

    fn new(kind: Kind, id: String, secret: AppSecret) -> Self {
        Self {
            kind,
            id,
            secret,
            base_url: None,
            agent_id: None,
            label: None,
        }
    }

    /// Where its API is (default [`WECHAT_API_BASE`] or [`WECOM_API_BASE`]).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// A WeCom app's agentid, put on its messages that have none.
    pub fn agent_id(mut self, agentid: u32) -> Self {
        self.agent_id = Some(agentid);
        self
    }

    /// Its name in metrics and logs (default: the appid; for WeCom the corp id and agentid,
    /// `ww…/1000002`). Never put a secret here.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    fn default_label(&self) -> String {
        match (self.kind, self.agent_id) {
            (Kind::WeCom, Some(agent)) => format!("{}/{agent}", self.id),
            _ => self.id.clone(),
        }
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("secret", &self.secret)
            .field("base_url", &self.base_url)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

impl WeChatClient {
    /// Starts a client for the Official Account or Mini Program `appid`, authenticated by
    /// `secret`, on [`WECHAT_API_BASE`].
    pub fn builder(appid: impl Into<String>, secret: AppSecret) -> WeChatClientBuilder {
        WeChatClientBuilder::new(Account::wechat(appid, secret))
    }

    /// Starts a client for a WeCom (企业微信) app: the corp id and the app's own secret, on
    /// [`WECOM_API_BASE`], fetching tokens from `/cgi-bin/gettoken`. Each app of a corp has
    /// its own secret and its own token: open one client (or [`account`](Self::account)) per
    /// app.
    ///
    /// ```no_run
    /// use tower_wechat::client::{AppSecret, WeChatClient, WeComMessage};
    ///
    /// # async fn run() -> Result<(), tower_wechat::client::ClientError> {
    /// let app = WeChatClient::wecom("ww0123456789abcdef", AppSecret::new("app-secret"))
    ///     .agent_id(1000002)
    ///     .build()?;
    /// let sent = app.send_wecom_message(&WeComMessage::text("Deploy done").to_users(["zhangsan"])).await?;
    /// if sent.is_partial() {
    ///     eprintln!("not reached: {} users", sent.invalid_users.len());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn wecom(corpid: impl Into<String>, corpsecret: AppSecret) -> WeChatClientBuilder {
        WeChatClientBuilder::new(Account::wecom(corpid, corpsecret))
    }

    /// A handle for another account on this client: the same HTTP pool, settings and retry
    /// policy, the breaker of its API host, and its own token cache (shared with any other
    /// handle of the same account, id and secret). See the [type docs](Self).
    ///
    /// Tokens come from the account kind's endpoint (`/cgi-bin/token`, or `stable_token` if
    /// the client was built with it; WeCom's `/cgi-bin/gettoken`), through the client's
    /// Redis store if it has one; a [`token_source`](WeChatClientBuilder::token_source)
    /// given to the builder serves the builder's account only.
    pub fn account(&self, account: Account) -> Result<WeChatClient, ClientError> {
        open(&self.inner.hub, account, None)
    }

    /// Sends a template message (Official Accounts); returns WeChat's `msgid`.
    ///
    /// Retried after errcode -1, 503 and connect failures; after a timeout, a dropped
    /// connection, a 502 or another 5xx only when the message has a
    /// [`client_msg_id`](TemplateMessage::client_msg_id) (WeChat then de-duplicates).
    /// Fields that WeChat's 2023 template rules drop or cut ([`TemplateMessage::warnings`])
    /// are logged once per template and field, and sent anyway.
    pub async fn send_template_message(
        &self,
        message: &TemplateMessage,
    ) -> Result<i64, ClientError> {
        #[derive(serde::Deserialize)]
        struct Sent {
            msgid: i64,
        }
        self.expect_kind(Kind::WeChat, "a template message")?;
        self.warn_template_rules(message);
        let idempotent = message.get_client_msg_id().is_some();
        let sent: Sent = self
            .post_json("/cgi-bin/message/template/send", message, idempotent)
            .await?;
        Ok(sent.msgid)
    }

    /// Sends a customer-service message. Not retried when the outcome is unknown (timeout,
    /// dropped connection, HTTP 502 or another 5xx but 503): it may have been delivered.
    /// errcode 45047 (more than 5 messages since the user last wrote) and 45015 (48 h
    /// passed) are [`ErrorClass::Quota`](super::ErrorClass::Quota).
    pub async fn send_custom_message(&self, message: &CustomMessage) -> Result<(), ClientError> {
        self.expect_kind(Kind::WeChat, "a customer-service message")?;
        let _: serde::de::IgnoredAny = self
            .post_json("/cgi-bin/message/custom/send", message, false)
            .await?;
        Ok(())
    }

    /// Sends a Mini Program subscribe message (`/cgi-bin/message/subscribe/send`); returns
    /// the `msgid` when WeChat's answer has one (its documented answer has none).
    ///
    /// Not retried when the outcome is unknown: there is no de-duplication id, and the
    /// user's one-time subscription may already have been used. errcode 43101 is
    /// [`ErrorClass::UserRefused`](super::ErrorClass::UserRefused) and not retried.
    pub async fn send_subscribe_message(
        &self,
        message: &SubscribeMessage,
    ) -> Result<Option<i64>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Sent {
            msgid: Option<i64>,
        }
        self.expect_kind(Kind::WeChat, "a subscribe message")?;
        let sent: Sent = self
            .post_json("/cgi-bin/message/subscribe/send", message, false)
            .await?;
        Ok(sent.msgid)
    }

    /// Sends an Official Account subscribe message (`/cgi-bin/message/subscribe/bizsend`,
    /// 订阅通知), whose answer has no msgid. Retried as
    /// [`send_subscribe_message`](Self::send_subscribe_message).
    pub async fn send_biz_subscribe_message(
        &self,
        message: &BizSubscribeMessage,
    ) -> Result<(), ClientError> {
        self.expect_kind(Kind::WeChat, "a subscribe message")?;
        let _: serde::de::IgnoredAny = self
            .post_json("/cgi-bin/message/subscribe/bizsend", message, false)
            .await?;
        Ok(())
    }

    /// Sends a WeCom app message (`/cgi-bin/message/send`; a client from
    /// [`WeChatClient::wecom`] or [`Account::wecom`]). The message's agentid, or else the
    /// client's, is used; with neither, or without a recipient, it is refused unsent
    /// ([`ClientError::InvalidInput`]).
    ///
    /// With WeCom's duplicate check on (the default, see [`WeComMessage`]) the send is
    /// retried after an ambiguous failure too (a timeout, a dropped connection, a 502):
    /// WeCom does not deliver the repeat. With it off, only after -1, 503 and connect
    /// failures. A partial success comes back as `Ok` with the recipients not reached
    /// ([`WeComSent::is_partial`]); 60020 (IP not trusted) is
    /// [`ErrorClass::Configuration`](super::ErrorClass::Configuration), never retried.
    pub async fn send_wecom_message(
        &self,
        message: &WeComMessage,
    ) -> Result<WeComSent, ClientError> {
        self.expect_kind(Kind::WeCom, "a WeCom app message")?;
        if !message.has_recipients() {
            return Err(ClientError::InvalidInput(
                "a WeCom message needs a user, department or tag to go to".into(),
            ));
        }
        let filled;
        let message = match (message.get_agent_id(), self.inner.agent_id) {
            (Some(_), _) => message,
            (None, Some(agent)) => {
                filled = message.clone().agent_id(agent);
                &filled
            }
            (None, None) => {
                return Err(ClientError::InvalidInput(
                    "a WeCom message needs an agentid (on the message or the client)".into(),
                ));
            }
        };
        let sent: WeComSent = self
            .post_json("/cgi-bin/message/send", message, message.duplicate_check())
            .await?;
        if sent.is_partial() {
            tracing::info!(
                account = %self.inner.label,
                invalid_users = sent.invalid_users.len(),
                invalid_parties = sent.invalid_parties.len(),
                invalid_tags = sent.invalid_tags.len(),
                unlicensed_users = sent.unlicensed_users.len(),
                "WeCom delivered the message to some recipients only"
            );
        }
        Ok(sent)
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
        let started = Instant::now();
        let result = self
            .exchange(request)
            .await
            .and_then(|response| read_answer(&response));
        self.record(
            started,
            result.as_ref().map(drop).map_err(ClientError::class),
        );
        result
    }

    /// GETs `path_and_query` (e.g. `/cgi-bin/getcallbackip`) through the stack and reads
    /// the JSON answer as [`post_json`](Self::post_json) does. A GET changes nothing, so it
    /// is marked [`Idempotent`] and retried after ambiguous failures too. The path is
    /// checked as in `post_json`; the access_token is appended to the query.
    ///
    /// ```no_run
    /// use tower_wechat::client::{AppSecret, WeChatClient};
    ///
    /// # async fn run() -> Result<(), tower_wechat::client::ClientError> {
    /// #[derive(serde::Deserialize)]
    /// struct CallbackIps {
    ///     ip_list: Vec<String>,
    /// }
    /// let client = WeChatClient::builder("wx1234567890abcdef", AppSecret::new("appsecret")).build()?;
    /// let ips: CallbackIps = client.get_json("/cgi-bin/getcallbackip").await?;
    /// # let _ = ips.ip_list;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_json<R: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<R, ClientError> {
        let mut request = Request::get(self.inner.base.join(path_and_query)?)
            .body(Full::default())
            .map_err(|_| ClientError::InvalidInput("the request could not be formed".into()))?;
        request.extensions_mut().insert(Idempotent);
        let started = Instant::now();
        let result = self
            .exchange(request)
            .await
            .and_then(|response| read_answer(&response));
        self.record(
            started,
            result.as_ref().map(drop).map_err(ClientError::class),
        );
        result
    }

    /// Sends `request` (its URI under the base URL, without `access_token`) through the
    /// stack, and returns the buffered answer as it came. A request to another scheme, host
    /// or port than the base URL's is refused with [`ClientError::InvalidInput`], unsent
    /// and without the token.
    pub async fn call(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, ClientError> {
        let started = Instant::now();
        let result = self.exchange(request).await;
        let outcome = match &result {
            Ok(response) => answer_class(response).map_or(Ok(()), Err),
            Err(error) => Err(error.class()),
        };
        self.record(started, outcome);
        result
    }

    /// One call through the stack, in its `wechat_api` span.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, ClientError> {
        let span = super::span::call_span(&self.inner.label, &request);
        let result = self
            .inner
            .service
            .clone()
            .oneshot(request)
            .instrument(span.clone())
            .await;
        super::span::record(&span, &result);
        result
    }

    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    fn record(&self, started: Instant, outcome: Result<(), ErrorClass>) {
        #[cfg(feature = "metrics")]
        super::metrics::record_call(&self.inner.label, outcome, started.elapsed());
        #[cfg(not(feature = "metrics"))]
        let _ = (started, outcome);
    }

    fn expect_kind(&self, kind: Kind, what: &str) -> Result<(), ClientError> {
        if self.inner.kind == kind {
            return Ok(());
        }
        Err(ClientError::InvalidInput(match kind {
            Kind::WeCom => format!(
                "{what} goes through a WeCom client (WeChatClient::wecom or Account::wecom)"
            ),
            Kind::WeChat => format!(
                "{what} goes through an Official Account or Mini Program client, not a WeCom one"
            ),
        }))
    }

    /// Logs each 2023-rule warning once per template and field.
    fn warn_template_rules(&self, message: &TemplateMessage) {
        let warnings = message.warnings();
        if warnings.is_empty() {
            return;
        }
        let mut warned = lock(&self.inner.hub.warned);
        for warning in warnings {
            let field = match &warning {
                TemplateWarning::Dropped(field) | TemplateWarning::TooLong { field, .. } => field,
            };
            let key = (message.template_id().to_owned(), field.clone());
            if warned.len() < MAX_WARNED && warned.insert(key) {
                tracing::warn!(
                    template_id = message.template_id(),
                    "{warning}; sent anyway (logged once per template and field)"
                );
            }
        }
    }

    /// The assembled service, to wrap in more layers.
    pub fn service(&self) -> ClientService {
        self.inner.service.clone()
    }

    /// How many times this account's token cache called its source (fetches from WeChat,
    /// or reads from the shared store).
    pub fn token_fetches(&self) -> u64 {
        self.inner.tokens.fetches()
    }

    /// The account's label in metrics and logs (see [`WeChatClientBuilder::label`]).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The circuit breaker's state and counters (the breaker of this account's API host,
    /// shared with the other accounts on it).
    pub fn breaker_stats(&self) -> BreakerStats {
        self.inner.breaker.stats()
    }

    /// How long the circuit breaker stays open from now; `None` unless it is open.
    pub(crate) fn breaker_open_for(&self) -> Option<Duration> {
        self.inner.breaker.open_for()
    }

    /// Retries made, and retries the budget refused (by every account of the client).
    pub fn retry_stats(&self) -> RetryStats {
        self.inner.hub.retry.stats()
    }
}

/// Opens `account` on `hub`: its token cache (reused if the same account is open), the
/// breaker of its origin, and the stack over the shared HTTP client.
fn open(
    hub: &Arc<Hub>,
    account: Account,
    custom_source: Option<Arc<dyn TokenSource>>,
) -> Result<WeChatClient, ClientError> {
    let base_url = account
        .base_url
        .clone()
        .unwrap_or_else(|| account.kind.default_base().to_owned());
    let base = BaseUrl::parse(&base_url)?;
    let label: Arc<str> = Arc::from(
        account
            .label
            .clone()
            .unwrap_or_else(|| account.default_label()),
    );
    let origin = format!("{:?}", base.origin());
    let key = AccountKey {
        kind: account.kind,
        origin: origin.clone(),
        id: account.id.clone(),
        secret: account.secret.clone(),
    };
    let tokens = {
        let mut accounts = lock(&hub.accounts);
        match accounts.get(&key) {
            Some(tokens) => tokens.clone(),
            None => {
                let source = match custom_source {
                    Some(source) => source,
                    None => default_source(hub, &account, &base_url)?,
                };
                let tokens = AccessTokenLayer::new(source)
                    .base_url(&base_url)?
                    .refresh_margin(hub.refresh_margin)
                    .token_wait(hub.token_wait);
                tokens.name(&label);
                accounts.insert(key, tokens.clone());
                tokens
            }
        }
    };
    let breaker = lock(&hub.breakers)
        .entry(origin)
        .or_insert_with(|| hub.breaker_template.fresh())
        .clone();
    breaker.name(&base.host_port());
    // The timeout inside the token layer: it times the HTTP exchange, not the token wait.
    let stack = ServiceBuilder::new()
        .layer(breaker.clone())
        .retry(hub.retry.clone())
        .layer(tokens.clone())
        .layer(TimeoutLayer::new(hub.timeout))
        .service(hub.http.clone());
    Ok(WeChatClient {
        inner: Arc::new(Inner {
            service: BoxCloneSyncService::new(stack),
            base,
            tokens,
            breaker,
            kind: account.kind,
            label,
            agent_id: account.agent_id,
            hub: hub.clone(),
        }),
    })
}

/// The account kind's token endpoint, with its own retry budget, behind the Redis store
/// when there is one.
fn default_source(
    hub: &Hub,
    account: &Account,
    base_url: &str,
) -> Result<Arc<dyn TokenSource>, ClientError> {
    let token_retry = hub.retry.clone().budget(Default::default());
    let token_http = ServiceBuilder::new()
        .retry(token_retry)
        .layer(TimeoutLayer::new(hub.timeout))
        .service(hub.http.clone());
    let source = match account.kind {
        Kind::WeChat => WeChatTokenSource::new(
            token_http,
            base_url,
            account.id.clone(),
            account.secret.clone(),
        )?
        .endpoint(hub.endpoint),
        Kind::WeCom => WeChatTokenSource::wecom(
            token_http,
            base_url,
            account.id.clone(),
            account.secret.clone(),
        )?,
    };
    #[cfg(feature = "redis")]
    if let Some(store) = &hub.redis {
        return Ok(Arc::new(store.clone().build(&store_key(account), source)?));
    }
    Ok(Arc::new(source))
}

/// The Redis key part of an account: the appid; for a WeCom app the corp id and a digest of
/// the app's secret (apps of one corp differ only by their secrets; the secret itself is
/// not written).
#[cfg(feature = "redis")]
fn store_key(account: &Account) -> String {
    match account.kind {
        Kind::WeChat => account.id.clone(),
        Kind::WeCom => {
            use sha1::{Digest, Sha1};
            let digest = Sha1::new()
                .chain_update(b"tower-wechat wecom token key\0")
                .chain_update(account.secret.expose().as_bytes())
                .finalize();
            let hex: String = digest[..8]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            format!("wecom:{}:{hex}", account.id)
        }
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
            .field("kind", &self.inner.kind)
            .field("label", &self.inner.label)
            .field("base", &self.inner.base)
            .field("tokens", &self.inner.tokens)
            .field("breaker", &self.inner.breaker)
            .field("retry", &self.inner.hub.retry)
            .finish_non_exhaustive()
    }
}

/// Configures a [`WeChatClient`]; from [`WeChatClient::builder`] or [`WeChatClient::wecom`].
#[must_use]
pub struct WeChatClientBuilder {
    account: Account,
    endpoint: Endpoint,
    source: Option<Arc<dyn TokenSource>>,
    refresh_margin: Duration,
    timeout: Duration,
    token_wait: Option<Duration>,
    retry: RetryPolicy,
    breaker: CircuitBreakerLayer,
    #[cfg(feature = "redis")]
    redis: Option<super::RedisTokenStoreBuilder>,
    #[cfg(feature = "metrics")]
    semconv_metrics: bool,
}

impl WeChatClientBuilder {
    /// The per-attempt timeout by default: 5 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    fn new(account: Account) -> Self {
        Self {
            account,
            endpoint: Endpoint::Token,
            source: None,
            refresh_margin: AccessTokenLayer::DEFAULT_REFRESH_MARGIN,
            timeout: Self::DEFAULT_TIMEOUT,
            token_wait: None,
            retry: RetryPolicy::new(),
            breaker: CircuitBreakerLayer::new(),
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "metrics")]
            semconv_metrics: false,
        }
    }

    /// Where the API is (default [`WECHAT_API_BASE`], or [`WECOM_API_BASE`] for
    /// [`WeChatClient::wecom`]); tests and staging point it at a stand-in.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.account.base_url = Some(url.into());
        self
    }

    /// Fetches tokens from `/cgi-bin/stable_token` instead of `/cgi-bin/token` (Official
    /// Accounts and Mini Programs, this one and those opened with
    /// [`WeChatClient::account`]; WeCom has no such endpoint).
    pub fn stable_token(mut self) -> Self {
        self.endpoint = Endpoint::Stable;
        self
    }

    /// A WeCom app's agentid, put on its messages that have none.
    pub fn agent_id(mut self, agentid: u32) -> Self {
        self.account.agent_id = Some(agentid);
        self
    }

    /// The account's name in metrics and logs (default: the appid; for WeCom the corp id
    /// and agentid, `ww…/1000002`). Never put a secret here.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.account.label = Some(label.into());
        self
    }

    /// Gets tokens from `source` instead of WeChat's token endpoint (e.g. a central token
    /// service).
    pub fn token_source(mut self, source: impl TokenSource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Shares tokens between replicas through Redis; see
    /// [`RedisTokenStore`](super::RedisTokenStore). Keys are per account: the appid, or for
    /// a WeCom app the corp id and a digest of the app's secret.
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

    /// The circuit breaker of this account's API host (accounts opened on another host get
    /// one with the same settings).
    pub fn circuit_breaker(mut self, breaker: CircuitBreakerLayer) -> Self {
        self.breaker = breaker;
        self
    }

    /// Also records each HTTP attempt (retries and token fetches included) under
    /// OpenTelemetry's semantic-convention name
    /// [`http.client.request.duration`](super::HTTP_CLIENT_REQUEST_DURATION), through
    /// [`HttpMetricsLayer`](super::HttpMetricsLayer) (feature `metrics`; default `false`).
    /// The crate's own `wechat_client_*` metrics, one sample per API call, stay.
    ///
    /// ```
    /// use tower_wechat::client::{AppSecret, WeChatClient};
    ///
    /// let builder = WeChatClient::builder("wx1234567890abcdef", AppSecret::new("secret"))
    ///     .semconv_metrics(true);
    /// # let _ = builder;
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn semconv_metrics(mut self, record: bool) -> Self {
        self.semconv_metrics = record;
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
        let base_url = self
            .account
            .base_url
            .clone()
            .unwrap_or_else(|| self.account.kind.default_base().to_owned());
        let base = BaseUrl::parse(&base_url)?;
        let http = ReadBodyLayer::new().layer(http);
        #[cfg(feature = "metrics")]
        let http =
            tower::util::option_layer(self.semconv_metrics.then(super::HttpMetricsLayer::new))
                .layer(http);
        // Each attempt (retries, token fetches) carries the current span's trace context.
        #[cfg(feature = "otel")]
        let http = super::TraceContextLayer::new().layer(http);
        let hub = Arc::new(Hub {
            http: BoxCloneSyncService::new(http),
            timeout: self.timeout,
            token_wait: self.token_wait.unwrap_or(self.timeout),
            refresh_margin: self.refresh_margin,
            endpoint: self.endpoint,
            retry: self.retry,
            breaker_template: self.breaker.clone(),
            breakers: Mutex::new(HashMap::from([(
                format!("{:?}", base.origin()),
                self.breaker,
            )])),
            accounts: Mutex::new(HashMap::new()),
            #[cfg(feature = "redis")]
            redis: self.redis,
            warned: Mutex::new(HashSet::new()),
        });
        open(&hub, self.account, self.source)
    }
}

impl fmt::Debug for WeChatClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatClientBuilder")
            .field("account", &self.account)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("token_wait", &self.token_wait)
            .finish_non_exhaustive()
    }
}
