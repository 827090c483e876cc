//! A stand-in for WeChat's and WeCom's APIs on 127.0.0.1: a real axum server that speaks
//! their JSON, issues and checks access_tokens as the docs say, counts deliveries per
//! message, and misbehaves on cue (busy, 5xx, slow, dropped connections, revoked tokens,
//! any errcode).
//!
//! WeChat (Official Accounts, Mini Programs): `/cgi-bin/token`, `/cgi-bin/stable_token`,
//! `message/template/send`, `message/custom/send`, `message/subscribe/send` (answers a msgid)
//! and `message/subscribe/bizsend` (answers none); `GET /cgi-bin/getcallbackip` (keyed
//! `getcallbackip` for the plans).
//!
//! WeCom, as its docs say: `GET /cgi-bin/gettoken?corpid&corpsecret` issues a token per app
//! (per secret) and hands the same one out again while it is valid; `POST
//! /cgi-bin/message/send` refuses a token of another app than the body's `agentid` (301002),
//! answers 40014 / 42001 for invalid / expired tokens, lists recipients it cannot reach in
//! `invaliduser` / `invalidparty` / `invalidtag` (81013 when none is reachable), and with
//! `enable_duplicate_check: 1` does not deliver the same request JSON again within
//! `duplicate_check_interval` (1800 s by default). WeCom's docs do not say what a suppressed
//! duplicate is answered; the stand-in answers it like the first (errcode 0, same msgid).

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

/// The WeCom corp, and its apps: (secret, agentid).
pub const CORPID: &str = "ww0123456789abcdef";
pub const WECOM_APPS: [(&str, u32); 2] = [
    ("wecom-app-secret-A-do-not-log", 1_000_002),
    ("wecom-app-secret-B-do-not-log", 1_000_003),
];

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
    /// WeCom tokens: value -> (agentid of its app, state).
    wecom_tokens: Mutex<HashMap<String, (u32, Token)>>,
    /// gettoken requests per agentid (answered with a token or not).
    wecom_token_requests: Mutex<HashMap<u32, u64>>,
    wecom_issued: Mutex<HashMap<u32, u64>>,
    /// Duplicate check: request JSON -> (msgid, until).
    wecom_sent: Mutex<HashMap<String, (String, Instant)>>,
    wecom_suppressed: AtomicU64,
    /// Tokens that reached a WeCom send with another app's agentid.
    wecom_mixed: AtomicU64,
    /// Each request's path and `traceparent` header, in arrival order.
    traceparents: Mutex<Vec<(String, Option<String>)>>,
}

struct Token {
    expires_at: Instant,
    revoked: bool,
}

