//! [`http_client`]: a pooled HTTPS client (hyper-util's legacy client, rustls with ring and
//! Mozilla's roots).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::ClientError;

/// The HTTP client [`http_client`] builds: pooled keep-alive connections, HTTP/1.1, TLS by
/// rustls. Plain `http://` is allowed too, for a stand-in on loopback.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTPS client: connections are kept alive and reused (up to 32 idle ones per
/// host, closed after 50 s idle, under the 60 s WeChat's servers are known to keep them),
/// `TCP_NODELAY` is set and connecting times out after 5 s. Needs a tokio runtime when used.
pub fn http_client() -> Result<HttpClient, ClientError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|error| ClientError::InvalidInput(format!("TLS setup: {error}")))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(50))
        .pool_max_idle_per_host(32)
        .build(https))
}
