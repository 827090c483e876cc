//! The file journal against real processes and real file systems: a child process appending
//! a burst is killed with SIGKILL and the journal must hold every entry it acknowledged; a
//! small tmpfs fills up, and is remounted read-only (those need root to mount: ignored,
//! run by `scripts/test`, which CI runs as root).

#![cfg(unix)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tower_wechat::journal::{FileJournal, Journal, JournalEntry, JournalError};
use tower_wechat::message::CallbackQuery;

const LONG: Duration = Duration::from_secs(3600);
/// Set in the child process: the journal directory and the round.
const CHILD: &str = "TOWER_WECHAT_FILE_JOURNAL_CHILD";

/// One test at a time: a child process forked by one test holds copies of the parent's
/// descriptors until it execs, so a journal another test drops and reopens in that window
/// would still be locked (by the same lock, through the copy).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reopen(dir: &Path) -> FileJournal {
    FileJournal::open(dir).unwrap_or_else(|error| panic!("reopen: {error}"))
}

fn entry(nonce: &str, body_len: usize) -> JournalEntry {
    JournalEntry {
        path: "/wechat".into(),
        query: CallbackQuery {
            timestamp: 1_700_000_000,
            nonce: nonce.into(),
            openid: Some("oUser1234".into()),
            encrypted: false,
            redelivered: false,
        },
        body: Bytes::from(vec![b'x'; body_len]),
        key: Some(format!("gh_1:msg:{nonce}")),
        arrival_unix_ms: 1_700_000_000_000,
        attempt: 1,
        trace_context: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The child: appends from 16 tasks until it is killed, printing `acked <nonce>` once each
/// append returned; it finishes 8 entries in 10 (`finishing <nonce>` before `finish` is
/// called, `finished <nonce>` once it returned), releases one and leaves one running, in
/// small segments compacted at any age
/// and a small budget (compactions under pressure), so that rotation, deletion and
/// compaction run during the burst (`stats <compactions>
/// <deleted segments>` every 20 ms).
fn child(spec: &str) -> ! {
    let (dir, round) = spec.split_once('|').unwrap();
    let journal = Arc::new(
        FileJournal::options()
            .budget(2 * 1024 * 1024)
            .segment_size(64 * 1024)
            .compact_after(Duration::ZERO)
            .open(dir)
            .unwrap(),
    );
    runtime().block_on(async move {
        let mut tasks = Vec::new();
        for task in 0..16 {
            let journal = journal.clone();
            let round = round.to_owned();
            tasks.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let nonce = format!("r{round}-t{task}-{n}");
                    let id = journal.append(&entry(&nonce, 300)).await.unwrap();
                    println!("acked {nonce}");
                    match n % 10 {
                        0 => journal.release(&id).await.unwrap(),
                        5 => {} // still running when the process dies
                        _ => {
                            // Said before the call: a finish the journal made durable
                            // just before the kill may never be reported back.
                            println!("finishing {nonce}");
                            journal.finish(&id).await.unwrap();
                            println!("finished {nonce}");
                        }
                    }
                }
            }));
        }
        let monitor = journal.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let stats = monitor.stats();
                println!("stats {} {}", stats.compactions, stats.deleted_segments);
            }
        });
        for task in tasks {
            task.await.unwrap();
        }
    });
    unreachable!("appends until killed")
}

