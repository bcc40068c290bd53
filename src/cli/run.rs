//! `spotguard run`: the daemon in the foreground; systemd or launchd supervise it.
//! SIGTERM and SIGINT stop it, SIGHUP reloads the configuration. It makes itself
//! non-dumpable first ([`forbid_dumps`]): its memory holds the tokens.

use std::process::ExitCode;

use tokio::sync::mpsc;

use crate::context::Context;
use crate::daemon::lock::InstanceLock;
use crate::daemon::{self, Control};

#[derive(Debug, clap::Args)]
pub struct Cmd {}

impl Cmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        // The database is opened here, not at the first poll: a full disk or a newer schema
        // stops the start, said in one sentence.
        if let Err(e) = ctx.store.open().await {
            return Err(cannot_start(anyhow::Error::new(e).context("cannot start")).await);
        }
        // One daemon per database; held until the process ends.
        let _lock = InstanceLock::acquire(&ctx.config.database_path()?)?;
        let (tx, rx) = mpsc::channel(4);
        forward_signals(tx)?;
        daemon::run(ctx, rx).await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Makes the daemon non-dumpable (`PR_SET_DUMPABLE` 0) before it reads a token: no core
/// file, no `ptrace` and no `/proc/PID/mem` or `environ` for other processes of the same
/// user (the kernel gives the process's `/proc` entries to root). The unit's `LimitCORE=0`
/// covers core files under systemd; this covers a daemon started by hand, and the rest.
/// A failure (a seccomp filter that forbids `prctl`) is logged, not fatal: an unwatched
/// account is worse than a readable daemon. Linux only; elsewhere nothing to do.
pub fn forbid_dumps() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable) {
        tracing::warn!(
            error = %e,
            "cannot make the daemon non-dumpable (prctl PR_SET_DUMPABLE): other processes of this user may \
             read its memory"
        );
    }
}

/// How long a daemon that cannot start for want of disk space waits before it exits, under a
/// service manager: with `RestartSec=10`, restarts then stay inside the unit's start limit
/// (5 in 300 s), so systemd keeps trying until there is room instead of giving up for good.
const DISK_FULL_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The daemon cannot start: on a full disk, under a service manager, say so in STATUS= and
/// wait a while first (see [`DISK_FULL_WAIT`]); SIGTERM ends the wait. Returns the error.
pub async fn cannot_start(e: anyhow::Error) -> anyhow::Error {
    let full = e.chain().any(|c| matches!(c.downcast_ref(), Some(crate::store::StoreError::DiskFull { .. })));
    if full && std::env::var_os("NOTIFY_SOCKET").is_some() {
        crate::daemon::supervisor::status(&format!("{e:#}"));
        tracing::error!("{e:#}; trying again in {}s", DISK_FULL_WAIT.as_secs() + 10);
        tokio::select! {
            _ = tokio::time::sleep(DISK_FULL_WAIT) => {}
            _ = shutdown_signal() => {}
        }
    }
    e
}

/// SIGTERM and SIGINT become [`Control::Shutdown`], SIGHUP [`Control::Reload`].
#[cfg(unix)]
fn forward_signals(tx: mpsc::Sender<Control>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let control = tokio::select! {
                _ = term.recv() => Control::Shutdown,
                _ = int.recv() => Control::Shutdown,
                _ = hup.recv() => Control::Reload,
            };
            if tx.send(control).await.is_err() || control == Control::Shutdown {
                break;
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn forward_signals(tx: mpsc::Sender<Control>) -> anyhow::Result<()> {
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(Control::Shutdown).await;
    });
    Ok(())
}

/// Completes on SIGINT or SIGTERM (for the helper commands that only wait).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops spotguard");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
