//! Signature check, message parsing, reply writing, and a request through `VerifyLayer`.
//!
//! ```text
//! cargo bench --bench verify
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, ServiceExt, service_fn};
use tower_wechat::VerifyLayer;
use tower_wechat::message::{Article, Message, Reply, ReplyContent};
use tower_wechat::signature::{Signature, Token};

const TEXT: &str = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\
<FromUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></FromUserName>\
<CreateTime>1715943329</CreateTime><MsgType><![CDATA[text]]></MsgType>\
<Content><![CDATA[你好，我想查一下我的订单状态]]></Content><MsgId>24567890123456789</MsgId></xml>";

const IMAGE: &str = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\
<FromUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></FromUserName>\
<CreateTime>1715943329</CreateTime><MsgType><![CDATA[image]]></MsgType>\
<PicUrl><![CDATA[http://mmbiz.qpic.cn/mmbiz_jpg/abcdef/0]]></PicUrl>\
<MediaId><![CDATA[media_id_1234567890]]></MediaId><MsgId>24567890123456790</MsgId></xml>";

const SUBSCRIBE: &str = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\
<FromUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></FromUserName>\
<CreateTime>1715943329</CreateTime><MsgType><![CDATA[event]]></MsgType>\
<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_123123]]></EventKey>\
<Ticket><![CDATA[TICKET]]></Ticket></xml>";

const CLICK: &str = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\
<FromUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></FromUserName>\
<CreateTime>1715943329</CreateTime><MsgType><![CDATA[event]]></MsgType>\
<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[MENU_ORDERS]]></EventKey></xml>";

const LOCATION: &str = "<xml><ToUserName><![CDATA[gh_97417a04a28d]]></ToUserName>\
<FromUserName><![CDATA[oia2Tj-jewbmiOUlr6X-1crbLOvLw]]></FromUserName>\
<CreateTime>1715943329</CreateTime><MsgType><![CDATA[location]]></MsgType>\
<Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale>\
<Label><![CDATA[位置信息]]></Label><MsgId>24567890123456791</MsgId></xml>";

fn signature(c: &mut Criterion) {
    let token = Token::new("AAAAA").unwrap();
    let expected = Signature::from_hex("899cf89e464efb63f54ddac96b0a0a235f53aa78").unwrap();
    c.bench_function("signature/plain_verify", |b| {
        b.iter(|| {
            let sent =
                Signature::from_hex(black_box("899cf89e464efb63f54ddac96b0a0a235f53aa78")).unwrap();
            Signature::plain(&token, black_box("1714037059"), black_box("486452656")).verify(&sent)
                && sent.verify(&expected)
        })
    });
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, xml) in [
        ("text", TEXT),
        ("image", IMAGE),
        ("location", LOCATION),
        ("event_subscribe", SUBSCRIBE),
        ("event_click", CLICK),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| Message::parse(black_box(xml.as_bytes())).unwrap())
        });
    }
    group.finish();
}

fn reply(c: &mut Criterion) {
    let message = Message::parse(TEXT.as_bytes()).unwrap();
    let mut group = c.benchmark_group("reply");
    let text = message.reply(ReplyContent::text("您的订单已发货，预计明天送达。"));
    group.bench_function("text", |b| b.iter(|| black_box(&text).to_xml()));
    let article = Article {
        title: "订单详情".into(),
        description: "点击查看物流".into(),
        pic_url: "https://example.com/p.jpg".into(),
        url: "https://example.com/orders/1".into(),
    };
    let news = message.reply(ReplyContent::news(vec![article; 3]).unwrap());
    group.bench_function("news_3", |b| b.iter(|| black_box(&news).to_xml()));
    group.bench_function("success", |b| {
        b.iter(|| black_box(Reply::success()).to_bytes())
    });
    group.finish();
}

/// One signed POST with a fresh nonce, built outside the timed part.
fn signed_request(token: &Token, nonce: &AtomicU64) -> Request<Full<Bytes>> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let nonce = nonce.fetch_add(1, Ordering::Relaxed).to_string();
    let signature = Signature::plain(token, &timestamp, &nonce);
    Request::post(format!(
        "/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}&openid=oia2Tj-jewbmiOUlr6X-1crbLOvLw"
    ))
    .header("content-type", "text/xml")
    .body(Full::new(Bytes::from_static(TEXT.as_bytes())))
    .unwrap()
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let token = Token::new("benchtoken").unwrap();
    let nonce = AtomicU64::new(0);
    let handler = service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("success")))
    });
    let verified = VerifyLayer::new(token.clone()).layer(handler);

    let mut group = c.benchmark_group("request");
    group.bench_function("bare_handler", |b| {
        b.to_async(&runtime).iter_batched(
            || signed_request(&token, &nonce),
            |request| handler.oneshot(request),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify_layer_text", |b| {
        b.to_async(&runtime).iter_batched(
            || signed_request(&token, &nonce),
            |request| verified.clone().oneshot(request),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, signature, parse, reply, layer);
criterion_main!(benches);
