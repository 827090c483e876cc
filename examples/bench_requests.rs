//! Writes signed WeChat text-message callbacks for `benches/compare.sh` to replay with wrk.
//!
//! ```text
//! cargo run --release --example bench_requests -- COUNT OUT
//! ```
//!
//! One request per line, `QUERY<TAB>BODY`, the format `benches/compare/replay.lua` reads.
//! Every request has the current timestamp, its own nonce (the last 4 digits of the
//! timestamp, then the index) and its own `MsgId` (timestamp × 10⁷ + index), so a server
//! that refuses replays and de-duplicates by `MsgId` sees only new messages; the senders
//! cycle through 1000 openids of 28 characters, the content is `hello bench <index>`.
//! `WECHAT_TOKEN` (default `towerwechatdemo`) signs them:
//! `signature = hex(sha1(sorted([token, timestamp, nonce]) joined))`.

use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tower_wechat::Token;
use tower_wechat::signature::Signature;

/// The account every message is sent to.
const TO_USER: &str = "gh_bench0000001";

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(count), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: bench_requests COUNT OUT".into());
    };
    let count: u64 = count.parse().map_err(|_| "COUNT: a whole number")?;
    let token = std::env::var("WECHAT_TOKEN").unwrap_or_else(|_| "towerwechatdemo".to_owned());
    let token = Token::new(token).map_err(|error| format!("WECHAT_TOKEN: {error}"))?;
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let ts = timestamp.to_string();
    let width = count.saturating_sub(1).to_string().len().max(6);
    let mut file = BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    let mut line = String::with_capacity(1024);
    for index in 0..count {
        line.clear();
        let nonce = format!("{:04}{index:0width$}", timestamp % 10_000);
        let signature = Signature::plain(&token, &ts, &nonce);
        let msg_id = timestamp * 10_000_000 + index;
        writeln!(
            line,
            "signature={signature}&timestamp={ts}&nonce={nonce}\t\
             <xml><ToUserName><![CDATA[{TO_USER}]]></ToUserName>\
             <FromUserName><![CDATA[oBench{:022}]]></FromUserName>\
             <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[hello bench {index}]]></Content><MsgId>{msg_id}</MsgId></xml>",
            index % 1000
        )?;
        file.write_all(line.as_bytes())?;
    }
    file.flush()?;
    Ok(())
}
