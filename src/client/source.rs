//! [`TokenSource`]: where access_tokens come from — WeChat's `/cgi-bin/token`,
//! `/cgi-bin/stable_token`, or a shared store in front of one of them.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Method, Request, Response, header};
use http_body_util::Full;
use serde::Deserialize;
use tower::ServiceExt;
use tower_service::Service;

use super::read_body::errcode;
use super::retry::Idempotent;
use super::url::BaseUrl;
use super::{ApiError, ApiToken, AppSecret, ClientError};

/// Why a token is asked for.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TokenRequest {
    /// WeChat refused this token (errcode 40001 / 40014 / 42001): do not hand it out again.
    pub rejected: Option<ApiToken>,
    /// A shared store should not hand out a token with less validity than this left; the
    /// cache refreshes that far ahead of expiry.
    pub min_ttl: Duration,
}

impl TokenRequest {
    /// A request for a token valid for at least `min_ttl`.
    pub fn new(min_ttl: Duration) -> Self {
        Self {
            rejected: None,
            min_ttl,
        }
    }

    /// Marks `token` as refused by WeChat.
    pub fn rejecting(mut self, token: ApiToken) -> Self {
        self.rejected = Some(token);
        self
    }
}

/// The longest validity the client believes of a token: 4 hours, twice what WeChat issues
/// (7200 s). A longer `expires_in` (a broken stand-in, `u64::MAX`) is capped to it.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(2 * 7200);

/// A token and how long it stays valid from now.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The token.
    pub token: ApiToken,
    /// Its remaining validity (WeChat's `expires_in`, 7200 s for a new token). The cache
    /// believes at most 4 hours, and refuses a token with none (zero).
    pub expires_in: Duration,
}

/// Where access_tokens come from. The [cache](super::AccessTokenLayer) calls it at most once
/// at a time; implementations need not guard against concurrent calls from one cache.
pub trait TokenSource: Send + Sync + 'static {
    /// A token for `request`.
    fn fetch<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<IssuedToken, ClientError>>;
}

impl<T: TokenSource + ?Sized> TokenSource for std::sync::Arc<T> {
    fn fetch<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<IssuedToken, ClientError>> {
        (**self).fetch(request)
    }
}

/// Which of WeChat's token endpoints to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /cgi-bin/token`: every call issues a new token; the previous one keeps working
    /// for 5 minutes. Several replicas calling it invalidate each other's tokens.
    Token,
    /// `POST /cgi-bin/stable_token`: hands out the current token until it nears expiry, so
    /// independent callers do not invalidate each other. After a rejection it is called with
    /// `force_refresh: true` (WeChat limits those to 20 a day).
    Stable,
    /// WeCom's `GET /cgi-bin/gettoken?corpid=..&corpsecret=..` (on
    /// [`WECOM_API_BASE`](super::WECOM_API_BASE)): each app of a corp has its own secret and
    /// its own token; while a token is valid the same one is handed out again.
    WeCom,
}

/// Fetches tokens from WeChat with an appid and appsecret, over any HTTP service that
/// answers buffered (see [`ReadBodyLayer`](super::ReadBodyLayer)). Its requests are marked
/// [`Idempotent`], so a retry layer may retry them after timeouts too.
#[derive(Clone)]
pub struct WeChatTokenSource<S> {
    http: S,
    base: BaseUrl,
    appid: String,
    secret: AppSecret,
    endpoint: Endpoint,
}

impl<S> WeChatTokenSource<S> {
    /// A source for `appid` at `base_url` (normally [`WECHAT_API_BASE`](super::WECHAT_API_BASE)),
    /// using `/cgi-bin/token`.
    pub fn new(
        http: S,
        base_url: &str,
        appid: impl Into<String>,
        secret: AppSecret,
    ) -> Result<Self, ClientError> {
        let appid = appid.into();
        if appid.is_empty()
            || !appid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ClientError::InvalidInput(
                "the appid must be ASCII letters and digits".into(),
            ));
        }
        if secret.expose().is_empty() {
            return Err(ClientError::InvalidInput("the appsecret is empty".into()));
        }
        Ok(Self {
            http,
            base: BaseUrl::parse(base_url)?,
            appid,
            secret,
            endpoint: Endpoint::Token,
        })
    }

    /// A source for the WeCom app whose secret is `corpsecret`, in corp `corpid`, at
    /// `base_url` (normally [`WECOM_API_BASE`](super::WECOM_API_BASE)): [`Endpoint::WeCom`].
    /// Every app has its own secret and its own token, so give each app its own source (and
    /// cache): a token of one app is refused for another's agentid (WeCom's errcode 301002).
    ///
    /// ```
    /// use tower_wechat::client::{AppSecret, WECOM_API_BASE, WeChatTokenSource};
    ///
    /// let http = tower::service_fn(|_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
    ///     Ok::<_, tower_wechat::client::ClientError>(http::Response::new(bytes::Bytes::new()))
    /// });
    /// let source = WeChatTokenSource::wecom(http, WECOM_API_BASE, "ww0123456789", AppSecret::new("s"))?;
    /// # let _ = source;
    /// # Ok::<(), tower_wechat::client::ClientError>(())
    /// ```
    pub fn wecom(
        http: S,
        base_url: &str,
        corpid: impl Into<String>,
        corpsecret: AppSecret,
    ) -> Result<Self, ClientError> {
        Ok(Self::new(http, base_url, corpid, corpsecret)?.endpoint(Endpoint::WeCom))
    }

    /// Uses `endpoint` instead of `/cgi-bin/token`.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    fn request(&self, request: &TokenRequest) -> Result<Request<Full<Bytes>>, ClientError> {
        let builder = match self.endpoint {
            Endpoint::Token => {
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "client_credential")
                    .append_pair("appid", &self.appid)
                    .append_pair("secret", self.secret.expose())
                    .finish();
                Request::get(self.base.join(&format!("/cgi-bin/token?{query}"))?)
                    .body(Full::default())
            }
            Endpoint::WeCom => {
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("corpid", &self.appid)
                    .append_pair("corpsecret", self.secret.expose())
                    .finish();
                Request::get(self.base.join(&format!("/cgi-bin/gettoken?{query}"))?)
                    .body(Full::default())
            }
            Endpoint::Stable => {
                let body = serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": self.appid,
                    "secret": self.secret.expose(),
                    "force_refresh": request.rejected.is_some(),
                });
                Request::builder()
                    .method(Method::POST)
                    .uri(self.base.join("/cgi-bin/stable_token")?)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
            }
        };
        let mut http_request = builder
            .map_err(|_| ClientError::InvalidInput("a token request could not be formed".into()))?;
        http_request.extensions_mut().insert(Idempotent);
        Ok(http_request)
    }
}

