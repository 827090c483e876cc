//! WeChat's callback signatures: SHA-1 over the byte-wise sorted, concatenated parts.
//!
//! Plain mode signs `(token, timestamp, nonce)`; safe mode's `msg_signature` adds the
//! `Encrypt` text as a fourth part. These are pure functions with no tower types, so they can
//! be benchmarked and fuzzed on their own.
//!
//! ```
//! use tower_wechat::signature::{Signature, Token};
//!
//! let token = Token::new("test").unwrap();
//! let expected = Signature::from_hex("f21891de399b4e33a1a93c9a7b8a8fffb5a443ff").unwrap();
//! assert!(Signature::plain(&token, "1410685589", "test").verify(&expected));
//! ```

use std::fmt;
use std::sync::Arc;

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The shared secret configured in the WeChat console ("Token" / 令牌).
///
/// WeChat and WeCom accept 3 to 32 ASCII letters or digits, and so does [`Token::new`]: a
/// trailing newline from an environment file or a pasted space is caught at start-up rather
/// than showing up as forged signatures. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    /// Checks and wraps a token.
    pub fn new(token: impl Into<String>) -> Result<Self, InvalidToken> {
        let token = token.into();
        if !(3..=32).contains(&token.len()) {
            return Err(InvalidToken::Length(token.len()));
        }
        if !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(InvalidToken::Character);
        }
        Ok(Self(token.into()))
    }

    /// The token's text, for signing.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl TryFrom<&str> for Token {
    type Error = InvalidToken;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for Token {
    type Error = InvalidToken;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

/// Why a [`Token`] was refused. Never contains the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The token is not 3 to 32 bytes long (the length it had).
    Length(usize),
    /// The token contains something other than ASCII letters and digits.
    Character,
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length(len) => write!(
                f,
                "WeChat token must be 3 to 32 letters or digits, got {len} characters"
            ),
            Self::Character => {
                f.write_str("WeChat token must contain only ASCII letters and digits")
            }
        }
    }
}

impl std::error::Error for InvalidToken {}

/// A 20-byte SHA-1 signature as WeChat computes it.
///
/// Equality is constant-time, so comparing a request's signature with the expected one does
/// not leak how many leading bytes matched.
#[derive(Clone, Copy)]
pub struct Signature([u8; 20]);

impl Signature {
    /// Signs `parts`: sorts them byte-wise, concatenates them and hashes the result.
    ///
    /// At most four parts are sorted in place on the stack; nothing is allocated.
    pub fn compute(parts: &[&str]) -> Self {
        let mut sorted: [&str; 4] = [""; 4];
        let mut hasher = Sha1::new();
        if parts.len() <= sorted.len() {
            let sorted = &mut sorted[..parts.len()];
            sorted.copy_from_slice(parts);
            sorted.sort_unstable();
            sorted
                .iter()
                .for_each(|part| hasher.update(part.as_bytes()));
        } else {
            let mut sorted = parts.to_vec();
            sorted.sort_unstable();
            sorted
                .iter()
                .for_each(|part| hasher.update(part.as_bytes()));
        }
        Self(hasher.finalize().into())
    }

    /// The plain-mode `signature`: sha1 of the sorted token, timestamp and nonce.
    pub fn plain(token: &Token, timestamp: &str, nonce: &str) -> Self {
        Self::compute(&[token.as_str(), timestamp, nonce])
    }

    /// The safe-mode `msg_signature`: sha1 of the sorted token, timestamp, nonce and `Encrypt`.
    pub fn message(token: &Token, timestamp: &str, nonce: &str, encrypt: &str) -> Self {
        Self::compute(&[token.as_str(), timestamp, nonce, encrypt])
    }

    /// Parses 40 hex digits (either case), as sent in the `signature` query parameter.
    pub fn from_hex(hex: &str) -> Result<Self, InvalidSignature> {
        let hex = hex.as_bytes();
        if hex.len() != 40 {
            return Err(InvalidSignature);
        }
        let mut bytes = [0u8; 20];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Ok(Self(bytes))
    }

    /// Compares with `other` in constant time.
    pub fn verify(&self, other: &Signature) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.verify(other)
    }
}

impl Eq for Signature {}

/// Lower-case hex, as WeChat sends it.
impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

fn hex_value(digit: u8) -> Result<u8, InvalidSignature> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(InvalidSignature),
    }
}

