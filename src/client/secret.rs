//! [`AppSecret`] and [`ApiToken`]: secrets that never show in `Debug` output.

use std::fmt;
use std::sync::Arc;

/// An Official Account's appsecret. `Debug` prints `AppSecret(***)`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AppSecret(Arc<str>);

impl AppSecret {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Arc::from(secret.into()))
    }

    /// The secret itself, to send to WeChat's token endpoint.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppSecret(***)")
    }
}

/// An `access_token` issued by WeChat; cheap to clone. `Debug` prints `ApiToken(***)`, and
/// there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(Arc<str>);

impl ApiToken {
    /// Wraps `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::from(token.into()))
    }

    /// The token itself, to put in a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

/// Shows an openid masked as everywhere else in the crate (first 4 and last 2 characters):
/// enough to tell users apart in a log, not enough to message one.
pub(crate) struct MaskedId<'a>(pub(crate) &'a str);

impl fmt::Debug for MaskedId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&crate::message::mask_openid(self.0), f)
    }
}
