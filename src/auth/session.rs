//! One account's tokens in use by the poller.
//!
//! The store is the source of truth and is read on every use (a small file, once a minute),
//! so a new `spotguard login` takes effect at the next poll without a restart. The access
//! token is refreshed when it is within [`REFRESH_MARGIN`] of expiry, and once after a 401.
//! A refresh saves the new token set (with the rotated refresh token) atomically *before*
//! the new access token is used: Spotify's PKCE refresh tokens are single-use, and a crash
//! between the two must not lock the person out. Refreshes of one account are serialised.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::oauth::{OAuth, TokenError};
use super::{AuthError, Secret, TokenSet, TokenStore};

/// Refresh this long before the access token expires, so a poll never starts with a token
/// that dies mid-request.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// Why no usable access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(
        "the access token is no longer accepted and cannot be refreshed without a Client ID: set \
         spotify.client_id in the config"
    )]
    NoClientId,
}

impl SessionError {
    /// The login is over: only `spotguard login` helps.
    pub fn is_access_lost(&self) -> bool {
        matches!(self, SessionError::Token(TokenError::Revoked | TokenError::NoRefreshToken))
    }

    /// Trying again later may work.
    pub fn is_transient(&self) -> bool {
        matches!(self, SessionError::Token(e) if e.is_transient())
    }
}

/// A usable access token and when its login began.
#[derive(Debug, Clone)]
pub struct Access {
    pub token: Secret,
    pub authorized_at: DateTime<Utc>,
    pub login_expires_at: DateTime<Utc>,
}

impl Access {
    fn of(t: &TokenSet) -> Access {
        Access {
            token: t.access_token.clone(),
            authorized_at: t.authorized_at,
            login_expires_at: t.login_expires_at(),
        }
    }
}

/// The tokens of one account.
#[derive(Debug)]
pub struct Session {
    account: String,
    store: TokenStore,
    /// `None` when no Client ID is configured: tokens then work until they expire.
    oauth: Option<OAuth>,
    /// Held across a refresh so two callers never spend the same single-use refresh token.
    refreshing: Mutex<()>,
}

impl Session {
    pub fn new(account: &str, store: TokenStore, oauth: Option<OAuth>) -> Session {
        Session { account: account.to_string(), store, oauth, refreshing: Mutex::new(()) }
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// The stored token set, with no call to Spotify.
    pub async fn stored(&self) -> Result<TokenSet, AuthError> {
        self.store.load(&self.account).await
    }

    /// An access token valid for at least [`REFRESH_MARGIN`], refreshing if needed.
    pub async fn access(&self) -> Result<Access, SessionError> {
        let tokens = self.store.load(&self.account).await?;
        if !expiring(&tokens) {
            return Ok(Access::of(&tokens));
        }
        let _one = self.refreshing.lock().await;
        // Another caller may have refreshed while this one waited.
        let tokens = self.store.load(&self.account).await?;
        if !expiring(&tokens) {
            return Ok(Access::of(&tokens));
        }
        self.refresh_locked(&tokens).await
    }

    /// After Spotify refused `rejected` with a 401: a newer token if there is one (a login or
    /// another refresh happened), else one refresh.
    pub async fn after_unauthorized(&self, rejected: &Secret) -> Result<Access, SessionError> {
        let _one = self.refreshing.lock().await;
        let tokens = self.store.load(&self.account).await?;
        if &tokens.access_token != rejected {
            return Ok(Access::of(&tokens));
        }
        self.refresh_locked(&tokens).await
    }

    async fn refresh_locked(&self, tokens: &TokenSet) -> Result<Access, SessionError> {
        let oauth = self.oauth.as_ref().ok_or(SessionError::NoClientId)?;
        let next = oauth.refresh(tokens).await?;
        // Saved before use: the old refresh token is already spent.
        self.store.save(&self.account, &next).await?;
        tracing::debug!(account = %self.account, expires_at = %next.expires_at, "access token refreshed");
        Ok(Access::of(&next))
    }
}

fn expiring(t: &TokenSet) -> bool {
    let margin = chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or(chrono::Duration::minutes(2));
    t.expires_at - margin <= Utc::now()
}
