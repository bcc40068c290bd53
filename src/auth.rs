//! Tokens: the secret type, and the per-account token file that `spotguard login` writes.
//!
//! A token file is JSON, one per account, at `<data dir>/tokens/<account>.json`, mode 0600
//! in a 0700 directory, written atomically (temp file, fsync, rename). A file that group or
//! others can read is refused, as ssh refuses such keys. [`Secret`] never prints its value:
//! not in `Debug`, not in errors, not in logs; only [`Secret::expose`] reads it, at the one
//! place a request header is built.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// The token files of one installation.
#[derive(Debug, Clone)]
pub struct TokenFiles {
    dir: PathBuf,
}

impl TokenFiles {
    pub fn new(dir: impl Into<PathBuf>) -> TokenFiles {
        TokenFiles { dir: dir.into() }
    }

    /// The file of `account`. Names are checked so a name cannot point outside the dir.
    pub fn path(&self, account: &str) -> Result<PathBuf, AuthError> {
        let ok = !account.is_empty()
            && account.len() <= 64
            && account.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(AuthError::BadAccountName(account.to_string()));
        }
        Ok(self.dir.join(format!("{account}.json")))
    }

    /// Reads the tokens of `account`, refusing a file others can read.
    pub fn load(&self, account: &str) -> Result<TokenSet, AuthError> {
        let path = self.path(account)?;
        let io = |source| AuthError::Io { path: path.clone(), source };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuthError::NotLoggedIn { account: account.to_string(), path });
            }
            Err(e) => return Err(io(e)),
        };
        check_private(&path, &meta)?;
        let text = std::fs::read(&path).map_err(io)?;
        let set: TokenSet = serde_json::from_slice(&text)
            .map_err(|e| AuthError::Damaged { path: path.clone(), reason: e.to_string() })?;
        if set.version > TOKEN_FILE_VERSION {
            return Err(AuthError::Damaged {
                path,
                reason: format!("written by a newer spotguard (format {})", set.version),
            });
        }
        Ok(set)
    }

    /// Writes the tokens of `account` atomically: a crash leaves the old file or the new one.
    pub fn save(&self, account: &str, tokens: &TokenSet) -> Result<(), AuthError> {
        let path = self.path(account)?;
        let io = |source| AuthError::Io { path: path.clone(), source };
        create_private_dir(&self.dir).map_err(io)?;
        let tmp = self.dir.join(format!(".{account}.json.tmp"));
        let json = serde_json::to_vec_pretty(tokens)
            .map_err(|e| AuthError::Damaged { path: path.clone(), reason: e.to_string() })?;
        let mut file = private_file(&tmp).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// Deletes the tokens of `account`; absent is fine.
    pub fn remove(&self, account: &str) -> Result<bool, AuthError> {
        let path = self.path(account)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(AuthError::Io { path, source }),
        }
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AuthError::Permissions { path: path.to_path_buf(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), AuthError> {
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        // An existing dir keeps its mode; tighten it, since tokens go in.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TokenSet {
        TokenSet {
            version: TOKEN_FILE_VERSION,
            access_token: Secret::new("at-very-secret"),
            refresh_token: Some(Secret::new("rt-very-secret")),
            expires_at: Utc::now(),
            scope: "user-read-playback-state".into(),
            authorized_at: Utc::now(),
        }
    }

    #[test]
    fn secret_never_prints() {
        let s = sample();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
        assert!(dbg.contains("Secret(***)"));
    }

    #[test]
    fn round_trip_with_private_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TokenFiles::new(dir.path().join("tokens"));
        files.save("default", &sample()).expect("save");
        let loaded = files.load("default").expect("load");
        assert_eq!(loaded, sample_with_times(&loaded));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let f = std::fs::metadata(dir.path().join("tokens/default.json")).expect("meta");
            assert_eq!(f.permissions().mode() & 0o777, 0o600);
            let d = std::fs::metadata(dir.path().join("tokens")).expect("meta");
            assert_eq!(d.permissions().mode() & 0o777, 0o700);
        }
    }

    fn sample_with_times(loaded: &TokenSet) -> TokenSet {
        TokenSet { expires_at: loaded.expires_at, authorized_at: loaded.authorized_at, ..sample() }
    }

    #[cfg(unix)]
    #[test]
    fn readable_file_is_refused_with_the_chmod() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TokenFiles::new(dir.path());
        files.save("default", &sample()).expect("save");
        let path = dir.path().join("default.json");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = files.load("default").expect_err("refused");
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn missing_and_damaged_files_say_login() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TokenFiles::new(dir.path());
        let e = files.load("default").expect_err("missing");
        assert!(e.to_string().contains("spotguard login"), "{e}");
        files.save("default", &sample()).expect("save");
        std::fs::write(dir.path().join("default.json"), b"{not json").expect("write");
        let e = files.load("default").expect_err("damaged");
        assert!(e.to_string().contains("damaged"), "{e}");
        assert!(!e.to_string().contains("very-secret"));
    }

    #[test]
    fn account_names_cannot_escape_the_dir() {
        let files = TokenFiles::new("/tmp/x");
        for bad in ["../x", "a/b", "", ".hidden", "a b"] {
            assert!(files.path(bad).is_err(), "{bad}");
        }
        assert!(files.path("family-2_x").is_ok());
    }
}
