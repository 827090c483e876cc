//! Tests of the file journal on real files (a temporary directory each).

use std::fs;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::record::{self, SEGMENT_HEADER};
use super::*;
use crate::message::CallbackQuery;

/// Failures and delays injected into the writer, for tests only.
#[derive(Default)]
pub(crate) struct Faults {
    fail_writes: AtomicU32,
    sync_delay_ms: AtomicU64,
}

impl Faults {
    /// An error for the next write, if one is due.
    pub(super) fn take(&self) -> Option<io::Error> {
        self.fail_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| io::Error::other("injected write failure"))
    }

    /// Makes each write slower, as a slow disk would.
    pub(super) fn delay(&self) {
        let ms = self.sync_delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
}

fn entry(n: u32) -> JournalEntry {
    JournalEntry {
        path: "/wechat".into(),
        query: CallbackQuery {
            timestamp: 1_700_000_000 + u64::from(n),
            nonce: format!("n{n}"),
            openid: Some("oUser1234".into()),
            encrypted: false,
            redelivered: false,
        },
        body: Bytes::from(format!("<xml><Content>message {n}</Content></xml>")),
        key: Some(format!("gh_1:msg:{n}")),
        arrival_unix_ms: 1_700_000_000_000 + u64::from(n),
        attempt: 1,
        trace_context: None,
    }
}

fn nonces(reclaimed: &[Reclaimed]) -> Vec<String> {
    let mut nonces: Vec<String> = reclaimed
        .iter()
        .map(|r| r.entry.query.nonce.clone())
        .collect();
    nonces.sort();
    nonces
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .and_then(writer::segment_seq)
                .is_some()
        })
        .collect();
    files.sort();
    files
}

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn appended_entries_count_as_running_until_finished_or_released() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::open(dir.path()).unwrap();
    let a = journal.append(&entry(1)).await.unwrap();
    let b = journal.append(&entry(2)).await.unwrap();
    assert_ne!(a, b);
    assert_eq!(journal.pending().await.unwrap(), 2);
    // Running here: nobody may reclaim them, whatever the lease.
    assert!(
        journal
            .reclaim(Duration::ZERO, 10)
            .await
            .unwrap()
            .is_empty()
    );

    journal.finish(&a).await.unwrap();
    journal.finish(&a).await.unwrap(); // twice is harmless
    assert_eq!(journal.pending().await.unwrap(), 1);

    journal.release(&b).await.unwrap();
    assert!(
        journal.reclaim(LONG, 10).await.unwrap().is_empty(),
        "lease not passed"
    );
    let again = journal.reclaim(Duration::ZERO, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, b);
    assert_eq!(
        again[0].entry,
        JournalEntry {
            attempt: 2,
            ..entry(2)
        }
    );
    assert!(
        journal
            .reclaim(Duration::ZERO, 10)
            .await
            .unwrap()
            .is_empty(),
        "running again"
    );

    journal.release(&b).await.unwrap();
    let third = journal.reclaim(Duration::ZERO, 10).await.unwrap();
    assert_eq!(third[0].entry.attempt, 3);

    journal
        .dead_letter(&b, &third[0].entry, "failed 3 deliveries")
        .await
        .unwrap();
    assert_eq!(journal.pending().await.unwrap(), 0);
    let dead = journal.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (&dead[0].id, dead[0].reason.as_str()),
        (&b, "failed 3 deliveries")
    );
    assert_eq!(dead[0].entry, third[0].entry);
    assert!(matches!(
        journal.finish(&EntryId::new("not-a-number")).await,
        Err(JournalError::Corrupt)
    ));
    assert_eq!(journal.stats().appends, 2);
}

