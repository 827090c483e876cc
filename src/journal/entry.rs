//! [`JournalEntry`]: what is stored of a callback between its acknowledgement and the end of
//! its handler, and the byte format the durable journals write it in.

use std::fmt;

use bytes::Bytes;

use super::error::JournalError;
use crate::message::CallbackQuery;

/// The id a journal gave an entry: a stream id for Redis, a sequence number for the file
/// journal. Opaque to everything but the journal that made it.
///
/// ```
/// use tower_wechat::journal::EntryId;
///
/// let id = EntryId::new("1700000000000-0");
/// assert_eq!(id.as_str(), "1700000000000-0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(String);

impl EntryId {
    /// Wraps a journal's own id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as the journal wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A verified callback as the journal keeps it: enough to run the handler again exactly as
/// the first time — the verified (decrypted) body the handler saw, the signed query facts,
/// the path it came to, its dedup key, when it arrived and how many times it was delivered.
///
/// The [`Message`](crate::Message) is not stored: it is parsed again from `body`, as the
/// first time. `Debug` shows lengths, not the body (a user's words) nor the full openid.
///
/// ```
/// use bytes::Bytes;
/// use tower_wechat::journal::JournalEntry;
/// use tower_wechat::message::CallbackQuery;
///
/// let entry = JournalEntry {
///     path: "/wechat".into(),
///     query: CallbackQuery {
///         timestamp: 1_700_000_000,
///         nonce: "42".into(),
///         openid: None,
///         encrypted: false,
///         redelivered: false,
///     },
///     body: Bytes::from_static(b"<xml>...</xml>"),
///     key: Some("gh_1:msg:1".into()),
///     arrival_unix_ms: 1_700_000_000_123,
///     attempt: 1,
///     trace_context: None,
/// };
/// let bytes = entry.encode();
/// assert_eq!(JournalEntry::decode(&bytes).unwrap(), entry);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The request path the callback came to (the route), e.g. `/wechat`.
    pub path: String,
    /// The signed query facts, as the handler saw them in its extensions.
    pub query: CallbackQuery,
    /// The verified body the handler saw: the plaintext XML (decrypted in safe mode).
    pub body: Bytes,
    /// The callback's dedup key, when a [`DedupLayer`](crate::DedupLayer) keyed it.
    pub key: Option<String>,
    /// When the callback arrived, in Unix milliseconds.
    pub arrival_unix_ms: u64,
    /// How many times the handler has been given this callback, this time included (1 on
    /// the first run; a recovered run after a crash or a failure counts up).
    pub attempt: u32,
    /// The W3C `traceparent` of the callback's trace, when one was recorded, so a recovered
    /// run can be linked to the original callback.
    pub trace_context: Option<String>,
}

/// The first byte of an encoded entry.
const FORMAT_VERSION: u8 = 1;
/// Bit flags of the encoded entry.
const ENCRYPTED: u8 = 1;
const REDELIVERED: u8 = 1 << 1;
const HAS_OPENID: u8 = 1 << 2;
const HAS_KEY: u8 = 1 << 3;
const HAS_TRACE: u8 = 1 << 4;

