//! [`FileJournal`]: the journal of one node on its own disk — an fsync'd, segmented,
//! append-only log with group commit, replayed at start.
//!
//! Why a log of our own and not an embedded database (redb, sled): what the hand-off needs
//! is an append that is durable before it returns, at the rate of a burst of callbacks, and
//! a replay at start — a write-ahead log is exactly that, with one `write` + one
//! `fdatasync` shared by every append that arrived meanwhile. A B-tree store would do the
//! same fsync per transaction and more writes per entry (pages + its own log), and brings a
//! file format we cannot inspect or repair with our own code. The entries are short-lived
//! (seconds), so the log's space comes back by deleting whole segment files, not by
//! rewriting pages.

mod dead;
mod record;
mod replay;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::entry::{EntryId, JournalEntry};
use super::error::JournalError;
use super::store::{BoxFuture, Journal, Reclaimed};
use writer::Command;

pub use dead::DeadLetter;

/// A [`Journal`] on this node's disk: what it acknowledged survives a crash of the process
/// or of the machine, and is run again when the process starts again.
///
/// **Layout.** One directory, which it owns: `journal-<n>.log` segment files, `dead.log`
/// (and `dead.1.log`, the previous one) for the dead letters, and `LOCK`, locked while the
/// journal is open so that a second process (or a second `open` in this one) is refused.
/// The files hold the callbacks' verified bodies: keep the directory as private as the
/// data.
///
/// **Durability.** [`append`](Journal::append) returns only once its record is written
/// and `fdatasync`'d. One writer thread writes every record: it takes all the records queued
/// while it was busy, writes them with one `write` and syncs once (group commit, no timed
/// window: one appender pays one sync, a burst of appenders shares them). Records that only
/// *remove* work — [`finish`](Journal::finish) — are not waited for: they go out with the
/// next sync, so one lost to a crash means the entry runs again after the restart (at least
/// once; the [`DedupLayer`](crate::DedupLayer) store answers it if it knows the first run
/// finished). [`release`](Journal::release) writes nothing: after a restart every entry is
/// handed out again anyway. The delivery count of each entry handed out by
/// [`reclaim`](Journal::reclaim) is synced before `reclaim` returns, so a handler that
/// crashes the whole process still ends in the dead letters after the hand-off's last
/// delivery. The directory is synced after a file is created, renamed or deleted. An
/// append whose caller stops waiting (its timeout) is still written, and is then handed
/// out again after the lease, as by a journal shared by replicas.
///
/// **Replay.** [`open`](Self::open) reads the segments in order. Every entry left by the
/// previous run is handed out by the next `reclaim` at once, whatever the lease. A torn
/// record at the end of the newest segment (a crash in the middle of a write) is expected:
/// the file is cut there (with a WARN line). A record that cannot be read anywhere else —
/// damage — ends the reading of that segment: the rest of it is skipped with an ERROR line
/// naming the file, the offset and the bytes, and counted in
/// [`FileJournalStats::corrupt_bytes`]; the journal opens with what it could read, rather
/// than refuse to start (which would lose every callback from then on). A segment file
/// without a readable header is moved aside (`….log.unreadable`, ERROR line). A segment
/// written by another format version makes `open` fail.
///
/// **Space.** Segments are cut at [`segment_size`](FileJournalOptions::segment_size)
/// (64 MiB by default, at most a quarter of the budget). Segments are deleted oldest first
/// (a segment's finish records may be all that keeps an older segment's entries from
/// coming back), as soon as none of their entries is left. The oldest segment is compacted
/// — its live entries written again at the head, synced, then the file deleted — when at
/// most a quarter of its bytes are live entries and it is
/// [`compact_after`](FileJournalOptions::compact_after) old (60 s by default), or, once the
/// segments take more than half the budget, when at most three quarters are; one
/// compaction per batch, so appends go on meanwhile. The segments may take
/// [`budget`](FileJournalOptions::budget) bytes (1 GiB by default): an append that would go
/// over fails with [`JournalError::Full`] (the hand-off then answers `503`, so WeChat
/// retries); nothing unfinished is ever trimmed. An entry of more than 16 MiB is `Full`
/// too.
///
/// **Failures.** A directory that is missing (unless
/// [`create_dir`](FileJournalOptions::create_dir)), not a directory, not writable, locked by
/// another process or holding a segment of another format fails `open` with
/// [`JournalError::Unavailable`] naming the path. A write or sync that fails (disk full, I/O
/// error) fails every append of that batch with `Unavailable` — nothing is acknowledged
/// that is not stored — with one ERROR line per run of failures; the segment is cut back to
/// its last synced byte (or a new one is started) and the next batch tries again, so the
/// journal works again once the disk does. Unwaited `finish` records of a failed batch are
/// kept and written with the next one (up to 1 MiB of them). Should the cut itself fail,
/// an append refused this way may still be found after a restart and run then (at least
/// once: WeChat's retry of it is answered by the dedup store), and a dead letter whose
/// journal record failed stays in the journal (handed out again after the lease) and may
/// be listed twice in `dead.log`.
///
/// **Dead letters.** [`dead_letter`](Journal::dead_letter) appends the entry and the reason
/// to `dead.log` (synced) before it leaves the journal; [`dead_letters`](Self::dead_letters)
/// lists them. When `dead.log` passes
/// [`dead_letter_size`](FileJournalOptions::dead_letter_size) (64 MiB by default) it becomes
/// `dead.1.log`, replacing the one before (a WARN line says so).
///
/// Dropping the journal writes what is queued and waits for the writer thread (one sync).
///
/// ```
/// use tower_wechat::journal::{FileJournal, Handoff};
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let dir = dir.path();
/// let journal = FileJournal::open(dir)?; // e.g. /var/lib/mybot/journal
/// let handoff = Handoff::new(journal);
/// # let _ = handoff;
/// # Ok::<(), tower_wechat::journal::JournalError>(())
/// ```
pub struct FileJournal {
    inner: Arc<Inner>,
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    /// Holds the directory's lock for as long as the journal is open.
    _lock: File,
}

