//! The dead letters of a [`FileJournal`](super::FileJournal): `dead.log` and `dead.1.log`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::record::{self, DEAD_LETTER, DEAD_MAGIC, Parsed};
use crate::journal::entry::{EntryId, JournalEntry};
use crate::journal::error::JournalError;

/// The file dead letters are appended to.
pub(super) const DEAD_LOG: &str = "dead.log";
/// The previous one, after a rotation.
pub(super) const DEAD_LOG_OLD: &str = "dead.1.log";
/// The longest reason kept, in bytes.
const MAX_REASON: usize = 1024;

/// An entry given up on, as [`FileJournal::dead_letters`](super::FileJournal::dead_letters)
/// lists it.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use tower_wechat::journal::FileJournal;
///
/// let journal = FileJournal::open(dir.path())?;
/// let oldest = journal.dead_letters()?.into_iter().next();
/// if let Some(letter) = oldest {
///     eprintln!("entry {} ({} bytes) given up at {}: {}", letter.id,
///         letter.entry.body.len(), letter.at_unix_ms, letter.reason);
/// }
/// # Ok::<(), tower_wechat::journal::JournalError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The id it had in the journal.
    pub id: EntryId,
    /// The callback, with the delivery count it reached.
    pub entry: JournalEntry,
    /// Why it was given up (at most 1 KiB).
    pub reason: String,
    /// When, in Unix milliseconds.
    pub at_unix_ms: u64,
}

/// The framed `dead.log` record of entry `id`.
pub(super) fn letter(id: u64, entry: &JournalEntry, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &reason.as_bytes()[..cut];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let mut out = Vec::new();
    record::frame(
        DEAD_LETTER,
        &[
            &now.to_le_bytes(),
            &id.to_le_bytes(),
            &(reason.len() as u32).to_le_bytes(),
            reason,
            &entry.encode(),
        ],
        &mut out,
    );
    out
}

/// Opens `dead.log` for appending (creating it with its header), cutting a torn record off
/// its end; returns it and its length.
pub(super) fn open(dir: &Path) -> io::Result<(File, u64, bool)> {
    let path = dir.join(DEAD_LOG);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let bytes = fs::read(&path)?;
    if bytes.len() < DEAD_MAGIC.len() || bytes[..DEAD_MAGIC.len()] != DEAD_MAGIC {
        if !bytes.is_empty() {
            // Not ours, or torn before its header was synced: keep it aside, start anew.
            let aside = dir.join("dead.log.unreadable");
            tracing::error!(file = %path.display(), aside = %aside.display(), "file journal: dead.log has no valid header; moved aside");
            drop(file);
            fs::rename(&path, &aside)?;
            file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
        }
        file.set_len(0)?;
        file.write_all(&DEAD_MAGIC)?;
        file.sync_all()?;
        return Ok((file, DEAD_MAGIC.len() as u64, true));
    }
    let end = valid_end(&bytes);
    if end < bytes.len() {
        tracing::warn!(file = %path.display(), offset = end, bytes = bytes.len() - end, "file journal: cut a torn record off the end of dead.log");
        file.set_len(end as u64)?;
        file.sync_all()?;
    }
    Ok((file, end as u64, false))
}

/// Where the readable records of a dead-letter file end.
fn valid_end(bytes: &[u8]) -> usize {
    let mut at = DEAD_MAGIC.len();
    while at < bytes.len() {
        match record::parse(&bytes[at..]) {
            Parsed::Record { size, .. } => at += size,
            Parsed::Bad => break,
        }
    }
    at
}

/// Every dead letter of `dir`, oldest first.
pub(super) fn read_all(dir: &Path) -> Result<Vec<DeadLetter>, JournalError> {
    let mut letters = Vec::new();
    for name in [DEAD_LOG_OLD, DEAD_LOG] {
        let path = dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(unreadable(&path, &error)),
        };
        if bytes.len() < DEAD_MAGIC.len() || bytes[..DEAD_MAGIC.len()] != DEAD_MAGIC {
            return Err(JournalError::Corrupt);
        }
        let mut at = DEAD_MAGIC.len();
        while at < bytes.len() {
            let Parsed::Record {
                kind,
                payload,
                size,
            } = record::parse(&bytes[at..])
            else {
                break;
            };
            at += size;
            if kind != DEAD_LETTER {
                continue;
            }
            letters.push(decode(payload).ok_or(JournalError::Corrupt)?);
        }
    }
    Ok(letters)
}

fn decode(payload: &[u8]) -> Option<DeadLetter> {
    let at_unix_ms = record::read_u64(payload)?;
    let id = record::read_u64(payload.get(8..)?)?;
    let reason_len = record::read_u32(payload.get(16..)?)? as usize;
    let reason = payload.get(20..20 + reason_len)?;
    let entry = JournalEntry::decode(payload.get(20 + reason_len..)?).ok()?;
    Some(DeadLetter {
        id: EntryId::new(id.to_string()),
        entry,
        reason: String::from_utf8_lossy(reason).into_owned(),
        at_unix_ms,
    })
}

pub(super) fn unreadable(path: &Path, error: &io::Error) -> JournalError {
    JournalError::Unavailable(format!("cannot read {}: {error}", path.display()))
}

/// `dir/dead.log` and `dir/dead.1.log`.
pub(super) fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(DEAD_LOG), dir.join(DEAD_LOG_OLD))
}
