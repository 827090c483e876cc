//! [`RedisJournal`]: the journal in a Redis stream, shared by every replica (feature `redis`).

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script, Value};

use super::entry::{EntryId, JournalEntry};
use super::error::JournalError;
use super::store::{BoxFuture, Journal, Reclaimed};

/// The default stream key.
const DEFAULT_PREFIX: &str = "tower-wechat:journal";
/// The default consumer group.
const DEFAULT_GROUP: &str = "tower-wechat";
/// Ids per `XCLAIM` script call in keep-alive (Lua's `unpack` has a stack limit).
const IDS_PER_CALL: usize = 1000;
/// How often one replica looks for such consumers.
const TIDY_EVERY: Duration = Duration::from_secs(600);

/// `XREADGROUP … >` for `consumer`, making the group first when it is missing (from the
/// start of the stream, so entries it never delivered are taken in, not stranded).
const READ_NEW: &str = r"
local function read_new(stream, group, consumer, count)
  local read = {'XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', stream, '>'}
  local found = redis.pcall(unpack(read))
  if type(found) == 'table' and found.err then
    if not string.find(found.err, 'NOGROUP', 1, true) then return found end
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
    found = redis.call(unpack(read))
  end
  return found
end
";

/// KEYS: stream. ARGV: group, consumer, max entries, encoded entry. The new id, or nil
/// when full.
const APPEND: &str = r"
local stream = KEYS[1]
if redis.call('XLEN', stream) >= tonumber(ARGV[3]) then
  return false
end
local id = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[4])
local read = read_new(stream, ARGV[1], ARGV[2], ARGV[3])
if type(read) == 'table' and read.err then return read end
return id
";

/// KEYS: stream. ARGV: group, id.
const FINISH: &str = r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
";

