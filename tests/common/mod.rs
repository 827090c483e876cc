//! A WeChat-like client: signs requests the way WeChat's servers do and sends them over
//! real HTTP to a server on a loopback port.

#![allow(dead_code)] // each test binary uses a different part

pub mod log;
pub mod services;
#[allow(unused_imports)] // not every test binary needs a service
pub use services::{peer, python, redis_url};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_wechat::Token;
use tower_wechat::signature::Signature;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Serves an axum router on 127.0.0.1 with an OS-chosen port.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// One signed POST, kept to be sent again as a retry.
#[derive(Clone)]
pub struct Delivery {
    path_and_query: String,
    body: Bytes,
}

pub struct WeChat {
    addr: SocketAddr,
    token: Token,
    client: Client<HttpConnector, Full<Bytes>>,
    nonce: AtomicU64,
}

impl WeChat {
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        Self {
            addr,
            token: Token::new(token).unwrap(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            nonce: AtomicU64::new(now() % 1_000_000 * 1_000),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A fresh signed query: `signature`, `timestamp` (now + `skew`) and a new `nonce`.
    pub fn signed_query_at(&self, timestamp: u64) -> String {
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed).to_string();
        let signature = Signature::plain(&self.token, &timestamp.to_string(), &nonce);
        format!("signature={signature}&timestamp={timestamp}&nonce={nonce}")
    }

    pub fn signed_query(&self) -> String {
        self.signed_query_at(now())
    }

    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: impl Into<Bytes>,
    ) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path_and_query}", self.addr))
            .header("content-type", "text/xml")
            .header("user-agent", "Mozilla/4.0")
            .body(Full::new(body.into()))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    /// POSTs `xml` to `/wechat` with a fresh signature, as WeChat delivers a message.
    pub async fn deliver(&self, xml: &str) -> Answer {
        let query = format!("{}&openid=oUser1234", self.signed_query());
        self.send(Method::POST, &format!("/wechat?{query}"), xml.to_owned())
            .await
    }

    /// A delivery of `xml` as WeChat would make it; its retries repeat it byte for byte
    /// (same signed query, same body).
    pub fn delivery(&self, xml: &str) -> Delivery {
        Delivery {
            path_and_query: format!("/wechat?{}&openid=oUser1234", self.signed_query()),
            body: Bytes::from(xml.to_owned()),
        }
    }

    /// Sends (or resends) `delivery`.
    pub async fn send_delivery(&self, delivery: &Delivery) -> Answer {
        self.send(
            Method::POST,
            &delivery.path_and_query,
            delivery.body.clone(),
        )
        .await
    }

    /// The GET handshake WeChat does when the URL is saved in the console.
    pub async fn handshake(&self, echostr: &str) -> Answer {
        let query = self.signed_query();
        self.send(
            Method::GET,
            &format!("/wechat?{query}&echostr={echostr}"),
            "",
        )
        .await
    }
}

/// A text message as WeChat pushes it; a `]]>` in the content is split across two CDATA
/// sections, as any XML writer must.
pub fn text_message(content: &str, msg_id: u64) -> String {
    let content = content.replace("]]>", "]]]]><![CDATA[>");
    format!(
        "<xml><ToUserName><![CDATA[gh_account]]></ToUserName>\
         <FromUserName><![CDATA[oUser1234]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>",
        now()
    )
}
