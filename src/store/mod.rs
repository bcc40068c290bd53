//! SQLite storage: accounts, devices and their Spotify ids, presence, and events (outbox).
//!
//! One `Store` (the connection), its methods split by what they own: `accounts.rs` (account
//! state, login, outages), `poll.rs` (recording a poll), `devices.rs` (what the person does
//! with devices), `events.rs` (the outbox and history), `channels.rs` (per-channel delivery),
//! `presence.rs` (presence and retention). This file opens and migrates. Every write takes
//! `&mut self`.
//!
//! The store owns the connection. `open` creates the directory, sets WAL (readers such as
//! `spotguard devices` never block the daemon), a busy timeout and foreign keys, and runs the
//! numbered migrations embedded below in one transaction, keyed on `PRAGMA user_version`.
//! One poll is one transaction ([`Store::poll`]): what is known is read, the pure rules
//! plan, and devices, ids, presence and events land together or not at all. rusqlite
//! blocks; the daemon calls in from `spawn_blocking`, except for the poll's transaction, which
//! runs on the async thread unless another process holds the lock
//! ([`SharedStore::call_quick`]).
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

mod accounts;
mod channels;
mod devices;
mod events;
mod poll;
mod presence;

pub use accounts::AccountStatus;
pub use channels::{ChannelEntry, ChannelState};
pub use devices::{DeviceRow, Found, Mute};
pub use events::StoredEvent;
pub use poll::{Polled, Recording};
pub use presence::Presence;

use events::{insert_event, stored_event};
use poll::refresh_strength;

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
    include_str!("migrations/011_channel_destination.sql"),
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
        "the database file {path} is a symbolic link, so spotguard does not open it; remove it, or \
         set storage.database to the file itself, and check who put it there"
    )]
    Symlink { path: PathBuf },
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
    /// Whether another connection holds the lock this call needed (another process writing).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }

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

/// The store shared by the daemon's tasks and the commands. rusqlite blocks, so calls run on
/// the blocking pool (the poll's short transaction runs here when nothing makes it wait: see
/// [`SharedStore::call_quick`]); the mutex serialises them (one connection, short
/// transactions). A store made with [`SharedStore::lazy`] opens (and migrates) the file at its
/// first call, on that blocking thread: a command that never touches the database (`service
/// install --dry-run`, `completions`) creates none, and no migration or busy retry runs on
/// the async thread.
#[derive(Debug, Clone)]
pub struct SharedStore(Arc<Lazy>);

#[derive(Debug)]
struct Lazy {
    path: PathBuf,
    bridge: Mutex<Duration>,
    store: Mutex<Option<Store>>,
}

impl SharedStore {
    /// A store already open.
    pub fn new(store: Store) -> SharedStore {
        SharedStore(Arc::new(Lazy {
            path: store.path.clone(),
            bridge: Mutex::new(store.bridge),
            store: Mutex::new(Some(store)),
        }))
    }

    /// The store of the file at `path`, opened at the first call.
    pub fn lazy(path: PathBuf, bridge: Duration) -> SharedStore {
        SharedStore(Arc::new(Lazy { path, bridge: Mutex::new(bridge), store: Mutex::new(None) }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Opens the file now if it is not open yet: for the daemon, which must fail at start
    /// (a full disk, a newer schema) rather than at its first poll.
    pub async fn open(&self) -> Result<(), StoreError> {
        self.call(|_| Ok(())).await
    }

    /// Sets the presence bridge (see [`Store::set_presence_bridge`]), now or at the open.
    pub async fn set_presence_bridge(&self, bridge: Duration) -> Result<(), StoreError> {
        *self.0.bridge.lock().unwrap_or_else(|e| e.into_inner()) = bridge;
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(store) = inner.store.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                store.set_presence_bridge(bridge);
            }
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
    }

    /// Runs `f` with the store off the async threads, opening it first if need be.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves SQLite consistent (transactions roll
            // back on drop), so a poisoned lock is safe to use.
            let mut slot = inner.store.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                let mut store = Store::open(&inner.path)?;
                store.set_presence_bridge(*inner.bridge.lock().unwrap_or_else(|e| e.into_inner()));
                *slot = Some(store);
            }
            match slot.as_mut() {
                Some(store) => {
                    // Here waiting for another process's lock is fine (and wanted), even if
                    // a quick call on the async thread panicked with the wait turned off.
                    store.conn.busy_timeout(BUSY_TIMEOUT)?;
                    f(store)
                }
                None => Err(StoreError::Task("the database is not open".into())),
            }
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` on this thread when the store is open, no other call holds it and SQLite can
    /// answer without waiting for a lock; otherwise as [`SharedStore::call`] does, where it
    /// may wait. For the poll's one short transaction (a few hundred microseconds), which
    /// costs less than handing it to the blocking pool and back (benches/clock.rs measures
    /// it). Here a lock held by another process (a command writing) fails at once as busy, and
    /// `f` runs again on the blocking pool: so `f` must be safe to run again after a busy
    /// failure, which one transaction (rolled back on error) is.
    pub async fn call_quick<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        if let Ok(mut slot) = self.0.store.try_lock()
            && let Some(store) = slot.as_mut()
        {
            match store.without_waiting(&mut f) {
                Err(e) if e.is_busy() => {
                    tracing::debug!("the database is busy; waiting off the async thread")
                }
                other => return other,
            }
        }
        self.call(f).await
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
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
        // Not through a link: one planted at the database's name (or its WAL's) would have
        // spotguard write, with the person's rights, to whatever file it points at. Only the
        // files themselves: a linked directory above them is the person's own arrangement
        // (SQLite's SQLITE_OPEN_NOFOLLOW refuses those too, so it is not used).
        for file in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(file);
            let name = PathBuf::from(name);
            if std::fs::symlink_metadata(&name).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(StoreError::Symlink { path: name });
            }
        }
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

    /// Runs `f` with SQLite's busy wait off: a lock held elsewhere fails at once as busy.
    fn without_waiting<T>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.busy_timeout(Duration::ZERO)?;
        let out = f(self);
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        out
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

/// Switches to WAL. On a brand-new file two openers (the daemon and a CLI command) can race
/// to switch, and SQLite answers BUSY to the loser without calling the busy handler, so
/// retry for as long as the busy timeout would have waited. The store is synchronous and
/// runs on blocking threads: sleeping here is what SQLite's own busy handler would do.
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
