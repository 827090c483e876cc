//! Entry points for the fuzz targets in `fuzz/`: compiled only with `--cfg fuzzing`, which
//! `cargo fuzz` sets. Not part of the API.

use crate::verify::VerifyLayer;

/// Parses `query` as a callback query and checks it as the layer does (signature shape,
/// timestamp, nonce): the pieces the handshake and every POST go through before any
/// signature is computed.
pub fn query(query: &str) -> Result<(), String> {
    crate::verify::__fuzz_parse_query(query)
        .map(drop)
        .map_err(|rejection| rejection.to_string())
}

/// The XML scanner for plain WeChat documents gives the fields the quick-xml walk gives
/// (panics if not).
pub fn xml_scanner_agrees(xml: &[u8]) {
    crate::message::check_scanner(xml);
}

/// The top-level `<Encrypt>` of a safe-mode body.
pub fn encrypt_field(xml: &[u8]) -> Option<String> {
    crate::message::encrypt_field(xml).ok().flatten()
}

/// `content` padded (PKCS#7, 32-byte blocks) and encrypted with `key`, in base64: lets a
/// target choose the decrypted bytes, length field and receive id included.
#[cfg(feature = "crypto")]
pub fn encrypt_raw(key: &crate::crypto::EncodingAesKey, content: &[u8]) -> String {
    crate::crypto::encrypt_raw(key, content)
}

/// A layer with no timestamp window and no nonce memory, so any input is judged on its own.
pub fn layer(token: &str) -> VerifyLayer {
    VerifyLayer::new(crate::Token::new(token).expect("a valid token"))
        .disable_timestamp_window()
        .nonce_cache_capacity(0)
}