/// A signature that is not 40 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSignature;

impl fmt::Display for InvalidSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("signature is not 40 hex digits")
    }
}

impl std::error::Error for InvalidSignature {}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Token {
        Token::new(s).unwrap()
    }

    #[test]
    fn plain_signature_matches_wechatpy_vector_v1() {
        let expected = Signature::from_hex("f21891de399b4e33a1a93c9a7b8a8fffb5a443ff").unwrap();
        let wrong = Signature::from_hex("f21891de399b4e33a1a93c9a7b8a8fffb5a443fe").unwrap();
        let computed = Signature::plain(&token("test"), "1410685589", "test");
        assert!(computed.verify(&expected));
        assert!(!computed.verify(&wrong));
        assert_eq!(
            computed.to_string(),
            "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
        );
    }

    #[test]
    fn plain_signature_matches_documentation_vectors_v2() {
        let token = token("AAAAA");
        assert_eq!(
            Signature::plain(&token, "1714036504", "1514711492").to_string(),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        );
        assert_eq!(
            Signature::plain(&token, "1714037059", "486452656").to_string(),
            "899cf89e464efb63f54ddac96b0a0a235f53aa78"
        );
    }

    #[test]
    fn message_signature_matches_wechat_crypto_vector_v12b() {
        let token = token("RMNlACHlV5ThzfRlVS4D4");
        assert_eq!(
            Signature::message(&token, "timestamp", "nonce", "encrypt").to_string(),
            "8edac0945683c119ee71c9f6256d76c48aa08a96"
        );
    }

    #[test]
    fn message_signature_matches_safe_mode_vector_v5() {
        let encrypt = "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMomcgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2RAsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz1BsrASwvauNulCh+++yz+CQzBIuikA==";
        let expected = Signature::from_hex("4f3ad57b6989f09f4eb392acce4f9e93942ed890").unwrap();
        let computed = Signature::message(&token("pamtest"), "1458300676", "260774613", encrypt);
        assert!(computed.verify(&expected));
        assert!(
            !Signature::message(&token("pamtest"), "1458300676", "260774614", encrypt)
                .verify(&expected)
        );
    }

    #[test]
    fn sorting_is_byte_wise_not_numeric() {
        // "10" < "9" byte-wise; a numeric sort would order them the other way.
        let sorted = Signature::compute(&["10", "9", "abc"]);
        let mut hasher = Sha1::new();
        hasher.update(b"109abc");
        assert_eq!(sorted.as_bytes()[..], hasher.finalize()[..]);
    }

    #[test]
    fn more_than_four_parts_are_sorted_too() {
        assert_eq!(
            Signature::compute(&["e", "d", "c", "b", "a"]),
            Signature::compute(&["a", "b", "c", "d", "e"])
        );
    }

    #[test]
    fn from_hex_accepts_upper_case_and_rejects_garbage() {
        assert!(Signature::from_hex("F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF").is_ok());
        assert_eq!(Signature::from_hex(""), Err(InvalidSignature));
        assert_eq!(Signature::from_hex("f21891"), Err(InvalidSignature));
        assert_eq!(
            Signature::from_hex("g21891de399b4e33a1a93c9a7b8a8fffb5a443ff"),
            Err(InvalidSignature)
        );
        // 40 bytes but a multi-byte character: must not panic on a char boundary.
        assert_eq!(
            Signature::from_hex("é21891de399b4e33a1a93c9a7b8a8fffb5a443f"),
            Err(InvalidSignature)
        );
    }

    #[test]
    fn token_rules() {
        assert!(Token::new("abc").is_ok());
        assert!(Token::new("A".repeat(32)).is_ok());
        assert_eq!(Token::new("ab"), Err(InvalidToken::Length(2)));
        assert_eq!(Token::new("a".repeat(33)), Err(InvalidToken::Length(33)));
        assert_eq!(Token::new("token\n"), Err(InvalidToken::Character));
        assert_eq!(Token::new("to ken"), Err(InvalidToken::Character));
        assert_eq!(Token::new("令牌令牌"), Err(InvalidToken::Character));
    }

    #[test]
    fn token_debug_is_redacted() {
        let shown = format!("{:?}", token("supersecret"));
        assert!(!shown.contains("supersecret"), "{shown}");
    }
}
