//! One poll of one account: fetch, load what is known, apply the rules, record.
//!
//! The steady state costs one request: `/me/player/devices`, and `/me/player` only when a
//! device is active (or one could not be read, since it may be the active one). Any failure,
//! including one in the second request, fails the whole poll before anything is written: a
//! failed or partial poll is never evidence, so it yields no event and leaves presence as it
//! was. A listed device that cannot be read does not fail the poll: it is left out and
//! counted in [`Snapshot::skipped`], and no absence is taken as evidence while that is
//! non-zero. Tokens come from the account's [`Session`], which refreshes them before they
//! expire; a 401 gets one refresh (or the newer stored token) and one retry.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::backoff::Failure;
use crate::audit::{self, Known, Plan, Policy, Snapshot};
use crate::auth::Session;
use crate::auth::session::{Access, SessionError};
use crate::config::Config;
use crate::spotify::{Client, SpotifyError};
use crate::store::{AccountId, Recording, SharedStore, StoreError};

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Spotify(#[from] SpotifyError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PollError {
    /// How long to wait before the next try.
    pub fn failure(&self) -> Failure {
        match self {
            PollError::Spotify(SpotifyError::RateLimited { retry_after, quota }) => {
                Failure::RateLimited { retry_after: *retry_after, quota: *quota }
            }
            PollError::Spotify(e) if e.is_transient() => Failure::Transient,
            PollError::Session(e) if e.is_transient() => Failure::Transient,
            PollError::Session(SessionError::Auth(crate::auth::AuthError::NotLoggedIn { .. })) => {
                Failure::NotLoggedIn
            }
            PollError::Store(_) => Failure::Transient,
            PollError::Spotify(_) | PollError::Session(_) => Failure::NeedsPerson,
        }
    }

    /// Spotify no longer accepts the login: only a new `spotguard login` helps.
    pub fn is_access_lost(&self) -> bool {
        matches!(self, PollError::Session(e) if e.is_access_lost())
    }

    /// The fingerprint of the login that is over, when access is lost.
    pub fn lost_login(&self) -> Option<&str> {
        match self {
            PollError::Session(e) => e.lost_login(),
            _ => None,
        }
    }
}

/// A watched account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub id: AccountId,
}

/// What one successful poll saw and did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub snapshot: Snapshot,
    pub known: Known,
    pub plan: Plan,
    pub at: DateTime<Utc>,
    /// The fetch's wall time (network included).
    pub took: Duration,
    /// Ids of the events recorded; empty for a dry run.
    pub event_ids: Vec<i64>,
    /// Why nothing of this poll could be recorded (a full disk, say): the plan's events must
    /// then be shown from memory.
    pub unrecorded: Option<String>,
    /// The login the poll used (for the "ends soon" warning).
    pub access: Access,
}

/// The rules' settings for `account`: its own overrides, else the `[alerts]` values.
pub fn policy(config: &Config, account: &str) -> Policy {
    let own = config.account(account);
    Policy {
        realert_after: own.and_then(|a| a.realert_after).map_or(config.alerts.realert_after.0, |d| d.0),
        device_limit: own.and_then(|a| a.device_limit).unwrap_or(config.alerts.device_limit),
        ignore: config.ignore.clone(),
    }
}

/// Fetches what Spotify shows for the session's account now.
pub async fn fetch(client: &Client, session: &Session) -> Result<(Snapshot, Access), PollError> {
    let mut access = session.access().await?;
    let list = with_token(session, &mut access, |t| async move { client.devices(&t).await }).await?;
    // A device that could not be read may be the active one: ask what plays then too (one
    // more request per poll, only while Spotify lists something unreadable).
    let playback = if list.skipped + list.cut > 0 || list.devices.iter().any(|d| d.is_active) {
        with_token(session, &mut access, |t| async move { client.playback(&t).await }).await?
    } else {
        None
    };
    let skipped =
        list.skipped + list.cut + usize::from(playback.as_ref().is_some_and(|p| p.unreadable_device));
    Ok((Snapshot { devices: list.devices, playback, skipped, cut: list.cut }, access))
}

/// Runs `call` with the access token; after a 401, once more with a refreshed one.
async fn with_token<T, F, Fut>(session: &Session, access: &mut Access, call: F) -> Result<T, PollError>
where
    F: Fn(crate::auth::Secret) -> Fut,
    Fut: std::future::Future<Output = Result<T, SpotifyError>>,
{
    match call(access.token.clone()).await {
        Err(SpotifyError::Unauthorized) => {
            *access = session.after_unauthorized(&access.token).await?;
            Ok(call(access.token.clone()).await?)
        }
        other => Ok(other?),
    }
}

/// Fetches, evaluates and (with [`Recording::Record`]) records one poll in one transaction.
pub async fn poll_once(
    client: &Client,
    session: &Session,
    store: &SharedStore,
    policy: &Policy,
    account: &Account,
    recording: Recording,
) -> Result<Outcome, PollError> {
    let started = Instant::now();
    let (snapshot, access) = fetch(client, session).await?;
    let took = started.elapsed();
    let at = Utc::now();
    let id = account.id;
    // One transaction: read what is known, evaluate (pure), record. On this thread unless
    // the database is locked elsewhere: the hand-off to a thread would cost more than it.
    let (seen, rules) = (snapshot.clone(), policy.clone());
    let polled = store
        .call_quick(move |s| {
            s.poll(id, at, took, recording, |known| audit::evaluate(known, &seen, &rules, at))
        })
        .await?;
    Ok(Outcome {
        snapshot,
        known: polled.known,
        plan: polled.plan,
        at,
        took,
        event_ids: polled.ids,
        unrecorded: polled.unrecorded.map(|e| e.to_string()),
        access,
    })
}
