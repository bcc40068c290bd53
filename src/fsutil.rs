//! Writing files so that neither a crash nor something planted beside them turns the write
//! against the person: [`write_atomic`], the one way spotguard replaces a file it owns.
//!
//! A fixed temporary name (`OUT.tmp`) is a trap: anyone who can write the directory can put a
//! symlink there first, and the write then goes through it to a file of their choosing. Here
//! the temporary file has a random name and is created with `O_CREAT | O_EXCL | O_NOFOLLOW`,
//! so it is always a new file this process made; it is private from its first byte, synced,
//! renamed over the target (which replaces a link at the target, never follows it), and the
//! directory is synced so the rename survives a crash. Nothing here is async: callers on the
//! runtime move it to the blocking pool or accept a short write.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// How many random names are tried before giving up: each collision is a 1 in 2^64 chance,
/// or something in the directory creating files as fast as it can.
const ATTEMPTS: usize = 16;

/// Replaces `path` with `contents`, atomically: a crash leaves the old file or the new one,
/// never half of either. The file gets `mode` (e.g. `0o600`) less the process's umask, so a
/// person's umask can make it stricter, never looser; on other platforms `mode` is ignored.
///
/// Fails without touching `path` if the temporary file cannot be created in `path`'s
/// directory; a temporary file left by a failure is removed.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (mut file, tmp) = create_temporary(dir, name, mode)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// A new file `.<name>.<random>.tmp` in `dir`, made by this call and no one else.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr, mode: u32) -> io::Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(format!(".{:016x}.tmp", fastrand::u64(..)));
        let tmp = dir.join(tmp);
        match open_new(&tmp, mode) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// `O_CREAT | O_EXCL | O_NOFOLLOW`, write-only, `mode`. `O_EXCL` alone already refuses a
/// symlink at the path (even a dangling one); `O_NOFOLLOW` says so where it is read.
fn open_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode).custom_flags(no_follow());
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// The `O_NOFOLLOW` flag for [`std::os::unix::fs::OpenOptionsExt::custom_flags`].
#[cfg(unix)]
pub fn no_follow() -> i32 {
    // The flag is a small positive constant (0o400000 on Linux): the cast cannot wrap.
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Makes a rename in `dir` durable. Some file systems cannot sync a directory (they say
/// `EINVAL`); the rename itself happened, so that is not an error.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != io::ErrorKind::InvalidInput => return Err(e),
        _ => {}
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn writes_a_private_file_and_replaces_an_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("page.html");
        std::fs::write(&out, "old").expect("old file");
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_atomic(&out, b"new", 0o600).expect("written");
        assert_eq!(std::fs::read_to_string(&out).expect("read"), "new");
        assert_eq!(mode(&out) & 0o077, 0, "never readable by others: {:o}", mode(&out));
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["page.html"], "no temporary file left");
    }

    #[test]
    fn a_symlink_planted_at_the_old_temporary_names_or_the_target_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("victim");
        let out = dir.path().join("OUT.html");
        for planted in ["OUT.tmp", "OUT.html.tmp", ".OUT.html.tmp"] {
            std::os::unix::fs::symlink(&victim, dir.path().join(planted)).expect("plant");
        }
        write_atomic(&out, b"page", 0o600).expect("written");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious");
        // A link at the target itself is replaced, not written through.
        std::fs::remove_file(&out).expect("rm");
        std::os::unix::fs::symlink(&victim, &out).expect("plant at target");
        write_atomic(&out, b"page", 0o600).expect("written");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious");
        assert!(std::fs::symlink_metadata(&out).expect("out").file_type().is_file());
    }

    #[test]
    fn no_follow_refuses_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).expect("plant");
        assert!(open_new(&link, 0o600).is_err());
        use std::os::unix::fs::OpenOptionsExt as _;
        let e = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(no_follow())
            .open(&link)
            .expect_err("O_NOFOLLOW");
        assert_eq!(e.raw_os_error(), Some(rustix::io::Errno::LOOP.raw_os_error()), "{e}");
    }

    #[test]
    fn a_missing_directory_fails_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = write_atomic(&dir.path().join("no/such/page.html"), b"x", 0o600).expect_err("no dir");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