/// How to open a [`FileJournal`]; [`FileJournal::options`].
///
/// ```
/// use std::time::Duration;
/// use tower_wechat::journal::FileJournal;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let journal = FileJournal::options()
///     .budget(256 * 1024 * 1024)
///     .segment_size(16 * 1024 * 1024)
///     .compact_after(Duration::from_secs(120))
///     .open(dir.path())?;
/// # drop(journal);
/// # Ok::<(), tower_wechat::journal::JournalError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct FileJournalOptions {
    settings: Settings,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    budget: u64,
    segment_size: u64,
    compact_after: Duration,
    dead_letter_size: u64,
    create_dir: bool,
}

/// A snapshot of a [`FileJournal`]'s state and counters (counters since `open`).
///
/// ```
/// use tower_wechat::journal::FileJournal;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let journal = FileJournal::open(dir.path())?;
/// let stats = journal.stats();
/// assert_eq!((stats.pending, stats.appends, stats.syncs), (0, 0, 0));
/// # Ok::<(), tower_wechat::journal::JournalError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileJournalStats {
    /// Entries in the journal (appended, neither finished nor dead).
    pub pending: u64,
    /// Bytes the segment files take (with records queued for them), counted in the budget.
    pub bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Appends stored (synced) since `open`.
    pub appends: u64,
    /// Syncs of segment files (one per batch of records): `appends / syncs` is the group
    /// commit's batch size.
    pub syncs: u64,
    /// Writes or syncs that failed (each failed the appends of its batch).
    pub write_errors: u64,
    /// Segments deleted because none of their entries was left.
    pub deleted_segments: u64,
    /// Old segments whose last entries were written again at the head.
    pub compactions: u64,
    /// Entries written again by compactions.
    pub compacted_entries: u64,
    /// Records that could not be read (damage; see the replay notes on [`FileJournal`]).
    pub corrupt_records: u64,
    /// Bytes skipped because they could not be read.
    pub corrupt_bytes: u64,
    /// Entries moved to the dead letters since `open`.
    pub dead_letters: u64,
}

/// Shared by the journal's callers and its writer thread.
pub(crate) struct Inner {
    dir: PathBuf,
    settings: Settings,
    state: Mutex<State>,
    counters: Counters,
    /// Held while `dead.log` is rotated or read.
    dead_files: Mutex<()>,
    #[cfg(test)]
    faults: tests::Faults,
}

