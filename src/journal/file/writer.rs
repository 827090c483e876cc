//! The writer thread of a [`FileJournal`](super::FileJournal): group commit, segment
//! rotation, deletion and compaction, dead letters.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::record::{self, SEGMENT_HEADER};
use super::{Counters, Inner, Loc, Segment, dead, read_entry};
use crate::journal::error::JournalError;

/// What the journal's callers ask of the writer.
pub(crate) enum Command {
    /// An append record; answered once it is synced.
    Append {
        id: u64,
        record: Vec<u8>,
        done: Done,
    },
    /// A record nobody waits for (a finish): written with the next batch.
    Note { record: Vec<u8> },
    /// Records answered once they are synced (delivery counts).
    Sync { records: Vec<u8>, done: Done },
    /// A dead letter for `dead.log` (synced first), then its record for the segment; entry
    /// `id` leaves the index once both are written (before any compaction could copy it
    /// past its dead record).
    Dead {
        id: u64,
        letter: Vec<u8>,
        record: Vec<u8>,
        done: Done,
    },
    /// Answered after the next batch and the deletions and compactions after it.
    Flush { done: Done },
}

pub(crate) type Done = oneshot::Sender<Result<(), JournalError>>;

impl Command {
    fn len(&self) -> usize {
        match self {
            Self::Append { record, .. } | Self::Note { record } => record.len(),
            Self::Sync { records, .. } => records.len(),
            Self::Dead { letter, record, .. } => letter.len() + record.len(),
            Self::Flush { .. } => 0,
        }
    }
}

/// A batch stops taking queued commands past this many bytes...
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// ... or this many commands.
const MAX_BATCH: usize = 8192;
/// Unwaited records of failed batches kept for the next one, at most.
const MAX_CARRY: usize = 1024 * 1024;
/// How often an idle writer looks for segments to delete or compact.
const TICK: Duration = Duration::from_secs(1);

/// The segment being written.
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) file: Arc<File>,
    /// Bytes written and synced.
    pub(super) size: u64,
    /// Its end could not be cut back after a failed write: start a new segment.
    pub(super) broken: bool,
}

pub(super) struct Writer {
    pub(super) inner: Arc<Inner>,
    pub(super) commands: Receiver<Command>,
    pub(super) head: Head,
    pub(super) dead: File,
    pub(super) dead_size: u64,
    /// Unwaited records of a failed batch, for the next one.
    pub(super) carry: Vec<u8>,
    /// In a run of failed writes (logged once).
    pub(super) failing: bool,
}

