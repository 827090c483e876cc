//! [`JournalError`]: what a journal operation can fail with.

use std::fmt;

/// A journal operation that failed. `Display` never shows a credential (a Redis URL's
/// password, say) nor a callback's content.
#[derive(Debug)]
#[non_exhaustive]
pub enum JournalError {
    /// The journal could not be reached, or refused the operation (disk, network, server).
    Unavailable(String),
    /// The journal did not answer in time.
    Timeout,
    /// The journal is at its size bound and takes no more entries.
    Full,
    /// A stored entry could not be read back.
    Corrupt,
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(reason) => write!(f, "journal unavailable: {reason}"),
            Self::Timeout => f.write_str("journal timed out"),
            Self::Full => f.write_str("journal is full"),
            Self::Corrupt => f.write_str("journal holds an unreadable entry"),
        }
    }
}

impl std::error::Error for JournalError {}