#[derive(Default)]
pub(crate) struct Counters {
    appends: AtomicU64,
    syncs: AtomicU64,
    write_errors: AtomicU64,
    deleted_segments: AtomicU64,
    compactions: AtomicU64,
    compacted_entries: AtomicU64,
    corrupt_records: AtomicU64,
    corrupt_bytes: AtomicU64,
    dead_letters: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The journal's index in memory: where each live entry is, and what each segment holds.
pub(crate) struct State {
    next_id: u64,
    slots: BTreeMap<u64, Slot>,
    segments: BTreeMap<u64, Segment>,
    /// Bytes in the segment files plus bytes queued for them.
    disk: u64,
    /// The segment being written.
    head: u64,
}

/// A live entry. Its bytes stay on disk; [`reclaim`](Journal::reclaim) reads them back.
pub(crate) struct Slot {
    /// Where its newest append record is; `None` until the writer has written it.
    loc: Option<Loc>,
    attempt: u32,
    run: Run,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Run {
    /// A handler of this process runs it.
    Running,
    /// Its run failed at this instant; handed out again once the lease has passed.
    Released(Instant),
    /// Left by a previous run of the process: handed out again at once.
    Orphan,
}

pub(crate) struct Segment {
    file: Arc<File>,
    /// Bytes written and synced (the file's length, for an old one).
    size: u64,
    /// Live entries whose append record is here, and their bytes.
    live: u64,
    live_bytes: u64,
    /// When it stopped being the head.
    sealed_at: Option<Instant>,
}

impl FileJournalOptions {
    /// The default budget: 1 GiB of segment files.
    pub const DEFAULT_BUDGET: u64 = 1024 * 1024 * 1024;
    /// The default segment size: 64 MiB.
    pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
    /// The default age before an old segment's last entries are compacted: 60 s.
    pub const DEFAULT_COMPACT_AFTER: Duration = Duration::from_secs(60);
    /// The default size of `dead.log` before it is rotated: 64 MiB.
    pub const DEFAULT_DEAD_LETTER_SIZE: u64 = 64 * 1024 * 1024;

    /// The defaults.
    pub fn new() -> Self {
        Self {
            settings: Settings {
                budget: Self::DEFAULT_BUDGET,
                segment_size: Self::DEFAULT_SEGMENT_SIZE,
                compact_after: Self::DEFAULT_COMPACT_AFTER,
                dead_letter_size: Self::DEFAULT_DEAD_LETTER_SIZE,
                create_dir: false,
            },
        }
    }

    /// The bytes the segment files may take (default 1 GiB); an append over it fails with
    /// [`JournalError::Full`].
    pub fn budget(mut self, bytes: u64) -> Self {
        self.settings.budget = bytes;
        self
    }

    /// The size at which a new segment file is started (default 64 MiB; at most a quarter
    /// of the budget, at least 4 KiB). Space comes back a whole segment at a time.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.settings.segment_size = bytes;
        self
    }

    /// How old a segment must be before its last few entries (at most a quarter of its
    /// bytes) are written again at the head so it can be deleted (default 60 s; past half
    /// the budget, at any age). Keep it above your handlers' usual run time, so entries
    /// mostly finish rather than move.
    pub fn compact_after(mut self, age: Duration) -> Self {
        self.settings.compact_after = age;
        self
    }

    /// The size at which `dead.log` becomes `dead.1.log` (default 64 MiB; the dead letters
    /// take at most about twice this).
    pub fn dead_letter_size(mut self, bytes: u64) -> Self {
        self.settings.dead_letter_size = bytes;
        self
    }

    /// Creates the directory (and its parents) if it is missing (default: a missing
    /// directory fails `open`, so a mistyped path is not a new, empty journal).
    pub fn create_dir(mut self, create: bool) -> Self {
        self.settings.create_dir = create;
        self
    }

    /// Opens (or starts) the journal in `dir`: locks it, replays it, starts the writer.
    /// Blocking: it reads every segment.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<FileJournal, JournalError> {
        let mut settings = self.settings;
        settings.segment_size = settings
            .segment_size
            .min(settings.budget / 4)
            .max(MIN_SEGMENT_SIZE);
        replay::open(dir.as_ref(), settings)
    }
}

impl Default for FileJournalOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// The smallest segment size.
const MIN_SEGMENT_SIZE: u64 = 4096;

impl FileJournal {
    /// Opens the journal in `dir` with the defaults (see [`FileJournalOptions`]).
    ///
    /// ```
    /// use tower_wechat::journal::FileJournal;
    ///
    /// let missing = FileJournal::open("/nonexistent/journal").unwrap_err();
    /// assert!(missing.to_string().contains("/nonexistent/journal"));
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, JournalError> {
        FileJournalOptions::new().open(dir)
    }

