//! Verification of WeChat callbacks: plain mode, and (feature `crypto`) safe and
//! compatibility mode.
//!
//! [`VerifyLayer`] answers WeChat's URL handshake, checks each message's `signature` against
//! the configured token(s) in constant time, refuses stale timestamps and reused nonces,
//! caps the body, and parses the XML once into a [`Message`](crate::Message) that the handler
//! finds in the request extensions (or through the axum extractor).
//!
//! Refusals are answered by the layer itself with a 4xx and a short plain-text reason; see
//! [`Rejection`] for the status of each.
//!
//! # Replays and WeChat's retries
//!
//! WeChat retries a delivery it got no timely answer for with the *same* signed query and
//! body, so a byte-identical repeat passes (flagged [`CallbackQuery::redelivered`]); the same
//! timestamp + nonce with another body is a forged reuse and gets 403. De-duplicating retries
//! of one *message* (same `MsgId`) is the job of a layer after this one.

mod deadline;
mod future;
mod handle;
mod layer;
mod query;
mod rejection;
mod replay;
#[cfg(feature = "crypto")]
mod safe_mode;
mod service;
mod state;

pub use crate::body::ResponseBody;
pub use crate::message::CallbackQuery;
pub use future::ResponseFuture;
pub use handle::{VerifyHandle, VerifyStats};
pub use layer::VerifyLayer;
pub use rejection::Rejection;
#[cfg(feature = "crypto")]
pub use safe_mode::SafeMode;
pub use service::Verify;

/// For the query fuzz target: what [`Verify`] does with a query before any signature is
/// computed.
#[cfg(fuzzing)]
pub(crate) fn __fuzz_parse_query(query: &str) -> Result<CallbackQuery, Rejection> {
    let raw = query::RawQuery::parse(query)?;
    let timestamp = raw.signed_parts()?.timestamp;
    Ok(raw.into_callback_query(timestamp))
}

#[cfg(test)]
mod tests;