impl Writer {
    pub(super) fn run(mut self) {
        loop {
            let first = match self.commands.recv_timeout(TICK) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    self.maintain();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if !self.carry.is_empty() {
                        let _ = self.commit(Vec::new());
                    }
                    return;
                }
            };
            let mut bytes = first.len();
            let mut batch = vec![first];
            while bytes < MAX_BATCH_BYTES && batch.len() < MAX_BATCH {
                match self.commands.try_recv() {
                    Ok(command) => {
                        bytes += command.len();
                        batch.push(command);
                    }
                    Err(_) => break,
                }
            }
            // Appends are answered in `commit`, before the deletions and compactions.
            let (flushes, outcome) = self.commit(batch);
            self.maintain();
            for done in flushes {
                let _ = done.send(outcome.clone().map_err(JournalError::Unavailable));
            }
        }
    }

    /// Writes one batch: dead letters to `dead.log` (synced), then every record to the head
    /// segment with one write and one sync; answers the waiters. Returns the batch's flush
    /// waiters and how it went.
    fn commit(&mut self, batch: Vec<Command>) -> (Vec<Done>, Result<(), String>) {
        let mut buf = std::mem::take(&mut self.carry);
        let mut notes = Vec::new();
        notes.push(0..buf.len()); // the records carried from a failed batch come first
        let mut appends = Vec::new();
        let mut waiters = Vec::new();
        let mut letters = Vec::new();
        let mut flushes = Vec::new();
        for command in batch {
            match command {
                Command::Append { id, record, done } => {
                    appends.push((id, buf.len(), record.len() as u32, done));
                    buf.extend_from_slice(&record);
                }
                Command::Note { record } => {
                    notes.push(buf.len()..buf.len() + record.len());
                    buf.extend_from_slice(&record);
                }
                Command::Sync { records, done } => {
                    waiters.push((done, records.len() as u64));
                    buf.extend_from_slice(&records);
                }
                Command::Dead {
                    id,
                    letter,
                    record,
                    done,
                } => letters.push((id, letter, record, done)),
                Command::Flush { done } => flushes.push(done),
            }
        }
        let mut outcome = Ok(());
        let mut dead = Vec::new();
        if !letters.is_empty() {
            let all: Vec<u8> = letters
                .iter()
                .flat_map(|(_, letter, ..)| letter.iter().copied())
                .collect();
            match self.write_dead(&all) {
                Ok(()) => {
                    for (id, _, record, done) in letters {
                        dead.push(id);
                        waiters.push((done, record.len() as u64));
                        buf.extend_from_slice(&record);
                    }
                }
                Err(error) => {
                    let message = self.failed("dead.log", &error);
                    let mut state = self.inner.lock();
                    for (_, _, record, done) in letters {
                        state.disk = state.disk.saturating_sub(record.len() as u64);
                        let _ = done.send(Err(JournalError::Unavailable(message.clone())));
                    }
                    outcome = Err(message);
                }
            }
        }
        if buf.is_empty() {
            return (flushes, outcome);
        }
        match self.write_head(&buf) {
            Ok(offset) => {
                if self.failing && outcome.is_ok() {
                    self.failing = false;
                    tracing::warn!(dir = %self.inner.dir.display(), "file journal: writes work again");
                }
                let segment = self.head.seq;
                {
                    let mut guard = self.inner.lock();
                    let state = &mut *guard;
                    let head = state.segments.get_mut(&segment);
                    let mut live = (0, 0);
                    for (id, at, len, _) in &appends {
                        if let Some(slot) = state.slots.get_mut(id) {
                            slot.loc = Some(Loc {
                                segment,
                                offset: offset + *at as u64,
                                len: *len,
                            });
                            live.0 += 1;
                            live.1 += u64::from(*len);
                        }
                    }
                    if let Some(head) = head {
                        head.size = self.head.size;
                        head.live += live.0;
                        head.live_bytes += live.1;
                    }
                    for id in dead {
                        state.remove(id);
                    }
                }
                Counters::add(&self.inner.counters.appends, appends.len() as u64);
                Counters::add(&self.inner.counters.syncs, 1);
                for (.., done) in appends {
                    let _ = done.send(Ok(()));
                }
                for (done, _) in waiters {
                    let _ = done.send(Ok(()));
                }
            }
            Err(error) => {
                let message = self.failed("segment", &error);
                let mut carry = Vec::new();
                for range in notes {
                    carry.extend_from_slice(&buf[range]);
                }
                let mut state = self.inner.lock();
                for (id, _, len, done) in appends {
                    state.remove(id);
                    state.disk = state.disk.saturating_sub(u64::from(len));
                    let _ = done.send(Err(JournalError::Unavailable(message.clone())));
                }
                for (done, len) in waiters {
                    state.disk = state.disk.saturating_sub(len);
                    let _ = done.send(Err(JournalError::Unavailable(message.clone())));
                }
                if carry.len() > MAX_CARRY {
                    state.disk = state.disk.saturating_sub(carry.len() as u64);
                    tracing::error!(
                        bytes = carry.len(),
                        "file journal: dropped finish records that could not be written; those entries run again after a restart"
                    );
                    carry.clear();
                }
                self.carry = carry;
                outcome = Err(message);
            }
        }
        (flushes, outcome)
    }

    /// Counts and logs (once per run of failures) a failed write; the message for callers.
    fn failed(&mut self, what: &str, error: &io::Error) -> String {
        Counters::add(&self.inner.counters.write_errors, 1);
        if !self.failing {
            tracing::error!(dir = %self.inner.dir.display(), %error, "file journal: cannot write the {what} file; appends fail until it works again");
        }
        self.failing = true;
        format!(
            "cannot write the journal's {what} in {}: {error}",
            self.inner.dir.display()
        )
    }

    /// Writes `buf` at the end of the head segment (a new one if it is full) and syncs it;
    /// returns where it starts. On failure the segment is cut back to its last synced byte.
    fn write_head(&mut self, buf: &[u8]) -> io::Result<u64> {
        if self.head.broken || self.head.size >= self.inner.settings.segment_size {
            self.rotate()?;
        }
        let offset = self.head.size;
        #[cfg(test)]
        let injected = self.inner.faults.take();
        #[cfg(not(test))]
        let injected: Option<io::Error> = None;
        #[cfg(test)]
        self.inner.faults.delay();
        let written = match injected {
            Some(error) => {
                record::write_at(&self.head.file, &buf[..buf.len() / 2], offset).and(Err(error))
            }
            None => record::write_at(&self.head.file, buf, offset)
                .and_then(|()| self.head.file.sync_data()),
        };
        match written {
            Ok(()) => {
                self.head.size += buf.len() as u64;
                Ok(offset)
            }
            Err(error) => {
                let cut = self
                    .head
                    .file
                    .set_len(offset)
                    .and_then(|()| self.head.file.sync_data());
                if cut.is_err() {
                    self.head.broken = true;
                }
                Err(error)
            }
        }
    }

    /// Starts the next segment.
    fn rotate(&mut self) -> io::Result<()> {
        let seq = self.head.seq + 1;
        let first_id = self.inner.lock().next_id;
        let file = Arc::new(create_segment(&self.inner.dir, seq, first_id)?);
        sync_dir(&self.inner.dir)?;
        let mut state = self.inner.lock();
        if let Some(old) = state.segments.get_mut(&self.head.seq) {
            old.sealed_at = Some(Instant::now());
        }
        state.segments.insert(
            seq,
            Segment {
                file: file.clone(),
                size: SEGMENT_HEADER as u64,
                live: 0,
                live_bytes: 0,
                sealed_at: None,
            },
        );
        state.head = seq;
        state.disk += SEGMENT_HEADER as u64;
        self.head = Head {
            seq,
            file,
            size: SEGMENT_HEADER as u64,
            broken: false,
        };
        Ok(())
    }

    /// Appends dead letters to `dead.log` and syncs it; rotates it when it is full.
    fn write_dead(&mut self, buf: &[u8]) -> io::Result<()> {
        let offset = self.dead_size;
        let written =
            record::write_at(&self.dead, buf, offset).and_then(|()| self.dead.sync_data());
        if let Err(error) = written {
            let _ = self.dead.set_len(offset);
            return Err(error);
        }
        self.dead_size += buf.len() as u64;
        if self.dead_size >= self.inner.settings.dead_letter_size
            && let Err(error) = self.rotate_dead()
        {
            tracing::error!(dir = %self.inner.dir.display(), %error, "file journal: cannot rotate dead.log; it keeps growing");
        }
        Ok(())
    }

    fn rotate_dead(&mut self) -> io::Result<()> {
        let _files = self
            .inner
            .dead_files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (current, old) = dead::paths(&self.inner.dir);
        if let Ok(replaced) = fs::metadata(&old) {
            tracing::warn!(file = %old.display(), bytes = replaced.len(), "file journal: dead.log is full; the older dead letters in dead.1.log are dropped");
        }
        fs::rename(&current, &old)?;
        sync_dir(&self.inner.dir)?;
        let (file, size, _) = dead::open(&self.inner.dir)?;
        sync_dir(&self.inner.dir)?;
        self.dead = file;
        self.dead_size = size;
        Ok(())
    }

    /// Deletes the oldest segments none of whose entries is left; compacts the oldest one
    /// when few are left in it.
    ///
    /// A segment is compacted when at most a quarter of its bytes are live entries and it
    /// is `compact_after` old, or — when the journal is past half its budget — when at
    /// most three quarters are; one compaction per call, so appends go on between them.
    fn maintain(&mut self) {
        let mut deleted = false;
        let mut compacted = false;
        loop {
            let step = {
                let state = self.inner.lock();
                let Some((&seq, segment)) = state.segments.iter().next() else {
                    break;
                };
                if seq == state.head {
                    break;
                }
                let settings = &self.inner.settings;
                let aged = segment
                    .sealed_at
                    .is_none_or(|at| at.elapsed() >= settings.compact_after);
                let sparse = segment.live_bytes * 4 <= segment.size;
                let pressed =
                    state.disk * 2 > settings.budget && segment.live_bytes * 4 <= segment.size * 3;
                if segment.live == 0 {
                    Step::Delete(seq)
                } else if !compacted && ((sparse && aged) || pressed) {
                    compacted = true;
                    Step::Compact(seq, segment.file.clone())
                } else {
                    break;
                }
            };
            match step {
                Step::Delete(seq) => {
                    let path = segment_path(&self.inner.dir, seq);
                    match fs::remove_file(&path) {
                        Err(error) if error.kind() != io::ErrorKind::NotFound => {
                            tracing::error!(file = %path.display(), %error, "file journal: cannot delete a finished segment");
                            break;
                        }
                        _ => {}
                    }
                    let mut state = self.inner.lock();
                    if let Some(segment) = state.segments.remove(&seq) {
                        state.disk = state.disk.saturating_sub(segment.size);
                    }
                    Counters::add(&self.inner.counters.deleted_segments, 1);
                    deleted = true;
                }
                Step::Compact(seq, file) => match self.compact(seq, &file) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(error) => {
                        let _ = self.failed("segment", &error);
                        break;
                    }
                },
            }
        }
        if deleted && let Err(error) = sync_dir(&self.inner.dir) {
            tracing::warn!(dir = %self.inner.dir.display(), %error, "file journal: cannot sync the directory after deleting segments");
        }
    }

    /// Writes the live entries of old segment `seq` again at the head; `true` if none is
    /// left in it.
    fn compact(&mut self, seq: u64, file: &File) -> io::Result<bool> {
        let items: Vec<(u64, Loc, u32)> = {
            let state = self.inner.lock();
            state
                .slots
                .iter()
                .filter_map(|(&id, slot)| {
                    let loc = slot.loc.filter(|loc| loc.segment == seq)?;
                    Some((id, loc, slot.attempt))
                })
                .collect()
        };
        let mut buf = Vec::new();
        let mut placed = Vec::new();
        let mut unreadable = Vec::new();
        for (id, loc, attempt) in items {
            let Some(mut entry) = read_entry(file, id, loc) else {
                unreadable.push(id);
                continue;
            };
            // The delivery count in memory: synced, or being synced by a queued command.
            entry.attempt = attempt;
            let at = buf.len();
            record::frame(
                record::APPEND,
                &[&id.to_le_bytes(), &entry.encode()],
                &mut buf,
            );
            placed.push((id, loc, at, (buf.len() - at) as u32));
        }
        {
            let mut state = self.inner.lock();
            for &id in &unreadable {
                state.remove(id);
                record::id_record(record::DEAD, id, &mut buf);
                Counters::add(&self.inner.counters.corrupt_records, 1);
                tracing::error!(entry = id, file = %segment_path(&self.inner.dir, seq).display(), "file journal: an entry's record cannot be read back (damaged on disk); it is dropped");
            }
            state.disk += buf.len() as u64;
        }
        if buf.is_empty() {
            return Ok(true);
        }
        let offset = match self.write_head(&buf) {
            Ok(offset) => offset,
            Err(error) => {
                {
                    let mut state = self.inner.lock();
                    state.disk = state.disk.saturating_sub(buf.len() as u64);
                }
                return Err(error);
            }
        };
        let head = self.head.seq;
        let mut guard = self.inner.lock();
        let state = &mut *guard;
        let mut moved = (0, 0);
        for &(id, old, at, len) in &placed {
            let Some(slot) = state.slots.get_mut(&id) else {
                continue; // finished meanwhile: its finish record follows the copy
            };
            if slot.loc != Some(old) {
                continue;
            }
            slot.loc = Some(Loc {
                segment: head,
                offset: offset + at as u64,
                len,
            });
            if let Some(segment) = state.segments.get_mut(&old.segment) {
                segment.live = segment.live.saturating_sub(1);
                segment.live_bytes = segment.live_bytes.saturating_sub(u64::from(old.len));
            }
            moved.0 += 1;
            moved.1 += u64::from(len);
        }
        if let Some(segment) = state.segments.get_mut(&head) {
            segment.size = self.head.size;
            segment.live += moved.0;
            segment.live_bytes += moved.1;
        }
        Counters::add(&self.inner.counters.compactions, 1);
        Counters::add(&self.inner.counters.compacted_entries, moved.0);
        Ok(state
            .segments
            .get(&seq)
            .is_none_or(|segment| segment.live == 0))
    }
}

enum Step {
    Delete(u64),
    Compact(u64, Arc<File>),
}

/// `dir/journal-<seq>.log`.
pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("journal-{seq:020}.log"))
}

/// The sequence number in a segment file's name.
pub(super) fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("journal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Creates segment `seq` with its header, synced (the directory is not).
pub(super) fn create_segment(dir: &Path, seq: u64, first_id: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(segment_path(dir, seq))?;
    record::write_at(&file, &record::segment_header(first_id), 0)?;
    file.sync_data()?;
    Ok(file)
}

/// Makes the directory's entries (files created, renamed, deleted) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