    /// How to open one with other settings.
    ///
    /// ```
    /// use tower_wechat::journal::FileJournal;
    ///
    /// let options = FileJournal::options().create_dir(true);
    /// # let _ = options;
    /// ```
    pub fn options() -> FileJournalOptions {
        FileJournalOptions::new()
    }

    /// The directory it is in.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let journal = tower_wechat::journal::FileJournal::open(dir.path())?;
    /// assert_eq!(journal.dir(), dir.path());
    /// # Ok::<(), tower_wechat::journal::JournalError>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Its state and counters now.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let journal = tower_wechat::journal::FileJournal::open(dir.path())?;
    /// assert_eq!(journal.stats().segments, 1);
    /// # Ok::<(), tower_wechat::journal::JournalError>(())
    /// ```
    pub fn stats(&self) -> FileJournalStats {
        let (pending, bytes, segments) = {
            let state = self.inner.lock();
            (
                state.slots.len() as u64,
                state.disk,
                state.segments.len() as u64,
            )
        };
        let c = &self.inner.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FileJournalStats {
            pending,
            bytes,
            segments,
            appends: read(&c.appends),
            syncs: read(&c.syncs),
            write_errors: read(&c.write_errors),
            deleted_segments: read(&c.deleted_segments),
            compactions: read(&c.compactions),
            compacted_entries: read(&c.compacted_entries),
            corrupt_records: read(&c.corrupt_records),
            corrupt_bytes: read(&c.corrupt_bytes),
            dead_letters: read(&c.dead_letters),
        }
    }

    /// Waits until every record queued so far is synced (the unwaited `finish` records
    /// included) and the writer has deleted or compacted the segments it could.
    ///
    /// ```
    /// # async fn run(journal: tower_wechat::journal::FileJournal) -> Result<(), tower_wechat::journal::JournalError> {
    /// journal.flush().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flush(&self) -> Result<(), JournalError> {
        let (done, result) = oneshot::channel();
        self.send(Command::Flush { done })?;
        result.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    /// The dead letters (oldest first): `dead.1.log`, then `dead.log`. Blocking: it reads
    /// the files. A torn record at the end of a file (a crash while writing it) ends the
    /// listing of that file.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let journal = tower_wechat::journal::FileJournal::open(dir.path())?;
    /// for letter in journal.dead_letters()? {
    ///     println!("{} {}: {}", letter.id, letter.entry.path, letter.reason);
    /// }
    /// # Ok::<(), tower_wechat::journal::JournalError>(())
    /// ```
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, JournalError> {
        let _files = self
            .inner
            .dead_files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        dead::read_all(&self.inner.dir)
    }

    fn send(&self, command: Command) -> Result<(), JournalError> {
        self.commands
            .as_ref()
            .and_then(|commands| commands.send(command).ok())
            .ok_or_else(writer_stopped)
    }

    fn parse(id: &EntryId) -> Result<u64, JournalError> {
        id.as_str().parse().map_err(|_| JournalError::Corrupt)
    }

    /// Hands out the entries picked by `reclaim` (marked running, attempt counted up):
    /// reads them, and syncs their new delivery counts.
    async fn hand_out(&self, picked: Vec<Picked>) -> Result<Vec<Reclaimed>, JournalError> {
        let mut reclaimed = Vec::with_capacity(picked.len());
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        for pick in &picked {
            match read_entry(&pick.file, pick.id, pick.loc) {
                Some(mut entry) => {
                    entry.attempt = pick.attempt;
                    record::frame(
                        record::ATTEMPT,
                        &[&pick.id.to_le_bytes(), &pick.attempt.to_le_bytes()],
                        &mut records,
                    );
                    reclaimed.push(Reclaimed::new(EntryId::new(pick.id.to_string()), entry));
                }
                None => unreadable.push(pick.id),
            }
        }
        if !unreadable.is_empty() {
            self.drop_unreadable(&unreadable, &mut records);
        }
        if records.is_empty() {
            return Ok(reclaimed);
        }
        let bytes = records.len() as u64;
        self.inner.lock().disk += bytes;
        let (done, result) = oneshot::channel();
        let synced = match self.send(Command::Sync { records, done }) {
            Ok(()) => result.await.unwrap_or_else(|_| Err(writer_stopped())),
            Err(error) => {
                {
                    let mut state = self.inner.lock();
                    state.disk = state.disk.saturating_sub(bytes);
                }
                Err(error)
            }
        };
        if let Err(error) = synced {
            // Not handed out after all: put them back as they were.
            let mut state = self.inner.lock();
            for pick in &picked {
                if let Some(slot) = state.slots.get_mut(&pick.id)
                    && slot.run == Run::Running
                {
                    slot.run = pick.before;
                    slot.attempt = pick.attempt.saturating_sub(1);
                }
            }
            return Err(error);
        }
        Ok(reclaimed)
    }

