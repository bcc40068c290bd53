//! One poll of one account: fetch, load what is known, apply the rules, record.
//!
//! The steady state costs one request: `/me/player/devices`, and `/me/player` only when a
//! device is active. Any failure, including one in the second request, fails the whole poll
//! before anything is written: a failed or partial poll is never evidence, so it yields no
//! event and leaves presence as it was. A 401 re-reads the token file once and retries once
//! (a new `spotguard login` may have replaced it); token refresh proper plugs in here.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::backoff::Failure;
use crate::audit::{self, Known, Plan, Policy, Snapshot};
use crate::auth::{AuthError, Secret, TokenFiles};
use crate::config::Config;
use crate::spotify::{Client, SpotifyError};
use crate::store::{AccountId, SharedStore, StoreError};

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Spotify(#[from] SpotifyError),
    #[error(transparent)]
    Auth(#[from] AuthError),
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
            PollError::Store(_) => Failure::Transient,
            PollError::Spotify(_) | PollError::Auth(_) => Failure::NeedsPerson,
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
pub struct Report {
    pub snapshot: Snapshot,
    pub known: Known,
    pub plan: Plan,
    pub at: DateTime<Utc>,
    /// The fetch's wall time (network included).
    pub took: Duration,
    /// Ids of the events recorded; empty for a dry run.
    pub event_ids: Vec<i64>,
}

/// The rules' settings from the configuration.
pub fn policy(config: &Config) -> Policy {
    Policy { realert_after: config.alerts.realert_after.0, device_limit: config.alerts.device_limit }
}

/// Fetches what Spotify shows for `account` now.
pub async fn fetch(client: &Client, tokens: &TokenFiles, account: &str) -> Result<Snapshot, PollError> {
    let devices = with_token(tokens, account, |t| async move { client.devices(&t).await }).await?;
    let playback = if devices.iter().any(|d| d.is_active) {
        with_token(tokens, account, |t| async move { client.playback(&t).await }).await?
    } else {
        None
    };
    Ok(Snapshot { devices, playback })
}

/// Runs `call` with the account's token; on a 401, once more if the token file changed.
async fn with_token<T, F, Fut>(tokens: &TokenFiles, account: &str, call: F) -> Result<T, PollError>
where
    F: Fn(Secret) -> Fut,
    Fut: std::future::Future<Output = Result<T, SpotifyError>>,
{
    let token = tokens.load(account)?.access_token;
    match call(token.clone()).await {
        Err(SpotifyError::Unauthorized) => {
            let again = tokens.load(account)?.access_token;
            if again == token {
                return Err(SpotifyError::Unauthorized.into());
            }
            Ok(call(again).await?)
        }
        other => Ok(other?),
    }
}

/// Fetches, evaluates and, unless `dry_run`, records one poll in one transaction.
pub async fn poll_once(
    client: &Client,
    tokens: &TokenFiles,
    store: &SharedStore,
    policy: &Policy,
    account: &Account,
    dry_run: bool,
) -> Result<Report, PollError> {
    let started = Instant::now();
    let snapshot = fetch(client, tokens, &account.name).await?;
    let took = started.elapsed();
    let at = Utc::now();
    let id = account.id;
    let known = store.call(move |s| s.load_known(id, at)).await?;
    let plan = audit::evaluate(&known, &snapshot, policy, at);
    let event_ids = if dry_run {
        Vec::new()
    } else {
        let plan = plan.clone();
        store.call(move |s| s.record_poll(id, at, took, &plan)).await?
    };
    Ok(Report { snapshot, known, plan, at, took, event_ids })
}
