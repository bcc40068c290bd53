//! One account's tokens in use by the poller.
//!
//! The token set is kept in memory between polls: a poll costs no store access (with the OS
//! secret store that would be a D-Bus round trip per poll). The store stays the source of
//! truth: it is read again before every refresh and after every 401, so a new `spotguard
//! login` is adopted instead of being overwritten by a refresh of the old login. The access
//! token is refreshed when it is within [`REFRESH_MARGIN`] of expiry, and once after a 401.
//!
//! A refresh runs under the account's token lock ([`super::lock`]): load, refresh, save,
//! release. The store is read again once the lock is held, and a token another process
//! refreshed meanwhile is used as it is: a refresh token is never spent twice, by this
//! process or another (the daemon, `check` and `doctor` all refresh). The new token set
//! (with the rotated refresh token) is saved atomically *before* the new access token is
//! used: a crash between the two must not lock the person out. An `invalid_grant` makes the
//! session look at the store once more: a writer that takes no lock (an older spotguard, a
//! token put in place by hand) may have put another login there, which is then used.

use std::collections::HashMap;
use std::path::PathBuf;
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
    /// The login is over (`invalid_grant`, or no refresh token left).
    #[error("{cause}")]
    AccessLost {
        /// The dead login's [`TokenSet::login_fingerprint`]: what the daemon waits to see
        /// replaced before polling again.
        login: String,
        cause: TokenError,
    },
    #[error(
        "the access token is no longer accepted and cannot be refreshed without a Client ID: set \
         spotify.client_id in the config"
    )]
    NoClientId,
}

impl SessionError {
    /// The login is over: only `spotguard login` helps.
    pub fn is_access_lost(&self) -> bool {
        matches!(self, SessionError::AccessLost { .. })
    }

    /// The fingerprint of the login that is over, if that is what this error says.
    pub fn lost_login(&self) -> Option<&str> {
        match self {
            SessionError::AccessLost { login, .. } => Some(login),
            _ => None,
        }
    }

    /// Trying again later may work.
    pub fn is_transient(&self) -> bool {
        match self {
            SessionError::Token(e) => e.is_transient(),
            SessionError::Auth(AuthError::LockBusy { .. }) => true,
            _ => false,
        }
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
    /// The token set in use. Held across a refresh so two callers of this session wait for
    /// one refresh (the token lock does the same between processes, and between sessions).
    held: Mutex<Held>,
}

/// What the session holds between polls.
#[derive(Debug, Default)]
struct Held {
    /// The token set last read or written; `None` until the first use.
    tokens: Option<TokenSet>,
    /// A refresh succeeded but saving it failed (disk full, keyring locked): the store holds
    /// a spent refresh token, so these tokens are the only good ones. They are used, and
    /// saved again at each use until that works.
    unsaved: bool,
}

/// Refreshed tokens whose save failed, by the account's token file: they outlive the session
/// that refreshed them, so the sessions a reload builds (SIGHUP) take them up instead of the
/// spent refresh token in the store. In this process's memory only, as a session's are; the
/// entry goes when a save works or the store turns out to hold another login.
static UNSAVED: std::sync::LazyLock<std::sync::Mutex<HashMap<PathBuf, TokenSet>>> =
    std::sync::LazyLock::new(Default::default);

impl Session {
    pub fn new(account: &str, store: TokenStore, oauth: Option<OAuth>) -> Session {
        Session { account: account.to_string(), store, oauth, held: Mutex::new(Held::default()) }
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
        let mut held = self.held.lock().await;
        self.retry_save(&mut held).await;
        if let Some(t) = held.tokens.as_ref().filter(|t| !expiring(t)) {
            return Ok(Access::of(t));
        }
        // First use, or time to refresh: the store may hold a newer login.
        let tokens = self.current(&mut held).await?;
        if !expiring(&tokens) {
            return Ok(hold(&mut held, tokens));
        }
        match self.refresh_locked(&mut held, None).await {
            Ok(access) => Ok(access),
            // The token endpoint is down (or another process's refresh hangs) but the token
            // still works for a moment: use it.
            Err(e) if e.is_transient() && tokens.expires_at > Utc::now() => {
                tracing::debug!(account = %self.account, "refresh failed ({e}); the current token still works");
                Ok(hold(&mut held, tokens))
            }
            Err(e) => {
                if !held.unsaved {
                    held.tokens = None;
                }
                Err(e)
            }
        }
    }

