//! [`MemoryJournal`]: the journal in this process's memory — retries failed handlers, but is
//! not durable.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::entry::{EntryId, JournalEntry};
use super::error::JournalError;
use super::store::{BoxFuture, Journal, Reclaimed};

/// A [`Journal`] in this process's memory.
///
/// **Not durable**: what it holds dies with the process, exactly as a handler running in the
/// background does without a journal. What it adds is that a handler whose run failed (an
/// error, a 5xx, a panic) after its callback was acknowledged is run again by the recovery
/// worker, up to the hand-off's delivery limit, then dead-lettered. Use
/// [`FileJournal`](super::FileJournal) or `RedisJournal` for acknowledged callbacks to
/// survive a crash.
///
/// Bounded in bytes (the encoded size of the entries it holds, 16 MiB by default): an
/// append over the budget fails with [`JournalError::Full`]. Dead letters are kept for
/// inspection, the most recent 1 000.
///
/// ```
/// use tower_wechat::journal::MemoryJournal;
///
/// let journal = MemoryJournal::with_budget(4 * 1024 * 1024);
/// # let _ = journal;
/// ```
pub struct MemoryJournal {
    state: Mutex<State>,
    budget: usize,
}

#[derive(Default)]
struct State {
    next: u64,
    bytes: usize,
    entries: BTreeMap<u64, Slot>,
    dead: VecDeque<(JournalEntry, String)>,
}

struct Slot {
    entry: JournalEntry,
    size: usize,
    /// `None` while a handler runs it; when it was released otherwise.
    released: Option<Instant>,
}

/// Dead letters kept for inspection.
const DEAD_LETTERS_KEPT: usize = 1000;

impl MemoryJournal {
    /// The default byte budget: 16 MiB.
    pub const DEFAULT_BUDGET: usize = 16 * 1024 * 1024;

    /// An empty journal with the default byte budget.
    pub fn new() -> Self {
        Self::with_budget(Self::DEFAULT_BUDGET)
    }

    /// An empty journal holding at most `bytes` of encoded entries.
    pub fn with_budget(bytes: usize) -> Self {
        Self {
            state: Mutex::default(),
            budget: bytes,
        }
    }

    /// The dead letters kept (oldest first), with why each was given up.
    ///
    /// ```
    /// use tower_wechat::journal::MemoryJournal;
    ///
    /// assert!(MemoryJournal::new().dead_letters().is_empty());
    /// ```
    pub fn dead_letters(&self) -> Vec<(JournalEntry, String)> {
        self.lock().dead.iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn parse(id: &EntryId) -> Result<u64, JournalError> {
        id.as_str().parse().map_err(|_| JournalError::Corrupt)
    }
}

impl Default for MemoryJournal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryJournal")
            .field("pending", &state.entries.len())
            .field("bytes", &state.bytes)
            .field("budget", &self.budget)
            .finish()
    }
}

impl Journal for MemoryJournal {
    fn append<'a>(
        &'a self,
        entry: &'a JournalEntry,
    ) -> BoxFuture<'a, Result<EntryId, JournalError>> {
        let size = encoded_size(entry);
        let mut state = self.lock();
        let result = if state.bytes + size > self.budget {
            Err(JournalError::Full)
        } else {
            state.next += 1;
            let id = state.next;
            state.bytes += size;
            state.entries.insert(
                id,
                Slot {
                    entry: entry.clone(),
                    size,
                    released: None,
                },
            );
            Ok(EntryId::new(id.to_string()))
        };
        Box::pin(std::future::ready(result))
    }

    fn finish<'a>(&'a self, id: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>> {
        let result = Self::parse(id).map(|id| {
            let mut state = self.lock();
            if let Some(slot) = state.entries.remove(&id) {
                state.bytes -= slot.size;
            }
        });
        Box::pin(std::future::ready(result))
    }

    fn release<'a>(&'a self, id: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>> {
        let result = Self::parse(id).map(|id| {
            if let Some(slot) = self.lock().entries.get_mut(&id) {
                slot.released = Some(Instant::now());
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
        let mut state = self.lock();
        let reclaimed = state
            .entries
            .iter_mut()
            .filter(|(_, slot)| {
                slot.released
                    .is_some_and(|at| now.duration_since(at) >= lease)
            })
            .take(max)
            .map(|(id, slot)| {
                slot.released = None;
                slot.entry.attempt = slot.entry.attempt.saturating_add(1);
                Reclaimed::new(EntryId::new(id.to_string()), slot.entry.clone())
            })
            .collect();
        Box::pin(std::future::ready(Ok(reclaimed)))
    }

    fn dead_letter<'a>(
        &'a self,
        id: &'a EntryId,
        entry: &'a JournalEntry,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        let result = Self::parse(id).map(|id| {
            let mut state = self.lock();
            if let Some(slot) = state.entries.remove(&id) {
                state.bytes -= slot.size;
            }
            if state.dead.len() == DEAD_LETTERS_KEPT {
                state.dead.pop_front();
            }
            state.dead.push_back((entry.clone(), reason.to_owned()));
        });
        Box::pin(std::future::ready(result))
    }

    fn pending(&self) -> BoxFuture<'_, Result<u64, JournalError>> {
        let pending = self.lock().entries.len() as u64;
        Box::pin(std::future::ready(Ok(pending)))
    }
}

/// What an entry costs: its encoded size plus a fixed overhead for the map slot.
fn encoded_size(entry: &JournalEntry) -> usize {
    const SLOT_OVERHEAD: usize = 96;
    let strings = entry.path.len()
        + entry.query.nonce.len()
        + entry.query.openid.as_ref().map_or(0, String::len)
        + entry.key.as_ref().map_or(0, String::len)
        + entry.trace_context.as_ref().map_or(0, String::len);
    SLOT_OVERHEAD + strings + entry.body.len()
}
