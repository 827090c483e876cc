//! [`BaseUrl`]: where WeChat's API is (its real host, or a stand-in for tests and staging).

use http::Uri;

use super::ClientError;

/// WeChat's API host: `https://api.weixin.qq.com`.
pub const WECHAT_API_BASE: &str = "https://api.weixin.qq.com";

/// WeCom's (企业微信) API host: `https://qyapi.weixin.qq.com`.
pub const WECOM_API_BASE: &str = "https://qyapi.weixin.qq.com";

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
        if Origin::of(&uri).is_none() {
            return Err(invalid("a base URL takes no user info"));
        }
        if url.contains(['\\', '#', '@']) {
            return Err(invalid("a base URL takes no '\\', '#' or '@'"));
        }
        Ok(Self(url.trim_end_matches('/').to_owned()))
    }

    /// `path_and_query` (starting with `/`) under the base.
    ///
    /// Refuses, with [`ClientError::InvalidInput`], a path that does not start with `/` or
    /// holds `//`, `@` or `\\` (and any `\\` or `#`), since pasted after the base as text
    /// it could name another host or port (`@evil.example/x`, `.evil.example/x`, `:4444/x`)
    /// and the access_token would go there. The result is checked to be on the base's
    /// origin and under its path.
    pub(crate) fn join(&self, path_and_query: &str) -> Result<Uri, ClientError> {
        let invalid = |why: &str| ClientError::InvalidInput(format!("request path: {why}"));
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(path, _)| path);
        if !path.starts_with('/') {
            return Err(invalid("it must start with '/'"));
        }
        if path.contains("//") || path.contains('@') {
            return Err(invalid("it must not hold '//' or '@'"));
        }
        if path_and_query.contains(['\\', '#']) {
            return Err(invalid("it must not hold '\\' or '#'"));
        }
        let uri: Uri = format!("{}{path_and_query}", self.0)
            .parse()
            .map_err(|_| ClientError::InvalidInput("a request URL could not be formed".into()))?;
        let base = self.origin();
        if Origin::of(&uri).as_ref() != Some(&base) || !uri.path().starts_with(self.path()) {
            return Err(invalid("it leads away from the base URL"));
        }
        Ok(uri)
    }

    /// The base's scheme, host and port.
    pub(crate) fn origin(&self) -> Origin {
        let uri: Uri = self.0.parse().unwrap_or_default();
        Origin::of(&uri).unwrap_or_else(Origin::nowhere)
    }

    /// The base's `host:port`, e.g. a metrics label.
    pub(crate) fn host_port(&self) -> String {
        let origin = self.origin();
        format!("{}:{}", origin.host, origin.port)
    }

    /// The base's path prefix (`""` when there is none).
    fn path(&self) -> &str {
        let after_scheme = self.0.split_once("://").map_or("", |(_, rest)| rest);
        after_scheme.find('/').map_or("", |at| &after_scheme[at..])
    }
}

/// Where a request goes: scheme, host and port (the default port filled in), compared
/// without regard to case. A URI with user info (`user@host`) has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// `uri`'s origin; `None` when it is relative, not http(s), or carries user info.
    pub(crate) fn of(uri: &Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let authority = uri.authority()?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return None;
        }
        Some(Self {
            scheme,
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(default_port),
        })
    }

    /// Matches no URI (only for a base that somehow does not parse again).
    pub(crate) fn nowhere() -> Self {
        Self {
            scheme: String::new(),
            host: String::new(),
            port: 0,
        }
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
            "http://user@h",
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

    #[test]
    fn a_path_cannot_lead_to_another_host_or_port() {
        let base = BaseUrl::parse("https://api.weixin.qq.com").unwrap();
        for bad in [
            "@evil.example/x",
            ".evil.example/x",
            ":4444/x",
            "evil/x",
            "",
            "//evil.example/x",
            "/x//y",
            "/@evil.example/x",
            "/x\\y",
            "/x#frag",
            "/x?y=1#frag",
        ] {
            assert!(
                matches!(base.join(bad), Err(ClientError::InvalidInput(_))),
                "{bad:?} -> {:?}",
                base.join(bad)
            );
        }
        assert_eq!(
            base.join("/cgi-bin/x?next=http://a@b").unwrap(),
            "https://api.weixin.qq.com/cgi-bin/x?next=http://a@b"
        );
        let origin = base.origin();
        for (uri, same) in [
            ("https://api.weixin.qq.com/x", true),
            ("HTTPS://API.weixin.qq.com:443/x", true),
            ("http://api.weixin.qq.com/x", false),
            ("https://api.weixin.qq.com:4444/x", false),
            ("https://api.weixin.qq.com.evil.example/x", false),
            ("https://u@api.weixin.qq.com/x", false),
            ("/x", false),
        ] {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(Origin::of(&uri).as_ref() == Some(&origin), same, "{uri}");
        }
    }
}
