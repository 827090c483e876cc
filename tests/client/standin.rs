//! A stand-in for WeChat's API on 127.0.0.1: a real axum server that speaks WeChat's JSON,
//! issues and checks access_tokens as the docs say, counts deliveries per message, and
//! misbehaves on cue (busy, 5xx, slow, dropped connections, revoked tokens).

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

pub const APPID: &str = "wx0123456789abcdef";
pub const SECRET: &str = "appsecret-0123456789-do-not-log";

/// What the stand-in does with one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// As WeChat does when all is well.
    Normal,
    /// `{"errcode":-1,"errmsg":"system error"}`, nothing carried out.
    Busy,
    /// This HTTP status with an HTML body, nothing carried out (a gateway error).
    Status(u16),
    /// This errcode, nothing carried out.
    Errcode(i64),
    /// Waits, then carries the request out and answers.
    Slow(Duration),
    /// Drops the connection before carrying the request out.
    Drop,
    /// Carries the request out, then drops the connection instead of answering.
    DropAfter,
    /// Revokes every token issued so far (40001 from now on), then goes on normally.
    RevokeTokens,
}

type Plan = Box<dyn FnMut(u64) -> Act + Send>;
type MessagePlan = Box<dyn FnMut(u64, &str, usize) -> Act + Send>;

pub struct StandIn {
    pub addr: SocketAddr,
    state: Arc<Shared>,
}

struct Shared {
    lifetime: Mutex<Duration>,
    tokens: Mutex<HashMap<String, Token>>,
    issued: AtomicU64,
    token_requests: AtomicU64,
    api_requests: AtomicU64,
    force_refreshes: AtomicU64,
    deliveries: Mutex<HashMap<String, u32>>,
    dedup: Mutex<HashMap<String, i64>>,
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
    token_plan: Mutex<Plan>,
    api_plan: Mutex<MessagePlan>,
}

struct Token {
    expires_at: Instant,
    revoked: bool,
}