/// KEYS: stream. ARGV: group, consumer, ids… Resets the idle time of the ids this consumer
/// owns; returns how many it no longer owns.
const TOUCH: &str = r"
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
if redis.call('EXISTS', stream) == 0 then return #ARGV - 2 end
local claim = {'XCLAIM', stream, group, me, 0}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == me then claim[#claim + 1] = ARGV[i] end
end
local kept = #claim - 5
if kept > 0 then
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
return #ARGV - 2 - kept
";

/// KEYS: stream. ARGV: group, consumer, lease ms, cursor, max. Returns {cursor, {{id,
/// deliveries, entry or nil}…}, vanished}.
const RECLAIM: &str = r"
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local lease, cursor, max = ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('EXISTS', stream) == 0 then return {'0-0', {}, 0} end
local made = redis.pcall('XGROUP', 'CREATE', stream, group, '0')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP', 1, true) then
  return made
end
local out, vanished = {}, 0
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return false
end
for pass = 1, 2 do
  local started = cursor
  local found = redis.call('XAUTOCLAIM', stream, group, me, lease, cursor, 'COUNT', max - #out, 'JUSTID')
  cursor = found[1]
  for _, id in ipairs(found[2]) do
    local claimed = redis.call('XCLAIM', stream, group, me, 0, id)
    if claimed[1] then
      local pending = redis.call('XPENDING', stream, group, id, id, 1)
      out[#out + 1] = {id, pending[1][4], field(claimed[1][2], 'e')}
    else
      redis.call('XACK', stream, group, id)
      vanished = vanished + 1
    end
  end
  if found[3] then vanished = vanished + #found[3] end
  if #out >= max or started == '0-0' then break end
end
if #out < max then
  local fresh = read_new(stream, group, me, max - #out)
  if type(fresh) == 'table' and fresh.err then return fresh end
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do
      out[#out + 1] = {entry[1], 1, field(entry[2], 'e')}
    end
  end
end
return {cursor, out, vanished}
";

/// KEYS: stream, dead stream. ARGV: group, id, max dead letters, entry, reason. An entry
/// no longer in the stream (another replica finished it meanwhile) is not dead-lettered.
const DEAD_LETTER: &str = r"
if #redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2]) == 0 then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'id', ARGV[2], 'reason', ARGV[5], 'e', ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
";

/// KEYS: stream. ARGV: group, idle ms. Deletes the consumers that own no entry and were
/// idle that long; returns how many.
const TIDY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local gone = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info.pending == 0 and tonumber(info.idle) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info.name)
    gone = gone + 1
  end
end
return gone
";

/// A [`Journal`] in a Redis stream, shared by the replicas of a deployment: what a dead
/// replica left is run by a live one after the lease.
///
/// Needs Redis ≥ 6.2 and, for the journal to survive a crash of Redis, AOF persistence
/// (see [What it needs from Redis](#what-it-needs-from-redis)).
///
/// ```no_run
/// # async fn run() -> Result<(), tower_wechat::journal::JournalError> {
/// use std::time::Duration;
/// use tower_wechat::journal::{Handoff, RedisJournal};
///
/// // Within a tokio runtime; does not connect yet.
/// let journal = RedisJournal::open("redis://127.0.0.1:6379/")?
///     .prefix("myapp:journal")
///     .max_entries(50_000);
/// let handoff = Handoff::new(journal).lease(Duration::from_secs(30));
/// # let _ = handoff;
/// # Ok(())
/// # }
/// ```
///
/// # How it uses Redis
///
/// One stream holds the journal (key `tower-wechat:journal` by default, see
/// [`RedisJournal::prefix`]) with one consumer group (`tower-wechat`); each process is a
/// consumer of that group under a name of its own (host, pid and a random part).
///
/// - **append** is one Lua script: if the stream already holds
///   [`max_entries`](RedisJournal::max_entries) entries it refuses
///   ([`JournalError::Full`]: unfinished work is never trimmed), else
///   `XADD <stream> MAXLEN ~ <max> * e <entry>` and, in the same script,
///   `XREADGROUP GROUP <group> <consumer> STREAMS <stream> >`, so the new entry is in *this*
///   consumer's pending entries list (PEL) with one delivery before the append returns. If
///   the process dies, the entry stays there, idle, and any live replica claims it once it
///   has been idle for the lease. Redis allows `XREADGROUP` in a script when it does not
///   `BLOCK`; as every append goes through this script, `>` finds just the new entry (and
///   any entry added behind the journal's back, which this consumer then owns and which is
///   reclaimed after the lease). `MAXLEN ~` never trims anything here (the length was
///   checked first); it only backs the bound. The group is made by the same script when
///   it is missing, from the start of the stream, so an entry the group never delivered
///   (added by hand, or left when someone deleted the group) is taken in, not stranded.
/// - **finish** is `XACK` + `XDEL`: the stream only ever holds unfinished entries.
/// - **release** and **keep_alive** reset the entries' idle time with
///   `XCLAIM <stream> <group> <consumer> 0 <ids…> JUSTID`, for the entries this consumer
///   still owns (an entry another replica took over after a lapse is left to it). A
///   released entry is therefore retried one lease after its release; `JUSTID` does not
///   count a delivery.
/// - **reclaim** runs `XAUTOCLAIM <stream> <group> <consumer> <lease ms> <cursor> COUNT <max>
///   JUSTID` (the cursor is kept between calls, and a call that started mid-way goes round
///   once more from the start), then `XCLAIM` on each id — which counts the delivery and
///   returns the entry — and `XPENDING` on it for the delivery count, which becomes the
///   entry's [`attempt`](JournalEntry::attempt). The count lives in Redis's PEL, so it
///   survives restarts of the replicas and (with persistence) of Redis. An id whose entry
///   was deleted under the PEL is acknowledged away (counted in
///   [`RedisJournalStats::vanished`], with a WARN line); an entry that does not decode is
///   moved to the dead letters at once (counted in [`RedisJournalStats::unreadable`], with
///   an ERROR line). Entries the group never delivered are handed out too, as first
///   deliveries.
/// - **dead_letter** is one script: `XADD <stream>:dead MAXLEN ~ <max dead> * id <id>
///   reason <why> e <entry>`, then `XACK` + `XDEL` of the original (an entry no longer in
///   the stream — finished meanwhile by a replica that took it over — is only
///   acknowledged). Read them with [`RedisJournal::dead_letters`] or
///   `XREVRANGE <stream>:dead + - COUNT 10`.
/// - **pending** is `XLEN`.
///
/// A callback costs two script calls (append, finish), each one round trip, plus its share
/// of a keep-alive call every third of the lease for the entries running here; the recovery
/// worker's reclaim is one call per recovery interval.
///
/// Every script touches only the journal's own keys (the stream and its `:dead` stream).
///
/// # What it needs from Redis
///
/// - **Redis ≥ 6.2** (`XAUTOCLAIM`; tested on 6.2.14). One server, or a primary with
///   replicas; not Redis Cluster (the connection is not a cluster client, and the
///   dead-letter script touches two keys).
/// - **Persistence, for the journal to be durable.** Redis answers an append once the entry
///   is in its memory; what survives a crash *of Redis* is what it had written to disk.
///   With `appendonly yes` and `appendfsync always`, every append (and every delivery
///   count) is fsync'd before Redis answers: nothing acknowledged is lost, even if the
///   machine loses power. With the common `appendfsync everysec`, a crash of the machine
///   (or of Redis while the disk lags) loses up to about the last second of appends —
///   callbacks already acknowledged to WeChat. With RDB snapshots only, everything since
///   the last snapshot; with no persistence, a restart of Redis loses the journal. A crash
///   of *the replicas* loses nothing in any of these modes.
/// - With replication, a failover can lose what the old primary had not yet sent to its
///   replicas, as for any Redis data (`WAIT` is not used).
///
/// # The lease
///
/// The hand-off's [lease](super::Handoff::lease) (default 30 s) is how long an entry may go
/// without a sign of life before another replica runs it again. The process running an
/// entry keeps it alive every third of the lease (`XCLAIM … JUSTID`), so a live replica
/// loses an entry only if it cannot reach Redis for a whole lease; a dead one's entries are
/// run again by a live replica between one lease and one lease + the recovery interval
/// after its last keep-alive. A replica that comes back after losing an entry that way runs
/// it a second time; the dedup store is what keeps that from being seen twice.
///
/// # Memory
///
/// The stream holds only unfinished entries, at most [`max_entries`](RedisJournal::max_entries)
/// (10 000 by default). An entry is its encoded [`JournalEntry`] — the verified body (at most
/// the [`VerifyLayer`](crate::VerifyLayer)'s body limit, 64 KiB by default, and ~0.5–2 KiB
/// for a typical message) plus a few hundred bytes of path, query facts and keys — plus
/// Redis's stream and PEL overhead (~100 B). So the stream uses at most about
/// `max_entries × (body limit + 1 KiB)` (≈ 650 MiB at the defaults, all bodies maximal;
/// ≈ 20 MiB for typical messages). The dead-letter stream keeps about the last
/// [`max_dead_letters`](RedisJournal::max_dead_letters) (1 000 by default; `MAXLEN ~` trims
/// whole radix-tree nodes, so up to ~100 more), older ones are trimmed: at most about
/// `max_dead_letters × (body limit + 1 KiB)`. Consumers (one per process start, ~100 B each)
/// that own no entry and were idle for an hour
/// ([`consumer_idle_limit`](RedisJournal::consumer_idle_limit)) are deleted from the group
/// (each replica looks at most every 10 minutes, when it reclaims), so restarts do not pile
/// them up.
///
/// # Failures
///
/// The connection is made on first use and remade after failures
/// ([`redis::aio::ConnectionManager`]), with a 1 s connect and response timeout, like the
/// dedup store's: [`RedisJournal::open`] does not connect, and an unreachable server is
/// reported by the first operation. The hand-off bounds every operation again by its
/// [operation timeout](super::Handoff::operation_timeout). Errors are
/// [`JournalError::Timeout`] or [`JournalError::Unavailable`] with Redis's reason, which
/// names the command and the server's reply but never the URL (nor its password) nor an
/// entry's content. An append whose answer is lost after Redis ran it leaves an entry the
/// caller was told failed: it is run after the lease (at least once, never lost); the dedup
/// store keeps that second delivery from running twice.
pub struct RedisJournal {
    connection: ConnectionManager,
    stream: String,
    dead: String,
    group: String,
    consumer: String,
    max_entries: u64,
    max_dead_letters: u64,
    consumer_idle_limit: Duration,
    /// Where the next `XAUTOCLAIM` starts.
    cursor: Mutex<String>,
    /// When this replica last looked for idle consumers.
    tidied: Mutex<Option<Instant>>,
    scripts: Scripts,
    unreadable: AtomicU64,
    vanished: AtomicU64,
    taken_over: AtomicU64,
}

struct Scripts {
    append: Script,
    finish: Script,
    touch: Script,
    reclaim: Script,
    dead_letter: Script,
    tidy: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            append: Script::new(&format!("{READ_NEW}{APPEND}")),
            finish: Script::new(FINISH),
            touch: Script::new(TOUCH),
            reclaim: Script::new(&format!("{READ_NEW}{RECLAIM}")),
            dead_letter: Script::new(DEAD_LETTER),
            tidy: Script::new(TIDY),
        }
    }
}

/// Counters of a [`RedisJournal`] (since it was made), for what only the journal sees.
///
/// ```
/// use tower_wechat::journal::RedisJournalStats;
///
/// let stats = RedisJournalStats::default();
/// assert_eq!(stats.unreadable + stats.vanished + stats.taken_over, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisJournalStats {
    /// Entries that did not decode when reclaimed, moved to the dead letters.
    pub unreadable: u64,
    /// Ids left in the group's pending list whose entry was deleted from the stream by
    /// someone else (acknowledged away when found).
    pub vanished: u64,
    /// Entries this process was keeping alive that another replica had taken over (it
    /// could not reach Redis for a lease): the other replica runs them too.
    pub taken_over: u64,
}

/// One entry of the dead-letter stream, as [`RedisJournal::dead_letters`] reads it.
///
/// ```
/// # fn show(letter: tower_wechat::journal::RedisDeadLetter) {
/// println!("{} (was {}): {}", letter.id, letter.original, letter.reason);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisDeadLetter {
    /// Its id in the dead-letter stream (when it was dead-lettered, in Unix ms, first).
    pub id: EntryId,
    /// Its id in the journal before.
    pub original: EntryId,
    /// Why it was given up.
    pub reason: String,
    /// The callback; `None` when the stored bytes do not decode (the reason says so).
    pub entry: Option<JournalEntry>,
}