#[tokio::test]
async fn reclaim_hands_out_at_most_max() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::open(dir.path()).unwrap();
    for n in 0..5 {
        let id = journal.append(&entry(n)).await.unwrap();
        journal.release(&id).await.unwrap();
    }
    assert_eq!(journal.reclaim(Duration::ZERO, 2).await.unwrap().len(), 2);
    assert_eq!(journal.reclaim(Duration::ZERO, 10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_reopened_journal_hands_out_what_the_last_run_left_with_its_delivery_count() {
    let dir = tempfile::tempdir().unwrap();
    let finished = {
        let journal = FileJournal::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for n in 0..4 {
            ids.push(journal.append(&entry(n)).await.unwrap());
        }
        journal.finish(&ids[0]).await.unwrap();
        journal.release(&ids[1]).await.unwrap();
        ids[0].clone()
    }; // dropped: the finish record is written on the way out
    for (round, attempt) in [(1, 2), (2, 3), (3, 4)] {
        let journal = FileJournal::open(dir.path()).unwrap();
        assert_eq!(journal.pending().await.unwrap(), 3, "round {round}");
        // Left by a previous run: reclaimable at once, whatever the lease.
        let again = journal.reclaim(LONG, 10).await.unwrap();
        assert_eq!(nonces(&again), ["n1", "n2", "n3"], "round {round}");
        assert!(
            again.iter().all(|r| r.entry.attempt == attempt),
            "round {round}: {again:?}"
        );
        assert!(again.iter().all(|r| r.id != finished));
        assert_eq!(again[0].entry.body, entry(1).body);
        // The process "crashes" while running them: nothing finished.
    }
    // New ids never reuse old ones.
    let journal = FileJournal::open(dir.path()).unwrap();
    let new = journal.append(&entry(9)).await.unwrap();
    let new: u64 = new.as_str().parse().unwrap();
    assert!(new > 4, "{new}");
}

#[tokio::test]
async fn a_torn_record_at_the_end_is_cut_off_and_the_rest_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = FileJournal::open(dir.path()).unwrap();
        for n in 0..3 {
            journal.append(&entry(n)).await.unwrap();
        }
    }
    let last = segment_files(dir.path()).pop().unwrap();
    let good = fs::metadata(&last).unwrap().len();
    // Half of a fourth record, as a crash in the middle of its write leaves it.
    let mut torn = Vec::new();
    record::frame(
        record::APPEND,
        &[&99u64.to_le_bytes(), &entry(99).encode()],
        &mut torn,
    );
    torn.truncate(torn.len() / 2);
    fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap()
        .write_all(&torn)
        .unwrap();

    let journal = FileJournal::open(dir.path()).unwrap();
    assert_eq!(fs::metadata(&last).unwrap().len(), good, "cut back");
    let stats = journal.stats();
    assert_eq!((stats.pending, stats.corrupt_records), (3, 0));
    assert_eq!(
        nonces(&journal.reclaim(LONG, 10).await.unwrap()),
        ["n0", "n1", "n2"]
    );
    journal.append(&entry(4)).await.unwrap();
    drop(journal);
    let journal = FileJournal::open(dir.path()).unwrap();
    assert_eq!(journal.stats().pending, 4);
    assert_eq!(journal.stats().corrupt_records, 0);
}

#[tokio::test]
async fn damage_in_an_older_segment_skips_the_rest_of_it_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = FileJournal::open(dir.path()).unwrap();
        for n in 0..4 {
            journal.append(&entry(n)).await.unwrap();
        }
    }
    {
        let journal = FileJournal::open(dir.path()).unwrap(); // a newer segment after it
        journal.append(&entry(10)).await.unwrap();
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    // Flip a byte in the third record's body.
    let mut bytes = fs::read(&files[0]).unwrap();
    let mut at = SEGMENT_HEADER;
    for _ in 0..2 {
        let record::Parsed::Record { size, .. } = record::parse(&bytes[at..]) else {
            panic!("unreadable");
        };
        at += size;
    }
    let third = at + 40;
    bytes[third] ^= 0x20;
    fs::write(&files[0], &bytes).unwrap();

    let journal = FileJournal::open(dir.path()).unwrap();
    let stats = journal.stats();
    assert_eq!(stats.corrupt_records, 1);
    assert_eq!(stats.corrupt_bytes, (bytes.len() - at) as u64);
    assert_eq!(
        nonces(&journal.reclaim(LONG, 10).await.unwrap()),
        ["n0", "n1", "n10"]
    );
}

#[tokio::test]
async fn a_segment_of_another_format_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop(FileJournal::open(dir.path()).unwrap());
    let file = segment_files(dir.path()).pop().unwrap();
    let mut header = record::segment_header(1);
    header[7] = 9;
    let crc = crc32fast::hash(&header[..16]);
    header[16..].copy_from_slice(&crc.to_le_bytes());
    fs::write(&file, header).unwrap();
    let error = FileJournal::open(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("format version 9") && error.contains(&*file.to_string_lossy()),
        "{error}"
    );
}

