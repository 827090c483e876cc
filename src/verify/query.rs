//! The callback URL's query parameters.

use std::borrow::Cow;

use crate::message::CallbackQuery;
use crate::signature::Signature;

use super::rejection::Rejection;

/// Nonces are short digit strings; anything longer is not WeChat.
const MAX_NONCE_LEN: usize = 64;

/// The parameters as they came, before the signature is checked.
#[derive(Default)]
pub(crate) struct RawQuery<'a> {
    signature: Option<Cow<'a, str>>,
    msg_signature: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    nonce: Option<Cow<'a, str>>,
    pub(crate) echostr: Option<Cow<'a, str>>,
    openid: Option<Cow<'a, str>>,
    pub(crate) encrypt_type: Option<Cow<'a, str>>,
}

/// The signed parts of a query, checked for shape but not yet for the signature.
pub(crate) struct SignedParts<'q> {
    /// Plain mode's `signature` over token, timestamp and nonce.
    pub(crate) signature: Option<Signature>,
    /// Safe mode's `msg_signature`, which also covers `Encrypt` (or an encrypted `echostr`).
    pub(crate) msg_signature: Option<Signature>,
    pub(crate) timestamp_text: &'q str,
    pub(crate) timestamp: u64,
    pub(crate) nonce: &'q str,
}

impl<'a> RawQuery<'a> {
    /// Splits and percent-decodes the query; a known parameter given twice is refused.
    ///
    /// WeChat's values are plain digits, hex and base64, so a pair is only run through the
    /// form decoder when it holds a `%` or `+`; the rest are borrowed as they are.
    pub(crate) fn parse(query: &'a str) -> Result<Self, Rejection> {
        let mut raw = Self::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = if pair.bytes().any(|byte| byte == b'%' || byte == b'+') {
                match form_urlencoded::parse(pair.as_bytes()).next() {
                    Some(decoded) => decoded,
                    None => continue,
                }
            } else {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (Cow::Borrowed(name), Cow::Borrowed(value))
            };
            let slot = match name.as_ref() {
                "signature" => &mut raw.signature,
                "msg_signature" => &mut raw.msg_signature,
                "timestamp" => &mut raw.timestamp,
                "nonce" => &mut raw.nonce,
                "echostr" => &mut raw.echostr,
                "openid" => &mut raw.openid,
                "encrypt_type" => &mut raw.encrypt_type,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(Rejection::DuplicateParameter(static_name(&name)));
            }
        }
        Ok(raw)
    }

    /// Checks that `timestamp`, `nonce` and `signature` or `msg_signature` (or both) are
    /// present and well formed.
    pub(crate) fn signed_parts(&self) -> Result<SignedParts<'_>, Rejection> {
        if self.signature.is_none() && self.msg_signature.is_none() {
            return Err(Rejection::MissingParameter("signature"));
        }
        let signature = hex_signature(&self.signature, "signature")?;
        let msg_signature = hex_signature(&self.msg_signature, "msg_signature")?;
        let timestamp_text = required(&self.timestamp, "timestamp")?;
        let nonce = required(&self.nonce, "nonce")?;
        let timestamp = timestamp_text
            .parse()
            .ok()
            .filter(|_| timestamp_text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(Rejection::InvalidParameter("timestamp"))?;
        if nonce.len() > MAX_NONCE_LEN {
            return Err(Rejection::InvalidParameter("nonce"));
        }
        Ok(SignedParts {
            signature,
            msg_signature,
            timestamp_text,
            timestamp,
            nonce,
        })
    }

    pub(crate) fn into_callback_query(self, timestamp: u64) -> CallbackQuery {
        CallbackQuery {
            timestamp,
            nonce: self.nonce.map(Cow::into_owned).unwrap_or_default(),
            openid: self.openid.map(Cow::into_owned),
            encrypted: false,
            redelivered: false,
        }
    }
}

fn required<'q>(value: &'q Option<Cow<'_, str>>, name: &'static str) -> Result<&'q str, Rejection> {
    match value.as_deref() {
        None | Some("") => Err(Rejection::MissingParameter(name)),
        Some(value) => Ok(value),
    }
}

