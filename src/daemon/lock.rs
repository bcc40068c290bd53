//! One daemon per database: an exclusive lock on `<database>.lock`, holding the pid.
//!
//! The lock is the operating system's (`flock` on Unix, through `File::try_lock`), so it dies
//! with the process: a daemon killed with SIGKILL leaves no stale lock behind, and a new
//! start is never blocked by one. The pid inside is only for the message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another spotguard is already running on {database}{}; stop it first (e.g. `systemctl --user stop spotguard`)",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held { database: PathBuf, pid: Option<u32> },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Held for the daemon's life; released when dropped or when the process ends.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock for `database`, or says who holds it.
    pub fn acquire(database: &Path) -> Result<InstanceLock, LockError> {
        let mut path = database.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        let io = |source| LockError::Io { path: path.clone(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    database: database.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(InstanceLock { _file: file })
    }
}

/// Whether a daemon holds the lock of `database` now, and its pid if it wrote one.
/// `None`: no daemon runs on it.
pub fn holder(database: &Path) -> Option<Option<u32>> {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let mut file = OpenOptions::new().read(true).open(PathBuf::from(path)).ok()?;
    match file.try_lock_shared() {
        // Nobody holds it exclusively; the shared lock is dropped with the file.
        Ok(()) => None,
        Err(_) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Some(text.trim().parse().ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("spotguard.db");
        assert_eq!(holder(&db), None, "no lock file: nobody runs");
        let first = InstanceLock::acquire(&db).expect("first");
        assert_eq!(holder(&db), Some(Some(std::process::id())));
        let e = InstanceLock::acquire(&db).expect_err("second");
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        assert_eq!(holder(&db), None);
        InstanceLock::acquire(&db).expect("free again");
    }
}
