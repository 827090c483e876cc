//! [`open`]: locks a journal directory, reads its segments back, starts the writer.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use super::record::{self, Parsed, SEGMENT_HEADER, SegmentHeader};
use super::writer::{self, Head, Writer};
use super::{Counters, FileJournal, Inner, Loc, Run, Segment, Settings, Slot, State, dead};
use crate::journal::entry::JournalEntry;
use crate::journal::error::JournalError;

/// The file locked while the journal is open.
const LOCK: &str = "LOCK";

fn unavailable(message: String) -> JournalError {
    JournalError::Unavailable(message)
}

pub(super) fn open(dir: &Path, settings: Settings) -> Result<FileJournal, JournalError> {
    let shown = dir.display();
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(unavailable(format!(
                "journal directory {shown} is not a directory"
            )));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound && settings.create_dir => {
            fs::create_dir_all(dir).map_err(|error| {
                unavailable(format!("cannot create journal directory {shown}: {error}"))
            })?;
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(unavailable(format!(
                "journal directory {shown} does not exist (create it, or open with create_dir)"
            )));
        }
        Err(error) => {
            return Err(unavailable(format!(
                "cannot read journal directory {shown}: {error}"
            )));
        }
    }
    let lock = lock(dir)?;
    let counters = Counters::default();
    let (mut state, last) = read_segments(dir, &counters)?;

    // A fresh head segment for this run; the segments read stay as they are.
    let head_seq = last.map_or(1, |last| last + 1);
    let cannot_write = |error: io::Error| {
        unavailable(format!(
            "cannot write in journal directory {shown}: {error}"
        ))
    };
    let head =
        Arc::new(writer::create_segment(dir, head_seq, state.next_id).map_err(cannot_write)?);
    let (dead, dead_size, _) = dead::open(dir).map_err(cannot_write)?;
    writer::sync_dir(dir).map_err(cannot_write)?;
    state.segments.insert(
        head_seq,
        Segment {
            file: head.clone(),
            size: SEGMENT_HEADER as u64,
            live: 0,
            live_bytes: 0,
            sealed_at: None,
        },
    );
    state.head = head_seq;
    state.disk = state.segments.values().map(|segment| segment.size).sum();

    let inner = Arc::new(Inner {
        dir: dir.to_path_buf(),
        settings,
        state: Mutex::new(state),
        counters,
        dead_files: Mutex::new(()),
        #[cfg(test)]
        faults: Default::default(),
    });
    let (commands, receiver) = mpsc::channel();
    let writer = Writer {
        inner: inner.clone(),
        commands: receiver,
        head: Head {
            seq: head_seq,
            file: head,
            size: SEGMENT_HEADER as u64,
            broken: false,
        },
        dead,
        dead_size,
        carry: Vec::new(),
        failing: false,
    };
    let writer = std::thread::Builder::new()
        .name("file-journal".into())
        .spawn(move || writer.run())
        .map_err(|error| {
            unavailable(format!("cannot start the journal's writer thread: {error}"))
        })?;
    let journal = FileJournal {
        inner,
        commands: Some(commands),
        writer: Some(writer),
        _lock: lock,
    };
    let stats = journal.stats();
    tracing::info!(
        dir = %shown,
        pending = stats.pending,
        segments = stats.segments,
        bytes = stats.bytes,
        "file journal: opened"
    );
    Ok(journal)
}

