//! Telling the service manager how the daemon is doing: systemd's notify protocol.
//!
//! READY=1 once the config, database and schedule are set up; STATUS= lines saying what the
//! last poll found; RELOADING=1 around a SIGHUP reload; STOPPING=1 on the way out; and
//! WATCHDOG=1 pings while the daemon is healthy. All are no-ops without `NOTIFY_SOCKET`
//! (a terminal, launchd), so the daemon runs the same everywhere.
//!
//! Healthy means more than "the runtime still schedules tasks": a poll stuck for longer
//! than [`STUCK_AFTER`] (every request it makes is bounded far below that) stops the pings,
//! so systemd restarts a daemon that hangs rather than keeping a blind one alive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// A poll in flight longer than this is stuck: two requests, a refresh and a retry at 20 s
/// each, the database and a notification fit well inside it.
pub const STUCK_AFTER: Duration = Duration::from_secs(180);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("cannot talk to the service manager: {e}");
    }
}

/// Startup is done.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A new status line ("last poll 12:00:03, 3 devices, all trusted").
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A reload begins; systemd 253+ wants the monotonic time with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("reloading the configuration")]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutdown begins.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Which account loops are inside a poll, and since when.
#[derive(Debug, Default)]
pub struct Liveness {
    busy: Mutex<HashMap<String, Instant>>,
}

impl Liveness {
    /// Marks `account` as polling until the guard is dropped.
    pub fn polling(self: &Arc<Self>, account: &str) -> Busy {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).insert(account.to_string(), Instant::now());
        Busy { liveness: self.clone(), account: account.to_string() }
    }

    /// The account whose poll has run longer than `bound`, if any.
    pub fn stuck(&self, bound: Duration) -> Option<String> {
        let busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.iter().find(|(_, since)| since.elapsed() > bound).map(|(a, _)| a.clone())
    }
}

/// Clears the account's busy mark when the poll ends (or its task is dropped).
#[derive(Debug)]
pub struct Busy {
    liveness: Arc<Liveness>,
    account: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.liveness.busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.account);
    }
}

/// Pings systemd's watchdog at half its interval while no poll is stuck. Runs until dropped
/// (the caller aborts it at shutdown). Does nothing when the watchdog is off.
pub async fn watchdog(liveness: Arc<Liveness>) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let mut tick = tokio::time::interval(interval / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut said = false;
    loop {
        tick.tick().await;
        match liveness.stuck(STUCK_AFTER) {
            None => {
                said = false;
                send(&[NotifyState::Watchdog]);
            }
            Some(account) if !said => {
                said = true;
                tracing::error!(%account, "a poll is stuck; letting the service manager restart spotguard");
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_is_busy_until_its_guard_drops() {
        let l = Arc::new(Liveness::default());
        let guard = l.polling("default");
        assert_eq!(l.stuck(Duration::ZERO).as_deref(), Some("default"));
        assert_eq!(l.stuck(Duration::from_secs(60)), None, "not yet stuck");
        drop(guard);
        assert_eq!(l.stuck(Duration::ZERO), None);
    }
}