impl RedisJournal {
    /// The default bound on the entries in the stream: 10 000.
    pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
    /// The default number of dead letters kept: 1 000.
    pub const DEFAULT_MAX_DEAD_LETTERS: u64 = 1_000;
    /// The default time after which a consumer that owns no entry is forgotten: 1 hour.
    pub const DEFAULT_CONSUMER_IDLE_LIMIT: Duration = Duration::from_secs(3600);

    /// A journal on the server at `url` (`redis://[:password@]host:port/db`, or `rediss://`
    /// when the `redis` crate has TLS enabled). Must be called within a tokio runtime; does
    /// not connect until first used, so an unreachable server is reported by the first
    /// operation (as [`JournalError::Unavailable`] or [`JournalError::Timeout`]), not here.
    /// A URL that does not parse is refused here; the error does not repeat it.
    ///
    /// ```
    /// use tower_wechat::journal::RedisJournal;
    ///
    /// let error = RedisJournal::open("redis://:secret@[bad").unwrap_err();
    /// assert!(!error.to_string().contains("secret"));
    /// ```
    pub fn open(url: &str) -> Result<Self, JournalError> {
        let client = redis::Client::open(url).map_err(failed)?;
        Self::new(client)
    }

    /// A journal on `client`'s server (see [`open`](Self::open)).
    ///
    /// ```no_run
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_wechat::journal::RedisJournal;
    ///
    /// let client = redis::Client::open("redis://127.0.0.1/")?;
    /// let journal = RedisJournal::new(client)?;
    /// # let _ = journal;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(client: redis::Client) -> Result<Self, JournalError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let connection = client.get_connection_manager_lazy(config).map_err(failed)?;
        Ok(Self {
            connection,
            stream: DEFAULT_PREFIX.to_owned(),
            dead: format!("{DEFAULT_PREFIX}:dead"),
            group: DEFAULT_GROUP.to_owned(),
            consumer: default_consumer(),
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            max_dead_letters: Self::DEFAULT_MAX_DEAD_LETTERS,
            consumer_idle_limit: Self::DEFAULT_CONSUMER_IDLE_LIMIT,
            cursor: Mutex::new("0-0".to_owned()),
            tidied: Mutex::new(None),
            scripts: Scripts::new(),
            unreadable: AtomicU64::new(0),
            vanished: AtomicU64::new(0),
            taken_over: AtomicU64::new(0),
        })
    }

    /// The stream's key (default `tower-wechat:journal`); the dead letters are in
    /// `{prefix}:dead`. Every replica of a deployment uses the same one; deployments sharing
    /// a Redis use different ones.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), tower_wechat::journal::JournalError> {
    /// let journal = tower_wechat::journal::RedisJournal::open("redis://127.0.0.1/")?
    ///     .prefix("shop-bot:journal");
    /// # let _ = journal; Ok(())
    /// # }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream = prefix.into();
        self.dead = format!("{}:dead", self.stream);
        self
    }

    /// The consumer group's name (default `tower-wechat`). Every replica uses the same one.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), tower_wechat::journal::JournalError> {
    /// let journal = tower_wechat::journal::RedisJournal::open("redis://127.0.0.1/")?
    ///     .group("workers");
    /// # let _ = journal; Ok(())
    /// # }
    /// ```
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// This process's consumer name in the group (default: host name, pid and a random
    /// part, e.g. `web-1-4242-9f3a1c2e`). It must differ between processes that run at the
    /// same time; a process that restarts under the same name simply owns its old entries
    /// again (they are still reclaimed after the lease).
    ///
    /// ```no_run
    /// # fn run() -> Result<(), tower_wechat::journal::JournalError> {
    /// let journal = tower_wechat::journal::RedisJournal::open("redis://127.0.0.1/")?
    ///     .consumer("replica-a");
    /// assert_eq!(journal.consumer_name(), "replica-a");
    /// # Ok(())
    /// # }
    /// ```
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// At most this many entries in the stream (default
    /// [`DEFAULT_MAX_ENTRIES`](Self::DEFAULT_MAX_ENTRIES)); an append beyond it fails with
    /// [`JournalError::Full`]. See [Memory](RedisJournal#memory) for what it means in bytes.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), tower_wechat::journal::JournalError> {
    /// let journal = tower_wechat::journal::RedisJournal::open("redis://127.0.0.1/")?
    ///     .max_entries(50_000);
    /// # let _ = journal; Ok(())
    /// # }
    /// ```
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries.clamp(1, i64::MAX as u64);
        self
    }

    /// About how many dead letters are kept (default
    /// [`DEFAULT_MAX_DEAD_LETTERS`](Self::DEFAULT_MAX_DEAD_LETTERS)); older ones are
    /// trimmed.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), tower_wechat::journal::JournalError> {
    /// let journal = tower_wechat::journal::RedisJournal::open("redis://127.0.0.1/")?
    ///     .max_dead_letters(10_000);
    /// # let _ = journal; Ok(())
    /// # }
    /// ```
    pub fn max_dead_letters(mut self, letters: u64) -> Self {
        self.max_dead_letters = letters.clamp(1, i64::MAX as u64);
        self
    }

    /// How long a consumer of the group that owns no entry may go unseen before a
    /// replica deletes it from the group (default
    /// [`DEFAULT_CONSUMER_IDLE_LIMIT`](Self::DEFAULT_CONSUMER_IDLE_LIMIT)), so that the
    /// consumers of processes that are gone do not pile up. Deleting one that is in fact
    /// alive costs nothing: it owns no entry, and Redis makes it again on its next append.
    /// Each replica looks at most every 10 minutes, from its recovery worker.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), tower_wechat::journal::JournalError> {
    /// use std::time::Duration;
    ///
    /// let journal = tower_wechat::journal::RedisJournal::open("redis://127.0.0.1/")?
    ///     .consumer_idle_limit(Duration::from_secs(24 * 3600));
    /// # let _ = journal; Ok(())
    /// # }
    /// ```
    pub fn consumer_idle_limit(mut self, limit: Duration) -> Self {
        self.consumer_idle_limit = limit;
        self
    }

    /// This process's consumer name.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), tower_wechat::journal::JournalError> {
    /// let journal = tower_wechat::journal::RedisJournal::open("redis://127.0.0.1/")?;
    /// assert!(!journal.consumer_name().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// The journal's own counters (those of the hand-off are in
    /// [`JournalStats`](super::JournalStats)).
    ///
    /// ```no_run
    /// # fn run() -> Result<(), tower_wechat::journal::JournalError> {
    /// let journal = tower_wechat::journal::RedisJournal::open("redis://127.0.0.1/")?;
    /// assert_eq!(journal.stats().unreadable, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> RedisJournalStats {
        RedisJournalStats {
            unreadable: self.unreadable.load(Ordering::Relaxed),
            vanished: self.vanished.load(Ordering::Relaxed),
            taken_over: self.taken_over.load(Ordering::Relaxed),
        }
    }

    /// The last `max` dead letters, newest first (`XREVRANGE {prefix}:dead + - COUNT max`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_wechat::journal::JournalError> {
    /// let journal = tower_wechat::journal::RedisJournal::open("redis://127.0.0.1/")?;
    /// for letter in journal.dead_letters(10).await? {
    ///     println!("{}: {}", letter.original, letter.reason);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<RedisDeadLetter>, JournalError> {
        let mut connection = self.connection.clone();
        let found: Value = redis::cmd("XREVRANGE")
            .arg(&self.dead)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(max.max(1))
            .query_async(&mut connection)
            .await
            .map_err(failed)?;
        let Value::Array(entries) = found else {
            return Err(JournalError::Corrupt);
        };
        entries
            .iter()
            .map(|entry| {
                let [id, Value::Array(fields)] = array(entry)? else {
                    return Err(JournalError::Corrupt);
                };
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|pair| bytes(&pair[0]) == Some(name.as_bytes()))
                        .and_then(|pair| pair.get(1))
                        .and_then(bytes)
                };
                let text = |name: &str| {
                    field(name).map(|value| String::from_utf8_lossy(value).into_owned())
                };
                Ok(RedisDeadLetter {
                    id: EntryId::new(text_of(id)?),
                    original: EntryId::new(text("id").unwrap_or_default()),
                    reason: text("reason").unwrap_or_default(),
                    entry: field("e").and_then(|entry| JournalEntry::decode(entry).ok()),
                })
            })
            .collect()
    }

    async fn append_entry(&self, entry: &JournalEntry) -> Result<EntryId, JournalError> {
        let mut connection = self.connection.clone();
        let id: Option<String> = self
            .scripts
            .append
            .key(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.max_entries)
            .arg(entry.encode())
            .invoke_async(&mut connection)
            .await
            .map_err(failed)?;
        id.map(EntryId::new).ok_or(JournalError::Full)
    }

    async fn finish_entry(&self, id: &EntryId) -> Result<(), JournalError> {
        let mut connection = self.connection.clone();
        let _: i64 = self
            .scripts
            .finish
            .key(&self.stream)
            .arg(&self.group)
            .arg(id.as_str())
            .invoke_async(&mut connection)
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Resets the idle time of the ids this consumer owns.
    async fn touch(&self, ids: &[EntryId]) -> Result<(), JournalError> {
        for chunk in ids.chunks(IDS_PER_CALL) {
            let mut invocation = self.scripts.touch.prepare_invoke();
            invocation
                .key(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer);
            for id in chunk {
                invocation.arg(id.as_str());
            }
            let mut connection = self.connection.clone();
            let lost: u64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            if lost > 0 {
                self.taken_over.fetch_add(lost, Ordering::Relaxed);
                tracing::warn!(
                    entries = lost,
                    "journal: entries running here were taken over by another replica (this one could not reach Redis for a lease); both run them"
                );
            }
        }
        Ok(())
    }

    async fn reclaim_entries(
        &self,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Reclaimed>, JournalError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.tidy_now_and_then().await;
        let cursor = self.lock_cursor().clone();
        let mut connection = self.connection.clone();
        let found: Value = self
            .scripts
            .reclaim
            .key(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .arg(&cursor)
            .arg(max)
            .invoke_async(&mut connection)
            .await
            .map_err(failed)?;
        let [next, Value::Array(entries), Value::Int(vanished)] = array(&found)? else {
            return Err(JournalError::Corrupt);
        };
        *self.lock_cursor() = text_of(next)?;
        if *vanished > 0 {
            self.vanished
                .fetch_add(u64::try_from(*vanished).unwrap_or(0), Ordering::Relaxed);
            tracing::warn!(
                entries = vanished,
                "journal: pending entries had been deleted from the stream by someone else; acknowledged them away"
            );
        }
        let mut reclaimed = Vec::with_capacity(entries.len());
        for found in entries {
            let [id, Value::Int(deliveries), stored] = array(found)? else {
                return Err(JournalError::Corrupt);
            };
            let id = EntryId::new(text_of(id)?);
            match bytes(stored).map(JournalEntry::decode) {
                Some(Ok(mut entry)) => {
                    entry.attempt = u32::try_from(*deliveries).unwrap_or(u32::MAX).max(1);
                    reclaimed.push(Reclaimed::new(id, entry));
                }
                _ => {
                    let stored = bytes(stored).unwrap_or_default();
                    match self
                        .move_to_dead_letters(&id, stored, "unreadable entry")
                        .await
                    {
                        Ok(()) => {
                            self.unreadable.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(
                                entry = %id,
                                bytes = stored.len(),
                                "journal: an entry in the stream does not decode; moved it to the dead letters"
                            );
                        }
                        // It stays in this consumer's pending list: found again after the lease.
                        Err(error) => tracing::error!(
                            entry = %id,
                            %error,
                            "journal: an entry in the stream does not decode, and could not be moved to the dead letters"
                        ),
                    }
                }
            }
        }
        Ok(reclaimed)
    }

    async fn move_to_dead_letters(
        &self,
        id: &EntryId,
        stored: &[u8],
        reason: &str,
    ) -> Result<(), JournalError> {
        let mut connection = self.connection.clone();
        let _: i64 = self
            .scripts
            .dead_letter
            .key(&self.stream)
            .key(&self.dead)
            .arg(&self.group)
            .arg(id.as_str())
            .arg(self.max_dead_letters)
            .arg(stored)
            .arg(reason)
            .invoke_async(&mut connection)
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Deletes idle consumers that own nothing, at most every [`TIDY_EVERY`]; a failure is
    /// only logged (it is housekeeping).
    async fn tidy_now_and_then(&self) {
        {
            let mut tidied = self.tidied.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if tidied.is_some_and(|at| now.duration_since(at) < TIDY_EVERY) {
                return;
            }
            *tidied = Some(now);
        }
        let mut connection = self.connection.clone();
        let gone: Result<u64, _> = self
            .scripts
            .tidy
            .key(&self.stream)
            .arg(&self.group)
            .arg(u64::try_from(self.consumer_idle_limit.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut connection)
            .await;
        match gone {
            Ok(0) => {}
            Ok(gone) => {
                tracing::debug!(
                    consumers = gone,
                    "journal: deleted idle consumers that owned no entry"
                );
            }
            Err(error) => tracing::debug!(%error, "journal: could not look for idle consumers"),
        }
    }

    fn lock_cursor(&self) -> std::sync::MutexGuard<'_, String> {
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for RedisJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisJournal")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("max_entries", &self.max_entries)
            .field("max_dead_letters", &self.max_dead_letters)
            .finish_non_exhaustive()
    }
}

impl Journal for RedisJournal {
    fn append<'a>(
        &'a self,
        entry: &'a JournalEntry,
    ) -> BoxFuture<'a, Result<EntryId, JournalError>> {
        Box::pin(self.append_entry(entry))
    }

    fn finish<'a>(&'a self, id: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(self.finish_entry(id))
    }

    fn release<'a>(&'a self, id: &'a EntryId) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(self.touch(std::slice::from_ref(id)))
    }

    fn reclaim(
        &self,
        lease: Duration,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Reclaimed>, JournalError>> {
        Box::pin(self.reclaim_entries(lease, max))
    }

    fn keep_alive<'a>(&'a self, ids: &'a [EntryId]) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(self.touch(ids))
    }

    fn dead_letter<'a>(
        &'a self,
        id: &'a EntryId,
        entry: &'a JournalEntry,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move { self.move_to_dead_letters(id, &entry.encode(), reason).await })
    }

    fn pending(&self) -> BoxFuture<'_, Result<u64, JournalError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            connection.xlen(&self.stream).await.map_err(failed)
        })
    }
}