impl StandIn {
    /// Serves on 127.0.0.1 with an OS-chosen port; tokens live 7200 s.
    pub async fn start() -> Self {
        let state = Arc::new(Shared {
            lifetime: Mutex::new(Duration::from_secs(7200)),
            tokens: Mutex::default(),
            issued: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            api_requests: AtomicU64::new(0),
            force_refreshes: AtomicU64::new(0),
            deliveries: Mutex::default(),
            dedup: Mutex::default(),
            attempts: Mutex::default(),
            token_plan: Mutex::new(Box::new(|_| Act::Normal)),
            api_plan: Mutex::new(Box::new(|_, _, _| Act::Normal)),
        });
        let router = Router::new()
            .route("/cgi-bin/token", get(token))
            .route("/cgi-bin/stable_token", post(stable_token))
            .route("/cgi-bin/message/template/send", post(template_send))
            .route("/cgi-bin/message/custom/send", post(custom_send))
            .route("/cgi-bin/getcallbackip", get(callback_ip))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `expires_in` of tokens issued from now on.
    pub fn token_lifetime(&self, lifetime: Duration) {
        *self.state.lifetime.lock().unwrap() = lifetime;
    }

    /// What to do with the n-th (from 0) token request.
    pub fn token_plan(&self, plan: impl FnMut(u64) -> Act + Send + 'static) {
        *self.state.token_plan.lock().unwrap() = Box::new(plan);
    }

    /// What to do with the n-th (from 0) message request.
    pub fn api_plan(&self, mut plan: impl FnMut(u64) -> Act + Send + 'static) {
        *self.state.api_plan.lock().unwrap() = Box::new(move |n, _, _| plan(n));
    }

    /// What to do with the n-th (from 0) message request, knowing the message (its key, see
    /// [`deliveries`](Self::deliveries)) and which attempt at it this is (from 1).
    pub fn message_plan(&self, plan: impl FnMut(u64, &str, usize) -> Act + Send + 'static) {
        *self.state.api_plan.lock().unwrap() = Box::new(plan);
    }

    /// Revokes every token issued so far: they get 40001.
    pub fn revoke_tokens(&self) {
        self.state.revoke();
    }

    /// Expires every token issued so far: they get 42001.
    pub fn expire_tokens(&self) {
        for token in self.state.tokens.lock().unwrap().values_mut() {
            token.expires_at = Instant::now();
        }
    }

    /// Tokens issued.
    pub fn issued(&self) -> u64 {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Requests to a token endpoint, answered or not.
    pub fn token_requests(&self) -> u64 {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// `stable_token` requests with `force_refresh: true`.
    pub fn force_refreshes(&self) -> u64 {
        self.state.force_refreshes.load(Ordering::SeqCst)
    }

    /// Requests to a message endpoint (every attempt).
    pub fn api_requests(&self) -> u64 {
        self.state.api_requests.load(Ordering::SeqCst)
    }

    /// Deliveries per message (template: its `data` JSON; custom: its text).
    pub fn deliveries(&self) -> HashMap<String, u32> {
        self.state.deliveries.lock().unwrap().clone()
    }

    /// When each attempt at each message arrived.
    pub fn attempts(&self) -> HashMap<String, Vec<Instant>> {
        self.state.attempts.lock().unwrap().clone()
    }
}

/// The key a template message with `data("n", n)` is counted under.
pub fn template_key(n: impl std::fmt::Display) -> String {
    json!({"n": {"value": n.to_string()}}).to_string()
}

impl Shared {
    fn revoke(&self) {
        for token in self.tokens.lock().unwrap().values_mut() {
            token.revoked = true;
        }
    }

    fn issue(&self) -> Value {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let lifetime = *self.lifetime.lock().unwrap();
        let token = format!("ACCESS_TOKEN_{n}_{:08x}", fastrand::u32(..));
        let mut tokens = self.tokens.lock().unwrap();
        // As on WeChat: a new token leaves the previous ones valid for 5 more minutes.
        let grace = Instant::now() + Duration::from_secs(300);
        for old in tokens.values_mut() {
            old.expires_at = old.expires_at.min(grace);
        }
        tokens.insert(
            token.clone(),
            Token {
                expires_at: Instant::now() + lifetime,
                revoked: false,
            },
        );
        json!({"access_token": token, "expires_in": lifetime.as_secs()})
    }

    fn current(&self) -> Option<(String, Duration)> {
        let tokens = self.tokens.lock().unwrap();
        let now = Instant::now();
        tokens
            .iter()
            .filter(|(_, token)| !token.revoked && token.expires_at > now)
            .max_by_key(|(_, token)| token.expires_at)
            .map(|(value, token)| (value.clone(), token.expires_at - now))
    }

    /// errcode for a request's access_token, or `None` when it is good.
    fn check(&self, query: &HashMap<String, String>) -> Option<Value> {
        let Some(token) = query.get("access_token") else {
            return Some(json!({"errcode": 41001, "errmsg": "access_token missing"}));
        };
        let tokens = self.tokens.lock().unwrap();
        match tokens.get(token) {
            None => Some(invalid_credential()),
            Some(token) if token.revoked => Some(invalid_credential()),
            Some(token) if token.expires_at <= Instant::now() => {
                Some(json!({"errcode": 42001, "errmsg": "access_token expired rid: 0"}))
            }
            Some(_) => None,
        }
    }
}

fn invalid_credential() -> Value {
    json!({"errcode": 40001,
           "errmsg": "invalid credential, access_token is invalid or not latest rid: 0"})
}

fn json_response(value: Value) -> Response {
    (
        [("content-type", "application/json; encoding=utf-8")],
        value.to_string(),
    )
        .into_response()
}

/// Applies `act` before the request is carried out; `Err` is the answer to give instead.
async fn before(act: Act, shared: &Shared) -> Result<(), Response> {
    match act {
        Act::Normal | Act::DropAfter => Ok(()),
        Act::Busy => Err(json_response(
            json!({"errcode": -1, "errmsg": "system error"}),
        )),
        Act::Status(status) => Err((
            axum::http::StatusCode::from_u16(status).unwrap(),
            "<html><body>bad gateway</body></html>",
        )
            .into_response()),
        Act::Errcode(code) => Err(json_response(json!({"errcode": code, "errmsg": "refused"}))),
        Act::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Ok(())
        }
        Act::Drop => Err(dropped()),
        Act::RevokeTokens => {
            shared.revoke();
            Ok(())
        }
    }
}

/// Headers, then a body that fails: hyper closes the connection mid-answer.
fn dropped() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("connection dropped by the stand-in"))
    });
    Response::new(Body::from_stream(failing))
}

fn after(act: Act, answer: Value) -> Response {
    if act == Act::DropAfter {
        dropped()
    } else {
        json_response(answer)
    }
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let n = shared.token_requests.fetch_add(1, Ordering::SeqCst);
    let act = (shared.token_plan.lock().unwrap())(n);
    if let Err(response) = before(act, &shared).await {
        return response;
    }
    if query.get("grant_type").map(String::as_str) != Some("client_credential") {
        return json_response(json!({"errcode": 40002, "errmsg": "invalid grant_type"}));
    }
    if query.get("appid").map(String::as_str) != Some(APPID) {
        return json_response(json!({"errcode": 40013, "errmsg": "invalid appid"}));
    }
    if query.get("secret").map(String::as_str) != Some(SECRET) {
        return json_response(json!({"errcode": 40125, "errmsg": "invalid appsecret"}));
    }
    after(act, shared.issue())
}

