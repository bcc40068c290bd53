//! One daemon per database: an exclusive lock on `<database>.lock`, holding the pid.
//!
//! The lock is the operating system's (`flock` on Unix, through `File::try_lock`), so it dies
//! with the process: a daemon killed with SIGKILL leaves no stale lock behind, and a new
//! start is never blocked by one. The pid inside is only for the message.
//!
//! Taking the lock truncates the file to write the pid, so it is opened with `O_NOFOLLOW` and
//! must be a plain file with one name: a symlink or hard link planted at `<database>.lock`
//! is refused with a sentence, and what it points to is never opened for writing.

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
    #[error(
        "{path} is {what}, not spotguard's lock file, so spotguard does not open it; remove it (spotguard \
         creates its own) and check who put it there"
    )]
    NotPlain { path: PathBuf, what: &'static str },
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
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, crate::fsutil::no_follow());
        let mut file = options.open(&path).map_err(|e| match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                LockError::NotPlain { path: path.clone(), what: "a symbolic link" }
            }
            _ => io(e),
        })?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(LockError::NotPlain { path, what: "a directory or special file" });
        }
        #[cfg(unix)]
        if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
            // Another name for some other file: truncating it would empty that file.
            return Err(LockError::NotPlain { path, what: "a hard link to another file" });
        }
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
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, crate::fsutil::no_follow());
    let mut file = options.open(PathBuf::from(path)).ok()?;
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

    #[cfg(unix)]
    #[test]
    fn a_symlink_or_hard_link_at_the_lock_path_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("spotguard.db");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("victim");
        let lock = dir.path().join("spotguard.db.lock");
        std::os::unix::fs::symlink(&victim, &lock).expect("plant");
        let e = InstanceLock::acquire(&db).expect_err("refused");
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert_eq!(holder(&db), None, "a link is nobody's lock");
        std::fs::remove_file(&lock).expect("rm");
        std::fs::hard_link(&victim, &lock).expect("plant");
        let e = InstanceLock::acquire(&db).expect_err("refused");
        assert!(e.to_string().contains("hard link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious");
    }
}