/// Which API a message endpoint belongs to (their token errcodes differ).
#[derive(Clone, Copy, PartialEq)]
enum Api {
    WeChat,
    WeCom,
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
            wecom_tokens: Mutex::default(),
            wecom_token_requests: Mutex::default(),
            wecom_issued: Mutex::default(),
            wecom_sent: Mutex::default(),
            wecom_suppressed: AtomicU64::new(0),
            wecom_mixed: AtomicU64::new(0),
            traceparents: Mutex::default(),
        });
        let seen = state.clone();
        let router = Router::new()
            .route("/cgi-bin/token", get(token))
            .route("/cgi-bin/stable_token", post(stable_token))
            .route("/cgi-bin/message/template/send", post(template_send))
            .route("/cgi-bin/message/custom/send", post(custom_send))
            .route("/cgi-bin/message/subscribe/send", post(subscribe_send))
            .route("/cgi-bin/message/subscribe/bizsend", post(bizsend))
            .route("/cgi-bin/gettoken", get(wecom_token))
            .route("/cgi-bin/getcallbackip", get(callback_ip))
            .route("/cgi-bin/message/send", post(wecom_send))
            .with_state(state.clone())
            .layer(tower::util::MapRequestLayer::new(
                move |request: axum::extract::Request| {
                    let traceparent = request
                        .headers()
                        .get("traceparent")
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    let path = request.uri().path().to_owned();
                    seen.traceparents.lock().unwrap().push((path, traceparent));
                    request
                },
            ));
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

    /// gettoken requests for the WeCom app `agentid`.
    pub fn wecom_token_requests(&self, agentid: u32) -> u64 {
        *self
            .state
            .wecom_token_requests
            .lock()
            .unwrap()
            .get(&agentid)
            .unwrap_or(&0)
    }

    /// WeCom tokens issued for the app `agentid`.
    pub fn wecom_issued(&self, agentid: u32) -> u64 {
        *self
            .state
            .wecom_issued
            .lock()
            .unwrap()
            .get(&agentid)
            .unwrap_or(&0)
    }

    /// WeCom sends not delivered because the duplicate check caught them.
    pub fn wecom_suppressed(&self) -> u64 {
        self.state.wecom_suppressed.load(Ordering::SeqCst)
    }

    /// Each request's path and `traceparent` header (if any), in arrival order.
    pub fn traceparents(&self) -> Vec<(String, Option<String>)> {
        self.state.traceparents.lock().unwrap().clone()
    }

    /// WeCom sends that carried another app's token (answered 301002).
    pub fn wecom_mixed(&self) -> u64 {
        self.state.wecom_mixed.load(Ordering::SeqCst)
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
        for (_, token) in self.wecom_tokens.lock().unwrap().values_mut() {
            token.revoked = true;
        }
    }

    /// WeCom: the app's valid token if it has one, else a new one.
    fn wecom_issue(&self, agentid: u32) -> Value {
        let lifetime = *self.lifetime.lock().unwrap();
        let now = Instant::now();
        let mut tokens = self.wecom_tokens.lock().unwrap();
        let current = tokens
            .iter()
            .filter(|(_, (agent, token))| {
                *agent == agentid && !token.revoked && token.expires_at > now
            })
            .max_by_key(|(_, (_, token))| token.expires_at)
            .map(|(value, (_, token))| (value.clone(), token.expires_at - now));
        let (token, left) = match current {
            Some(current) => current,
            None => {
                *self
                    .wecom_issued
                    .lock()
                    .unwrap()
                    .entry(agentid)
                    .or_default() += 1;
                let token = format!("WECOM_TOKEN_{agentid}_{:08x}", fastrand::u32(..));
                tokens.insert(
                    token.clone(),
                    (
                        agentid,
                        Token {
                            expires_at: now + lifetime,
                            revoked: false,
                        },
                    ),
                );
                (token, lifetime)
            }
        };
        json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": left.as_secs()})
    }

    /// WeCom's errcode for a request's access_token, or the token's app when it is good.
    fn wecom_check(&self, query: &HashMap<String, String>) -> Result<u32, Value> {
        let Some(token) = query.get("access_token") else {
            return Err(json!({"errcode": 41001, "errmsg": "access_token missing"}));
        };
        match self.wecom_tokens.lock().unwrap().get(token) {
            None => Err(json!({"errcode": 40014, "errmsg": "invalid access_token"})),
            Some((_, token)) if token.revoked => {
                Err(json!({"errcode": 40014, "errmsg": "invalid access_token"}))
            }
            Some((_, token)) if token.expires_at <= Instant::now() => {
                Err(json!({"errcode": 42001, "errmsg": "access_token expired"}))
            }
            Some((agent, _)) => Ok(*agent),
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
    message_on(Api::WeChat, shared, query, body, key_of).await
}

async fn message_on(
    api: Api,
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
    let token_error = match api {
        Api::WeChat => shared.check(query),
        Api::WeCom => shared.wecom_check(query).err(),
    };
    if let Some(error) = token_error {
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

async fn subscribe_send(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    tokio::spawn(subscribe_task(shared, query, body, true))
        .await
        .unwrap()
}

async fn bizsend(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    tokio::spawn(subscribe_task(shared, query, body, false))
        .await
        .unwrap()
}

/// Subscribe messages are keyed like template messages (their `data`); the Mini Program's
/// answer has a msgid, the Official Account's (`bizsend`) none.
async fn subscribe_task(
    shared: Arc<Shared>,
    query: HashMap<String, String>,
    body: Bytes,
    with_msgid: bool,
) -> Response {
    let key_of = |message: &Value| {
        message["touser"].as_str()?;
        message["template_id"].as_str()?;
        Some(message.get("data")?.to_string())
    };
    let (act, _, key) = match message(&shared, &query, &body, key_of).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let msgid = deliver(&shared, key);
    if with_msgid {
        after(act, json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}))
    } else {
        after(act, json!({"errcode": 0, "errmsg": "ok"}))
    }
}

async fn wecom_token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let n = shared.token_requests.fetch_add(1, Ordering::SeqCst);
    let app = WECOM_APPS
        .iter()
        .find(|(secret, _)| query.get("corpsecret").map(String::as_str) == Some(*secret));
    if let Some((_, agentid)) = app {
        *shared
            .wecom_token_requests
            .lock()
            .unwrap()
            .entry(*agentid)
            .or_default() += 1;
    }
    let act = (shared.token_plan.lock().unwrap())(n);
    if let Err(response) = before(act, &shared).await {
        return response;
    }
    if query.get("corpid").map(String::as_str) != Some(CORPID) {
        return json_response(json!({"errcode": 40013, "errmsg": "invalid corpid"}));
    }
    let Some((_, agentid)) = app else {
        return json_response(json!({"errcode": 40001, "errmsg": "invalid secret"}));
    };
    after(act, shared.wecom_issue(*agentid))
}

