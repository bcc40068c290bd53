//! Telling the service manager how the daemon is doing: systemd's notify protocol.
//!
//! READY=1 once the config, database and schedule are set up; STATUS= lines saying what the
//! last poll found; RELOADING=1 around a SIGHUP reload; STOPPING=1 on the way out; and
//! WATCHDOG=1 pings while the daemon is healthy. All are no-ops without `NOTIFY_SOCKET`
//! (a terminal, launchd), so the daemon runs the same everywhere.
//!
//! Healthy means more than "the runtime still schedules tasks": a poll stuck for longer
//! than [`STUCK_AFTER`] (every request it makes is bounded far below that), or a clock that
//! did not wake when it was due (by more than [`CLOCK_GRACE`]), stops the pings, so systemd
//! restarts a daemon that hangs or stopped ticking rather than keeping a blind one alive.
//! Failing polls (Spotify down) are not a dead clock: their loop still wakes on time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock, so tests can pause it; the same monotonic clock as std's otherwise.
use tokio::time::Instant;

use sd_notify::NotifyState;

/// A poll in flight longer than this is stuck: two requests, a refresh and a retry at 20 s
/// each, the database and a notification fit well inside it.
pub const STUCK_AFTER: Duration = Duration::from_secs(180);

/// A clock that has not woken this long after it was due has stopped.
pub const CLOCK_GRACE: Duration = Duration::from_secs(30);

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

/// Which account loops are inside a poll, and since when; and when each loop's clock is due.
#[derive(Debug, Default)]
pub struct Liveness {
    busy: Mutex<HashMap<String, Instant>>,
    due: Mutex<HashMap<String, Instant>>,
    /// Rung when a poll ends: the watchdog pings then, while the process is awake anyway.
    polled: tokio::sync::Notify,
}

impl Liveness {
    /// Marks `account` as polling until the guard is dropped.
    pub fn polling(self: &Arc<Self>, account: &str) -> Busy {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).insert(account.to_string(), Instant::now());
        Busy { liveness: self.clone(), account: account.to_string() }
    }

    /// The clock of `account` is due at `due` (it sleeps until then); forgotten when the
    /// returned guard drops (the loop ended, a reload replaced it).
    pub fn clock(self: &Arc<Self>, account: &str) -> ClockWatch {
        ClockWatch { liveness: self.clone(), account: account.to_string() }
    }

    /// The account whose clock is overdue by more than `grace` while not polling, if any.
    pub fn overdue(&self, grace: Duration) -> Option<String> {
        let busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        due.iter().find(|(a, d)| !busy.contains_key(*a) && now > **d + grace).map(|(a, _)| a.clone())
    }

    /// What the watchdog finds.
    pub fn health(&self) -> Health {
        if let Some(a) = self.stuck(STUCK_AFTER) {
            return Health::Stuck(a);
        }
        if let Some(a) = self.overdue(CLOCK_GRACE) {
            return Health::ClockStopped(a);
        }
        Health::Alive
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
        self.liveness.polled.notify_one();
    }
}

/// One account loop's entry in [`Liveness`]'s clock table.
#[derive(Debug)]
pub struct ClockWatch {
    liveness: Arc<Liveness>,
    account: String,
}

impl ClockWatch {
    /// The clock sleeps until `due`.
    pub fn sleeping_until(&self, due: Instant) {
        self.liveness.due.lock().unwrap_or_else(|e| e.into_inner()).insert(self.account.clone(), due);
    }
}

impl Drop for ClockWatch {
    fn drop(&mut self) {
        self.liveness.due.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.account);
    }
}

/// What the watchdog finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Alive,
    /// This account's poll has run past [`STUCK_AFTER`].
    Stuck(String),
    /// This account's clock did not wake within [`CLOCK_GRACE`] of its due time.
    ClockStopped(String),
}

/// Pings systemd's watchdog while the daemon is [`Health::Alive`]: after each poll (the
/// process is awake then anyway), and at half the watchdog interval after the last ping when
/// no poll came, so a daemon polling at least that often never wakes up for the watchdog
/// alone. Runs until dropped (the caller aborts it at shutdown). Does nothing when the
/// watchdog is off.
pub async fn watchdog(liveness: Arc<Liveness>) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let period = interval / 2;
    let mut last_ping: Option<Instant> = None;
    let mut said = false;
    loop {
        let next = last_ping.map_or_else(Instant::now, |t| t + period);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = liveness.polled.notified() => {
                // Pings more often than a quarter of the interval add nothing.
                if last_ping.is_some_and(|t| t.elapsed() < interval / 4) {
                    continue;
                }
            }
        }
        // Unhealthy rounds count too: the next look comes half an interval on.
        last_ping = Some(Instant::now());
        match liveness.health() {
            Health::Alive => {
                said = false;
                send(&[NotifyState::Watchdog]);
            }
            Health::Stuck(account) if !said => {
                said = true;
                tracing::error!(%account, "a poll is stuck; letting the service manager restart spotguard");
            }
            Health::ClockStopped(account) if !said => {
                said = true;
                tracing::error!(
                    %account,
                    "the poll clock stopped waking; letting the service manager restart spotguard"
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_sees_a_stopped_clock_but_not_a_failing_poll() {
        let l = Arc::new(Liveness::default());
        let watch = l.clock("default");
        watch.sleeping_until(Instant::now() + Duration::from_secs(60));
        assert_eq!(l.health(), Health::Alive);
        // The clock was due and woke (a poll that failed still woke it): alive.
        tokio::time::advance(Duration::from_secs(60)).await;
        watch.sleeping_until(Instant::now() + Duration::from_secs(60));
        assert_eq!(l.health(), Health::Alive);
        // It never woke again.
        tokio::time::advance(Duration::from_secs(60) + CLOCK_GRACE + Duration::from_secs(1)).await;
        assert_eq!(l.health(), Health::ClockStopped("default".into()));
        // A poll in flight is judged by the stuck rule instead.
        let busy = l.polling("default");
        assert_eq!(l.health(), Health::Alive);
        drop(busy);
        // A loop that ended (a reload) is forgotten, not taken for a dead clock.
        drop(watch);
        assert_eq!(l.health(), Health::Alive);
    }

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
