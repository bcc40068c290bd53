//! SQLite storage: accounts, devices and their Spotify ids, presence, and events (outbox).
//!
//! The store owns the connection. `open` creates the directory, sets WAL (readers such as
//! `spotguard devices` never block the daemon), a busy timeout and foreign keys, and runs the
//! numbered migrations embedded below in one transaction, keyed on `PRAGMA user_version`.
//! One poll is one transaction ([`Store::poll`]): what is known is read, the pure rules
//! plan, and devices, ids, presence and events land together or not at all. rusqlite blocks; the daemon calls in from `spawn_blocking`.
//! Storage grows with devices and events, never with the number of polls: a device keeps its
//! [`MAX_ALIASES`] newest Spotify ids, and at most `audit::MAX_RENAMES_PER_DAY` rename events
//! a day (names themselves are bounded where they are read, `spotify::model`).
//! A poll that left out devices it could not read ([`Plan::skipped`]) is no evidence that an
//! unseen device went offline: its presence interval is continued when it is seen again.
//! Each record's identity strength (`identity::classify`, needing sha1/md5 of its name, so
//! computed here in Rust) is stored: for every seen device at each poll, and at open for rows
//! that have none yet.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::audit::{DeviceKey, Known, KnownDevice, LIMIT_WINDOW_DAYS, Plan, SignOutOutcome, Target};
use crate::event::{Event, TrustedBy};
use crate::identity::{IdSpan, Strength};

/// The migrations, in order; the schema version is the count applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_init.sql"),
    include_str!("migrations/002_logins.sql"),
    include_str!("migrations/003_retry_at.sql"),
    include_str!("migrations/004_mute.sql"),
    include_str!("migrations/005_signout.sql"),
    include_str!("migrations/006_never_silent.sql"),
    include_str!("migrations/007_full_poll.sql"),
    include_str!("migrations/008_lost_login.sql"),
    include_str!("migrations/009_identity.sql"),
    include_str!("migrations/010_channels.sql"),
];

/// The Spotify ids kept per device (its aliases), newest first. Ids rotate (daily for some
/// clients, per tab for the web player); an older one is unlikely to come back, and one that
/// does is matched by name and type again.
pub const MAX_ALIASES: i64 = 20;

/// How long a writer waits for another's lock before failing: a CLI command writing while the
/// daemon commits a poll waits a moment rather than erroring.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A storage failure, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "cannot open the database {path}: its disk is full ({} free); free some space and spotguard can start",
        human_bytes(*free)
    )]
    DiskFull { path: PathBuf, free: u64 },
    #[error("cannot create the directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error(
        "the database {path} was written by a newer spotguard (schema {found}, this one knows {known}); upgrade spotguard"
    )]
    TooNew { path: PathBuf, found: u32, known: u32 },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored event {id} cannot be read ({reason})")]
    BadEvent { id: i64, reason: String },
    #[error("a database task stopped unexpectedly: {0}")]
    Task(String),
}

/// Below this much room a failing open is put down to a full disk.
const FULL_BELOW: u64 = 1024 * 1024;

/// The room left for an unprivileged writer on the file system that holds (or would hold)
/// `path`: the nearest existing ancestor is asked.
fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.ancestors().skip(1).find(|d| d.exists())?;
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

impl StoreError {
    /// Whether this is the file refusing writes (full, read-only, failing), as opposed to a
    /// busy lock or a bad query: reads may still work.
    pub fn is_write_failure(&self) -> bool {
        let code = match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _))
            | StoreError::Open { source: rusqlite::Error::SqliteFailure(e, _), .. } => e.code,
            StoreError::DiskFull { .. } => return true,
            _ => return false,
        };
        matches!(
            code,
            rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::CannotOpen
        )
    }
}

/// The store's id of an account.
pub type AccountId = i64;

/// The SQLite database of one installation.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The longest gap between two successful polls that still counts as "online all along"
    /// for a device seen at both ends (see [`Store::set_presence_bridge`]).
    bridge: Duration,
}

/// The presence bridge until the daemon sets one from its schedule.
pub const DEFAULT_PRESENCE_BRIDGE: Duration = Duration::from_secs(10 * 60);

/// The store shared by the daemon's tasks. rusqlite blocks, so every call runs on the
/// blocking pool; the mutex serialises them (one connection, short transactions).
#[derive(Debug, Clone)]
pub struct SharedStore(Arc<Mutex<Store>>);

impl SharedStore {
    pub fn new(store: Store) -> SharedStore {
        SharedStore(Arc::new(Mutex::new(store)))
    }

    /// Runs `f` with the store off the async threads.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves SQLite consistent (transactions roll
            // back on drop), so a poisoned lock is safe to use.
            let mut store = inner.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut store)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// A device as listed to the person.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceRow {
    /// The store's key: stable, unlike Spotify's id.
    pub key: DeviceKey,
    /// The Spotify id seen most recently, if any.
    pub id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub trusted: bool,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Seen in the account's latest successful poll.
    pub online: bool,
    /// Muted until then (far future: until unmuted).
    pub muted_until: Option<DateTime<Utc>>,
    pub label: Option<String>,
    pub forgotten: bool,
    /// How much its name and ids prove (`identity::Strength`).
    pub strength: Strength,
    /// Every session with this name and type passes for it (`devices trust --any-session`).
    pub any_session: bool,
}

/// An event waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub account: String,
    pub device: Option<DeviceKey>,
    pub at: DateTime<Utc>,
    pub event: Event,
    pub attempts: u32,
}

/// What the last polls of an account left behind, for `status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AccountStatus {
    pub name: String,
    pub spotify_user: Option<String>,
    pub access_lost_at: Option<DateTime<Utc>>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_poll_ms: Option<i64>,
    pub last_poll_devices: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// The start of an outage the "not watching" notice was given for, while it lasts.
    pub not_watching_since: Option<DateTime<Utc>>,
}