async fn wecom_send(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    tokio::spawn(wecom_send_task(shared, query, body))
        .await
        .unwrap()
}

/// Userids starting with `ghost` are not members; department and tag ids from 1000 do not
/// exist.
fn reachable_user(user: &str) -> bool {
    !user.to_lowercase().starts_with("ghost")
}

fn split_ids(value: &Value) -> Vec<String> {
    value
        .as_str()
        .unwrap_or_default()
        .split('|')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn wecom_send_task(
    shared: Arc<Shared>,
    query: HashMap<String, String>,
    body: Bytes,
) -> Response {
    // Keyed by the content (text or markdown), as custom messages are.
    let key_of = |message: &Value| {
        let kind = message["msgtype"].as_str()?;
        let content = &message[kind];
        Some(
            content["content"]
                .as_str()
                .map_or_else(|| content.to_string(), str::to_owned),
        )
    };
    let (act, message, key) = match message_on(Api::WeCom, &shared, &query, &body, key_of).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let token_agent = shared.wecom_check(&query).unwrap_or_default();
    let Some(agentid) = message["agentid"].as_u64() else {
        return json_response(json!({"errcode": 41011, "errmsg": "missing agentid"}));
    };
    if !WECOM_APPS
        .iter()
        .any(|(_, agent)| u64::from(*agent) == agentid)
    {
        return json_response(json!({"errcode": 40056, "errmsg": "invalid agentid"}));
    }
    if u64::from(token_agent) != agentid {
        shared.wecom_mixed.fetch_add(1, Ordering::SeqCst);
        return json_response(
            json!({"errcode": 301002, "errmsg": "not allow to operate another agent"}),
        );
    }
    let users = split_ids(&message["touser"]);
    let parties = split_ids(&message["toparty"]);
    let tags = split_ids(&message["totag"]);
    let all = users.iter().any(|user| user == "@all");
    let invalid_users: Vec<String> = users
        .iter()
        .filter(|user| !all && !reachable_user(user))
        .map(|user| user.to_lowercase())
        .collect();
    let invalid = |ids: &[String]| -> Vec<String> {
        ids.iter()
            .filter(|id| id.parse::<u64>().map_or(true, |id| id >= 1000))
            .cloned()
            .collect()
    };
    let (invalid_parties, invalid_tags) = (invalid(&parties), invalid(&tags));
    let reachable = all
        || users.len() > invalid_users.len()
        || parties.len() > invalid_parties.len()
        || tags.len() > invalid_tags.len();
    let partial = json!({
        "invaliduser": invalid_users.join("|"),
        "invalidparty": invalid_parties.join("|"),
        "invalidtag": invalid_tags.join("|"),
    });
    if !reachable {
        let mut answer = json!({"errcode": 81013,
            "errmsg": "user & party & tag all invalid"});
        answer
            .as_object_mut()
            .unwrap()
            .extend(partial.as_object().unwrap().clone());
        return after(act, answer);
    }
    // The duplicate check: the same request JSON within the interval is not delivered.
    let check = message["enable_duplicate_check"].as_u64() == Some(1);
    let interval = Duration::from_secs(
        message["duplicate_check_interval"]
            .as_u64()
            .unwrap_or(1800)
            .min(4 * 3600),
    );
    let fingerprint = message.to_string();
    let msgid = {
        let mut sent = shared.wecom_sent.lock().unwrap();
        let now = Instant::now();
        match sent.get(&fingerprint) {
            Some((msgid, until)) if check && *until > now => {
                shared.wecom_suppressed.fetch_add(1, Ordering::SeqCst);
                msgid.clone()
            }
            _ => {
                let msgid = format!("MSGID{}", deliver(&shared, key));
                if check {
                    sent.insert(fingerprint, (msgid.clone(), now + interval));
                }
                msgid
            }
        }
    };
    let mut answer = json!({"errcode": 0, "errmsg": "ok", "msgid": msgid});
    answer
        .as_object_mut()
        .unwrap()
        .extend(partial.as_object().unwrap().clone());
    after(act, answer)
}

/// `GET /cgi-bin/getcallbackip`: WeChat's callback addresses (here, loopback).
async fn callback_ip(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let n = shared.api_requests.fetch_add(1, Ordering::SeqCst);
    let attempt = {
        let mut attempts = shared.attempts.lock().unwrap();
        let times = attempts.entry("getcallbackip".to_owned()).or_default();
        times.push(Instant::now());
        times.len()
    };
    let act = (shared.api_plan.lock().unwrap())(n, "getcallbackip", attempt);
    if let Err(response) = before(act, &shared).await {
        return response;
    }
    if let Some(error) = shared.check(&query) {
        return json_response(error);
    }
    after(act, json!({"ip_list": ["127.0.0.1"]}))
}