#[tokio::test]
async fn segments_rotate_and_are_deleted_once_nothing_in_them_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::options()
        .segment_size(4096)
        .open(dir.path())
        .unwrap();
    for n in 0..200 {
        let id = journal.append(&entry(n)).await.unwrap();
        journal.finish(&id).await.unwrap();
    }
    journal.flush().await.unwrap();
    let stats = journal.stats();
    assert!(stats.deleted_segments >= 3, "{stats:?}");
    assert!(stats.segments <= 2, "{stats:?}");
    assert_eq!(segment_files(dir.path()).len() as u64, stats.segments);
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|file| fs::metadata(file).unwrap().len())
        .sum();
    assert_eq!(stats.bytes, on_disk, "the budget counts what is on disk");
    drop(journal);
    assert_eq!(FileJournal::open(dir.path()).unwrap().stats().pending, 0);
}

#[tokio::test]
async fn an_old_segment_pinned_by_a_few_entries_is_compacted_into_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileJournal::options()
        .segment_size(4096)
        .compact_after(Duration::ZERO);
    let journal = options.clone().open(dir.path()).unwrap();
    let pinned = journal.append(&entry(0)).await.unwrap();
    journal.release(&pinned).await.unwrap();
    let taken = journal.reclaim(Duration::ZERO, 1).await.unwrap();
    assert_eq!(taken[0].entry.attempt, 2);
    journal.release(&pinned).await.unwrap();
    for n in 1..200 {
        let id = journal.append(&entry(n)).await.unwrap();
        journal.finish(&id).await.unwrap();
    }
    journal.flush().await.unwrap();
    let stats = journal.stats();
    assert!(
        stats.compactions >= 1 && stats.compacted_entries >= 1,
        "{stats:?}"
    );
    assert!(stats.segments <= 2, "{stats:?}");
    assert_eq!(stats.pending, 1);
    // Still there, with its delivery count, in this run and the next.
    let again = journal.reclaim(Duration::ZERO, 10).await.unwrap();
    assert_eq!((again.len(), again[0].entry.attempt), (1, 3));
    assert_eq!(again[0].entry.body, entry(0).body);
    drop(journal);
    let journal = options.open(dir.path()).unwrap();
    let again = journal.reclaim(LONG, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.clone(), again[0].entry.attempt), (pinned, 4));
}

#[tokio::test]
async fn over_the_budget_appends_fail_full_until_space_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::options()
        .budget(32 * 1024)
        .open(dir.path())
        .unwrap();
    let mut ids = Vec::new();
    let full = loop {
        match journal.append(&entry(ids.len() as u32)).await {
            Ok(id) => ids.push(id),
            Err(error) => break error,
        }
        assert!(ids.len() < 10_000, "never full");
    };
    assert!(matches!(full, JournalError::Full), "{full}");
    assert!(journal.stats().bytes <= 32 * 1024);
    assert_eq!(
        journal.pending().await.unwrap(),
        ids.len() as u64,
        "nothing trimmed"
    );
    for id in &ids {
        journal.finish(id).await.unwrap();
    }
    journal.flush().await.unwrap();
    journal.append(&entry(0)).await.expect("space came back");
    // An entry larger than the budget can never fit.
    let huge = JournalEntry {
        body: Bytes::from(vec![b'x'; 64 * 1024]),
        ..entry(1)
    };
    assert!(matches!(
        journal.append(&huge).await,
        Err(JournalError::Full)
    ));
}

