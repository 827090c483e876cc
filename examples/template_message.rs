//! Sends template messages through `WeChatClient` and prints a summary.
//!
//! ```sh
//! WECHAT_APPID=wx... WECHAT_SECRET=... WECHAT_TEMPLATE_ID=... WECHAT_OPENID=o... \
//!   cargo run --example template_message --features client
//! ```
//!
//! Environment: `WECHAT_API_BASE` (default WeChat's API, `https://api.weixin.qq.com`),
//! `WECHAT_APPID`, `WECHAT_SECRET`, `WECHAT_TEMPLATE_ID`, `WECHAT_OPENID`,
//! `WECHAT_SEND_COUNT` (default 1; the messages are sent concurrently),
//! `WECHAT_TEMPLATE_FIELD` (the template's field to fill, default `thing1`).
//! Each message carries a `client_msg_id`, so WeChat de-duplicates any retried send.
//! Exits 1 if any message failed, 2 on bad configuration.

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tower_wechat::client::{AppSecret, TemplateMessage, WECHAT_API_BASE, WeChatClient};

fn required(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("{name} is not set")),
    }
}

struct Config {
    base: String,
    appid: String,
    secret: AppSecret,
    template_id: String,
    openid: String,
    field: String,
    count: u32,
}

fn config() -> Result<Config, String> {
    let count = match std::env::var("WECHAT_SEND_COUNT") {
        Ok(count) => count
            .parse()
            .map_err(|_| format!("WECHAT_SEND_COUNT is not a number: {count:?}"))?,
        Err(_) => 1,
    };
    Ok(Config {
        base: std::env::var("WECHAT_API_BASE").unwrap_or_else(|_| WECHAT_API_BASE.to_owned()),
        appid: required("WECHAT_APPID")?,
        secret: AppSecret::new(required("WECHAT_SECRET")?),
        template_id: required("WECHAT_TEMPLATE_ID")?,
        openid: required("WECHAT_OPENID")?,
        field: std::env::var("WECHAT_TEMPLATE_FIELD").unwrap_or_else(|_| "thing1".to_owned()),
        count,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let config = match config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("template_message: {error}");
            return ExitCode::from(2);
        }
    };
    let client = match WeChatClient::builder(&config.appid, config.secret.clone())
        .base_url(&config.base)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("template_message: {error}");
            return ExitCode::from(2);
        }
    };

    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default();
    let started = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(1..=config.count)
        .map(|n| {
            let message = TemplateMessage::new(&config.openid, &config.template_id)
                .data(&config.field, format!("tower-wechat {n}/{}", config.count))
                .client_msg_id(format!("tw-{run:x}-{n}"));
            let client = &client;
            async move { (n, client.send_template_message(&message).await) }
        })
        .buffer_unordered(64)
        .collect()
        .await;

    let mut failed = 0;
    for (n, result) in &results {
        if let Err(error) = result {
            failed += 1;
            eprintln!("message {n} failed: {error}");
        }
    }
    let retries = client.retry_stats().retries;
    println!(
        "sent {}, failed {failed}, token fetches {}, retries {retries}, in {:.2?}",
        results.len() - failed,
        client.token_fetches(),
        started.elapsed(),
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