    /// After Spotify refused `rejected` with a 401: a newer token if there is one (a login or
    /// another refresh happened), else one refresh.
    pub async fn after_unauthorized(&self, rejected: &Secret) -> Result<Access, SessionError> {
        let mut held = self.held.lock().await;
        self.retry_save(&mut held).await;
        let tokens = self.current(&mut held).await?;
        if &tokens.access_token != rejected {
            return Ok(hold(&mut held, tokens));
        }
        self.refresh_locked(&mut held, Some(rejected)).await
    }

    /// The token set to start from: the store's, unless it holds a spent token because the
    /// last save failed (in this session, or in one before a reload).
    async fn current(&self, held: &mut Held) -> Result<TokenSet, AuthError> {
        if !held.unsaved
            && let Some(t) = self.unsaved()
        {
            held.tokens = Some(t);
            held.unsaved = true;
        }
        match (&held.tokens, held.unsaved) {
            (Some(t), true) => Ok(t.clone()),
            _ => self.store.load(&self.account).await,
        }
    }

    /// Under the token lock: the store's token if another process refreshed it meanwhile,
    /// else one refresh, saved before the lock is released. `rejected`: an access token
    /// Spotify refused, which does not count as usable however long it has left.
    async fn refresh_locked(
        &self,
        held: &mut Held,
        rejected: Option<&Secret>,
    ) -> Result<Access, SessionError> {
        let oauth = self.oauth.as_ref().ok_or(SessionError::NoClientId)?;
        let _lock = self.store.lock(&self.account).await?;
        let tokens = self.current(held).await?;
        if usable(&tokens, rejected) {
            tracing::debug!(account = %self.account, "the stored token was refreshed meanwhile (by another process); using it");
            return Ok(hold(held, tokens));
        }
        let cause = match oauth.refresh(&tokens).await {
            Ok(next) => return Ok(self.keep(next, held).await),
            Err(e @ TokenError::Revoked) => e,
            Err(e @ TokenError::NoRefreshToken) => return Err(lost(&tokens, e)),
            Err(e) => return Err(e.into()),
        };
        // Once more from the store: another login may have been put there by a writer that
        // takes no lock. The same refresh token there is the dead one.
        let again = match self.store.load(&self.account).await {
            Ok(t) if t.refresh_token.is_some() && t.refresh_token != tokens.refresh_token => t,
            _ => return Err(lost(&tokens, cause)),
        };
        tracing::info!(account = %self.account, "the refresh token was refused, but the store holds another login; using it");
        held.unsaved = false;
        self.set_unsaved(None);
        if usable(&again, rejected) {
            return Ok(hold(held, again));
        }
        match oauth.refresh(&again).await {
            Ok(next) => Ok(self.keep(next, held).await),
            Err(e @ (TokenError::Revoked | TokenError::NoRefreshToken)) => {
                held.tokens = None;
                Err(lost(&again, e))
            }
            Err(e) => {
                held.tokens = None;
                Err(e.into())
            }
        }
    }

    /// Saves freshly refreshed tokens (the old refresh token is already spent) and holds them.
    async fn keep(&self, next: TokenSet, held: &mut Held) -> Access {
        held.unsaved = match self.store.save(&self.account, &next).await {
            Ok(()) => {
                self.set_unsaved(None);
                false
            }
            Err(e) => {
                self.set_unsaved(Some(&next));
                tracing::error!(
                    account = %self.account,
                    "the refreshed tokens could not be saved ({e}); they are kept in memory and saved again at the next poll"
                );
                true
            }
        };
        tracing::debug!(account = %self.account, expires_at = %next.expires_at, "access token refreshed");
        hold(held, next)
    }

    /// Saves tokens whose save failed before, under the token lock.
    async fn retry_save(&self, held: &mut Held) {
        if let (true, Some(t)) = (held.unsaved, &held.tokens) {
            if self.unsaved_key().is_some() && self.unsaved().as_ref() != Some(t) {
                // Another session of this process (after a reload) saved them or went on
                // from them: the store is the place to read again.
                held.unsaved = false;
                held.tokens = None;
                return;
            }
            let saved = match self.store.lock(&self.account).await {
                Ok(_lock) => match self.store.load(&self.account).await {
                    // A login made since (`spotguard login` while saves failed) is newer than
                    // these refreshed tokens of the old one: it is adopted, never overwritten.
                    Ok(stored) if stored.authorized_at > t.authorized_at => {
                        tracing::info!(account = %self.account, "a newer login is in the store; using it");
                        held.unsaved = false;
                        self.set_unsaved(None);
                        held.tokens = Some(stored);
                        return;
                    }
                    _ => self.store.save(&self.account, t).await,
                },
                Err(e) => Err(e),
            };
            match saved {
                Ok(()) => {
                    held.unsaved = false;
                    self.set_unsaved(None);
                    tracing::info!(account = %self.account, "the refreshed tokens are saved now");
                }
                Err(e) => tracing::debug!(account = %self.account, "saving the tokens failed again: {e}"),
            }
        }
    }
}

impl Session {
    /// Where this account's unsaved tokens are kept in [`UNSAVED`]: its token file.
    fn unsaved_key(&self) -> Option<PathBuf> {
        self.store.files().path(&self.account).ok()
    }

