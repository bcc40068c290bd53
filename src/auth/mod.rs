//! Tokens: the secret type, the token set, where it is kept, and how it is obtained.
//!
//! [`Secret`] never prints its value: not in `Debug`, not in errors, not in logs; only
//! [`Secret::expose`] reads it, where a request is built. Access tokens, refresh tokens,
//! authorization codes and PKCE verifiers are all secrets.
//! - [`files`]: the 0600 token files (the default store).
//! - [`oauth`]: the Accounts service: code exchange and refresh (oauth2 crate, PKCE).
//! - [`login`]: `spotguard login`'s loopback callback listener.
//! - [`session`]: one account's tokens in use: refresh before expiry and after a 401,
//!   the rotated refresh token saved before the new access token is used.

pub mod files;
pub mod login;
pub mod oauth;
pub mod session;

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

pub use files::TokenFiles;
pub use session::Session;

/// A token or other credential. Its `Debug` is `Secret(***)`; it has no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

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
    #[error("account {account} is not logged in (no token file at {path}): run `spotguard login`")]
    NotLoggedIn { account: String, path: PathBuf },
    #[error("token file {path} can be read by other users (mode {mode:o}); fix it with `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("token file {path} is damaged ({reason}); run `spotguard login` to replace it")]
    Damaged { path: PathBuf, reason: String },
    #[error("cannot access token file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("account name {0:?} is not allowed: use letters, digits, '-' and '_'")]
    BadAccountName(String),
}

impl TokenSet {
    /// When the refresh token dies: Spotify ends logins six months after authorisation,
    /// and refreshing does not extend that (since 2026).
    pub fn login_expires_at(&self) -> DateTime<Utc> {
        self.authorized_at.checked_add_months(Months::new(6)).unwrap_or(self.authorized_at)
    }
}

/// Where token sets are kept. One variant today; the OS secret store plugs in here.
#[derive(Debug, Clone)]
pub enum TokenStore {
    Files(TokenFiles),
}

impl TokenStore {
    pub fn load(&self, account: &str) -> Result<TokenSet, AuthError> {
        match self {
            TokenStore::Files(f) => f.load(account),
        }
    }

    pub fn save(&self, account: &str, tokens: &TokenSet) -> Result<(), AuthError> {
        match self {
            TokenStore::Files(f) => f.save(account, tokens),
        }
    }

    pub fn remove(&self, account: &str) -> Result<bool, AuthError> {
        match self {
            TokenStore::Files(f) => f.remove(account),
        }
    }

    /// Where `account`'s tokens are, for messages.
    pub fn describe(&self, account: &str) -> String {
        match self {
            TokenStore::Files(f) => {
                f.path(account).map(|p| p.display().to_string()).unwrap_or_else(|_| account.to_string())
            }
        }
    }
}
