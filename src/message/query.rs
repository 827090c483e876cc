//! [`CallbackQuery`]: what the signed query of a callback said.

use std::fmt;

use super::mask_openid;

/// The verified query parameters of a callback, put in the request extensions by
/// [`Verify`](crate::Verify) next to the parsed [`Message`](crate::Message).
///
/// `Debug` masks the openid.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackQuery {
    /// The signed `timestamp` (Unix seconds).
    pub timestamp: u64,
    /// The signed `nonce`.
    pub nonce: String,
    /// The sender's `openid`, which Official Accounts add to message callbacks. The query
    /// is not signed, so the layer refuses (403) a callback whose `openid` is not the
    /// message's `FromUserName`.
    pub openid: Option<String>,
    /// The message came encrypted (safe or compatibility mode); the handler sees it
    /// decrypted, and its passive reply is encrypted on the way out.
    pub encrypted: bool,
    /// This exact signed request (same query and body) was already accepted: WeChat retries a
    /// delivery it got no timely answer for with the same query. Best effort: remembered
    /// while the nonce memory holds the pair.
    pub redelivered: bool,
}

impl fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackQuery")
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .field("openid", &self.openid.as_deref().map(mask_openid))
            .field("encrypted", &self.encrypted)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}