#[test]
fn concurrent_appends_share_their_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(FileJournal::open(dir.path()).unwrap());
    // A slow disk, so that appenders queue up behind each sync.
    journal
        .inner
        .faults
        .sync_delay_ms
        .store(5, Ordering::SeqCst);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..64 {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..20 {
                    journal.append(&entry(task * 100 + n)).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let stats = journal.stats();
    assert_eq!((stats.appends, stats.pending), (1280, 1280));
    assert!(
        stats.syncs * 8 <= stats.appends,
        "no group commit: {stats:?}"
    );
}

#[tokio::test]
async fn a_failed_write_fails_its_appends_and_the_next_write_works() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::open(dir.path()).unwrap();
    let kept = journal.append(&entry(1)).await.unwrap();
    journal.inner.faults.fail_writes.store(1, Ordering::SeqCst);
    let error = journal.append(&entry(2)).await.unwrap_err();
    assert!(
        matches!(&error, JournalError::Unavailable(why) if why.contains("injected")),
        "{error}"
    );
    assert_eq!(
        journal.pending().await.unwrap(),
        1,
        "the failed append is not in the journal"
    );
    journal.append(&entry(3)).await.expect("works again");
    assert_eq!(journal.stats().write_errors, 1);
    drop(journal);
    let journal = FileJournal::open(dir.path()).unwrap();
    assert_eq!(
        journal.stats().corrupt_records,
        0,
        "the half write was cut back"
    );
    let again = journal.reclaim(LONG, 10).await.unwrap();
    assert_eq!(nonces(&again), ["n1", "n3"]);
    assert!(again.iter().any(|r| r.id == kept));
}

#[tokio::test]
async fn a_finish_in_a_failed_batch_is_written_with_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::open(dir.path()).unwrap();
    let id = journal.append(&entry(1)).await.unwrap();
    journal.inner.faults.fail_writes.store(1, Ordering::SeqCst);
    journal.finish(&id).await.unwrap();
    // The finish's batch fails (with the flush, or before it); the next write carries it.
    if journal.flush().await.is_err() {
        journal.flush().await.unwrap();
    }
    assert_eq!(
        journal.stats().write_errors,
        1,
        "the write with the finish failed"
    );
    drop(journal);
    let journal = FileJournal::open(dir.path()).unwrap();
    assert_eq!(journal.stats().pending, 0);
}

#[tokio::test]
async fn an_append_given_up_by_its_caller_is_handed_out_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::open(dir.path()).unwrap();
    journal
        .inner
        .faults
        .sync_delay_ms
        .store(50, Ordering::SeqCst);
    let entry = entry(1);
    let append = journal.append(&entry);
    assert!(
        tokio::time::timeout(Duration::from_millis(1), append)
            .await
            .is_err()
    );
    journal
        .inner
        .faults
        .sync_delay_ms
        .store(0, Ordering::SeqCst);
    journal.flush().await.unwrap();
    assert!(journal.reclaim(LONG, 10).await.unwrap().is_empty());
    assert_eq!(journal.reclaim(Duration::ZERO, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn one_directory_one_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::open(dir.path()).unwrap();
    let error = FileJournal::open(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("in use") && error.contains("LOCK"),
        "{error}"
    );
    assert!(error.contains(&std::process::id().to_string()), "{error}");
    drop(journal);
    FileJournal::open(dir.path()).expect("unlocked when dropped");
}

#[test]
fn open_names_what_is_wrong_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let error = FileJournal::open(&missing).unwrap_err().to_string();
    assert!(
        error.contains("does not exist") && error.contains("missing"),
        "{error}"
    );
    assert!(!missing.exists());
    let journal = FileJournal::options()
        .create_dir(true)
        .open(&missing)
        .unwrap();
    assert!(missing.is_dir());
    drop(journal);

    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let error = FileJournal::open(&file).unwrap_err().to_string();
    assert!(error.contains("not a directory"), "{error}");
}

#[tokio::test]
async fn dead_letters_survive_reopen_and_rotate_at_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileJournal::options().dead_letter_size(1024);
    {
        let journal = options.clone().open(dir.path()).unwrap();
        for n in 0..30 {
            let id = journal.append(&entry(n)).await.unwrap();
            journal
                .dead_letter(&id, &entry(n), &format!("reason {n}"))
                .await
                .unwrap();
        }
        assert_eq!(journal.stats().dead_letters, 30);
    }
    let journal = options.open(dir.path()).unwrap();
    assert_eq!(journal.stats().pending, 0, "dead entries are not replayed");
    let letters = journal.dead_letters().unwrap();
    assert!(dir.path().join("dead.1.log").exists());
    // The newest are kept, oldest first, in at most two files of about the size.
    assert!(
        letters.len() >= 6 && letters.len() < 30,
        "{}",
        letters.len()
    );
    let last = letters.last().unwrap();
    assert_eq!(
        (last.reason.as_str(), &last.entry),
        ("reason 29", &entry(29))
    );
    let reasons: Vec<u32> = letters
        .iter()
        .map(|letter| letter.reason[7..].parse().unwrap())
        .collect();
    assert!(
        reasons.windows(2).all(|pair| pair[0] + 1 == pair[1]),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn errors_and_debug_show_no_callback_content() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::open(dir.path()).unwrap();
    journal.inner.faults.fail_writes.store(1, Ordering::SeqCst);
    let error = journal.append(&entry(1)).await.unwrap_err();
    let shown = format!("{error} {error:?} {journal:?}");
    assert!(
        !shown.contains("message 1") && !shown.contains("oUser1234"),
        "{shown}"
    );
}