/// A Redis error as a journal error. Redis errors name the command and the server's reply,
/// never the URL nor a value we sent.
fn failed(error: redis::RedisError) -> JournalError {
    if error.is_timeout() {
        JournalError::Timeout
    } else {
        JournalError::Unavailable(error.to_string())
    }
}

fn array<const N: usize>(value: &Value) -> Result<&[Value; N], JournalError> {
    match value {
        Value::Array(items) => items
            .as_slice()
            .try_into()
            .map_err(|_| JournalError::Corrupt),
        _ => Err(JournalError::Corrupt),
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn text_of(value: &Value) -> Result<String, JournalError> {
    bytes(value)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .map(str::to_owned)
        .ok_or(JournalError::Corrupt)
}

/// `{host}-{pid}-{random}`, the host name cut to 64 safe characters.
fn default_consumer() -> String {
    use std::hash::{BuildHasher, RandomState};
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    let host = if host.is_empty() { "host".into() } else { host };
    let random = RandomState::new().hash_one(std::time::SystemTime::now()) as u32;
    format!("{host}-{}-{random:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_differ_between_journals_and_name_the_process() {
        let (a, b) = (default_consumer(), default_consumer());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_without_repeating_it() {
        for url in ["redis://:hunter2@[::1", "nope://:hunter2@host/"] {
            let error = RedisJournal::open(url).unwrap_err();
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
    }

    #[tokio::test]
    async fn debug_shows_the_keys_not_the_url() {
        let journal = RedisJournal::open("redis://:hunter2@127.0.0.1:1/")
            .unwrap()
            .prefix("p");
        let shown = format!("{journal:?}");
        assert!(
            shown.contains("\"p\"") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn replies_of_the_wrong_shape_are_corrupt_not_a_panic() {
        assert!(array::<3>(&Value::Nil).is_err());
        assert!(array::<3>(&Value::Array(vec![Value::Nil])).is_err());
        assert!(text_of(&Value::Int(1)).is_err());
        assert!(text_of(&Value::BulkString(vec![0xff])).is_err());
    }
}
