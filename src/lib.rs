//! spotguard tells you, the moment it happens, that a device you do not know is using your
//! Spotify account, and gets you to the fix in one click.
//!
//! Spotify has no API for sessions or remote sign-out. spotguard polls what the Web API does
//! show (the account's Connect devices and current playback), compares it with the devices
//! you approved, and sends a desktop notification that opens Spotify's "Sign out everywhere"
//! page. A functional core (the [`audit`] rules) with thin edges around it.
//!
//! # Layout
//! - [`config`]: the TOML configuration, its defaults and validation, platform paths.
//! - [`context`]: the running parts every command and the daemon build from the configuration.
//! - [`spotify`]: the Web API client: typed, tolerant, bounded models and error mapping.
//! - [`auth`]: tokens: the redacting [`auth::Secret`] and the per-account token files.
//! - [`store`]: SQLite: migrations, devices and their ids, presence, events (the outbox).
//! - [`audit`]: the pure rules: known devices + a snapshot -> what to record and alert.
//! - [`event`]: the events the audit log and the outbox hold.
//! - [`identity`]: how much a device's name and id prove (generic names, name-derived ids).
//! - [`notify`]: the outbox dispatcher, desktop notifications, their buttons, the URL opener.
//! - [`schedule`]: the poll clock per account: tokio's monotonic timer for intervals, croner
//!   for cron lines; phase-spread accounts, missed ticks skipped.
//! - [`daemon`]: the per-account poll loops, backoff, reload and shutdown, the instance lock,
//!   and systemd readiness and watchdog.
//! - [`service`]: the systemd unit and launchd agent, rendered for `spotguard service`.
//! - [`text`]: making untrusted names safe for notifications and terminals, and comparing
//!   them by how they look (skeletons).
//! - [`fsutil`]: replacing a file atomically, with a private temporary file no link can redirect.
//! - [`report`]: the self-contained HTML report (presence timeline, devices, events).
//! - [`fake`]: a fake Spotify Web API on loopback for tests, the demo and benchmarks.
//! - [`cli`]: the `spotguard` commands.

pub mod audit;
pub mod auth;
// The command line is the one layer that prints.
#[allow(clippy::print_stdout)]
pub mod cli;
pub mod config;
pub mod context;
pub mod daemon;
pub mod event;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod fsutil;
pub mod identity;
pub mod notify;
pub mod report;
pub mod schedule;
pub mod service;
pub mod spotify;
pub mod store;
pub mod text;