impl JournalEntry {
    /// The entry in the journals' byte format: a version byte, fixed-size numbers
    /// (little-endian), flags, then length-prefixed strings and the body.
    pub fn encode(&self) -> Vec<u8> {
        let query = &self.query;
        let mut flags = 0;
        for (set, flag) in [
            (query.encrypted, ENCRYPTED),
            (query.redelivered, REDELIVERED),
            (query.openid.is_some(), HAS_OPENID),
            (self.key.is_some(), HAS_KEY),
            (self.trace_context.is_some(), HAS_TRACE),
        ] {
            if set {
                flags |= flag;
            }
        }
        let strings = [
            Some(self.path.as_bytes()),
            Some(query.nonce.as_bytes()),
            query.openid.as_deref().map(str::as_bytes),
            self.key.as_deref().map(str::as_bytes),
            self.trace_context.as_deref().map(str::as_bytes),
            Some(&self.body[..]),
        ];
        let size = 1 + 8 + 4 + 8 + 1 + strings.iter().flatten().map(|s| 4 + s.len()).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.arrival_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.attempt.to_le_bytes());
        out.extend_from_slice(&query.timestamp.to_le_bytes());
        out.push(flags);
        for string in strings.into_iter().flatten() {
            let len = u32::try_from(string.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&string[..len as usize]);
        }
        out
    }

    /// Reads what [`encode`](Self::encode) wrote; any other input is
    /// [`JournalError::Corrupt`], never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, JournalError> {
        let mut reader = Reader(bytes);
        let corrupt = || JournalError::Corrupt;
        if reader.take(1).ok_or_else(corrupt)? != [FORMAT_VERSION] {
            return Err(corrupt());
        }
        let arrival_unix_ms = u64::from_le_bytes(reader.array().ok_or_else(corrupt)?);
        let attempt = u32::from_le_bytes(reader.array().ok_or_else(corrupt)?);
        let timestamp = u64::from_le_bytes(reader.array().ok_or_else(corrupt)?);
        let [flags] = reader.array().ok_or_else(corrupt)?;
        let path = reader.string().ok_or_else(corrupt)?;
        let nonce = reader.string().ok_or_else(corrupt)?;
        let mut optional = |flag: u8| match flags & flag {
            0 => Ok(None),
            _ => reader.string().map(Some).ok_or_else(corrupt),
        };
        let openid = optional(HAS_OPENID)?;
        let key = optional(HAS_KEY)?;
        let trace_context = optional(HAS_TRACE)?;
        let body = Bytes::copy_from_slice(reader.bytes().ok_or_else(corrupt)?);
        if !reader.0.is_empty() {
            return Err(corrupt());
        }
        Ok(Self {
            path,
            query: CallbackQuery {
                timestamp,
                nonce,
                openid,
                encrypted: flags & ENCRYPTED != 0,
                redelivered: flags & REDELIVERED != 0,
            },
            body,
            key,
            arrival_unix_ms,
            attempt,
            trace_context,
        })
    }
}

/// Reads an encoded entry front to back; `None` when it runs out.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.array()?);
        self.take(usize::try_from(len).ok()?)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

impl fmt::Debug for JournalEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalEntry")
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body_len", &self.body.len())
            .field("key", &self.key)
            .field("arrival_unix_ms", &self.arrival_unix_ms)
            .field("attempt", &self.attempt)
            .field("trace_context", &self.trace_context)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> JournalEntry {
        JournalEntry {
            path: "/wechat".into(),
            query: CallbackQuery {
                timestamp: 1_700_000_000,
                nonce: "12345".into(),
                openid: Some("oUser1234".into()),
                encrypted: true,
                redelivered: false,
            },
            body: Bytes::from_static("<xml><Content>你好</Content></xml>".as_bytes()),
            key: Some("gh_1:msg:7".into()),
            arrival_unix_ms: 1_700_000_000_001,
            attempt: 3,
            trace_context: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        }
    }

    #[test]
    fn entries_round_trip_with_and_without_optional_parts() {
        let full = entry();
        assert_eq!(JournalEntry::decode(&full.encode()).unwrap(), full);
        let bare = JournalEntry {
            query: CallbackQuery {
                openid: None,
                encrypted: false,
                redelivered: true,
                ..full.query.clone()
            },
            key: None,
            trace_context: None,
            body: Bytes::new(),
            ..full
        };
        assert_eq!(JournalEntry::decode(&bare.encode()).unwrap(), bare);
    }

    #[test]
    fn truncated_extended_or_foreign_bytes_are_corrupt_not_a_panic() {
        let bytes = entry().encode();
        for len in 0..bytes.len() {
            assert!(JournalEntry::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(JournalEntry::decode(&longer).is_err());
        let mut other_version = bytes;
        other_version[0] = 9;
        assert!(JournalEntry::decode(&other_version).is_err());
        assert!(JournalEntry::decode(&[1; 64]).is_err());
    }

    #[test]
    fn debug_shows_no_body_and_no_full_openid() {
        let shown = format!("{:?}", entry());
        assert!(
            !shown.contains("你好") && !shown.contains("oUser1234"),
            "{shown}"
        );
        assert!(shown.contains("body_len"));
    }
}
