//! Tokens: the secret type, the token set, where it is kept, and how it is obtained.
//!
//! [`Secret`] never prints its value: not in `Debug`, not in errors, not in logs; only
//! [`Secret::expose`] reads it, where a request is built. Access tokens, refresh tokens,
//! authorization codes and PKCE verifiers are all secrets.
//! - [`files`]: the 0600 token files.
//! - [`keyring`]: the OS secret store (freedesktop Secret Service) on Linux.
//! - [`lock`]: the per-account lock (a `flock`ed file beside the token files, whatever the
//!   backend) under which a process loads, refreshes and saves, so processes never spend
//!   one refresh token twice.
//! - [`oauth`]: the Accounts service: code exchange and refresh (oauth2 crate, PKCE).
//! - [`login`]: `spotguard login`'s loopback callback listener.
//! - [`session`]: one account's tokens in use: refresh before expiry and after a 401, under
//!   the lock, the rotated refresh token saved before the new access token is used.

pub mod files;
#[cfg(all(unix, not(target_os = "macos")))]
pub mod keyring;
pub mod lock;
pub mod login;
pub mod oauth;
pub mod session;

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::config::TokenStoreKind;
pub use files::TokenFiles;
pub use lock::TokenLock;
pub use session::Session;

/// A token or other credential. Its `Debug` is `Secret(***)`; it has no `Display`; its
/// bytes are overwritten when it is dropped, so a token does not linger in freed memory.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value itself, for building a request. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The token file's content. `version` lets a later spotguard read an older file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSet {
    pub version: u32,
    pub access_token: Secret,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// When the access token stops working.
    pub expires_at: DateTime<Utc>,
    /// Space-separated scopes Spotify granted.
    #[serde(default)]
    pub scope: String,
    /// When the person authorised the app: refresh tokens die 6 months after this.
    pub authorized_at: DateTime<Utc>,
}

/// The format written today.
pub const TOKEN_FILE_VERSION: u32 = 1;

/// Why tokens could not be read or written; each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "account {account} is not logged in (no tokens in {place}): run `spotguard login --account {account}`"
    )]
    NotLoggedIn { account: String, place: String },
    #[error("token file {path} can be read by other users (mode {mode:o}); fix it with `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("token file {path} is damaged ({reason}); run `spotguard login` to replace it")]
    Damaged { path: PathBuf, reason: String },
    #[error("cannot access token file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "another spotguard process has been refreshing these tokens for over {waited}s (it holds {path}); \
         try again, or stop the process that hangs"
    )]
    LockBusy { path: PathBuf, waited: u64 },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("account name {0:?} is not allowed: use letters, digits, '-' and '_'")]
    BadAccountName(String),
    #[cfg(all(unix, not(target_os = "macos")))]
    #[error(transparent)]
    Keyring(#[from] keyring::KeyringError),
    #[error("auth.token_store = \"keyring\" is not available on this platform yet; use \"file\" or \"auto\"")]
    NoKeyring,
}

impl TokenSet {
    /// A login made now: `access` works for `lifetime`, with the scopes spotguard asks for.
    pub fn new_login(access: Secret, refresh: Option<Secret>, lifetime: chrono::Duration) -> TokenSet {
        let now = Utc::now();
        TokenSet {
            version: TOKEN_FILE_VERSION,
            access_token: access,
            refresh_token: refresh,
            expires_at: now + lifetime,
            scope: oauth::SCOPES.join(" "),
            authorized_at: now,
        }
    }

    /// When the refresh token dies: Spotify ends logins six months after authorisation,
    /// and refreshing does not extend that (since 2026).
    pub fn login_expires_at(&self) -> DateTime<Utc> {
        self.authorized_at.checked_add_months(Months::new(6)).unwrap_or(self.authorized_at)
    }

    /// What tells this login from another without being a secret: the first 16 hex digits
    /// of a SHA-256 of its refresh token (of its access token if it has none). The refresh
    /// token is what dies with `invalid_grant`, so a token set with another one is another
    /// login, whatever its `authorized_at` says. 64 bits of a hash of a long random token
    /// reveal nothing usable, and are plenty to tell a handful of logins apart.
    pub fn login_fingerprint(&self) -> String {
        match &self.refresh_token {
            Some(r) => crate::text::fingerprint("spotguard refresh token", r.expose()),
            None => crate::text::fingerprint("spotguard access token", self.access_token.expose()),
        }
    }
}

