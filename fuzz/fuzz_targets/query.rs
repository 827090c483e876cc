//! The query parser, alone and behind `VerifyLayer` (the GET handshake and a POST): never a
//! panic or a 5xx, refusals are short fixed texts, and every log line stays bounded and
//! free of control characters.
#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_layer::Layer;
use tower_service::Service;

fuzz_target!(|data: &[u8]| {
    common::install_log();
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tower_wechat::__fuzz::query(query);
    for method in [Method::GET, Method::POST] {
        let Ok(request) = Request::builder()
            .method(method)
            .uri(format!("/wechat?{query}"))
            .body(Full::new(Bytes::from_static(b"<xml><a>1</a></xml>")))
        else {
            return;
        };
        let mut service = tower_wechat::__fuzz::layer("fuzztoken").layer(common::Echo);
        let response = common::now(service.call(request)).unwrap();
        common::check_response(response);
    }
});
