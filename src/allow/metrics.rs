//! The `metrics` facade (feature `metrics`): what [`AllowLayer`](super::AllowLayer)
//! records, under stable names.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `wechat_allow_list_entries` | gauge | | entries on the allow-list now |
//! | `wechat_allow_list_updated_seconds` | gauge | | Unix time the list was last set (built, replaced or refreshed); its age is `time() - this` |
//! | `wechat_allow_refused_total` | counter | `reason` | requests refused: `unlisted`, `no_address`, `unreadable` |
//! | `wechat_allow_refreshes_total` | counter | `outcome` | refreshes from WeChat: `ok`, `failed` |
//!
//! ```
//! use tower_wechat::allow::metrics::ALLOW_LIST_ENTRIES;
//!
//! assert_eq!(ALLOW_LIST_ENTRIES, "wechat_allow_list_entries");
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

/// Gauge: entries on the allow-list.
pub const ALLOW_LIST_ENTRIES: &str = "wechat_allow_list_entries";
/// Gauge: Unix time (seconds) the list was last set.
pub const ALLOW_LIST_UPDATED_SECONDS: &str = "wechat_allow_list_updated_seconds";
/// Counter: refused requests, by `reason`.
pub const ALLOW_REFUSED_TOTAL: &str = "wechat_allow_refused_total";
/// Counter: refreshes from WeChat, by `outcome`.
pub const ALLOW_REFRESHES_TOTAL: &str = "wechat_allow_refreshes_total";

/// Describes the metrics (unit and help text) to the installed recorder; call once after
/// installing it.
pub fn describe() {
    describe_gauge!(ALLOW_LIST_ENTRIES, "Entries on the WeChat allow-list");
    describe_gauge!(
        ALLOW_LIST_UPDATED_SECONDS,
        Unit::Seconds,
        "Unix time the allow-list was last set"
    );
    describe_counter!(
        ALLOW_REFUSED_TOTAL,
        "Requests refused by the allow-list, by reason"
    );
    describe_counter!(
        ALLOW_REFRESHES_TOTAL,
        "Refreshes of the allow-list from WeChat, by outcome"
    );
}

pub(crate) fn record_list(entries: usize, at: SystemTime) {
    gauge!(ALLOW_LIST_ENTRIES).set(entries as f64);
    let seconds = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    gauge!(ALLOW_LIST_UPDATED_SECONDS).set(seconds.as_secs_f64());
}

pub(crate) fn record_refused(reason: &'static str) {
    counter!(ALLOW_REFUSED_TOTAL, "reason" => reason).increment(1);
}

#[cfg(feature = "client")]
pub(crate) fn record_refresh(ok: bool) {
    counter!(ALLOW_REFRESHES_TOTAL, "outcome" => if ok { "ok" } else { "failed" }).increment(1);
}