/// Where token sets are kept: the 0600 files, the OS secret store, or (auto) the secret
/// store where one answers and the files otherwise. In auto mode a save to the secret store
/// removes the file copy, so a file that exists is always the newest copy (a save that fell
/// back to the file while the secret store was locked): auto reads the file first.
/// Every backend takes its [`lock`] in the token files' directory.
#[derive(Debug, Clone)]
pub enum TokenStore {
    Files(TokenFiles),
    #[cfg(all(unix, not(target_os = "macos")))]
    Keyring {
        keyring: keyring::Keyring,
        /// Only for the lock file: this backend writes no token file.
        locks: TokenFiles,
    },
    #[cfg(all(unix, not(target_os = "macos")))]
    Auto {
        keyring: keyring::Keyring,
        files: TokenFiles,
    },
}

impl TokenStore {
    /// The store `kind` names, with token files in `files`.
    pub fn new(kind: TokenStoreKind, files: TokenFiles) -> Result<TokenStore, AuthError> {
        #[cfg(all(unix, not(target_os = "macos")))]
        return Ok(match kind {
            TokenStoreKind::File => TokenStore::Files(files),
            TokenStoreKind::Keyring => TokenStore::Keyring { keyring: keyring::Keyring, locks: files },
            TokenStoreKind::Auto => TokenStore::Auto { keyring: keyring::Keyring, files },
        });
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        match kind {
            TokenStoreKind::Keyring => Err(AuthError::NoKeyring),
            TokenStoreKind::File | TokenStoreKind::Auto => Ok(TokenStore::Files(files)),
        }
    }

    /// The token files of this store: the tokens themselves, or only their locks (keyring).
    pub fn files(&self) -> &TokenFiles {
        match self {
            TokenStore::Files(files) => files,
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Keyring { locks, .. } => locks,
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Auto { files, .. } => files,
        }
    }

    /// Takes `account`'s token lock, waiting at most [`lock::LOCK_WAIT`] for another process.
    /// Hold it across load, refresh and save; a login or logout holds it to write.
    pub async fn lock(&self, account: &str) -> Result<TokenLock, AuthError> {
        match self {
            TokenStore::Files(files) => files.lock(account).await,
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Keyring { locks: files, .. } | TokenStore::Auto { files, .. } => {
                files.lock(account).await
            }
        }
    }

    pub async fn load(&self, account: &str) -> Result<TokenSet, AuthError> {
        match self {
            TokenStore::Files(f) => load_file(f, account).await,
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Keyring { keyring: k, .. } => k.load(account).await?.ok_or_else(|| {
                AuthError::NotLoggedIn { account: account.to_string(), place: "the OS secret store".into() }
            }),
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Auto { keyring, files } => match load_file(files, account).await {
                Err(AuthError::NotLoggedIn { .. }) => match keyring.load(account).await {
                    Ok(Some(t)) => Ok(t),
                    // No secret store here (headless): the file is where tokens would be.
                    Ok(None) | Err(keyring::KeyringError::Unavailable(_)) => load_file(files, account).await,
                    // A locked or failing store may well hold the tokens: say so.
                    Err(e) => Err(e.into()),
                },
                other => other,
            },
        }
    }

    pub async fn save(&self, account: &str, tokens: &TokenSet) -> Result<(), AuthError> {
        match self {
            TokenStore::Files(f) => save_file(f, account, tokens).await,
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Keyring { keyring: k, .. } => Ok(k.save(account, tokens).await?),
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Auto { keyring, files } => match keyring.save(account, tokens).await {
                Ok(()) => {
                    // One source of truth: an older file copy would shadow nothing but confuse.
                    remove_file(files, account).await?;
                    Ok(())
                }
                Err(e) => {
                    tracing::debug!("secret store not used, saving to the token file: {e}");
                    save_file(files, account, tokens).await
                }
            },
        }
    }