    /// Entries whose bytes could not be read back (damage since `open`): they leave the
    /// journal, with an ERROR line each; they cannot be run nor dead-lettered.
    fn drop_unreadable(&self, ids: &[u64], records: &mut Vec<u8>) {
        let mut state = self.inner.lock();
        for &id in ids {
            state.remove(id);
            record::id_record(record::DEAD, id, records);
            Counters::add(&self.inner.counters.corrupt_records, 1);
            tracing::error!(
                entry = id,
                dir = %self.inner.dir.display(),
                "file journal: an entry's record cannot be read back (damaged on disk); it is dropped"
            );
        }
    }
}

/// An entry `reclaim` picked, with what it was before.
struct Picked {
    id: u64,
    loc: Loc,
    file: Arc<File>,
    attempt: u32,
    before: Run,
}

/// Reads entry `id`'s append record at `loc`; `None` if it is not that.
fn read_entry(file: &File, id: u64, loc: Loc) -> Option<JournalEntry> {
    let mut bytes = vec![0; loc.len as usize];
    record::read_at(file, &mut bytes, loc.offset).ok()?;
    let record::Parsed::Record {
        kind: record::APPEND,
        payload,
        ..
    } = record::parse(&bytes)
    else {
        return None;
    };
    if record::read_u64(payload)? != id {
        return None;
    }
    JournalEntry::decode(&payload[8..]).ok()
}

fn writer_stopped() -> JournalError {
    JournalError::Unavailable("the file journal's writer thread stopped".into())
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Takes entry `id` out of the index; `true` if it was there.
    fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slots.remove(&id) else {
            return false;
        };
        if let Some(loc) = slot.loc
            && let Some(segment) = self.segments.get_mut(&loc.segment)
        {
            segment.live = segment.live.saturating_sub(1);
            segment.live_bytes = segment.live_bytes.saturating_sub(u64::from(loc.len));
        }
        true
    }
}

/// Marks an append whose caller stopped waiting as released, so it is handed out again
/// after the lease (as a journal shared by replicas would), instead of counting as running
/// here forever.
struct AppendGuard {
    inner: Arc<Inner>,
    id: u64,
    armed: bool,
}

impl Drop for AppendGuard {
    fn drop(&mut self) {
        if self.armed
            && let Some(slot) = self.inner.lock().slots.get_mut(&self.id)
            && slot.run == Run::Running
        {
            slot.run = Run::Released(Instant::now());
        }
    }
}

