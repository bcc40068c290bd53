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
        match self.refresh_locked(&tokens).await {
            // The token endpoint is down but the token still works for a moment: use it.
            Err(e) if e.is_transient() && tokens.expires_at > Utc::now() => {
                tracing::debug!(account = %self.account, "refresh failed ({e}); the current token still works");
                Ok(Access::of(&tokens))
            }
            other => other,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{TOKEN_FILE_VERSION, TokenFiles};
    use crate::fake::{FakeSpotify, Fault};

    const CLIENT: &str = "session-test-client";

    struct Setup {
        _dir: tempfile::TempDir,
        fake: FakeSpotify,
        files: TokenFiles,
        session: Session,
    }

    /// A session on a fresh login whose access token expires `expires_in` from now.
    async fn setup(expires_in: chrono::Duration) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeSpotify::start().await.expect("fake");
        let (access, refresh) = fake.handle().issue_tokens(CLIENT);
        let files = TokenFiles::new(dir.path());
        files
            .save(
                "default",
                &TokenSet {
                    version: TOKEN_FILE_VERSION,
                    access_token: Secret::new(access),
                    refresh_token: Some(Secret::new(refresh)),
                    expires_at: Utc::now() + expires_in,
                    scope: "user-read-playback-state".into(),
                    authorized_at: Utc::now() - chrono::Duration::days(3),
                },
            )
            .expect("save");
        let http = reqwest::Client::builder().no_proxy().build().expect("http");
        let oauth =
            OAuth::new(CLIENT, &fake.accounts_base(), "http://127.0.0.1:1/callback", http).expect("oauth");
        let session = Session::new("default", TokenStore::Files(files.clone()), Some(oauth));
        Setup { _dir: dir, fake, files, session }
    }

    #[tokio::test]
    async fn a_fresh_token_is_used_without_a_refresh() {
        let s = setup(chrono::Duration::hours(1)).await;
        let before = s.files.load("default").expect("load");
        let access = s.session.access().await.expect("access");
        assert_eq!(access.token, before.access_token);
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 0);
    }

    #[tokio::test]
    async fn an_expiring_token_is_refreshed_and_the_rotated_token_saved_first() {
        let s = setup(chrono::Duration::seconds(30)).await;
        let before = s.files.load("default").expect("load");
        let access = s.session.access().await.expect("access");
        let after = s.files.load("default").expect("load");
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1);
        assert_eq!(access.token, after.access_token, "what is used is what is stored");
        assert_ne!(after.access_token, before.access_token);
        assert_ne!(after.refresh_token, before.refresh_token, "rotated");
        assert_eq!(after.authorized_at, before.authorized_at, "refreshing does not extend the login");
        // The old refresh token is spent: the stored one is the only one that works.
        assert!(s.session.after_unauthorized(&after.access_token).await.is_ok());
    }

    #[tokio::test]
    async fn a_down_token_endpoint_is_transient_and_a_still_valid_token_is_kept() {
        let s = setup(chrono::Duration::seconds(30)).await;
        s.fake.handle().push_token_fault(Fault::Unavailable);
        let before = s.files.load("default").expect("load");
        let access = s.session.access().await.expect("the current token still works");
        assert_eq!(access.token, before.access_token);

        let s = setup(chrono::Duration::seconds(-30)).await;
        s.fake.handle().push_token_fault(Fault::Unavailable);
        let e = s.session.access().await.expect_err("expired and cannot refresh");
        assert!(e.is_transient() && !e.is_access_lost(), "{e}");
    }

    #[tokio::test]
    async fn invalid_grant_means_access_lost() {
        let s = setup(chrono::Duration::seconds(-30)).await;
        s.fake.handle().revoke_refresh_tokens();
        let e = s.session.access().await.expect_err("revoked");
        assert!(e.is_access_lost(), "{e}");
        assert!(e.to_string().contains("invalid_grant"), "{e}");
    }

    #[tokio::test]
    async fn after_a_401_a_newer_stored_token_is_used_without_refreshing() {
        let s = setup(chrono::Duration::hours(1)).await;
        let stale = Secret::new("an-older-token");
        let access = s.session.after_unauthorized(&stale).await.expect("newer token");
        assert_eq!(access.token, s.files.load("default").expect("load").access_token);
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 0);
    }
}