fn hex_signature(
    value: &Option<Cow<'_, str>>,
    name: &'static str,
) -> Result<Option<Signature>, Rejection> {
    value
        .as_deref()
        .map(|hex| Signature::from_hex(hex).map_err(|_| Rejection::InvalidParameter(name)))
        .transpose()
}

fn static_name(name: &str) -> &'static str {
    match name {
        "signature" => "signature",
        "msg_signature" => "msg_signature",
        "timestamp" => "timestamp",
        "nonce" => "nonce",
        "echostr" => "echostr",
        "openid" => "openid",
        _ => "encrypt_type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443ff&timestamp=1410685589&nonce=test";

    #[test]
    fn parses_and_decodes_known_parameters() {
        let query = format!("{GOOD}&echostr=a%2Bb%3D&openid=oABC&other=1");
        let raw = RawQuery::parse(&query).unwrap();
        assert_eq!(raw.echostr.as_deref(), Some("a+b="));
        let parts = raw.signed_parts().unwrap();
        assert_eq!(parts.timestamp, 1_410_685_589);
        assert_eq!(parts.timestamp_text, "1410685589");
        assert_eq!(parts.nonce, "test");
        let query = raw.into_callback_query(1_410_685_589);
        assert_eq!(query.openid.as_deref(), Some("oABC"));
    }

    #[test]
    fn encoded_names_and_values_are_decoded_like_a_form() {
        let raw = RawQuery::parse("%65chostr=a+b%2Fc&&openid=o%20x&novalue").unwrap();
        assert_eq!(raw.echostr.as_deref(), Some("a b/c"));
        assert_eq!(raw.openid.as_deref(), Some("o x"));
    }

    #[test]
    fn missing_parameters_are_named() {
        for (query, missing) in [
            ("timestamp=1&nonce=2", "signature"),
            (
                "signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443ff&nonce=2",
                "timestamp",
            ),
            (
                "signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443ff&timestamp=1&nonce=",
                "nonce",
            ),
        ] {
            let raw = RawQuery::parse(query).unwrap();
            assert!(
                matches!(raw.signed_parts(), Err(Rejection::MissingParameter(name)) if name == missing),
                "{query}"
            );
        }
    }

    #[test]
    fn malformed_parameters_are_named() {
        for (query, invalid) in [
            ("signature=xyz&timestamp=1&nonce=2", "signature"),
            (
                "signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443ff&timestamp=-1&nonce=2",
                "timestamp",
            ),
            (
                "signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443ff&timestamp=%2B1&nonce=2",
                "timestamp",
            ),
            (
                "signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443ff&timestamp=99999999999999999999999&nonce=2",
                "timestamp",
            ),
        ] {
            let raw = RawQuery::parse(query).unwrap();
            assert!(
                matches!(raw.signed_parts(), Err(Rejection::InvalidParameter(name)) if name == invalid),
                "{query}"
            );
        }
        let long_nonce = format!("{GOOD}0{}", "1".repeat(MAX_NONCE_LEN));
        let raw = RawQuery::parse(&long_nonce).unwrap();
        assert!(matches!(
            raw.signed_parts(),
            Err(Rejection::InvalidParameter("nonce"))
        ));
    }

    #[test]
    fn duplicated_parameters_are_refused() {
        let query = format!("{GOOD}&nonce=other");
        let result = RawQuery::parse(&query);
        assert!(matches!(
            result,
            Err(Rejection::DuplicateParameter("nonce"))
        ));
    }

    #[test]
    fn debug_masks_the_openid() {
        let query = CallbackQuery {
            timestamp: 1,
            nonce: "n".into(),
            openid: Some("oia2Tj-jewbmiOUlr6X-1crbLOvLw".into()),
            encrypted: false,
            redelivered: false,
        };
        let shown = format!("{query:?}");
        assert!(!shown.contains("oia2Tj-jewbmiOUlr6X-1crbLOvLw"), "{shown}");
    }
}
