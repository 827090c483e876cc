#[path = "quickstart.rs"]
#[allow(dead_code)]
mod quickstart;
#[tokio::main]
async fn main() {
    quickstart::init_tracing();
    let stack = quickstart::stack_from_env().unwrap();
    let addr = quickstart::listen_addr().unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = quickstart::app(stack);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
    .unwrap();
}