#[tokio::test]
async fn an_entry_damaged_after_open_is_dropped_by_reclaim_not_handed_out_broken() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::open(dir.path()).unwrap();
    let damaged = journal.append(&entry(1)).await.unwrap();
    let fine = journal.append(&entry(2)).await.unwrap();
    journal.release(&damaged).await.unwrap();
    journal.release(&fine).await.unwrap();
    let loc = {
        let state = journal.inner.lock();
        state.slots[&damaged.as_str().parse::<u64>().unwrap()]
            .loc
            .unwrap()
    };
    let file = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&file).unwrap();
    bytes[loc.offset as usize + 30] ^= 0x01;
    record::write_at(
        &fs::OpenOptions::new().write(true).open(&file).unwrap(),
        &bytes,
        0,
    )
    .unwrap();

    let again = journal.reclaim(Duration::ZERO, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, fine);
    assert_eq!(journal.stats().corrupt_records, 1);
    assert_eq!(journal.pending().await.unwrap(), 1);
}

#[tokio::test]
async fn past_half_the_budget_denser_segments_are_compacted_so_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB segments; compaction by age never (only the budget's pressure).
    let journal = FileJournal::options()
        .budget(512 * 1024)
        .compact_after(LONG)
        .open(dir.path())
        .unwrap();
    // 1 entry in 5 stays (about 20% of each segment's bytes): 2000 entries of about
    // 530 bytes are about 1 MiB written, 210 KiB live.
    let journal = Arc::new(journal);
    let mut tasks = Vec::new();
    for task in 0..8 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            for n in (task..2000).step_by(8) {
                let big = JournalEntry {
                    body: Bytes::from(vec![b'x'; 400]),
                    ..entry(n)
                };
                let id = journal
                    .append(&big)
                    .await
                    .unwrap_or_else(|error| panic!("append {n}: {error} {:?}", journal.stats()));
                if n % 5 != 0 {
                    journal.finish(&id).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    journal.flush().await.unwrap();
    let stats = journal.stats();
    assert!(stats.compactions >= 2, "{stats:?}");
    assert!(stats.bytes <= 512 * 1024, "{stats:?}");
    assert_eq!(stats.pending, 400);
    drop(Arc::into_inner(journal).unwrap());
    let journal = FileJournal::open(dir.path()).unwrap();
    let again = journal.reclaim(LONG, usize::MAX).await.unwrap();
    assert_eq!(again.len(), 400);
    assert!(
        again
            .iter()
            .all(|r| r.entry.query.nonce[1..].parse::<u32>().unwrap() % 5 == 0)
    );
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_recorded_stays_and_is_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::open(dir.path()).unwrap();
    let id = journal.append(&entry(1)).await.unwrap();
    journal.inner.faults.fail_writes.store(1, Ordering::SeqCst);
    let error = journal
        .dead_letter(&id, &entry(1), "gave up")
        .await
        .unwrap_err();
    assert!(matches!(error, JournalError::Unavailable(_)), "{error}");
    assert_eq!(journal.pending().await.unwrap(), 1, "not lost");
    let again = journal.reclaim(Duration::ZERO, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    journal
        .dead_letter(&id, &again[0].entry, "gave up")
        .await
        .unwrap();
    assert_eq!(journal.pending().await.unwrap(), 0);
    drop(journal);
    let journal = FileJournal::open(dir.path()).unwrap();
    assert_eq!(journal.stats().pending, 0);
    // dead.log had the first one before the journal's record failed: listed twice.
    let letters = journal.dead_letters().unwrap();
    assert_eq!(letters.last().unwrap().entry.attempt, 2);
}
