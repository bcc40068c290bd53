//! [`Context`]: everything a command or the daemon needs, built once from the configuration.
//!
//! Building one does no I/O beyond the token store's setup: the database is opened (and
//! migrated) on a blocking thread at its first use ([`SharedStore::lazy`]), so a command that
//! never reads it creates none (`service install --dry-run`), and the daemon opens it
//! explicitly at start so that a full disk or a newer schema stops it there. A reload builds a
//! new context around the same store: one connection per process.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::auth::oauth::OAuth;
use crate::auth::{Session, TokenFiles, TokenStore};
use crate::config::{Config, ConfigError, Schedule, Source};
use crate::daemon::poll::Account;
use crate::spotify::{Client, SpotifyError};
use crate::store::{SharedStore, StoreError};

/// Everything a command or the daemon needs. Cheap to clone: the store and the HTTP pool are
/// shared.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub source: Source,
    pub store: SharedStore,
    pub client: Client,
    pub tokens: TokenStore,
}

/// What can stop the parts from being built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Spotify(#[from] SpotifyError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

/// Bridge the gaps a healthy schedule leaves (with room for a few failed polls), not a night
/// of a sleeping laptop.
fn presence_bridge(config: &Config) -> Duration {
    match config.schedule() {
        Schedule::Every(every) => (every * 3).max(Duration::from_secs(10 * 60)),
        Schedule::Cron(_) => Duration::from_secs(2 * 3600),
    }
}

impl Context {
    /// Builds the HTTP client and the token store, and names the database (opened at first
    /// use): the one fallible step from plain configuration to running parts.
    pub fn build(config: Config, source: Source) -> Result<Context, ContextError> {
        let store = SharedStore::lazy(config.database_path()?, presence_bridge(&config));
        Context::around(config, source, store)
    }

    fn around(config: Config, source: Source, store: SharedStore) -> Result<Context, ContextError> {
        let client = Client::new(config.spotify.api_base.as_str())?;
        let tokens = TokenStore::new(config.auth.token_store, TokenFiles::new(config.tokens_dir()?))?;
        Ok(Context { config: Arc::new(config), source, store, client, tokens })
    }

    /// The context for the configuration as it is now on disk, around the same store. The
    /// database cannot move while running: the instance lock is on the old one.
    pub async fn reloaded(&self) -> anyhow::Result<Context> {
        let explicit = match &self.source {
            Source::File(p) => Some(p.as_path()),
            Source::Defaults(_) => None,
        };
        let (config, source) = Config::load(explicit)?;
        if config.database_path()? != self.store.path() {
            anyhow::bail!("storage.database cannot change while spotguard runs; restart it instead");
        }
        // A channel whose secret cannot be read is refused now, not at its first alert.
        crate::notify::channel::build_all(&config, source.path(), &mut Default::default())?;
        self.store.set_presence_bridge(presence_bridge(&config)).await?;
        Ok(Context::around(config, source, self.store.clone())?)
    }

    /// The accounts to watch, as the config names them.
    pub fn account_names(&self) -> Vec<String> {
        self.config.account_names()
    }

    /// The Accounts service for `account`'s app; `None` without a Client ID.
    pub fn oauth(&self, account: &str) -> Result<Option<OAuth>, crate::auth::oauth::UrlError> {
        let client_id = self.config.client_id(account);
        if client_id.is_empty() {
            return Ok(None);
        }
        OAuth::new(
            client_id,
            self.config.spotify.accounts_base.as_str(),
            self.config.spotify.redirect_uri.as_str(),
            self.client.http().clone(),
        )
        .map(Some)
    }

    /// The token session of `account`.
    pub fn session(&self, account: &str) -> Session {
        let oauth = self.oauth(account).unwrap_or_else(|e| {
            tracing::warn!("cannot refresh tokens: {e}");
            None
        });
        Session::new(account, self.tokens.clone(), oauth)
    }

    /// Registers the accounts in the store and returns them.
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let names = self.account_names();
        self.store
            .call(move |s| {
                names
                    .into_iter()
                    .map(|name| Ok(Account { id: s.account(&name, Utc::now())?, name }))
                    .collect()
            })
            .await
    }
}