    /// This account's refreshed tokens that no save has taken yet, if any ([`UNSAVED`]).
    fn unsaved(&self) -> Option<TokenSet> {
        let key = self.unsaved_key()?;
        UNSAVED.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned()
    }

    /// Records (`Some`) or clears (`None`) this account's unsaved tokens.
    fn set_unsaved(&self, tokens: Option<&TokenSet>) {
        let Some(key) = self.unsaved_key() else { return };
        let mut unsaved = UNSAVED.lock().unwrap_or_else(|e| e.into_inner());
        match tokens {
            Some(t) => unsaved.insert(key, t.clone()),
            None => unsaved.remove(&key),
        };
    }
}

/// Holds `tokens` as the ones in use and returns their access token.
fn hold(held: &mut Held, tokens: TokenSet) -> Access {
    let access = Access::of(&tokens);
    held.tokens = Some(tokens);
    access
}

/// The login of `tokens` is over.
fn lost(tokens: &TokenSet, cause: TokenError) -> SessionError {
    SessionError::AccessLost { login: tokens.login_fingerprint(), cause }
}

fn expiring(t: &TokenSet) -> bool {
    let margin = chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or(chrono::Duration::minutes(2));
    t.expires_at - margin <= Utc::now()
}

/// Whether `t` can be used without a refresh: not about to expire, and not refused.
fn usable(t: &TokenSet, rejected: Option<&Secret>) -> bool {
    !expiring(t) && Some(&t.access_token) != rejected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenFiles;
    use crate::fake::{FakeSpotify, Fault};

    const CLIENT: &str = "session-test-client";

    struct Setup {
        _dir: tempfile::TempDir,
        fake: FakeSpotify,
        files: TokenFiles,
        oauth: OAuth,
        session: Session,
    }

    impl Setup {
        /// Another session on the same store, as another process would have.
        fn another_session(&self) -> Session {
            Session::new("default", TokenStore::Files(self.files.clone()), Some(self.oauth.clone()))
        }
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
                    authorized_at: Utc::now() - chrono::Duration::days(3),
                    ..TokenSet::new_login(Secret::new(access), Some(Secret::new(refresh)), expires_in)
                },
            )
            .expect("save");
        let http = reqwest::Client::builder().no_proxy().build().expect("http");
        let oauth =
            OAuth::new(CLIENT, &fake.accounts_base(), "http://127.0.0.1:1/callback", http).expect("oauth");
        let session = Session::new("default", TokenStore::Files(files.clone()), Some(oauth.clone()));
        Setup { _dir: dir, fake, files, oauth, session }
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
        let stored = s.files.load("default").expect("load");
        assert_eq!(e.lost_login(), Some(stored.login_fingerprint().as_str()), "names the dead login");
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1, "the same token is not tried again");
        let secret = stored.refresh_token.expect("refresh token");
        assert!(!format!("{e} {e:?}").contains(secret.expose()), "no secret in the error");
    }

    /// Waits until the fake has received `n` refresh requests (answered or not).
    async fn refresh_requests(s: &Setup, n: usize) {
        let start = std::time::Instant::now();
        while s.fake.handle().token_requests("refresh_token") < n {
            assert!(start.elapsed() < Duration::from_secs(10), "no refresh request came");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Once the session's refresh (made to hang a moment at the fake by the caller) is in
    /// flight, kills its refresh token and writes another login to the store (same
    /// authorisation time, another refresh token, an access token good for `expires_in`).
    /// Returns that login.
    async fn replace_during_refresh(s: &Setup, before: &TokenSet, expires_in: chrono::Duration) -> TokenSet {
        refresh_requests(s, 1).await;
        s.fake.handle().revoke_refresh_tokens();
        let (access, refresh) = s.fake.handle().issue_tokens(CLIENT);
        let other = TokenSet {
            access_token: Secret::new(access),
            refresh_token: Some(Secret::new(refresh)),
            expires_at: Utc::now() + expires_in,
            ..before.clone()
        };
        s.files.save("default", &other).expect("save");
        other
    }

    /// Issue 10: the login was replaced while the refresh was in flight, by a writer that
    /// takes no lock; the refused refresh is followed by one with the stored login.
    #[tokio::test]
    async fn invalid_grant_then_another_stored_refresh_token_is_retried_and_works() {
        let s = setup(chrono::Duration::seconds(-30)).await;
        let before = s.files.load("default").expect("load");
        // The session's refresh hangs a moment at the fake, long enough to replace the login
        // with one whose access token is about to expire: it must be refreshed.
        s.fake.handle().push_token_fault(Fault::Hang { millis: 300 });
        let (access, other) = tokio::join!(
            s.session.access(),
            replace_during_refresh(&s, &before, chrono::Duration::seconds(30))
        );
        let access = access.expect("retried with the stored login");
        let after = s.files.load("default").expect("load");
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 2, "one refused, one retried");
        assert_eq!(access.token, after.access_token, "what is used is what is stored");
        assert_ne!(after.access_token, other.access_token, "the stored login was refreshed");
        assert_ne!(after.refresh_token, other.refresh_token, "and its rotated refresh token saved");
        assert_eq!(after.authorized_at, before.authorized_at);
    }

    /// The same, when the stored login has a good access token: it is used as it is.
    #[tokio::test]
    async fn invalid_grant_then_another_stored_login_with_a_good_token_uses_it_without_a_refresh() {
        let s = setup(chrono::Duration::seconds(-30)).await;
        let before = s.files.load("default").expect("load");
        s.fake.handle().push_token_fault(Fault::Hang { millis: 300 });
        let (access, other) =
            tokio::join!(s.session.access(), replace_during_refresh(&s, &before, chrono::Duration::hours(1)));
        assert_eq!(access.expect("the stored login").token, other.access_token);
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1);
        assert_eq!(s.files.load("default").expect("load"), other, "left as it was");
    }

    /// Two sessions (as the daemon and `spotguard check` have) find the token expiring at
    /// the same moment, against a rotating token endpoint: one refreshes, under the lock;
    /// the other takes the lock after it, finds the new token in the store and uses it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_sessions_refreshing_at_once_spend_the_refresh_token_once() {
        let s = setup(chrono::Duration::seconds(30)).await;
        let before = s.files.load("default").expect("load");
        // The first refresh is slow, so the second session surely comes while it runs.
        s.fake.handle().push_token_fault(Fault::Hang { millis: 300 });
        let other = s.another_session();
        let (a, b) = tokio::join!(s.session.access(), other.access());
        let (a, b) = (a.expect("first"), b.expect("second"));
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1, "the refresh token was spent once");
        assert_eq!(a.token, b.token, "both use the one new token");
        let after = s.files.load("default").expect("load");
        assert_eq!(after.access_token, a.token);
        assert_ne!(after.refresh_token, before.refresh_token, "rotated and saved");
        // And the new refresh token is the good one: the next refresh works.
        s.fake.handle().expire_access_tokens();
        assert!(other.after_unauthorized(&b.token).await.is_ok());
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 2);
    }

    #[tokio::test]
    async fn a_refresh_waits_for_the_token_lock_and_a_busy_lock_is_transient() {
        let s = setup(chrono::Duration::seconds(-30)).await;
        let held = TokenStore::Files(s.files.clone()).lock("default").await.expect("lock");
        // Another process holds the lock: this refresh waits (bounded), then fails as transient.
        let waiting = tokio::time::timeout(Duration::from_millis(300), s.session.access()).await;
        assert!(waiting.is_err(), "still waiting for the lock");
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 0, "nothing spent while locked");
        drop(held);
        s.session.access().await.expect("refreshed once the lock is free");
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1);
        let busy = SessionError::Auth(AuthError::LockBusy { path: "x".into(), waited: 40 });
        assert!(busy.is_transient() && !busy.is_access_lost());
    }

    #[tokio::test]
    async fn after_a_401_a_newer_stored_token_is_used_without_refreshing() {
        let s = setup(chrono::Duration::hours(1)).await;
        let stale = Secret::new("an-older-token");
        let access = s.session.after_unauthorized(&stale).await.expect("newer token");
        assert_eq!(access.token, s.files.load("default").expect("load").access_token);
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 0);
    }

    #[tokio::test]
    async fn polls_use_the_token_in_memory_without_reading_the_store() {
        let s = setup(chrono::Duration::hours(1)).await;
        let first = s.session.access().await.expect("access");
        s.files.remove("default").expect("remove");
        let again = s.session.access().await.expect("no store read needed");
        assert_eq!(first.token, again.token);
    }

    #[tokio::test]
    async fn a_newer_login_in_the_store_is_adopted_not_overwritten_by_a_refresh() {
        let s = setup(chrono::Duration::seconds(30)).await;
        let old = s.session.access().await.expect("refreshed once");
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1);
        // `spotguard login` writes a new login while the daemon holds the old one.
        let (access, refresh) = s.fake.handle().issue_tokens(CLIENT);
        let login =
            TokenSet::new_login(Secret::new(access), Some(Secret::new(refresh)), chrono::Duration::hours(1));
        s.files.save("default", &login).expect("save");
        // The old token is refused: the store's newer login is used, no refresh spent.
        let now = s.session.after_unauthorized(&old.token).await.expect("adopted");
        assert_eq!(now.token, login.access_token);
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1);
        assert_eq!(s.files.load("default").expect("load"), login, "the new login is intact");
    }

    #[tokio::test]
    async fn unsaved_refreshed_tokens_never_overwrite_a_newer_login() {
        let s = setup(chrono::Duration::seconds(30)).await;
        s.files.fail_saves.store(true, std::sync::atomic::Ordering::SeqCst);
        let old = s.session.access().await.expect("refreshed, held in memory");
        // `spotguard login` (another process: its own handle on the files) saves a new login.
        let (access, refresh) = s.fake.handle().issue_tokens(CLIENT);
        let login =
            TokenSet::new_login(Secret::new(access), Some(Secret::new(refresh)), chrono::Duration::hours(1));
        let dir = s.files.path("default").expect("path").parent().expect("dir").to_path_buf();
        TokenFiles::new(dir).save("default", &login).expect("save the new login");
        s.files.fail_saves.store(false, std::sync::atomic::Ordering::SeqCst);
        let now = s.session.access().await.expect("access");
        assert_eq!(s.files.load("default").expect("load"), login, "the new login is intact");
        assert_eq!(now.token, login.access_token);
        assert_ne!(now.token, old.token);
    }

    /// A reload (SIGHUP) builds new sessions: refreshed tokens that could not be saved pass
    /// to them, so the spent refresh token in the store is never used again.
    #[tokio::test]
    async fn refreshed_tokens_that_cannot_be_saved_outlive_their_session() {
        let s = setup(chrono::Duration::seconds(30)).await;
        s.files.fail_saves.store(true, std::sync::atomic::Ordering::SeqCst);
        let first = s.session.access().await.expect("refreshed, held in memory");
        let reloaded = s.another_session();
        let again = reloaded.access().await.expect("the unsaved tokens, not the spent ones");
        assert_eq!(again.token, first.token);
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1, "the spent refresh token is not used");
        s.files.fail_saves.store(false, std::sync::atomic::Ordering::SeqCst);
        reloaded.access().await.expect("saved now");
        assert_eq!(s.files.load("default").expect("load").access_token, first.token);
        // Saved: the old session goes back to the store instead of saving its copy again.
        s.session.access().await.expect("the old session still works");
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1);
    }

    #[tokio::test]
    async fn refreshed_tokens_that_cannot_be_saved_are_kept_and_saved_later() {
        let s = setup(chrono::Duration::seconds(30)).await;
        // Saves fail (as on a full disk) while the refreshed token is held.
        s.files.fail_saves.store(true, std::sync::atomic::Ordering::SeqCst);
        let first = s.session.access().await.expect("refreshed, held in memory");
        let again = s.session.access().await.expect("still usable");
        assert_eq!(first.token, again.token, "no second refresh of a spent token");
        assert_eq!(s.fake.handle().token_requests("refresh_token"), 1);
        assert_ne!(s.files.load("default").expect("load").access_token, first.token, "not saved yet");
        s.files.fail_saves.store(false, std::sync::atomic::Ordering::SeqCst);
        s.session.access().await.expect("saved now");
        assert_eq!(s.files.load("default").expect("load").access_token, first.token);
    }
}
