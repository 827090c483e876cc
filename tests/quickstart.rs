//! The quick start's router served on a real loopback port, driven by a WeChat-like client.

mod common;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

use common::{WeChat, now, serve, text_message};
use http::{Method, StatusCode, header};
use tower_wechat::{CallbackLayer, Message, MessageKind, Reply, ReplyContent, Token, VerifyLayer};

const TOKEN: &str = "neverseen42";

async fn start(layer: VerifyLayer) -> WeChat {
    let addr = serve(quickstart::app(CallbackLayer::with_verify(layer))).await;
    WeChat::new(addr, TOKEN)
}

fn layer() -> VerifyLayer {
    VerifyLayer::new(Token::new(TOKEN).unwrap())
}

#[tokio::test]
async fn answers_the_url_handshake() {
    let wechat = start(layer()).await;
    let answer = wechat.handshake("5927782489442352469").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "5927782489442352469");
}

#[tokio::test]
async fn echoes_a_text_message_as_a_passive_reply() {
    let wechat = start(layer()).await;
    let answer = wechat
        .deliver(&text_message("你好, <b>world</b> ]]> & co", 1))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/xml; charset=utf-8"
    );
    let reply = Reply::parse(answer.body.as_bytes()).unwrap();
    assert_eq!(reply.to_user_name(), Some("oUser1234"));
    assert_eq!(reply.from_user_name(), Some("gh_account"));
    assert_eq!(
        reply.content(),
        Some(&ReplyContent::text("You said: 你好, <b>world</b> ]]> & co"))
    );
    // What WeChat would parse: a text message with exactly that content.
    let parsed = Message::parse(answer.body.as_bytes()).unwrap();
    assert!(
        matches!(parsed.kind, MessageKind::Text { ref content } if content == "You said: 你好, <b>world</b> ]]> & co")
    );
}

#[tokio::test]
async fn unhandled_message_types_get_success() {
    let wechat = start(layer()).await;
    let xml = format!(
        "<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oUser1234]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[miniprogrampage]]></MsgType>\
         <Title><![CDATA[t]]></Title><MsgId>9</MsgId></xml>",
        now()
    );
    let answer = wechat.deliver(&xml).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "success")
    );
}

#[tokio::test]
async fn refuses_bad_requests_and_stays_healthy() {
    let wechat = start(layer().body_limit(4096)).await;
    let message = text_message("hi", 7);

    // Forged: signed with another token.
    let forger = WeChat::new(wechat.addr(), "someothertoken");
    let answer = forger.deliver(&message).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::FORBIDDEN, "signature does not match")
    );

    // Stale: ten minutes old.
    let query = wechat.signed_query_at(now() - 600);
    let answer = wechat
        .send(Method::POST, &format!("/wechat?{query}"), message.clone())
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.body, "timestamp is outside the accepted window");

    // Replayed: a captured query with another body.
    let query = wechat.signed_query();
    let first = wechat
        .send(Method::POST, &format!("/wechat?{query}"), message.clone())
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let replayed = wechat
        .send(
            Method::POST,
            &format!("/wechat?{query}"),
            text_message("forged", 8),
        )
        .await;
    assert_eq!(replayed.status, StatusCode::FORBIDDEN);
    // WeChat's own retry (same query, same body) still gets the reply.
    let retry = wechat
        .send(Method::POST, &format!("/wechat?{query}"), message.clone())
        .await;
    assert_eq!((retry.status, &retry.body), (StatusCode::OK, &first.body));

    // Malformed XML.
    let answer = wechat.deliver("<xml><MsgType>text").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.starts_with("malformed XML"), "{}", answer.body);

    // Oversized.
    let answer = wechat.deliver(&text_message(&"x".repeat(5000), 9)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than 4096 bytes"
        )
    );

    // Missing and malformed parameters.
    let answer = wechat.send(Method::POST, "/wechat", message.clone()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = wechat
        .send(
            Method::POST,
            &format!("/wechat?signature=nothex&timestamp={}&nonce=1", now()),
            message.clone(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    // Other methods.
    let answer = wechat.send(Method::PUT, "/wechat", message.clone()).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);

    // Still healthy.
    let answer = wechat.deliver(&text_message("still here", 10)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("You said: still here"));
}

#[tokio::test]
async fn concurrent_callbacks_are_all_answered() {
    let wechat = std::sync::Arc::new(start(layer()).await);
    let answers = futures_util::future::join_all((0..64).map(|i| {
        let wechat = wechat.clone();
        async move { wechat.deliver(&text_message(&format!("m{i}"), i)).await }
    }))
    .await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.contains(&format!("You said: m{i}")));
    }
}

#[tokio::test]
async fn retries_are_answered_with_the_first_reply() {
    let wechat = start(layer()).await;
    let delivery = wechat.delivery(&text_message("hi", 31));
    let first = wechat.send_delivery(&delivery).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.body.contains("You said: hi"));
    let retry = wechat.send_delivery(&delivery).await;
    assert_eq!(retry.body, first.body);
}
