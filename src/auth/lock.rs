//! The per-account token lock: one process at a time loads, refreshes and saves an
//! account's tokens.
//!
//! The daemon, `check` and `doctor` each refresh on their own, and a rotating Accounts
//! service makes every refresh token single-use: two processes that both read the same token
//! and refresh would spend it twice, and the second would lose the login (`invalid_grant`).
//! The lock is an advisory `flock` on `<tokens dir>/<account>.lock`, whatever the backend
//! (the Secret Service has no locking of its own), so it dies with its process: a killed
//! holder leaves nothing stale. It is taken without blocking a runtime thread (`try_lock`
//! and a short async sleep, for a bounded time), and the file is opened without following a
//! symbolic link and created 0600. It holds nothing; only its lock matters.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::AuthError;

/// How long to wait for another process's refresh. A holder loads (the secret store answers
/// within 5 s), refreshes (an HTTP request gives up after 25 s at most) and saves (5 s):
/// waiting longer than that means it is stuck, and a poll should fail as transient rather
/// than hang.
pub const LOCK_WAIT: Duration = Duration::from_secs(40);

/// How often a waiter tries again. A refresh takes a few hundred milliseconds; this keeps the
/// wait short without spinning.
const RETRY_EVERY: Duration = Duration::from_millis(25);

/// An account's token lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct TokenLock {
    /// The open lock file; closing it releases the lock.
    _file: File,
}

/// Takes the lock on `path`, waiting at most `wait` for another holder. `dir` must exist.
pub(super) async fn acquire(path: &Path, wait: Duration) -> Result<TokenLock, AuthError> {
    let file = open(path)?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(TokenLock { _file: file }),
            Err(TryLockError::WouldBlock) if start.elapsed() < wait => tokio::time::sleep(RETRY_EVERY).await,
            Err(TryLockError::WouldBlock) => {
                return Err(AuthError::LockBusy { path: path.to_path_buf(), waited: wait.as_secs() });
            }
            Err(TryLockError::Error(source)) => {
                return Err(AuthError::Lock { path: path.to_path_buf(), source });
            }
        }
    }
}

/// Opens (creating, 0600) the lock file, refusing a symbolic link or anything not a file.
fn open(path: &Path) -> Result<File, AuthError> {
    let err = |source| AuthError::Lock { path: path.to_path_buf(), source };
    let mut options = OpenOptions::new();
    // Read and write: a FIFO planted here would block an open for writing only.
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return err(std::io::Error::other("it is a symbolic link; remove it"));
        }
        err(e)
    })?;
    if !file.metadata().map_err(err)?.is_file() {
        return Err(err(std::io::Error::other("it is not a regular file; remove it")));
    }
    Ok(file)
}

/// The lock file of `account` in `dir`: beside its token file.
pub(super) fn path(dir: &Path, account: &str) -> PathBuf {
    dir.join(format!("{account}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_and_gets_it_when_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path(dir.path(), "default");
        let first = acquire(&path, LOCK_WAIT).await.expect("first");
        let e = acquire(&path, Duration::from_millis(100)).await.expect_err("held");
        assert!(matches!(e, AuthError::LockBusy { .. }), "{e}");
        let second = tokio::spawn({
            let path = path.clone();
            async move { acquire(&path, LOCK_WAIT).await.map(|_| Instant::now()) }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let released = Instant::now();
        drop(first);
        let got = second.await.expect("join").expect("second");
        assert!(got >= released, "not before the first let go");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symbolic_link_or_a_fifo_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        let link = path(dir.path(), "default");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let e = acquire(&link, LOCK_WAIT).await.expect_err("a link");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!target.exists(), "nothing created through the link");

        let fifo = path(dir.path(), "other");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success());
        let e = acquire(&fifo, LOCK_WAIT).await.expect_err("a fifo");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