/// Creates and locks `dir/LOCK`, and writes this process's id in it (for people).
fn lock(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| {
            unavailable(format!(
                "journal directory {} is not writable: {error}",
                dir.display()
            ))
        })?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let holder: String = holder
                .chars()
                .filter(char::is_ascii_digit)
                .take(20)
                .collect();
            return Err(unavailable(format!(
                "journal directory {} is in use: {} is locked by another process{}",
                dir.display(),
                path.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                }
            )));
        }
        Err(fs4::TryLockError::Error(error)) => {
            return Err(unavailable(format!(
                "cannot lock {}: {error}",
                path.display()
            )));
        }
    }
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// Reads every segment of `dir` in order into an index; returns it and the last segment's
/// number.
fn read_segments(dir: &Path, counters: &Counters) -> Result<(State, Option<u64>), JournalError> {
    let listed = fs::read_dir(dir).map_err(|error| dead::unreadable(dir, &error))?;
    let mut seqs = Vec::new();
    for entry in listed {
        let entry = entry.map_err(|error| dead::unreadable(dir, &error))?;
        if let Some(seq) = entry.file_name().to_str().and_then(writer::segment_seq) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    let last = seqs.last().copied();
    let mut state = State {
        next_id: 1,
        slots: BTreeMap::new(),
        segments: BTreeMap::new(),
        disk: 0,
        head: 0,
    };
    let opened = Instant::now();
    for seq in seqs {
        let path = writer::segment_path(dir, seq);
        let shown = path.display();
        let is_last = Some(seq) == last;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|error| unavailable(format!("cannot open {shown}: {error}")))?;
        let bytes = fs::read(&path).map_err(|error| dead::unreadable(&path, &error))?;
        let first_id = match record::read_segment_header(&bytes) {
            SegmentHeader::Valid(first_id) => first_id,
            SegmentHeader::OtherVersion(version) => {
                return Err(unavailable(format!(
                    "{shown} was written by format version {version} of the journal; this build reads version {}",
                    record::SEGMENT_MAGIC[7]
                )));
            }
            SegmentHeader::Bad if is_last && bytes.iter().all(|&b| b == 0) => {
                // Created, but the crash came before its header was synced.
                tracing::warn!(file = %shown, "file journal: removing a segment left empty by a crash");
                fs::remove_file(&path)
                    .map_err(|error| unavailable(format!("cannot remove {shown}: {error}")))?;
                continue;
            }
            SegmentHeader::Bad => {
                let aside = path.with_extension("log.unreadable");
                tracing::error!(file = %shown, aside = %aside.display(), bytes = bytes.len(), "file journal: a segment has no valid header; its entries are skipped and the file moved aside");
                Counters::add(&counters.corrupt_records, 1);
                Counters::add(&counters.corrupt_bytes, bytes.len() as u64);
                fs::rename(&path, &aside)
                    .map_err(|error| unavailable(format!("cannot move {shown} aside: {error}")))?;
                continue;
            }
        };
        state.next_id = state.next_id.max(first_id);
        let mut at = SEGMENT_HEADER;
        while at < bytes.len() {
            match record::parse(&bytes[at..]) {
                Parsed::Record {
                    kind,
                    payload,
                    size,
                } => {
                    let loc = Loc {
                        segment: seq,
                        offset: at as u64,
                        len: size as u32,
                    };
                    if !apply(&mut state, kind, payload, loc) {
                        Counters::add(&counters.corrupt_records, 1);
                        tracing::error!(file = %shown, offset = at, kind, "file journal: skipping a record that cannot be read (its checksum matches: a newer format, or a bug)");
                    }
                    at += size;
                }
                Parsed::Bad => break,
            }
        }
        let mut size = bytes.len() as u64;
        if at < bytes.len() {
            let rest = bytes.len() - at;
            if is_last {
                // The crash came in the middle of a write: nothing of it was acknowledged.
                if rest > MAX_TORN {
                    Counters::add(&counters.corrupt_records, 1);
                    Counters::add(&counters.corrupt_bytes, rest as u64);
                    tracing::error!(file = %shown, offset = at, bytes = rest, "file journal: an unreadable record far from the end of the newest segment; cutting the segment there");
                } else {
                    tracing::warn!(file = %shown, offset = at, bytes = rest, "file journal: cutting a torn write off the end of the newest segment");
                }
                file.set_len(at as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|error| unavailable(format!("cannot cut {shown}: {error}")))?;
                size = at as u64;
            } else {
                Counters::add(&counters.corrupt_records, 1);
                Counters::add(&counters.corrupt_bytes, rest as u64);
                tracing::error!(file = %shown, offset = at, bytes = rest, "file journal: an unreadable record in an older segment; the rest of that segment is skipped");
            }
        }
        state.segments.insert(
            seq,
            Segment {
                file: Arc::new(file),
                size,
                live: 0,
                live_bytes: 0,
                sealed_at: Some(opened),
            },
        );
    }
    for slot in state.slots.values() {
        if let Some(loc) = slot.loc
            && let Some(segment) = state.segments.get_mut(&loc.segment)
        {
            segment.live += 1;
            segment.live_bytes += u64::from(loc.len);
        }
    }
    Ok((state, last))
}

/// The most a torn write at the end of the newest segment can be: one batch.
const MAX_TORN: usize = 4 * 1024 * 1024 + record::MAX_PAYLOAD + record::RECORD_HEADER;

/// Applies one record to the index; `false` if it cannot be read.
fn apply(state: &mut State, kind: u8, payload: &[u8], loc: Loc) -> bool {
    let Some(id) = record::read_u64(payload) else {
        return false;
    };
    state.next_id = state.next_id.max(id.saturating_add(1));
    match kind {
        record::APPEND => {
            let Ok(entry) = JournalEntry::decode(&payload[8..]) else {
                return false;
            };
            // A compaction's copy comes after the original (if that was not deleted yet).
            let attempt = state
                .slots
                .get(&id)
                .map_or(entry.attempt, |slot| slot.attempt.max(entry.attempt));
            state.slots.insert(
                id,
                Slot {
                    loc: Some(loc),
                    attempt,
                    run: Run::Orphan,
                },
            );
        }
        record::FINISH | record::DEAD => {
            state.slots.remove(&id);
        }
        record::ATTEMPT => {
            let Some(attempt) = payload.get(8..).and_then(record::read_u32) else {
                return false;
            };
            if let Some(slot) = state.slots.get_mut(&id) {
                slot.attempt = slot.attempt.max(attempt);
            }
        }
        _ => return false,
    }
    true
}
