//! The token file store: one JSON file per account that `spotguard login` writes.
//!
//! At `<data dir>/tokens/<account>.json`, mode 0600 in a 0700 directory, written atomically
//! (temp file, fsync, rename): a crash leaves the old tokens or the new ones, never half.
//! A file that group or others can read is refused, as ssh refuses such keys.
//! `<account>.lock` beside it is the account's token lock ([`super::lock`]); writers hold it,
//! so the fixed temp file name is never written by two processes at once.

use std::path::{Path, PathBuf};

use super::lock::{self, TokenLock};
use super::{AuthError, TOKEN_FILE_VERSION, TokenSet};

/// The token files of one installation.
#[derive(Debug, Clone)]
pub struct TokenFiles {
    dir: PathBuf,
    /// Unit tests make saves fail (a full disk, say) without needing one.
    #[cfg(test)]
    pub(crate) fail_saves: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TokenFiles {
    /// Runs `f` (a load, save or remove) on the blocking pool: the daemon has one runtime
    /// thread, and a save fsyncs the file and its directory.
    pub async fn off_thread<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&TokenFiles) -> Result<T, AuthError> + Send + 'static,
    {
        let files = self.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || f(&files)).await.unwrap_or_else(|e| {
            Err(AuthError::Io { path: dir, source: std::io::Error::other(e.to_string()) })
        })
    }

    pub fn new(dir: impl Into<PathBuf>) -> TokenFiles {
        TokenFiles {
            dir: dir.into(),
            #[cfg(test)]
            fail_saves: Default::default(),
        }
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

    /// Takes the token lock of `account` (see [`super::lock`]), creating the directory.
    pub async fn lock(&self, account: &str) -> Result<TokenLock, AuthError> {
        self.path(account)?;
        let path = lock::path(&self.dir, account);
        create_private_dir(&self.dir).map_err(|source| AuthError::Lock { path: path.clone(), source })?;
        lock::acquire(&path, lock::LOCK_WAIT).await
    }

    /// Reads the tokens of `account`, refusing a file others can read.
    pub fn load(&self, account: &str) -> Result<TokenSet, AuthError> {
        let path = self.path(account)?;
        let io = |source| AuthError::Io { path: path.clone(), source };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuthError::NotLoggedIn {
                    account: account.to_string(),
                    place: path.display().to_string(),
                });
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
        let json = serde_json::to_vec_pretty(tokens)
            .map_err(|e| AuthError::Damaged { path: path.clone(), reason: e.to_string() })?;
        #[cfg(test)]
        if self.fail_saves.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left (test)")));
        }
        // A random temporary name opened O_EXCL|O_NOFOLLOW, 0600, file and directory synced:
        // a link planted beside the token file is never written through.
        crate::fsutil::write_atomic(&path, &json, 0o600).map_err(io)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;
    use chrono::Utc;

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

    #[cfg(unix)]
    #[test]
    fn a_link_planted_beside_the_token_file_is_never_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TokenFiles::new(dir.path().join("tokens"));
        std::fs::create_dir_all(dir.path().join("tokens")).expect("dir");
        let target = dir.path().join("target.txt");
        std::fs::write(&target, "keep me").expect("target");
        // The temporary name older versions used, and the token file's own name with a suffix.
        for name in [".default.json.tmp", "default.json.tmp"] {
            std::os::unix::fs::symlink(&target, dir.path().join("tokens").join(name)).expect("symlink");
        }
        let saved = sample();
        files.save("default", &saved).expect("save");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep me");
        assert_eq!(files.load("default").expect("load"), saved);
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
