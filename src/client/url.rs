//! [`BaseUrl`]: where WeChat's API is (its real host, or a stand-in for tests and staging).

use http::Uri;

use super::ClientError;

/// WeChat's API host: `https://api.weixin.qq.com`.
pub const WECHAT_API_BASE: &str = "https://api.weixin.qq.com";

/// A checked base URL: `http` or `https`, a host, an optional path prefix, no query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BaseUrl(String);

impl BaseUrl {
    pub(crate) fn parse(url: &str) -> Result<Self, ClientError> {
        let invalid = |why: &str| ClientError::InvalidInput(format!("base URL: {why}"));
        let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(invalid("the scheme must be http or https")),
        }
        if uri
            .authority()
            .is_none_or(|authority| authority.host().is_empty())
        {
            return Err(invalid("no host"));
        }
        if uri.query().is_some() {
            return Err(invalid("a base URL takes no query"));
        }
        Ok(Self(url.trim_end_matches('/').to_owned()))
    }

    /// `path_and_query` (starting with `/`) under the base.
    pub(crate) fn join(&self, path_and_query: &str) -> Result<Uri, ClientError> {
        format!("{}{path_and_query}", self.0)
            .parse()
            .map_err(|_| ClientError::InvalidInput("a request URL could not be formed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert!(BaseUrl::parse(WECHAT_API_BASE).is_ok());
        let base = BaseUrl::parse("http://127.0.0.1:8080/staging/").unwrap();
        assert_eq!(
            base.join("/cgi-bin/token?a=b").unwrap(),
            "http://127.0.0.1:8080/staging/cgi-bin/token?a=b"
        );
        for bad in [
            "",
            "api.weixin.qq.com",
            "ftp://x",
            "http://",
            "https://h/?q=1",
            "h ttp://x",
        ] {
            assert!(
                matches!(BaseUrl::parse(bad), Err(ClientError::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }
}
