//! Opening a URL in the person's browser with the configured command (`xdg-open`, `open`).
//!
//! The URL is appended as the last argument; no shell is involved, so nothing in it is
//! interpreted. The opener is waited for with a bound: some openers return at once, some
//! only when the browser exits, and neither may hold up the daemon. Under systemd the
//! daemon is sandboxed (read-only home, no new privileges): a browser started from inside
//! that sandbox could not write its profile, so the opener runs in a unit of its own
//! through `systemd-run --user`.

use std::process::Stdio;
use std::time::Duration;

/// How long an opener may run before we stop waiting (it is left running).
const WAIT: Duration = Duration::from_secs(10);

/// Runs `command... url`. Failures are logged: the alert itself was already delivered.
/// Returns whether the opener ran and did not fail (still running counts as success).
pub async fn open(command: &[String], url: &str) -> bool {
    let Some((program, args)) = command.split_first() else {
        tracing::warn!("alerts.opener is empty; cannot open {url}");
        return false;
    };
    let mut cmd = if std::env::var_os("INVOCATION_ID").is_some() {
        // Started by systemd: leave the service's sandbox.
        let mut c = tokio::process::Command::new("systemd-run");
        c.args(["--user", "--collect", "--quiet", "--"]).arg(program);
        c
    } else {
        tokio::process::Command::new(program)
    };
    let child = cmd
        .args(args)
        .arg(url)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(opener = %program, "cannot run the URL opener: {e}; open {url} yourself");
            return false;
        }
    };
    match tokio::time::timeout(WAIT, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::info!(%url, "opened");
            true
        }
        Ok(Ok(status)) => {
            tracing::warn!(opener = %program, %status, "the URL opener failed; open {url} yourself");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(opener = %program, "the URL opener failed: {e}");
            false
        }
        Err(_) => {
            tracing::debug!(opener = %program, "the URL opener is still running");
            true
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn url_is_the_last_argument_and_not_shell_interpreted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("args");
        let script = format!("printf '%s\\n' \"$@\" > {}", out.display());
        let cmd =
            vec!["sh".to_string(), "-c".to_string(), script, "opener".to_string(), "--flag".to_string()];
        assert!(open(&cmd, "https://www.spotify.com/account/overview/?a=1&b=$(id)").await);
        let args = std::fs::read_to_string(&out).expect("opener ran");
        assert_eq!(args, "--flag\nhttps://www.spotify.com/account/overview/?a=1&b=$(id)\n");
    }

    #[tokio::test]
    async fn a_missing_opener_does_not_panic() {
        assert!(!open(&["/nonexistent/opener".to_string()], "https://www.spotify.com/").await);
        assert!(!open(&["false".to_string()], "https://www.spotify.com/").await);
    }
}