impl<S> TokenSource for WeChatTokenSource<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Bytes>, Error = ClientError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    fn fetch<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<IssuedToken, ClientError>> {
        Box::pin(async move {
            let http_request = self.request(request)?;
            let response = self.http.clone().oneshot(http_request).await?;
            parse_token(&response)
        })
    }
}

/// Reads `{"access_token":"...","expires_in":7200}` (WeCom adds `"errcode":0`) or WeChat's
/// error.
pub(crate) fn parse_token(response: &Response<Bytes>) -> Result<IssuedToken, ClientError> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<u64>,
        #[serde(default)]
        errmsg: String,
    }
    if let Some(code) = errcode(response).filter(|code| *code != 0) {
        let answer: Option<Answer> = serde_json::from_slice(response.body()).ok();
        return Err(ClientError::Api(ApiError {
            errcode: code,
            errmsg: answer.map(|answer| answer.errmsg).unwrap_or_default(),
        }));
    }
    if !response.status().is_success() {
        return Err(ClientError::Status(response.status()));
    }
    let answer: Answer = serde_json::from_slice(response.body()).map_err(|_| {
        ClientError::InvalidResponse("token answer is not the expected JSON".into())
    })?;
    match (answer.access_token, answer.expires_in) {
        (Some(token), Some(expires_in)) if !token.is_empty() && expires_in > 0 => Ok(IssuedToken {
            token: ApiToken::new(token),
            expires_in: Duration::from_secs(expires_in).min(MAX_TOKEN_LIFETIME),
        }),
        _ => Err(ClientError::InvalidResponse(
            "token answer without access_token or expires_in".into(),
        )),
    }
}

impl<S> fmt::Debug for WeChatTokenSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatTokenSource")
            .field("base", &self.base)
            .field("appid", &self.appid)
            .field("secret", &self.secret)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response<Bytes> {
        let mut response = Response::new(Bytes::copy_from_slice(body.as_bytes()));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        response
    }

    #[test]
    fn token_answers_are_parsed_strictly() {
        let issued =
            parse_token(&answer(200, r#"{"access_token":"T1","expires_in":7200}"#)).unwrap();
        assert_eq!(issued.token.expose(), "T1");
        assert_eq!(issued.expires_in, Duration::from_secs(7200));
        // A huge expires_in is capped instead of overflowing the clock later.
        let issued = parse_token(&answer(
            200,
            r#"{"access_token":"T1","expires_in":18446744073709551615}"#,
        ))
        .unwrap();
        assert_eq!(issued.expires_in, MAX_TOKEN_LIFETIME);
        let error = parse_token(&answer(
            200,
            r#"{"errcode":40125,"errmsg":"invalid appsecret"}"#,
        ))
        .unwrap_err();
        assert_eq!(error.errcode(), Some(40125));
        for bad in [
            r#"{"access_token":"","expires_in":7200}"#,
            r#"{"expires_in":7200}"#,
            "x",
            r#"{"access_token":"T","expires_in":0}"#,
        ] {
            assert!(
                matches!(
                    parse_token(&answer(200, bad)),
                    Err(ClientError::InvalidResponse(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_token(&answer(502, "bad gateway")),
            Err(ClientError::Status(_))
        ));
    }

    #[test]
    fn debug_hides_the_secret() {
        let source = WeChatTokenSource::new(
            (),
            "http://127.0.0.1:1",
            "wx123",
            AppSecret::new("s3cr3tvalue"),
        )
        .unwrap();
        let shown = format!("{source:?}");
        assert!(!shown.contains("s3cr3tvalue"), "{shown}");
        assert!(WeChatTokenSource::new((), "http://h", "wx 1&x=", AppSecret::new("s")).is_err());
        assert!(WeChatTokenSource::new((), "http://h", "wx1", AppSecret::new("")).is_err());
    }
}