    /// Deletes the account's tokens wherever they are; whether there were any.
    pub async fn remove(&self, account: &str) -> Result<bool, AuthError> {
        match self {
            TokenStore::Files(f) => remove_file(f, account).await,
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Keyring { keyring: k, .. } => Ok(k.remove(account).await?),
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Auto { keyring, files } => {
                let in_keyring = match keyring.remove(account).await {
                    Ok(found) => found,
                    Err(keyring::KeyringError::Unavailable(_)) => false,
                    Err(e) => return Err(e.into()),
                };
                Ok(remove_file(files, account).await? || in_keyring)
            }
        }
    }

    /// Where `account`'s tokens are now, for messages.
    pub async fn describe(&self, account: &str) -> String {
        let file = |f: &TokenFiles| f.path(account).map(|p| p.display().to_string()).unwrap_or_default();
        match self {
            TokenStore::Files(f) => file(f),
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Keyring { .. } => "the OS secret store".into(),
            #[cfg(all(unix, not(target_os = "macos")))]
            TokenStore::Auto { keyring, files } => match keyring.load(account).await {
                Ok(Some(_)) => "the OS secret store".into(),
                _ => file(files),
            },
        }
    }
}

async fn load_file(files: &TokenFiles, account: &str) -> Result<TokenSet, AuthError> {
    let account = account.to_string();
    files.off_thread(move |f| f.load(&account)).await
}

async fn save_file(files: &TokenFiles, account: &str, tokens: &TokenSet) -> Result<(), AuthError> {
    let (account, tokens) = (account.to_string(), tokens.clone());
    files.off_thread(move |f| f.save(&account, &tokens)).await
}

async fn remove_file(files: &TokenFiles, account: &str) -> Result<bool, AuthError> {
    let account = account.to_string();
    files.off_thread(move |f| f.remove(&account)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(access: &str, refresh: Option<&str>) -> TokenSet {
        TokenSet::new_login(Secret::new(access), refresh.map(Secret::new), chrono::Duration::hours(1))
    }

    #[test]
    fn the_login_fingerprint_follows_the_refresh_token_and_hides_it() {
        let a = login("at-1", Some("rt-secret-value-1"));
        let fp = a.login_fingerprint();
        assert_eq!(fp.len(), 16);
        assert!(fp.chars().all(|c| c.is_ascii_hexdigit()), "{fp}");
        assert!(!fp.contains("secret"));
        // A refresh without rotation (new access token, same refresh token): the same login.
        let refreshed = TokenSet { access_token: Secret::new("at-2"), ..a.clone() };
        assert_eq!(refreshed.login_fingerprint(), fp);
        // Another refresh token, same authorisation time: another login.
        let other = TokenSet { refresh_token: Some(Secret::new("rt-secret-value-2")), ..a.clone() };
        assert_ne!(other.login_fingerprint(), fp);
        // Without a refresh token the access token tells logins apart.
        assert_ne!(login("at-1", None).login_fingerprint(), login("at-2", None).login_fingerprint());
        assert_ne!(login("x", None).login_fingerprint(), login("y", Some("x")).login_fingerprint());
    }

    /// Every backend locks the same file, so processes agree whatever `auth.token_store` says.
    #[cfg(all(unix, not(target_os = "macos")))]
    #[tokio::test]
    async fn every_backend_takes_the_same_lock_beside_the_token_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TokenFiles::new(dir.path().join("tokens"));
        let kinds = [TokenStoreKind::File, TokenStoreKind::Keyring, TokenStoreKind::Auto];
        for kind in kinds {
            let store = TokenStore::new(kind, files.clone()).expect("store");
            let held = store.lock("default").await.expect("lock");
            assert!(dir.path().join("tokens/default.lock").is_file(), "{kind:?}");
            for second in kinds {
                let other = TokenStore::new(second, files.clone()).expect("store");
                let waited =
                    tokio::time::timeout(std::time::Duration::from_millis(60), other.lock("default")).await;
                assert!(waited.is_err(), "{kind:?} and {second:?} exclude each other");
            }
            drop(held);
        }
    }
}
