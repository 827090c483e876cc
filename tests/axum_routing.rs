//! Where VerifyLayer goes in an axum app, as the README shows it.

mod common;

use axum::Router;
use axum::routing::{get, post};
use common::{WeChat, serve, text_message};
use http::{Method, StatusCode};
use tower_wechat::{CallbackQuery, Message, Reply, ReplyContent, Token, VerifyLayer};

const TOKEN: &str = "routing42";

async fn handler(message: Message, query: CallbackQuery) -> Reply {
    let openid = query.openid.unwrap_or_default();
    message.reply(ReplyContent::text(format!("hi {openid}")))
}

#[tokio::test]
async fn a_method_router_layer_answers_the_handshake_and_leaves_other_routes_alone() {
    let verify = VerifyLayer::new(Token::new(TOKEN).unwrap());
    let router = Router::new()
        .route("/wechat", post(handler).layer(verify))
        .route("/health", get(|| async { "ok" }));
    let wechat = WeChat::new(serve(router).await, TOKEN);

    let answer = wechat.handshake("42").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "42")
    );

    let answer = wechat.deliver(&text_message("x", 1)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("hi oUser1234"), "{}", answer.body);

    let answer = wechat.send(Method::GET, "/health", "").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "ok")
    );
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_a_clear_server_error() {
    let router = Router::new().route("/wechat", post(handler));
    let wechat = WeChat::new(serve(router).await, TOKEN);
    let answer = wechat.deliver(&text_message("x", 1)).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer.body,
        "no verified WeChat message: is VerifyLayer applied to this route? (a handler \
         extracts the Message once: the extractor takes it out of the request)"
    );
}

#[tokio::test]
async fn a_message_extracted_twice_is_the_same_clear_server_error() {
    // The extractor takes the message out of the request: the second finds none.
    async fn twice(first: Message, _second: Message) -> Reply {
        first.into_reply(ReplyContent::text("unreachable"))
    }
    let verify = VerifyLayer::new(Token::new(TOKEN).unwrap());
    let router = Router::new().route("/wechat", post(twice).layer(verify));
    let wechat = WeChat::new(serve(router).await, TOKEN);
    let answer = wechat.deliver(&text_message("x", 1)).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        answer.body.contains("extracts the Message once"),
        "{}",
        answer.body
    );
}