async fn stable_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let n = shared.token_requests.fetch_add(1, Ordering::SeqCst);
    let act = (shared.token_plan.lock().unwrap())(n);
    if let Err(response) = before(act, &shared).await {
        return response;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return json_response(json!({"errcode": 47001, "errmsg": "data format error"}));
    };
    if request["appid"] != APPID || request["secret"] != SECRET {
        return json_response(json!({"errcode": 40125, "errmsg": "invalid appsecret"}));
    }
    let force = request["force_refresh"] == true;
    if force {
        shared.force_refreshes.fetch_add(1, Ordering::SeqCst);
    }
    // The stable token is handed out again until it nears expiry, unless forced.
    let answer = match shared.current() {
        Some((token, left)) if !force && left > Duration::from_secs(300).min(left / 2) => {
            json!({"access_token": token, "expires_in": left.as_secs()})
        }
        _ => shared.issue(),
    };
    after(act, answer)
}

/// The common part of a message endpoint: count, act, check the token, parse.
async fn message(
    shared: &Shared,
    query: &HashMap<String, String>,
    body: &Bytes,
    key_of: fn(&Value) -> Option<String>,
) -> Result<(Act, Value, String), Response> {
    let n = shared.api_requests.fetch_add(1, Ordering::SeqCst);
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let key = parsed.as_ref().and_then(key_of);
    let attempt = match &key {
        Some(key) => {
            let mut attempts = shared.attempts.lock().unwrap();
            let times = attempts.entry(key.clone()).or_default();
            times.push(Instant::now());
            times.len()
        }
        None => 1,
    };
    let act = (shared.api_plan.lock().unwrap())(n, key.as_deref().unwrap_or_default(), attempt);
    before(act, shared).await?;
    if let Some(error) = shared.check(query) {
        return Err(json_response(error));
    }
    match (parsed, key) {
        (Some(parsed), Some(key)) => Ok((act, parsed, key)),
        _ => Err(json_response(
            json!({"errcode": 47001, "errmsg": "data format error"}),
        )),
    }
}

// WeChat carries a request out even if the caller hangs up: each handler runs in its own
// task, which a dropped connection does not cancel.
async fn template_send(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    tokio::spawn(template_send_task(shared, query, body))
        .await
        .unwrap()
}

async fn custom_send(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    tokio::spawn(custom_send_task(shared, query, body))
        .await
        .unwrap()
}

async fn template_send_task(
    shared: Arc<Shared>,
    query: HashMap<String, String>,
    body: Bytes,
) -> Response {
    let key_of = |message: &Value| {
        message["touser"].as_str()?;
        message["template_id"].as_str()?;
        Some(message.get("data")?.to_string())
    };
    let (act, message, key) = match message(&shared, &query, &body, key_of).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    // As documented: one message per openid + client_msg_id.
    if let Some(id) = message["client_msg_id"].as_str() {
        let dedup_key = format!("{}/{id}", message["touser"]);
        if let Some(msgid) = shared.dedup.lock().unwrap().get(&dedup_key) {
            return after(act, json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}));
        }
        let msgid = deliver(&shared, key);
        shared.dedup.lock().unwrap().insert(dedup_key, msgid);
        return after(act, json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}));
    }
    let msgid = deliver(&shared, key);
    after(act, json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}))
}

async fn custom_send_task(
    shared: Arc<Shared>,
    query: HashMap<String, String>,
    body: Bytes,
) -> Response {
    let key_of = |message: &Value| {
        message["touser"].as_str()?;
        Some(message["text"]["content"].as_str()?.to_owned())
    };
    let (act, _, key) = match message(&shared, &query, &body, key_of).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    deliver(&shared, key);
    after(act, json!({"errcode": 0, "errmsg": "ok"}))
}

fn deliver(shared: &Shared, key: String) -> i64 {
    let mut deliveries = shared.deliveries.lock().unwrap();
    *deliveries.entry(key).or_default() += 1;
    1_000_000
        + deliveries
            .values()
            .map(|count| i64::from(*count))
            .sum::<i64>()
}

/// The callback addresses `/cgi-bin/getcallbackip` answers with: WeChat-like ranges, and
/// loopback so that a server on this machine can be allowed by a refreshed list.
pub const CALLBACK_IPS: &[&str] = &["101.226.103.0/25", "101.226.62.0/26", "127.0.0.1", "::1"];

/// `GET /cgi-bin/getcallbackip`: counted and planned as a message request (see
/// [`StandIn::api_plan`]), token checked, then `{"ip_list": CALLBACK_IPS}`.
async fn callback_ip(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let n = shared.api_requests.fetch_add(1, Ordering::SeqCst);
    let act = (shared.api_plan.lock().unwrap())(n, "getcallbackip", 1);
    if let Err(response) = before(act, &shared).await {
        return response;
    }
    if let Some(error) = shared.check(&query) {
        return json_response(error);
    }
    after(act, json!({ "ip_list": CALLBACK_IPS }))
}