/// A channel's delivery state, for `status` and the channel's task.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChannelState {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Every event up to this id is done for the channel.
    #[serde(skip)]
    pub done_through: i64,
    /// Failed attempts at the next event.
    #[serde(skip)]
    pub attempts: u32,
    #[serde(skip)]
    pub failing_since: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub given_up: i64,
}

/// One stretch a device was online: (device, start, end).
pub type Presence = (DeviceKey, DateTime<Utc>, DateTime<Utc>);

/// How a device query resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    One(DeviceRow),
    None,
    /// Several devices match; nothing should change.
    Ambiguous(Vec<DeviceRow>),
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// What [`Store::poll`] read, planned and wrote.
#[derive(Debug)]
pub struct Polled {
    pub known: Known,
    pub plan: Plan,
    /// The new events' ids; empty for a dry run or when nothing could be written.
    pub ids: Vec<i64>,
    /// Why the plan could not be written, if it could not: nothing of this poll is recorded.
    pub unrecorded: Option<StoreError>,
}

/// How long [`Store::mute`] silences a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mute {
    Until(DateTime<Utc>),
    UntilUnmuted,
}

/// Whether a poll's plan is written ([`Store::poll`]): `check --dry-run`-style callers only look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    Record,
    DryRun,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// A failure on a full disk says so, with the room left ([`StoreError::DiskFull`]).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_inner(path).map_err(|e| {
            let full = matches!(
                &e,
                StoreError::Open { source: rusqlite::Error::SqliteFailure(f, _), .. }
                    | StoreError::Sql(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DiskFull
            );
            match free_bytes(path) {
                Some(free) if full || free < FULL_BELOW => {
                    StoreError::DiskFull { path: path.to_path_buf(), free }
                }
                _ => e,
            }
        })
    }

    fn open_inner(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|source| StoreError::Dir { path: dir.to_path_buf(), source })?;
        }
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Room for every statement the store runs, so none is parsed twice.
        conn.set_prepared_statement_cache_capacity(64);
        // WAL: the CLI reads while the daemon writes; NORMAL sync is durable at checkpoints
        // and safe against corruption, which is what an audit log on a laptop needs.
        set_wal(&conn).map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(open_err)?;
        let mut store = Store { conn, path: path.to_path_buf(), bridge: DEFAULT_PRESENCE_BRIDGE };
        store.migrate()?;
        store.classify_unclassified()?;
        Ok(store)
    }

    /// Sets the longest gap between successful polls across which a device seen at both ends
    /// is taken as online all along. Longer gaps (a laptop asleep overnight, hours of
    /// backoff, the daemon stopped) start a new interval: nobody saw the device meanwhile.
    pub fn set_presence_bridge(&mut self, bridge: Duration) {
        self.bridge = bridge;
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as u32;
        let version: u32 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found: version, known });
        }
        if version == known {
            return Ok(());
        }
        // Take the write lock first and read the version again under it: the daemon and a CLI
        // command may open a new database at the same moment, and only one may migrate it.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version >= known {
            return Ok(());
        }
        for sql in &MIGRATIONS[version as usize..] {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", known)?;
        tx.commit()?;
        Ok(())
    }

    /// Computes the strength of every record that has none (all of them right after the
    /// migration that added it): one query when there is nothing to do.
    fn classify_unclassified(&mut self) -> Result<(), StoreError> {
        let keys: Vec<DeviceKey> = {
            let mut stmt = self.conn.prepare("SELECT id FROM devices WHERE strength IS NULL")?;
            stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        if keys.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for key in keys {
            refresh_strength(&tx, key)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The id of the account named `name`, created on first use.
    pub fn account(&mut self, name: &str, now: DateTime<Utc>) -> Result<AccountId, StoreError> {
        exec(
            &self.conn,
            "INSERT INTO accounts (name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![name, ms(now)],
        )?;
        Ok(row(&self.conn, "SELECT id FROM accounts WHERE name = ?1", [name], |r| r.get(0))?)
    }

    /// The account's id if it exists; read-only callers must not create one.
    pub fn find_account(&self, name: &str) -> Result<Option<AccountId>, StoreError> {
        Ok(row(&self.conn, "SELECT id FROM accounts WHERE name = ?1", [name], |r| r.get(0)).optional()?)
    }

    /// What the audit rules need to know about `account` at `now`.
    pub fn load_known(&self, account: AccountId, now: DateTime<Utc>) -> Result<Known, StoreError> {
        load_known_on(&self.conn, account, now, self.bridge)
    }

    /// One poll, one transaction: reads what is known, lets `decide` (the pure audit rules)
    /// plan, and records the plan, under one IMMEDIATE transaction, so nothing can change
    /// between the read and the write and SQLite takes its locks once. With
    /// [`Recording::DryRun`] nothing is written (a read transaction).
    ///
    /// When the plan cannot be written because the file cannot be (a full disk, an I/O
    /// error, a read-only file), what is known is read again without writing and the plan
    /// made from it is returned with [`Polled::unrecorded`] set: the caller still alerts from
    /// memory. Only a failure to read is an error.
    pub fn poll(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        took: Duration,
        recording: Recording,
        decide: impl Fn(&Known) -> Plan,
    ) -> Result<Polled, StoreError> {
        if recording == Recording::Record {
            let bridge = self.bridge;
            let attempt = (|| {
                let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let known = load_known_on(&tx, account, now, bridge)?;
                let plan = decide(&known);
                let ids = record_poll_tx(&tx, account, now, took, &plan, bridge)?;
                tx.commit()?;
                Ok::<_, StoreError>(Polled { known, plan, ids, unrecorded: None })
            })();
            match attempt {
                Err(e) if e.is_write_failure() => {
                    let mut polled = self.poll(account, now, took, Recording::DryRun, decide)?;
                    polled.unrecorded = Some(e);
                    return Ok(polled);
                }
                other => return other,
            }
        }
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
        let known = load_known_on(&tx, account, now, self.bridge)?;
        let plan = decide(&known);
        tx.commit()?;
        Ok(Polled { known, plan, ids: Vec::new(), unrecorded: None })
    }

    /// Notes a failed poll. Presence and devices are left exactly as they were: a failed
    /// poll is never evidence of anything.
    pub fn record_failure(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE accounts SET last_error = ?2, last_error_at = ?3 WHERE id = ?1",
            params![account, error, ms(now)],
        )?;
        Ok(())
    }

    /// Records (or with `None` clears) until when Spotify asked the account's polls to wait.
    pub fn set_retry_at(&self, account: AccountId, at: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        exec(&self.conn, "UPDATE accounts SET retry_at = ?2 WHERE id = ?1", params![account, at.map(ms)])?;
        Ok(())
    }

    /// Until when polls must wait, if Spotify asked for that.
    pub fn retry_at(&self, account: AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> =
            row(&self.conn, "SELECT retry_at FROM accounts WHERE id = ?1", [account], |r| r.get(0))?;
        Ok(at.map(time))
    }

    /// Events not yet delivered, oldest first. A row that cannot be read is quarantined here
    /// (marked, kept for `history`, logged once) and left out, so it never blocks the rest.
    pub fn undelivered(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, a.name, e.device_id, e.at, e.details, e.attempts
             FROM events e JOIN accounts a ON a.id = e.account_id
             WHERE e.delivered_at IS NULL AND e.quarantined_at IS NULL ORDER BY e.id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], stored_event)?.collect::<Result<Vec<_>, _>>()?;
        let mut ready = Vec::with_capacity(rows.len());
        for ev in rows {
            match &ev.event {
                Event::Unreadable { reason } => {
                    tracing::warn!(event = ev.id, "a stored alert cannot be read and is set aside: {reason}");
                    exec(
                        &self.conn,
                        "UPDATE events SET quarantined_at = ?2 WHERE id = ?1",
                        params![ev.id, ms(Utc::now())],
                    )?;
                }
                _ => ready.push(ev),
            }
        }
        Ok(ready)
    }

    /// Marks an event as delivered.
    pub fn mark_delivered(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        exec(&self.conn, "UPDATE events SET delivered_at = ?2 WHERE id = ?1", params![id, ms(now)])?;
        Ok(())
    }

    /// Counts a failed delivery attempt.
    pub fn note_attempt(&self, id: i64) -> Result<(), StoreError> {
        exec(&self.conn, "UPDATE events SET attempts = attempts + 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Registers a channel (by name) if it is new: it starts at the events recorded from
    /// now on. Returns its state.
    pub fn channel(&self, name: &str, kind: &str) -> Result<ChannelState, StoreError> {
        exec(
            &self.conn,
            "INSERT INTO channels (name, type, done_through)
             VALUES (?1, ?2, (SELECT COALESCE(MAX(id), 0) FROM events))
             ON CONFLICT(name) DO UPDATE SET type = excluded.type",
            params![name, kind],
        )?;
        self.channels()?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or(StoreError::Task(format!("channel {name} vanished")))
    }

    /// Every registered channel's state, by name.
    pub fn channels(&self) -> Result<Vec<ChannelState>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, type, done_through, attempts, failing_since, last_delivered_at, last_error,
                    last_error_at, given_up FROM channels ORDER BY name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ChannelState {
                    name: r.get(0)?,
                    kind: r.get(1)?,
                    done_through: r.get(2)?,
                    attempts: r.get(3)?,
                    failing_since: r.get::<_, Option<i64>>(4)?.map(time),
                    last_delivered_at: r.get::<_, Option<i64>>(5)?.map(time),
                    last_error: r.get(6)?,
                    last_error_at: r.get::<_, Option<i64>>(7)?.map(time),
                    given_up: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Events after `after`, oldest first, for a channel (quarantined ones included: they
    /// decode as unreadable, which no channel sends).
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, a.name, e.device_id, e.at, e.details, 0
             FROM events e JOIN accounts a ON a.id = e.account_id
             WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
        )?;
        let rows =
            stmt.query_map(params![after, limit as i64], stored_event)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// How many events after `after` have one of `kinds`: what a channel has waiting.
    pub fn count_after(&self, after: i64, kinds: &[&str]) -> Result<i64, StoreError> {
        let mut n = 0;
        let mut stmt = self.conn.prepare_cached("SELECT COUNT(*) FROM events WHERE id > ?1 AND kind = ?2")?;
        for k in kinds {
            n += stmt.query_row(params![after, k], |r| r.get::<_, i64>(0))?;
        }
        Ok(n)
    }

    /// The channel is done with every event up to `id`: sent when `delivered_at` is set,
    /// else skipped. The retry state starts over.
    pub fn channel_done(
        &self,
        name: &str,
        id: i64,
        delivered_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE channels SET done_through = MAX(done_through, ?2), attempts = 0, failing_since = NULL,
                    last_delivered_at = COALESCE(?3, last_delivered_at) WHERE name = ?1",
            params![name, id, delivered_at.map(ms)],
        )?;
        Ok(())
    }

    /// A failed attempt at the channel's next event.
    pub fn channel_failed(&self, name: &str, now: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE channels SET attempts = attempts + 1, failing_since = COALESCE(failing_since, ?2),
                    last_error = ?3, last_error_at = ?2 WHERE name = ?1",
            params![name, ms(now), error],
        )?;
        Ok(())
    }

    /// The channel gives up on event `id` (retried too long): it stays in the log.
    pub fn channel_gave_up(
        &self,
        name: &str,
        id: i64,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE channels SET done_through = MAX(done_through, ?2), attempts = 0, failing_since = NULL,
                    given_up = given_up + 1, last_error = ?4, last_error_at = ?3 WHERE name = ?1",
            params![name, id, ms(now), error],
        )?;
        Ok(())
    }

    /// The Spotify id a device was last seen with, if any.
    pub fn spotify_id(&self, key: DeviceKey) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT spotify_id FROM device_ids WHERE device_id = ?1 ORDER BY last_seen DESC LIMIT 1",
                [key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The account's devices, most recently seen first.
    pub fn devices(&self, account: AccountId, include_forgotten: bool) -> Result<Vec<DeviceRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(DEVICE_ROW_SQL)?;
        let rows = stmt.query_map([account], device_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows.into_iter().filter(|d| include_forgotten || !d.forgotten).collect())
    }

    /// Finds a device by store key, Spotify id, id prefix (4+ characters) or unique name
    /// (case-insensitive). An exact key or id wins over prefixes and names.
    pub fn find_device(&self, account: AccountId, query: &str) -> Result<Found, StoreError> {
        let query = query.trim();
        let devices = self.devices(account, false)?;
        let ids = self.ids_by_device(account)?;
        let ids_of = |key: DeviceKey| ids.iter().filter(move |(k, _)| *k == key).map(|(_, id)| id.as_str());
        let exact: Vec<&DeviceRow> = devices
            .iter()
            .filter(|d| query.parse::<DeviceKey>().ok() == Some(d.key) || ids_of(d.key).any(|id| id == query))
            .collect();
        let candidates: Vec<&DeviceRow> = if exact.is_empty() {
            let lower = query.to_lowercase();
            devices
                .iter()
                .filter(|d| {
                    (query.len() >= 4 && ids_of(d.key).any(|id| id.starts_with(query)))
                        || d.name.to_lowercase() == lower
                })
                .collect()
        } else {
            exact
        };
        Ok(match candidates.as_slice() {
            [] => Found::None,
            [one] => Found::One((*one).clone()),
            many => Found::Ambiguous(many.iter().map(|d| (*d).clone()).collect()),
        })
    }

    fn ids_by_device(&self, account: AccountId) -> Result<Vec<(DeviceKey, String)>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT device_id, spotify_id FROM device_ids WHERE account_id = ?1")?;
        let rows =
            stmt.query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Takes trust back: the device is alerted on again like any unknown one.
    pub fn untrust(&mut self, key: DeviceKey) -> Result<bool, StoreError> {
        let n = exec(
            &self.conn,
            "UPDATE devices SET trusted = 0, trusted_at = NULL, trusted_by = NULL, alerted_at = NULL, any_session = 0
             WHERE id = ?1 AND trusted = 1 AND forgotten_at IS NULL",
            [key],
        )?;
        Ok(n == 1)
    }

    /// Mutes a device: recorded, never alerted. Returns whether the device exists.
    pub fn mute(&mut self, key: DeviceKey, how_long: Mute) -> Result<bool, StoreError> {
        // "Until unmuted" is stored as the last millisecond of year 9999.
        let until = match how_long {
            Mute::Until(at) => ms(at),
            Mute::UntilUnmuted => 253_402_300_799_999,
        };
        let n = exec(&self.conn, "UPDATE devices SET muted_until = ?2 WHERE id = ?1", params![key, until])?;
        Ok(n == 1)
    }

    /// Ends a device's mute. Returns whether the device exists.
    pub fn unmute(&mut self, key: DeviceKey) -> Result<bool, StoreError> {
        let n = exec(&self.conn, "UPDATE devices SET muted_until = NULL WHERE id = ?1", [key])?;
        Ok(n == 1)
    }

    /// Notes that "Sign out everywhere" was pressed on this device's alert, to follow it up.
    pub fn mark_signout(&self, key: DeviceKey, now: DateTime<Utc>) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE devices SET signout_at = ?2, signout_followed = 0 WHERE id = ?1",
            params![key, ms(now)],
        )?;
        Ok(())
    }

    /// Sets (or with `None` clears) the person's own label for a device.
    pub fn label(&mut self, key: DeviceKey, label: Option<&str>) -> Result<bool, StoreError> {
        let n = exec(&self.conn, "UPDATE devices SET label = ?2 WHERE id = ?1", params![key, label])?;
        Ok(n == 1)
    }

    /// Lets every session with this device's name and type pass for it, or with `false` only
    /// what its strength allows (`devices trust --any-session`). Returns false if no such device.
    pub fn set_any_session(&mut self, key: DeviceKey, any: bool) -> Result<bool, StoreError> {
        let n = exec(
            &self.conn,
            "UPDATE devices SET any_session = ?2 WHERE id = ?1 AND forgotten_at IS NULL",
            params![key, any],
        )?;
        Ok(n == 1)
    }

    /// Trusts a device and records who did. Returns false if it was already trusted.
    pub fn trust(&mut self, key: DeviceKey, by: TrustedBy, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let row: Option<(AccountId, String, String, bool)> = row(
            &tx,
            "SELECT account_id, name, type, trusted FROM devices WHERE id = ?1 AND forgotten_at IS NULL",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
        let Some((account, name, device_type, trusted)) = row else { return Ok(false) };
        if trusted {
            return Ok(false);
        }
        let by_text = match by {
            TrustedBy::Cli => "cli",
            TrustedBy::Notification => "notification",
        };
        exec(
            &tx,
            "UPDATE devices SET trusted = 1, trusted_at = ?2, trusted_by = ?3 WHERE id = ?1",
            params![key, ms(now), by_text],
        )?;
        // The person's own act needs no notification: it is born delivered.
        insert_event(
            &tx,
            account,
            Some(key),
            now,
            &Event::DeviceTrusted { name, device_type, by },
            Some(now),
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Folds device `merged` into `kept`: its Spotify ids, presence and events move over, the
    /// first and last sightings combine, and `kept` is trusted if either was. `merged` is
    /// deleted. For one device that Spotify showed as two (a new id and a new name at once).
    pub fn merge(
        &mut self,
        kept: DeviceKey,
        merged: DeviceKey,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let (account, kept_name, merged_name): (AccountId, String, String) = row(
            &tx,
            "SELECT k.account_id, k.name, m.name FROM devices k JOIN devices m ON m.account_id = k.account_id
             WHERE k.id = ?1 AND m.id = ?2",
            params![kept, merged],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        exec(&tx, "UPDATE device_ids SET device_id = ?1 WHERE device_id = ?2", params![kept, merged])?;
        exec(&tx, "UPDATE presence SET device_id = ?1 WHERE device_id = ?2", params![kept, merged])?;
        exec(&tx, "UPDATE events SET device_id = ?1 WHERE device_id = ?2", params![kept, merged])?;
        exec(
            &tx,
            "UPDATE devices SET
                first_seen = min(first_seen, (SELECT first_seen FROM devices WHERE id = ?2)),
                last_seen = max(last_seen, (SELECT last_seen FROM devices WHERE id = ?2)),
                trusted = max(trusted, (SELECT trusted FROM devices WHERE id = ?2)),
                label = coalesce(label, (SELECT label FROM devices WHERE id = ?2))
             WHERE id = ?1",
            params![kept, merged],
        )?;
        exec(&tx, "DELETE FROM devices WHERE id = ?1", [merged])?;
        refresh_strength(&tx, kept)?;
        insert_event(
            &tx,
            account,
            Some(kept),
            now,
            &Event::DevicesMerged { kept: kept_name, merged: merged_name },
            Some(now),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a device: it leaves the list and its ids are released, so if it comes back it
    /// is a new, untrusted device. Its history (events, presence) stays.
    pub fn forget(&mut self, key: DeviceKey, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let n = exec(
            &tx,
            "UPDATE devices SET forgotten_at = ?2, trusted = 0 WHERE id = ?1 AND forgotten_at IS NULL",
            params![key, ms(now)],
        )?;
        exec(&tx, "DELETE FROM device_ids WHERE device_id = ?1", [key])?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// The poll bookkeeping of every account, by name.
    pub fn account_status(&self) -> Result<Vec<AccountStatus>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, last_poll_at, last_poll_ms, last_poll_devices, last_error, last_error_at,
                    spotify_user, access_lost_at, not_watching_since
             FROM accounts ORDER BY name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AccountStatus {
                    name: r.get(0)?,
                    last_poll_at: r.get::<_, Option<i64>>(1)?.map(time),
                    last_poll_ms: r.get(2)?,
                    last_poll_devices: r.get(3)?,
                    last_error: r.get(4)?,
                    last_error_at: r.get::<_, Option<i64>>(5)?.map(time),
                    spotify_user: r.get(6)?,
                    access_lost_at: r.get::<_, Option<i64>>(7)?.map(time),
                    not_watching_since: r.get::<_, Option<i64>>(8)?.map(time),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The account's latest events, newest first.
    pub fn recent_events(&self, account: AccountId, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, a.name, e.device_id, e.at, e.details, e.attempts
             FROM events e JOIN accounts a ON a.id = e.account_id
             WHERE e.account_id = ?1 ORDER BY e.at DESC, e.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![account, limit as i64], stored_event)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Events since `since`, newest first, optionally of one account and one device.
    pub fn history(
        &self,
        since: DateTime<Utc>,
        account: Option<AccountId>,
        device: Option<DeviceKey>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, a.name, e.device_id, e.at, e.details, e.attempts
             FROM events e JOIN accounts a ON a.id = e.account_id
             WHERE e.at >= ?1 AND (?2 IS NULL OR e.account_id = ?2) AND (?3 IS NULL OR e.device_id = ?3)
             ORDER BY e.at DESC, e.id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![ms(since), account, device, limit as i64], stored_event)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records that Spotify no longer accepts the account's login, with its event, once.
    /// `login` is the dead login's fingerprint (never a token); it is kept (replaced if
    /// access was already lost) so that a restarted daemon knows which login not to use.
    /// Returns the event's id, or `None` if access was already marked lost.
    pub fn mark_access_lost(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        reason: &str,
        login: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        exec(&tx, "UPDATE accounts SET lost_login = ?2 WHERE id = ?1", params![account, login])?;
        let n = exec(
            &tx,
            "UPDATE accounts SET access_lost_at = ?2 WHERE id = ?1 AND access_lost_at IS NULL",
            params![account, ms(now)],
        )?;
        let id = if n == 1 {
            Some(insert_event(
                &tx,
                account,
                None,
                now,
                &Event::AccessLost { reason: reason.to_string() },
                None,
            )?)
        } else {
            None
        };
        tx.commit()?;
        Ok(id)
    }

    /// When access was lost, if it is.
    pub fn access_lost_at(&self, account: AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> =
            row(&self.conn, "SELECT access_lost_at FROM accounts WHERE id = ?1", [account], |r| r.get(0))?;
        Ok(at.map(time))
    }

    /// The fingerprint of the login that was lost, if access is lost and it is known.
    pub fn lost_login(&self, account: AccountId) -> Result<Option<String>, StoreError> {
        Ok(row(
            &self.conn,
            "SELECT lost_login FROM accounts WHERE id = ?1 AND access_lost_at IS NOT NULL",
            [account],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
    }

    /// The Spotify user the account's last login was for, if one was recorded.
    pub fn spotify_user(&self, account: AccountId) -> Result<Option<String>, StoreError> {
        Ok(row(&self.conn, "SELECT spotify_user FROM accounts WHERE id = ?1", [account], |r| r.get(0))?)
    }

    /// A new login: access is back, and who it is, recorded as an event.
    pub fn record_login(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        user: &str,
        authorized_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        exec(
            &tx,
            "UPDATE accounts SET access_lost_at = NULL, lost_login = NULL, spotify_user = ?2, authorized_at = ?3
             WHERE id = ?1",
            params![account, user, ms(authorized_at)],
        )?;
        insert_event(&tx, account, None, now, &Event::LoggedIn { user: user.to_string() }, Some(now))?;
        tx.commit()?;
        Ok(())
    }

    /// Clears a lost-access mark when another login is found in the token store.
    pub fn clear_access_lost(&self, account: AccountId) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE accounts SET access_lost_at = NULL, lost_login = NULL WHERE id = ?1",
            [account],
        )?;
        Ok(())
    }

    /// When the account was last polled successfully.
    pub fn last_poll_at(&self, account: AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> =
            row(&self.conn, "SELECT last_poll_at FROM accounts WHERE id = ?1", [account], |r| r.get(0))?;
        Ok(at.map(time))
    }

    /// Records the "not watching" notice for the outage that began at `since`, once per
    /// outage. Returns the event's id, or `None` if this outage was already told.
    pub fn not_watching(
        &mut self,
        account: AccountId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let n = exec(
            &tx,
            "UPDATE accounts SET not_watching_since = ?2 WHERE id = ?1 AND not_watching_since IS NULL",
            params![account, ms(since)],
        )?;
        let id = if n == 1 {
            let event = Event::NotWatching { since, reason: reason.to_string() };
            Some(insert_event(&tx, account, None, now, &event, None)?)
        } else {
            None
        };
        tx.commit()?;
        Ok(id)
    }

    /// Ends a told outage after a successful poll, with a quiet "watching again" event.
    /// Returns the event's id, or `None` if no outage was told.
    pub fn watching_again(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let since: Option<i64> =
            row(&tx, "SELECT not_watching_since FROM accounts WHERE id = ?1", [account], |r| r.get(0))?;
        let id = match since {
            Some(since) => {
                exec(&tx, "UPDATE accounts SET not_watching_since = NULL WHERE id = ?1", [account])?;
                Some(insert_event(
                    &tx,
                    account,
                    None,
                    now,
                    &Event::WatchingAgain { since: time(since) },
                    None,
                )?)
            }
            None => None,
        };
        tx.commit()?;
        Ok(id)
    }

    /// Records the "login ends soon" warning for the login authorised at `authorized_at`,
    /// once per login. Returns the event's id, or `None` if this login was already warned about.
    pub fn warn_login_expiring(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        authorized_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let n = exec(
            &tx,
            "UPDATE accounts SET expiry_warned_for = ?2
             WHERE id = ?1 AND (expiry_warned_for IS NULL OR expiry_warned_for <> ?2)",
            params![account, ms(authorized_at)],
        )?;
        let id = if n == 1 {
            Some(insert_event(&tx, account, None, now, &Event::LoginExpiring { expires_at }, None)?)
        } else {
            None
        };
        tx.commit()?;
        Ok(id)
    }

    /// Deletes events and presence intervals that ended before `before`. Devices stay: their
    /// trust must outlive any retention window. Returns the rows deleted.
    pub fn prune(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let events =
            exec(&tx, "DELETE FROM events WHERE at < ?1 AND delivered_at IS NOT NULL", [ms(before)])?;
        let presence = exec(&tx, "DELETE FROM presence WHERE ended_at < ?1", [ms(before)])?;
        tx.commit()?;
        Ok(events + presence)
    }

    /// The account's presence intervals overlapping `[from, to]`: (device, start, end).
    pub fn presence(
        &self,
        account: AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Presence>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT p.device_id, p.started_at, p.ended_at FROM presence p JOIN devices d ON d.id = p.device_id
             WHERE d.account_id = ?1 AND p.ended_at >= ?2 AND p.started_at <= ?3 ORDER BY p.started_at",
        )?;
        let rows = stmt
            .query_map(params![account, ms(from), ms(to)], |r| {
                Ok((r.get(0)?, time(r.get(1)?), time(r.get(2)?)))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// SQLite's own check of the file: "ok", or what is wrong.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        Ok(lines.join("; "))
    }

    /// Counts of rows per table, for tests and the benchmark: proves storage does not grow
    /// with polls.
    pub fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, StoreError> {
        ["accounts", "devices", "device_ids", "presence", "events"]
            .into_iter()
            .map(|t| Ok((t, row(&self.conn, &format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?)))
            .collect()
    }
}

/// An events row (id, account, device, at, details, attempts) as an event. Never fails on
/// the row's content: a value of the wrong type or JSON that does not decode gives
/// [`Event::Unreadable`], a kind from a newer version [`Event::Unknown`].
fn stored_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    use rusqlite::types::ValueRef;
    let id: i64 = r.get(0)?;
    let account: String = r.get::<_, Option<String>>(1).ok().flatten().unwrap_or_default();
    let device = r.get_ref(2).ok().and_then(|v| v.as_i64().ok());
    let at = r.get_ref(3).ok().and_then(|v| v.as_i64().ok());
    let attempts =
        r.get_ref(5).ok().and_then(|v| v.as_i64().ok()).unwrap_or(0).clamp(0, u32::MAX.into()) as u32;
    let event = match (at, r.get_ref(4)?) {
        (None, _) => Event::Unreadable { reason: "its time is not a number".into() },
        (_, ValueRef::Text(t) | ValueRef::Blob(t)) => match std::str::from_utf8(t) {
            Ok(details) => crate::event::decode(details),
            Err(_) => Event::Unreadable { reason: "its details are not UTF-8".into() },
        },
        _ => Event::Unreadable { reason: "it has no details".into() },
    };
    Ok(StoredEvent { id, account, device, at: time(at.unwrap_or(0)), event, attempts })
}

const DEVICE_ROW_SQL: &str = "
    SELECT d.id,
           (SELECT spotify_id FROM device_ids i WHERE i.device_id = d.id ORDER BY last_seen DESC LIMIT 1),
           d.name, d.type, d.trusted, d.first_seen, d.last_seen, d.label, d.forgotten_at,
           d.last_seen = a.last_poll_at, d.muted_until, d.strength, d.any_session
    FROM devices d JOIN accounts a ON a.id = d.account_id
    WHERE d.account_id = ?1
    ORDER BY d.last_seen DESC, d.id DESC";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        key: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        trusted: r.get(4)?,
        first_seen: time(r.get(5)?),
        last_seen: time(r.get(6)?),
        label: r.get(7)?,
        forgotten: r.get::<_, Option<i64>>(8)?.is_some(),
        online: r.get::<_, Option<bool>>(9)?.unwrap_or(false),
        muted_until: r.get::<_, Option<i64>>(10)?.map(time),
        strength: Strength::parse(r.get::<_, Option<String>>(11)?.as_deref()),
        any_session: r.get(12)?,
    })
}

/// What the audit rules need to know about `account` at `now`, read on `conn` (the store's
/// connection, or a poll's transaction).
/// `bridge` bounds how old the previous poll may be to count as one poll interval ago.
fn load_known_on(
    conn: &Connection,
    account: AccountId,
    now: DateTime<Utc>,
    bridge: Duration,
) -> Result<Known, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.name, d.type, d.trusted, d.alerted_at, d.play_alerted_at,
                (SELECT group_concat(spotify_id, char(31)) FROM device_ids i WHERE i.device_id = d.id),
                d.muted_until, d.signout_at, d.signout_followed, d.strength, d.any_session, d.last_seen,
                (SELECT first_seen FROM device_ids i WHERE i.device_id = d.id ORDER BY last_seen DESC LIMIT 1)
         FROM devices d WHERE d.account_id = ?1 AND d.forgotten_at IS NULL",
    )?;
    let mut devices = stmt
        .query_map([account], |r| {
            let ids: Option<String> = r.get(6)?;
            Ok(KnownDevice {
                key: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                trusted: r.get(3)?,
                alerted_at: r.get::<_, Option<i64>>(4)?.map(time),
                play_alerted_at: r.get::<_, Option<i64>>(5)?.map(time),
                muted_until: r.get::<_, Option<i64>>(7)?.map(time),
                signout: r.get::<_, Option<i64>>(8)?.map(time).map(|at| (at, r.get(9).unwrap_or(false))),
                spotify_ids: ids.map(|s| s.split('\u{1f}').map(str::to_string).collect()).unwrap_or_default(),
                renames_today: 0,
                strength: Strength::parse(r.get::<_, Option<String>>(10)?.as_deref()),
                any_session: r.get(11)?,
                last_seen: Some(time(r.get(12)?)),
                id_since: r.get::<_, Option<i64>>(13)?.map(time),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // Rename events of the last day, per device: one range of the account's events (indexed
    // by account and time), not a scan per device.
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, count(*) FROM events
         WHERE account_id = ?1 AND at >= ?2 AND kind = 'device_renamed' AND device_id IS NOT NULL
         GROUP BY device_id",
    )?;
    let day_ago = ms(now - chrono::Duration::days(1));
    let renames: std::collections::HashMap<DeviceKey, u32> = stmt
        .query_map(params![account, day_ago], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for d in &mut devices {
        d.renames_today = renames.get(&d.key).copied().unwrap_or(0);
    }
    let since = ms(now - chrono::Duration::days(i64::from(LIMIT_WINDOW_DAYS)));
    let mut stmt = conn.prepare_cached("SELECT id FROM devices WHERE account_id = ?1 AND last_seen >= ?2")?;
    let seen_in_window = stmt.query_map(params![account, since], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let (limit_alerted_at, last_poll, explained): (Option<i64>, Option<i64>, Option<i64>) = row(
        conn,
        "SELECT limit_alerted_at, last_poll_at, identity_explained_at FROM accounts WHERE id = ?1",
        [account],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let limit_alerted_at = limit_alerted_at.map(time);
    let bridge = chrono::Duration::from_std(bridge).unwrap_or(chrono::Duration::MAX);
    let previous_poll = last_poll.map(time).filter(|at| now.signed_duration_since(*at) <= bridge);
    let first_run =
        !row(conn, "SELECT EXISTS (SELECT 1 FROM devices WHERE account_id = ?1)", [account], |r| {
            r.get::<_, bool>(0)
        })?;
    Ok(Known {
        devices,
        seen_in_window,
        limit_alerted_at,
        first_run,
        previous_poll,
        identity_explained: explained.is_some(),
    })
}

fn record_poll_tx(
    tx: &Transaction<'_>,
    account: AccountId,
    now: DateTime<Utc>,
    took: Duration,
    plan: &Plan,
    bridge: Duration,
) -> Result<Vec<i64>, StoreError> {
    let now_ms = ms(now);
    let bridge_ms = bridge.as_millis() as i64;
    let (prev_poll, last_full): (Option<i64>, Option<i64>) =
        row(tx, "SELECT last_poll_at, last_full_poll_at FROM accounts WHERE id = ?1", [account], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    // An interval that reached `since` goes on. Normally that is the previous successful
    // poll. Polls since the last full one left out devices they could not read, so they
    // could not see a device go: reaching the last full poll is enough then, but never
    // further back than the bridge. Too long since any successful poll: nothing bridges.
    let since = prev_poll
        .filter(|prev| now_ms - prev <= bridge_ms)
        .map(|prev| prev.min(last_full.unwrap_or(i64::MIN).max(now_ms - bridge_ms)));
    let mut keys = Vec::with_capacity(plan.seen.len());
    for seen in &plan.seen {
        let d = &seen.device;
        let key = match seen.target {
            Target::Known(key) => {
                exec(
                    tx,
                    "UPDATE devices SET last_seen = ?2,
                        name = CASE WHEN ?3 THEN ?4 ELSE name END,
                        alerted_at = CASE WHEN ?5 THEN ?2 ELSE alerted_at END,
                        play_alerted_at = CASE WHEN ?6 THEN ?2 ELSE play_alerted_at END
                     WHERE id = ?1",
                    params![key, now_ms, seen.renamed, d.name, seen.alerted, seen.play_alerted],
                )?;
                key
            }
            Target::New => {
                exec(tx,
                    "INSERT INTO devices (account_id, name, type, first_seen, last_seen, alerted_at, play_alerted_at)
                     VALUES (?1, ?2, ?3, ?4, ?4, CASE WHEN ?5 THEN ?4 END, CASE WHEN ?6 THEN ?4 END)",
                    params![account, d.name, d.kind, now_ms, seen.alerted, seen.play_alerted],
                )?;
                tx.last_insert_rowid()
            }
        };
        if let Some(id) = &d.id {
            exec(tx,
                "INSERT INTO device_ids (account_id, spotify_id, device_id, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(account_id, spotify_id) DO UPDATE SET device_id = excluded.device_id, last_seen = excluded.last_seen",
                params![account, id, key, now_ms],
            )?;
            // An id that rotates every poll must not add a row every poll: the newest
            // MAX_ALIASES stay. Only a new alias can push one out, so only then is it checked.
            if seen.new_alias.is_some() {
                exec(
                    tx,
                    "DELETE FROM device_ids WHERE device_id = ?1 AND spotify_id NOT IN (
                         SELECT spotify_id FROM device_ids WHERE device_id = ?1
                         ORDER BY last_seen DESC, first_seen DESC LIMIT ?2)",
                    params![key, MAX_ALIASES],
                )?;
            }
        }
        extend_presence(tx, key, since, now_ms)?;
        refresh_strength(tx, key)?;
        keys.push(key);
    }
    let mut ids = Vec::with_capacity(plan.events.len());
    for e in &plan.events {
        let device = e.seen.and_then(|i| keys.get(i).copied());
        ids.push(insert_event(tx, account, device, now, &e.event, None)?);
    }
    for (key, outcome) in &plan.sign_outs {
        match outcome {
            SignOutOutcome::Worked => {
                exec(tx, "UPDATE devices SET signout_at = NULL, signout_followed = 0 WHERE id = ?1", [key])?
            }
            SignOutOutcome::StillOnline => {
                exec(tx, "UPDATE devices SET signout_followed = 1 WHERE id = ?1", [key])?
            }
        };
    }
    exec(
        tx,
        "UPDATE accounts SET last_poll_at = ?2, last_poll_ms = ?3, last_poll_devices = ?4,
            last_error = NULL, last_error_at = NULL,
            limit_alerted_at = CASE WHEN ?5 THEN ?2 ELSE limit_alerted_at END,
            last_full_poll_at = CASE WHEN ?6 THEN ?2 ELSE last_full_poll_at END,
            identity_explained_at = CASE WHEN ?7 THEN ?2 ELSE identity_explained_at END
         WHERE id = ?1",
        params![
            account,
            now_ms,
            took.as_millis() as i64,
            plan.seen.len() as i64,
            plan.limit_alerted,
            plan.skipped == 0,
            plan.identity_explained
        ],
    )?;
    Ok(ids)
}

/// Computes and stores the strength of record `key` from its name and recorded ids.
fn refresh_strength(tx: &Transaction<'_>, key: DeviceKey) -> Result<(), StoreError> {
    let name: String = row(tx, "SELECT name FROM devices WHERE id = ?1", [key], |r| r.get(0))?;
    let mut stmt =
        tx.prepare_cached("SELECT spotify_id, first_seen, last_seen FROM device_ids WHERE device_id = ?1")?;
    let ids = stmt
        .query_map([key], |r| {
            Ok(IdSpan { id: r.get(0)?, first_seen: time(r.get(1)?), last_seen: time(r.get(2)?) })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let strength = crate::identity::classify(&name, &ids);
    exec(tx, "UPDATE devices SET strength = ?2 WHERE id = ?1", params![key, strength.as_str()])?;
    Ok(())
}

/// A device whose latest interval reaches `since` (the previous successful poll, or further
/// back across polls that left out unreadable devices; see `record_poll_tx`) extends it;
/// otherwise it starts a new one. Failed polls do not move `last_poll_at`, so a short stretch
/// of failures is bridged and a long one is not.
fn extend_presence(
    tx: &Transaction<'_>,
    key: DeviceKey,
    since: Option<i64>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let open: Option<i64> = match since {
        Some(prev) => row(
            tx,
            "SELECT id FROM presence WHERE device_id = ?1 AND ended_at >= ?2 ORDER BY ended_at DESC LIMIT 1",
            params![key, prev],
            |r| r.get(0),
        )
        .optional()?,
        None => None,
    };
    match open {
        Some(id) => exec(tx, "UPDATE presence SET ended_at = ?2 WHERE id = ?1", params![id, now_ms])?,
        None => exec(
            tx,
            "INSERT INTO presence (device_id, started_at, ended_at) VALUES (?1, ?2, ?2)",
            params![key, now_ms],
        )?,
    };
    Ok(())
}

fn insert_event(
    tx: &Transaction<'_>,
    account: AccountId,
    device: Option<DeviceKey>,
    at: DateTime<Utc>,
    event: &Event,
    delivered_at: Option<DateTime<Utc>>,
) -> Result<i64, StoreError> {
    let details =
        serde_json::to_string(event).map_err(|e| StoreError::BadEvent { id: 0, reason: e.to_string() })?;
    exec(
        tx,
        "INSERT INTO events (account_id, device_id, at, kind, details, delivered_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![account, device, ms(at), event.kind(), details, delivered_at.map(ms)],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Switches to WAL. On a brand-new file two openers (the daemon and a CLI command) can race
/// to switch, and SQLite answers BUSY to the loser without calling the busy handler, so
/// retry for as long as the busy timeout would have waited.
/// `execute` through the connection's statement cache: the statements a poll runs are parsed
/// once, not on every poll (parsing was a fifth of a poll's CPU).
fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the statement cache.
fn row<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: F,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

// The store is synchronous and runs on blocking threads: sleeping here is what SQLite's own
// busy handler would do.
#[allow(clippy::disallowed_methods)]
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let start = std::time::Instant::now();
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && start.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests;
