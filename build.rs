//! Records the git commit the binary is built from, for `spotguard --version`.
//!
//! Outside a git checkout (a source tarball) the commit is `SPOTGUARD_GIT_COMMIT` from the
//! build environment if a packager sets it, else "unknown". Rebuilds only when HEAD moves.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SPOTGUARD_GIT_COMMIT");
    let git_dir = Path::new(".git");
    if git_dir.is_dir() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD"))
            && let Some(reference) = head.strip_prefix("ref: ")
        {
            println!("cargo:rerun-if-changed=.git/{}", reference.trim());
            println!("cargo:rerun-if-changed=.git/packed-refs");
        }
    }
    let commit = std::env::var("SPOTGUARD_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        let hash = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !hash.is_empty()).then_some(hash)
    });
    println!("cargo:rustc-env=SPOTGUARD_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
