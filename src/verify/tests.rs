//! The layer driven with `oneshot`, as tower-http tests its middleware.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::util::BoxCloneService;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

use super::*;
use crate::clock::unix_now;
use crate::message::{Message, MessageKind};
use crate::signature::{Signature, Token};

const TOKEN: &str = "testtoken";

fn token(text: &str) -> Token {
    Token::new(text).unwrap()
}

fn text_xml(content: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUser1234]]></FromUserName>\
         <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{content}]]></Content><MsgId>42</MsgId></xml>"
    )
}

fn signed_query(token_text: &str, timestamp: u64, nonce: &str) -> String {
    let signature = Signature::plain(&token(token_text), &timestamp.to_string(), nonce);
    format!("signature={signature}&timestamp={timestamp}&nonce={nonce}")
}

fn post(query: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(format!("/wechat?{query}"))
        .body(Full::new(body.into()))
        .unwrap()
}

type Inner = BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

/// An inner service that echoes what it saw and counts its calls.
#[derive(Clone, Default)]
struct Probe {
    calls: Arc<AtomicUsize>,
}

impl Probe {
    fn layered(&self, layer: VerifyLayer) -> Verify<Inner> {
        let calls = self.calls.clone();
        layer.layer(BoxCloneService::new(service_fn(
            move |request: Request<Full<Bytes>>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    let message = request.extensions().get::<Message>().cloned();
                    let query = request.extensions().get::<CallbackQuery>().cloned();
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let summary = format!(
                        "content={:?} openid={:?} redelivered={:?} body_len={}",
                        message.map(|m| m.kind),
                        query.as_ref().map(|q| q.openid.clone()),
                        query.map(|q| q.redelivered),
                        body.len()
                    );
                    Ok::<_, Infallible>(Response::new(Full::from(summary)))
                }
            },
        )))
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn send<S, B>(service: S, request: Request<B>) -> (StatusCode, String)
where
    S: tower_service::Service<
            Request<B>,
            Response = Response<ResponseBody<Full<Bytes>>>,
            Error = Infallible,
        >,
{
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn layer() -> VerifyLayer {
    VerifyLayer::new(token(TOKEN))
}

#[tokio::test]
async fn handshake_echoes_without_calling_the_inner_service() {
    let probe = Probe::default();
    let query = signed_query(TOKEN, unix_now(), "1");
    let request = Request::get(format!("/wechat?{query}&echostr=hello%2Bworld"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = probe.layered(layer()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello+world");
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn handshake_documented_vector_v2a_passes_with_the_window_off() {
    let probe = Probe::default();
    let request = Request::get(
        "/wechat?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249\
         &timestamp=1714036504&nonce=1514711492",
    )
    .body(Full::<Bytes>::default())
    .unwrap();
    let verify = probe.layered(layer_for("AAAAA").disable_timestamp_window());
    assert_eq!(
        send(verify.clone(), request).await,
        (StatusCode::OK, "4375120948345356249".to_owned())
    );
    // The same vector with the default window is stale.
    let request = Request::get(
        "/wechat?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249\
         &timestamp=1714036504&nonce=1514711492",
    )
    .body(Full::<Bytes>::default())
    .unwrap();
    let (status, _) = send(probe.layered(layer_for("AAAAA")), request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

fn layer_for(token_text: &str) -> VerifyLayer {
    VerifyLayer::new(token(token_text))
}

#[tokio::test]
async fn handshake_without_echostr_is_a_bad_request() {
    let query = signed_query(TOKEN, unix_now(), "2");
    let request = Request::get(format!("/wechat?{query}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let (status, body) = send(Probe::default().layered(layer()), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, "missing query parameter `echostr`");
}

#[tokio::test]
async fn a_signed_message_reaches_the_service_parsed_with_its_raw_body() {
    let probe = Probe::default();
    let query = format!("{}&openid=oUser1234", signed_query(TOKEN, unix_now(), "3"));
    let xml = text_xml("hi <there> & co");
    let (status, body) = send(probe.layered(layer()), post(&query, xml.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!(
            "content={:?} openid={:?} redelivered=Some(false) body_len={}",
            Some(MessageKind::Text {
                content: "hi <there> & co".into()
            }),
            Some(Some("oUser1234".to_owned())),
            xml.len()
        )
    );
}

#[tokio::test]
async fn every_configured_token_is_accepted_and_no_other() {
    let probe = Probe::default();
    let verify = probe.layered(layer().also_accept(token("oldtoken")));
    for (i, accepted) in [TOKEN, "oldtoken"].into_iter().enumerate() {
        let query = signed_query(accepted, unix_now(), &format!("tok{i}"));
        let (status, _) = send(verify.clone(), post(&query, text_xml("x"))).await;
        assert_eq!(status, StatusCode::OK, "{accepted}");
    }
    let query = signed_query("othertoken", unix_now(), "tok3");
    let (status, body) = send(verify, post(&query, text_xml("x"))).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "signature does not match")
    );
    assert_eq!(probe.calls(), 2);
}

#[tokio::test]
async fn stale_and_future_timestamps_are_forbidden() {
    let verify = Probe::default().layered(layer().timestamp_window(Duration::from_secs(60)));
    for (i, timestamp) in [unix_now() - 61, unix_now() + 120].into_iter().enumerate() {
        let query = signed_query(TOKEN, timestamp, &format!("s{i}"));
        let (status, body) = send(verify.clone(), post(&query, text_xml("x"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body, "timestamp is outside the accepted window");
    }
}

#[tokio::test]
async fn a_reused_nonce_with_another_body_is_forbidden_an_identical_retry_is_not() {
    let probe = Probe::default();
    let verify = probe.layered(layer());
    let query = signed_query(TOKEN, unix_now(), "replay");
    let first = send(verify.clone(), post(&query, text_xml("original"))).await;
    assert_eq!(first.0, StatusCode::OK);
    assert!(first.1.contains("redelivered=Some(false)"));

    // WeChat's retry: same query, same body.
    let retry = send(verify.clone(), post(&query, text_xml("original"))).await;
    assert_eq!(retry.0, StatusCode::OK);
    assert!(retry.1.contains("redelivered=Some(true)"), "{}", retry.1);

    // A captured query with a forged body.
    let forged = send(verify.clone(), post(&query, text_xml("forged"))).await;
    assert_eq!(
        forged,
        (
            StatusCode::FORBIDDEN,
            "timestamp and nonce were already used for another request".to_owned()
        )
    );
    assert_eq!(probe.calls(), 2);
}

#[tokio::test]
async fn strict_mode_refuses_identical_repeats_too() {
    let verify = Probe::default().layered(layer().refuse_identical_repeats());
    let query = signed_query(TOKEN, unix_now(), "strict");
    assert_eq!(
        send(verify.clone(), post(&query, text_xml("a"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(verify, post(&query, text_xml("a"))).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn clones_of_one_layer_share_the_nonce_memory() {
    let layer = layer();
    let query = signed_query(TOKEN, unix_now(), "shared");
    let first = Probe::default().layered(layer.clone());
    let second = Probe::default().layered(layer);
    assert_eq!(
        send(first, post(&query, text_xml("a"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(second, post(&query, text_xml("b"))).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn query_problems_are_bad_requests() {
    let verify = Probe::default().layered(layer());
    let now = unix_now();
    let good = signed_query(TOKEN, now, "q");
    for (query, reason) in [
        (String::new(), "missing query parameter `signature`"),
        (
            format!("timestamp={now}&nonce=1"),
            "missing query parameter `signature`",
        ),
        (
            format!("signature=zz&timestamp={now}&nonce=1"),
            "malformed query parameter `signature`",
        ),
        (
            format!("signature={}&timestamp=abc&nonce=1", "0".repeat(40)),
            "malformed query parameter `timestamp`",
        ),
        (
            format!("{good}&timestamp={now}"),
            "query parameter `timestamp` is repeated",
        ),
    ] {
        let (status, body) = send(verify.clone(), post(&query, text_xml("x"))).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::BAD_REQUEST, reason),
            "{query}"
        );
    }
}

#[tokio::test]
async fn other_methods_are_not_allowed() {
    for method in [Method::PUT, Method::DELETE, Method::HEAD, Method::PATCH] {
        let request = Request::builder()
            .method(method.clone())
            .uri("/wechat")
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = Probe::default()
            .layered(layer())
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert_eq!(response.headers()[header::ALLOW], "GET, POST");
    }
}

#[tokio::test]
async fn malformed_xml_is_a_bad_request() {
    let verify = Probe::default().layered(layer());
    for (i, body) in ["", "not xml", "<xml><MsgType>text</MsgType>", "<root/>"]
        .into_iter()
        .enumerate()
    {
        let query = signed_query(TOKEN, unix_now(), &format!("xml{i}"));
        let (status, reason) = send(verify.clone(), post(&query, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(reason.starts_with("malformed XML: "), "{reason}");
    }
}

#[tokio::test]
async fn an_encrypted_message_without_a_key_names_the_problem() {
    let query = format!(
        "{}&encrypt_type=aes",
        signed_query(TOKEN, unix_now(), "aes")
    );
    let body =
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[abc]]></Encrypt></xml>";
    let (status, reason) = send(Probe::default().layered(layer()), post(&query, body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reason,
        "message is encrypted (safe mode) but no EncodingAESKey is configured"
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_by_its_length_before_reading() {
    let probe = Probe::default();
    let verify = probe.layered(layer().body_limit(100));
    let query = signed_query(TOKEN, unix_now(), "big");
    let (status, reason) = send(verify, post(&query, "x".repeat(101))).await;
    assert_eq!(
        (status, reason.as_str()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than 100 bytes"
        )
    );
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn an_oversized_streamed_body_is_refused_while_reading() {
    let verify = Probe::default().layered(layer().body_limit(100));
    let query = signed_query(TOKEN, unix_now(), "stream");
    let chunks =
        (0..10).map(|_| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from("x".repeat(20)))));
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let request = Request::post(format!("/wechat?{query}"))
        .body(body)
        .unwrap();
    let (status, _) = send(verify, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_body_that_fails_midway_is_a_bad_request() {
    let verify = Probe::default().layered(layer());
    let query = signed_query(TOKEN, unix_now(), "broken");
    let chunks = vec![
        Ok(http_body::Frame::data(Bytes::from_static(b"<xml>"))),
        Err(std::io::Error::other("connection reset")),
    ];
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let request = Request::post(format!("/wechat?{query}"))
        .body(body)
        .unwrap();
    let (status, reason) = send(verify, request).await;
    assert_eq!(
        (status, reason.as_str()),
        (StatusCode::BAD_REQUEST, "request body could not be read")
    );
}

#[tokio::test]
async fn an_openid_that_is_not_the_sender_is_forbidden() {
    let probe = Probe::default();
    let query = format!(
        "{}&openid=oMallory999",
        signed_query(TOKEN, unix_now(), "swap")
    );
    let (status, reason) = send(probe.layered(layer()), post(&query, text_xml("x"))).await;
    assert_eq!(
        (status, reason.as_str()),
        (StatusCode::FORBIDDEN, "openid does not match FromUserName")
    );
    assert_eq!(probe.calls(), 0);
}

/// A callback the journal stored as JSON is re-parsed as JSON when the recovery worker runs
/// it again: the format travels in the stored body itself, so the journal needs no field
/// for it. An unreadable stored JSON body is refused as malformed JSON.
#[cfg(feature = "fast-ack")]
#[tokio::test]
async fn a_recovered_json_callback_is_parsed_as_json() {
    use crate::hook::Recovery;
    use crate::journal::{EntryId, JournalEntry};
    use crate::message::Format;

    let entry = |body: &'static str| JournalEntry {
        path: "/wechat".into(),
        query: CallbackQuery {
            timestamp: 1,
            nonce: "1".into(),
            openid: None,
            encrypted: true,
            redelivered: false,
        },
        body: Bytes::from_static(body.as_bytes()),
        key: None,
        arrival_unix_ms: 0,
        attempt: 2,
        trace_context: None,
    };
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let service = layer().layer(service_fn(move |request: Request<Full<Bytes>>| {
        let message = request.extensions().get::<Message>().cloned();
        *record.lock().unwrap() = message;
        async { Ok::<_, Infallible>(Response::new(Full::from("success"))) }
    }));
    let mut request = Request::post("/wechat")
        .body(Full::<Bytes>::default())
        .unwrap();
    request.extensions_mut().insert(Recovery::new(
        EntryId::new("1"),
        entry(r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"text","Content":"again","MsgId":5}"#),
    ));
    let (status, _) = send(service.clone(), request).await;
    assert_eq!(status, StatusCode::OK);
    let message = seen.lock().unwrap().take().expect("the handler ran");
    assert_eq!(message.format, Format::Json);
    assert_eq!(
        message.kind,
        MessageKind::Text {
            content: "again".into()
        }
    );

    let mut request = Request::post("/wechat")
        .body(Full::<Bytes>::default())
        .unwrap();
    request
        .extensions_mut()
        .insert(Recovery::new(EntryId::new("2"), entry(r#"{"ToUserName":"#)));
    let (status, body) = send(service, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("malformed JSON"), "{body}");
}
