//! Opening a URL in the person's browser with the configured command (`xdg-open`, `open`).
//!
//! The URL is appended as the last argument; no shell is involved, so nothing in it is
//! interpreted. The opener is waited for with a bound: some openers return at once, some
//! only when the browser exits, and neither may hold up the daemon. Under systemd the
//! daemon is sandboxed (read-only home, no new privileges): a browser started from inside
//! that sandbox could not write its profile, so the opener runs in a unit of its own
//! through `systemd-run --user`. That unit gets the user manager's environment, which lacks
//! the display on desktops that never import it, so the display variables are passed along:
//! the daemon's own where the manager gave it some, else the ones `service install` saw in
//! the person's session (`SPOTGUARD_SESSION_*`, from the unit's `session.conf` drop-in).

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
    // Started by systemd: systemd-run returns as soon as the opener's unit is started, so its
    // stderr (the reason it could not start one) can be read without holding anything up.
    let via_systemd = std::env::var_os("INVOCATION_ID").is_some();
    let mut cmd = if via_systemd {
        // Started by systemd: leave the service's sandbox.
        let mut c = tokio::process::Command::new("systemd-run");
        c.args(["--user", "--collect", "--quiet"]);
        for (name, value) in display_env(|k| std::env::var(k).ok()) {
            c.arg(format!("--setenv={name}={value}"));
        }
        c.arg("--").arg(program);
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
        .stderr(if via_systemd { Stdio::piped() } else { Stdio::null() })
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(opener = %program, "cannot run the URL opener: {e}; open {url} yourself");
            return false;
        }
    };
    match tokio::time::timeout(WAIT, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => {
            tracing::info!(%url, "opened");
            true
        }
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = crate::text::terminal(stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
            tracing::warn!(
                opener = %program,
                status = %out.status,
                reason = %why,
                "the URL opener failed; open {url} yourself"
            );
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

/// The display variables for the opener: each from `get(NAME)`, else from
/// `get(SPOTGUARD_SESSION_NAME)`; missing and empty ones are left out.
fn display_env(get: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    use crate::service::systemd::{DISPLAY_VARS, SESSION_VAR_PREFIX};
    DISPLAY_VARS
        .iter()
        .filter_map(|name| {
            let value = get(name)
                .filter(|v| !v.is_empty())
                .or_else(|| get(&format!("{SESSION_VAR_PREFIX}{name}")).filter(|v| !v.is_empty()))?;
            Some((*name, value))
        })
        .collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn display_comes_from_the_manager_else_from_the_installing_session() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let got = display_env(env(&[("DISPLAY", ":1"), ("SPOTGUARD_SESSION_DISPLAY", ":0")]));
        assert_eq!(got, [("DISPLAY", ":1".to_string())]);
        let got = display_env(env(&[
            ("SPOTGUARD_SESSION_DISPLAY", ":0"),
            ("SPOTGUARD_SESSION_WAYLAND_DISPLAY", "wayland-0"),
            ("XAUTHORITY", ""),
        ]));
        assert_eq!(got, [("DISPLAY", ":0".to_string()), ("WAYLAND_DISPLAY", "wayland-0".to_string())]);
        assert!(display_env(|_| None).is_empty());
    }

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
