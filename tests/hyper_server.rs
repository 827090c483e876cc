//! The hyper example (no axum) served on a real loopback port.

mod common;

#[path = "../examples/hyper_server.rs"]
#[allow(dead_code)]
mod hyper_server;

use common::{WeChat, text_message};
use http::{Method, StatusCode};
use tower_wechat::{CallbackLayer, Reply, ReplyContent, Token};

const TOKEN: &str = "hyperonly1";

async fn start() -> WeChat {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stack = CallbackLayer::new(Token::new(TOKEN).unwrap());
    tokio::spawn(hyper_server::serve(listener, stack, std::future::pending()));
    WeChat::new(addr, TOKEN)
}

#[tokio::test]
async fn serves_handshake_and_messages_under_plain_hyper() {
    let wechat = start().await;
    let answer = wechat.handshake("1616140317555161061").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "1616140317555161061")
    );

    let answer = wechat.deliver(&text_message("over hyper", 1)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let reply = Reply::parse(answer.body.as_bytes()).unwrap();
    assert_eq!(
        reply.content(),
        Some(&ReplyContent::text("You said: over hyper"))
    );
}

#[tokio::test]
async fn refuses_bad_requests_under_plain_hyper() {
    let wechat = start().await;
    let forger = WeChat::new(wechat.addr(), "notthetoken");
    assert_eq!(
        forger.deliver(&text_message("x", 2)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        wechat.deliver("<xml>").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        wechat.send(Method::DELETE, "/wechat", "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        wechat.send(Method::GET, "/other", "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        wechat.deliver(&text_message("fine", 3)).await.status,
        StatusCode::OK
    );
}
