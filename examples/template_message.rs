//! Sends messages through `WeChatClient` and prints a summary: template messages (default),
//! subscribe messages of a Mini Program or an Official Account, or WeCom app messages.
//!
//! ```sh
//! WECHAT_APPID=wx... WECHAT_SECRET=... WECHAT_TEMPLATE_ID=... WECHAT_OPENID=o... \
//!   cargo run --example template_message --features client
//! WECHAT_SEND_KIND=wecom WECHAT_CORPID=ww... WECHAT_CORPSECRET=... WECHAT_AGENTID=1000002 \
//!   WECHAT_TOUSER=zhangsan cargo run --example template_message --features client
//! ```
//!
//! Environment:
//! - `WECHAT_SEND_KIND`: `template` (default), `subscribe` (Mini Program,
//!   `/cgi-bin/message/subscribe/send`), `bizsend` (Official Account,
//!   `/cgi-bin/message/subscribe/bizsend`) or `wecom` (a WeCom app's text message).
//! - `template`, `subscribe`, `bizsend`: `WECHAT_APPID`, `WECHAT_SECRET`,
//!   `WECHAT_TEMPLATE_ID`, `WECHAT_OPENID`; `WECHAT_TEMPLATE_FIELD` (the template's field to
//!   fill, default `thing1`).
//! - `wecom`: `WECHAT_CORPID`, `WECHAT_CORPSECRET` (the app's secret), `WECHAT_AGENTID`,
//!   `WECHAT_TOUSER` (userids, `|`-separated).
//! - `WECHAT_API_BASE`: the API host for every kind (default `https://api.weixin.qq.com`,
//!   and `https://qyapi.weixin.qq.com` for `wecom`), e.g. a stand-in.
//! - `WECHAT_SEND_COUNT` (default 1; the messages are sent concurrently).
//!
//! Template messages carry a `client_msg_id` and WeCom messages use WeCom's duplicate check,
//! so a retried send cannot deliver them twice; subscribe messages have no such id and are
//! not retried after an ambiguous failure. Prints each failure with its error class, then
//! `sent N, failed M, token fetches K, retries R`. Exits 1 if any message failed, 2 on bad
//! configuration.

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tower_wechat::client::{
    AppSecret, BizSubscribeMessage, ClientError, SubscribeMessage, TemplateMessage, WeChatClient,
    WeComMessage,
};

fn required(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("{name} is not set")),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Template,
    Subscribe,
    BizSend,
    WeCom,
}

/// What to send, and to whom.
enum Target {
    /// An Official Account or Mini Program: template id, openid, field.
    WeChat {
        template_id: String,
        openid: String,
        field: String,
    },
    /// A WeCom app: the recipients.
    WeCom { touser: String },
}

struct Config {
    kind: Kind,
    client: WeChatClient,
    target: Target,
    count: u32,
}

fn config() -> Result<Config, String> {
    let kind = match std::env::var("WECHAT_SEND_KIND").as_deref() {
        Err(_) | Ok("" | "template") => Kind::Template,
        Ok("subscribe") => Kind::Subscribe,
        Ok("bizsend") => Kind::BizSend,
        Ok("wecom") => Kind::WeCom,
        Ok(other) => {
            return Err(format!(
                "WECHAT_SEND_KIND must be template, subscribe, bizsend or wecom, not {other:?}"
            ));
        }
    };
    let count = match std::env::var("WECHAT_SEND_COUNT") {
        Ok(count) => count
            .parse()
            .map_err(|_| format!("WECHAT_SEND_COUNT is not a number: {count:?}"))?,
        Err(_) => 1,
    };
    let base = std::env::var("WECHAT_API_BASE").ok();
    let (builder, target) = if kind == Kind::WeCom {
        let agent = required("WECHAT_AGENTID")?;
        let agent: u32 = agent
            .parse()
            .map_err(|_| format!("WECHAT_AGENTID is not a number: {agent:?}"))?;
        let builder = WeChatClient::wecom(
            required("WECHAT_CORPID")?,
            AppSecret::new(required("WECHAT_CORPSECRET")?),
        )
        .agent_id(agent);
        let touser = required("WECHAT_TOUSER")?;
        (builder, Target::WeCom { touser })
    } else {
        let builder = WeChatClient::builder(
            required("WECHAT_APPID")?,
            AppSecret::new(required("WECHAT_SECRET")?),
        );
        let target = Target::WeChat {
            template_id: required("WECHAT_TEMPLATE_ID")?,
            openid: required("WECHAT_OPENID")?,
            field: std::env::var("WECHAT_TEMPLATE_FIELD").unwrap_or_else(|_| "thing1".to_owned()),
        };
        (builder, target)
    };
    let builder = match base {
        Some(base) => builder.base_url(base),
        None => builder,
    };
    let client = builder.build().map_err(|error| error.to_string())?;
    Ok(Config {
        kind,
        client,
        target,
        count,
    })
}

/// Sends message `n` of `count`; `run` tells this run's messages apart.
async fn send(config: &Config, run: u128, n: u32) -> Result<(), ClientError> {
    let client = &config.client;
    let count = config.count;
    match &config.target {
        Target::WeCom { touser } => {
            let text = format!("tower-wechat {n}/{count} ({run:x})");
            let sent = client
                .send_wecom_message(&WeComMessage::text(text).to_users(touser.split('|')))
                .await?;
            if sent.is_partial() {
                println!(
                    "message {n}: not reached: {} users, {} departments, {} tags",
                    sent.invalid_users.len(),
                    sent.invalid_parties.len(),
                    sent.invalid_tags.len()
                );
            }
            Ok(())
        }
        Target::WeChat {
            template_id,
            openid,
            field,
        } => {
            let value = format!("tower-wechat {n}/{count}");
            match config.kind {
                Kind::Subscribe => client
                    .send_subscribe_message(
                        &SubscribeMessage::new(openid, template_id).data(field, value),
                    )
                    .await
                    .map(drop),
                Kind::BizSend => {
                    client
                        .send_biz_subscribe_message(
                            &BizSubscribeMessage::new(openid, template_id).data(field, value),
                        )
                        .await
                }
                _ => client
                    .send_template_message(
                        &TemplateMessage::new(openid, template_id)
                            .data(field, value)
                            .client_msg_id(format!("tw-{run:x}-{n}")),
                    )
                    .await
                    .map(drop),
            }
        }
    }
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

    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default();
    let started = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(1..=config.count)
        .map(|n| {
            let config = &config;
            async move { (n, send(config, run, n).await) }
        })
        .buffer_unordered(64)
        .collect()
        .await;

    let mut failed = 0;
    for (n, result) in &results {
        if let Err(error) = result {
            failed += 1;
            eprintln!(
                "message {n} failed ({}{}): {error}",
                error.class(),
                if error.not_sent() { ", not sent" } else { "" },
            );
        }
    }
    let client = &config.client;
    println!(
        "sent {}, failed {failed}, token fetches {}, retries {}, in {:.2?}",
        results.len() - failed,
        client.token_fetches(),
        client.retry_stats().retries,
        started.elapsed(),
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