#[test]
fn kill_9_in_a_burst_loses_no_acknowledged_entry() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
    }
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let (mut child_compactions, mut child_deletions) = (0u64, 0u64);
    for (round, kill_after) in [(1, 200), (2, 2_000), (3, 6_000)] {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "kill_9_in_a_burst_loses_no_acknowledged_entry",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, format!("{}|{round}", dir.path().display()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let mut acked = HashSet::new();
        let mut finished = HashSet::new();
        // Entries whose handler ended and whose finish was called: each may be in the
        // journal or not after the kill (the finish may have reached the disk without its
        // answer reaching the child's stdout). Every other acknowledged entry must be found.
        let mut finishing = HashSet::new();
        let started = Instant::now();
        while acked.len() < kill_after {
            let line = lines.next().expect("the child stopped").unwrap();
            if let Some(stats) = line.strip_prefix("stats ") {
                let (compactions, deleted) = stats.split_once(' ').unwrap();
                child_compactions = child_compactions.max(compactions.parse().unwrap());
                child_deletions = child_deletions.max(deleted.parse().unwrap());
            } else if let Some(nonce) = line.strip_prefix("acked ") {
                acked.insert(nonce.to_owned());
                if acked.len() == 1 {
                    // Another process holds the directory: refused, by name.
                    let error = FileJournal::open(dir.path()).unwrap_err().to_string();
                    assert!(error.contains("in use"), "{error}");
                    assert!(error.contains(&process.id().to_string()), "{error}");
                }
            } else if let Some(nonce) = line.strip_prefix("finishing ") {
                finishing.insert(nonce.to_owned());
            } else if let Some(nonce) = line.strip_prefix("finished ") {
                finished.insert(nonce.to_owned());
            }
            assert!(started.elapsed() < Duration::from_secs(120), "too slow");
        }
        process.kill().unwrap(); // SIGKILL, in the middle of the burst
        process.wait().unwrap();
        // Lines the child printed before it died count too: each was acknowledged.
        for line in lines {
            let line = line.unwrap();
            if let Some(nonce) = line.strip_prefix("acked ") {
                acked.insert(nonce.to_owned());
            } else if let Some(nonce) = line.strip_prefix("finishing ") {
                finishing.insert(nonce.to_owned());
            } else if let Some(nonce) = line.strip_prefix("finished ") {
                finished.insert(nonce.to_owned());
            }
        }
        assert!(
            finished.is_subset(&finishing),
            "a finish reported before it was called"
        );

        let journal = reopen(dir.path());
        let pending = journal.stats().pending;
        let reclaimed = runtime.block_on(journal.reclaim(LONG, usize::MAX)).unwrap();
        assert_eq!(reclaimed.len() as u64, pending);
        let mut found: HashMap<String, usize> = HashMap::new();
        for entry in &reclaimed {
            assert_eq!(entry.entry.body.len(), 300);
            *found.entry(entry.entry.query.nonce.clone()).or_default() += 1;
        }
        let twice: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "round {round}: entries twice: {twice:?}");
        let lost: Vec<_> = acked
            .iter()
            .filter(|nonce| !finishing.contains(*nonce) && !found.contains_key(*nonce))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged entries lost, e.g. {:?}",
            lost.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        );
        assert!(
            found
                .keys()
                .all(|nonce| nonce.starts_with(&format!("r{round}-"))),
            "an earlier round's entry came back"
        );
        let stats = journal.stats();
        assert_eq!(stats.corrupt_records, 0, "round {round}: {stats:?}");
        eprintln!(
            "round {round}: {} acked ({} finished) before SIGKILL, {} found again, {} segments; \
             the children compacted {child_compactions} and deleted {child_deletions} segments so far",
            acked.len(),
            finished.len(),
            reclaimed.len(),
            stats.segments
        );
        // This round's entries are done: the next round starts from an empty journal.
        runtime.block_on(async {
            for entry in &reclaimed {
                journal.finish(&entry.id).await.unwrap();
            }
            journal.flush().await.unwrap();
        });
    }
    // The kills came while segments were being compacted and deleted.
    assert!(
        child_compactions > 0 && child_deletions > 0,
        "{child_compactions} compactions, {child_deletions} deletions in the children"
    );
}

/// A tmpfs of `size` mounted on a fresh directory; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs: this test needs root"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
#[ignore = "needs root to mount a tmpfs: run scripts/test (CI runs as root)"]
fn a_full_disk_fails_appends_unavailable_and_the_journal_works_again_when_space_returns() {
    let _serial = one_at_a_time();
    let fs = Tmpfs::mount("2m");
    let dir: PathBuf = fs.path().join("journal");
    std::fs::create_dir(&dir).unwrap();
    // Room to give back later.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; 512 * 1024]).unwrap();
    let runtime = runtime();
    let journal = FileJournal::open(&dir).unwrap();
    let mut acked = Vec::new();
    let error = runtime.block_on(async {
        loop {
            let nonce = format!("n{}", acked.len());
            match journal.append(&entry(&nonce, 8 * 1024)).await {
                Ok(id) => acked.push((id, nonce)),
                Err(error) => break error,
            }
            assert!(acked.len() < 1000, "the disk never filled");
        }
    });
    // Not `Full`: the budget (1 GiB) is far; the disk is what failed.
    assert!(
        matches!(&error, JournalError::Unavailable(why) if why.contains("No space left")),
        "{error}"
    );
    assert!(journal.stats().write_errors >= 1);
    assert_eq!(
        journal.stats().pending,
        acked.len() as u64,
        "the failed append is not kept"
    );

    std::fs::remove_file(&filler).unwrap();
    let id = runtime
        .block_on(journal.append(&entry("after", 8 * 1024)))
        .expect("works again once there is space");
    acked.push((id, "after".into()));
    drop(journal);

    let journal = reopen(&dir);
    let reclaimed = runtime.block_on(journal.reclaim(LONG, usize::MAX)).unwrap();
    let found: HashSet<_> = reclaimed
        .iter()
        .map(|r| r.entry.query.nonce.clone())
        .collect();
    assert_eq!(found.len(), acked.len());
    assert!(
        acked.iter().all(|(_, nonce)| found.contains(nonce)),
        "an acknowledged entry was lost"
    );
    assert_eq!(journal.stats().corrupt_records, 0);
}

#[test]
#[ignore = "needs root to mount a tmpfs: run scripts/test (CI runs as root)"]
fn a_read_only_journal_path_fails_open_clearly_and_loses_nothing() {
    let _serial = one_at_a_time();
    // (A live switch to read-only cannot be made: Linux refuses to remount a file system
    // read-only while files on it are open for writing. The full-disk test covers writes
    // failing under an open journal.)
    let fs = Tmpfs::mount("4m");
    let runtime = runtime();
    let journal = FileJournal::open(fs.path()).unwrap();
    let kept = runtime
        .block_on(journal.append(&entry("kept", 100)))
        .unwrap();
    drop(journal);

    fs.remount("ro");
    let error = FileJournal::open(fs.path()).unwrap_err().to_string();
    assert!(
        error.contains("not writable") && error.contains(&*fs.path().to_string_lossy()),
        "{error}"
    );
    fs.remount("rw");
    let journal = reopen(fs.path());
    let reclaimed = runtime.block_on(journal.reclaim(LONG, usize::MAX)).unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(
        (&reclaimed[0].id, reclaimed[0].entry.query.nonce.as_str()),
        (&kept, "kept")
    );
}
