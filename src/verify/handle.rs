//! [`VerifyHandle`]: a [`VerifyLayer`](super::VerifyLayer)'s rejection counters.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::rejection::CODES;
use super::state::Shared;

/// Reads how many requests a [`VerifyLayer`](super::VerifyLayer) refused, per reason; cheap
/// to clone.
///
/// Every rejection is counted here, including those whose warning was left out of the log
/// during a flood (at most 10 warnings are logged per 10 s).
///
/// ```
/// use tower_wechat::{Token, VerifyLayer};
///
/// let layer = VerifyLayer::new(Token::new("mytoken").unwrap());
/// let handle = layer.handle(); // after the last builder call
/// let stats = handle.stats();
/// assert_eq!(stats.rejected, 0);
/// assert_eq!(stats.rejected_for("signature_mismatch"), 0);
/// ```
#[derive(Clone)]
pub struct VerifyHandle {
    shared: Arc<Shared>,
}

/// A snapshot of a [`VerifyLayer`](super::VerifyLayer)'s rejection counters (since start).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyStats {
    /// Requests refused, all reasons.
    pub rejected: u64,
    /// Rejection warnings left out of the log to keep a flood from filling it.
    pub suppressed_log_lines: u64,
    /// Requests refused per [`Rejection::code`](super::Rejection::code), in a fixed order;
    /// reasons never seen are listed with 0.
    pub by_reason: Vec<(&'static str, u64)>,
}

impl VerifyStats {
    /// How many requests were refused for the reason `code` (a
    /// [`Rejection::code`](super::Rejection::code)); 0 for an unknown code.
    pub fn rejected_for(&self, code: &str) -> u64 {
        self.by_reason
            .iter()
            .find(|(name, _)| *name == code)
            .map_or(0, |(_, count)| *count)
    }
}

impl VerifyHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The counters now.
    pub fn stats(&self) -> VerifyStats {
        let log = &self.shared.rejections;
        let by_reason: Vec<_> = CODES
            .iter()
            .zip(log.by_reason.iter())
            .map(|(code, count)| (*code, count.load(Relaxed)))
            .collect();
        VerifyStats {
            rejected: by_reason.iter().map(|(_, count)| count).sum(),
            suppressed_log_lines: log.suppressed.load(Relaxed),
            by_reason,
        }
    }
}

impl fmt::Debug for VerifyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifyHandle").field(&self.stats()).finish()
    }
}