impl Journal for FileJournal {
    fn append<'a>(
        &'a self,
        entry: &'a JournalEntry,
    ) -> BoxFuture<'a, Result<EntryId, JournalError>> {
        let encoded = entry.encode();
        if encoded.len() + 8 > record::MAX_PAYLOAD {
            return Box::pin(std::future::ready(Err(JournalError::Full)));
        }
        let size = (record::RECORD_HEADER + 8 + encoded.len()) as u64;
        let id = {
            let mut state = self.inner.lock();
            if state.disk + size > self.inner.settings.budget {
                return Box::pin(std::future::ready(Err(JournalError::Full)));
            }
            let id = state.next_id;
            state.next_id += 1;
            state.disk += size;
            state.slots.insert(
                id,
                Slot {
                    loc: None,
                    attempt: entry.attempt,
                    run: Run::Running,
                },
            );
            id
        };
        let mut bytes = Vec::with_capacity(size as usize);
        record::frame(record::APPEND, &[&id.to_le_bytes(), &encoded], &mut bytes);
        let (done, result) = oneshot::channel();
        if let Err(error) = self.send(Command::Append {
            id,
            record: bytes,
            done,
        }) {
            let mut state = self.inner.lock();
            state.remove(id);
            state.disk = state.disk.saturating_sub(size);
            return Box::pin(std::future::ready(Err(error)));
        }
        let guard = AppendGuard {
            inner: self.inner.clone(),
            id,
            armed: true,
        };
        Box::pin(async move {
            let mut guard = guard; // moved in whole, so dropping this future drops it
            let stored = result.await;
            guard.armed = false;
            stored.unwrap_or_else(|_| Err(writer_stopped()))?;
            Ok(EntryId::new(id.to_string()))
        })
    }

    fn finish<'a>(&'a self, id: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>> {
        let result = Self::parse(id).and_then(|id| {
            let mut record = Vec::with_capacity(17);
            record::id_record(record::FINISH, id, &mut record);
            {
                let mut state = self.inner.lock();
                if !state.remove(id) {
                    return Ok(()); // finished already, or never here
                }
                state.disk += record.len() as u64;
            }
            // Not waited for: see the type's docs (a lost finish runs the entry again).
            self.send(Command::Note { record })
        });
        Box::pin(std::future::ready(result))
    }

    fn release<'a>(&'a self, id: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>> {
        let result = Self::parse(id).map(|id| {
            if let Some(slot) = self.inner.lock().slots.get_mut(&id) {
                slot.run = Run::Released(Instant::now());
            }
        });
        Box::pin(std::future::ready(result))
    }

    fn reclaim(
        &self,
        lease: Duration,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Reclaimed>, JournalError>> {
        let now = Instant::now();
        let picked: Vec<Picked> = {
            let mut guard = self.inner.lock();
            let state = &mut *guard;
            let mut picked = Vec::new();
            for (&id, slot) in &mut state.slots {
                if picked.len() >= max {
                    break;
                }
                let due = match slot.run {
                    Run::Running => false,
                    Run::Orphan => true,
                    Run::Released(at) => now.saturating_duration_since(at) >= lease,
                };
                let (true, Some(loc)) = (due, slot.loc) else {
                    continue;
                };
                let Some(segment) = state.segments.get(&loc.segment) else {
                    continue;
                };
                picked.push(Picked {
                    id,
                    loc,
                    file: segment.file.clone(),
                    attempt: slot.attempt.saturating_add(1),
                    before: slot.run,
                });
                slot.run = Run::Running;
                slot.attempt = slot.attempt.saturating_add(1);
            }
            picked
        };
        if picked.is_empty() {
            return Box::pin(std::future::ready(Ok(Vec::new())));
        }
        Box::pin(self.hand_out(picked))
    }

    fn dead_letter<'a>(
        &'a self,
        id: &'a EntryId,
        entry: &'a JournalEntry,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            let id = Self::parse(id)?;
            let letter = dead::letter(id, entry, reason);
            let mut record = Vec::with_capacity(17);
            record::id_record(record::DEAD, id, &mut record);
            let bytes = record.len() as u64;
            self.inner.lock().disk += bytes;
            let (done, result) = oneshot::channel();
            if let Err(error) = self.send(Command::Dead {
                id,
                letter,
                record,
                done,
            }) {
                {
                    let mut state = self.inner.lock();
                    state.disk = state.disk.saturating_sub(bytes);
                }
                return Err(error);
            }
            // The writer took it out of the index once its dead record was written.
            if let Err(error) = result.await.unwrap_or_else(|_| Err(writer_stopped())) {
                // Still here: handed out again after the lease, and given up again then.
                if let Some(slot) = self.inner.lock().slots.get_mut(&id) {
                    slot.run = Run::Released(Instant::now());
                }
                return Err(error);
            }
            Counters::add(&self.inner.counters.dead_letters, 1);
            Ok(())
        })
    }

    fn pending(&self) -> BoxFuture<'_, Result<u64, JournalError>> {
        let pending = self.inner.lock().slots.len() as u64;
        Box::pin(std::future::ready(Ok(pending)))
    }
}

impl Drop for FileJournal {
    fn drop(&mut self) {
        // The writer writes what is queued, then sees the channel closed and stops.
        drop(self.commands.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = self.stats();
        f.debug_struct("FileJournal")
            .field("dir", &self.inner.dir)
            .field("pending", &stats.pending)
            .field("bytes", &stats.bytes)
            .field("budget", &self.inner.settings.budget)
            .finish()
    }
}
