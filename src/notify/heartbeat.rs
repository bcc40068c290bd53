//! The heartbeat: a GET to `health.ping_url` after good poll rounds, at most every 5 minutes,
//! and to `ping_url/fail` when a round fails (at once, then at most every 5 minutes while it
//! lasts); the first good round after a failure pings at once. The service behind the URL
//! (healthchecks.io and the like) tells the person when pings stop: a machine that is off or
//! a daemon that died, the one failure spotguard cannot report itself. Pings run in their own
//! task: a hung ping server never delays a poll. The URL (whose UUID is a capability) is
//! never logged.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::channel::http_error;
use crate::config::redact_url;

/// Pings of the same kind are at least this far apart.
pub const PING_EVERY: Duration = Duration::from_secs(300);

/// What to send after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Up,
    Fail,
}

/// What the pinger remembers.
#[derive(Debug, Default)]
pub struct State {
    last: Option<Instant>,
    failing: bool,
    /// Accounts whose last poll failed: a round is good only when none has.
    failed_accounts: HashSet<String>,
}

/// The rule, pure: after `account`'s poll (`ok`) at `now`, what to send, if anything.
pub fn decide(state: &mut State, account: &str, ok: bool, now: Instant) -> Option<Ping> {
    if ok {
        state.failed_accounts.remove(account);
    } else {
        state.failed_accounts.insert(account.to_string());
    }
    let good = state.failed_accounts.is_empty();
    let due = state.last.is_none_or(|t| now.duration_since(t) >= PING_EVERY);
    let ping = match (good, state.failing) {
        (true, true) | (false, false) => Some(if good { Ping::Up } else { Ping::Fail }),
        (true, false) if due => Some(Ping::Up),
        (false, true) if due => Some(Ping::Fail),
        _ => None,
    };
    if ping.is_some() {
        state.last = Some(now);
        state.failing = !good;
    }
    ping
}

/// The configured heartbeat.
#[derive(Debug)]
pub struct Heartbeat {
    url: reqwest::Url,
    http: reqwest::Client,
    state: Mutex<State>,
}

impl Heartbeat {
    pub fn new(url: reqwest::Url, http: reqwest::Client) -> Heartbeat {
        Heartbeat { url, http, state: Mutex::new(State::default()) }
    }

    /// Called after every poll of `account`: sends a ping if one is due, in the background.
    pub fn round(&self, account: &str, ok: bool) {
        let ping = {
            // A panic elsewhere cannot leave this state inconsistent: use it as it is.
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            decide(&mut state, account, ok, Instant::now())
        };
        let Some(ping) = ping else { return };
        let mut url = self.url.clone();
        if ping == Ping::Fail {
            let path = format!("{}/fail", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        let http = self.http.clone();
        let shown = redact_url(&self.url);
        tokio::spawn(async move {
            match http.get(url).send().await {
                Ok(r) if r.status().is_success() => tracing::debug!(?ping, "heartbeat sent"),
                Ok(r) => {
                    tracing::warn!(?ping, "the heartbeat URL {shown} answered HTTP {}", r.status().as_u16())
                }
                Err(e) => tracing::warn!(?ping, "heartbeat not sent: {}", http_error(e, &shown)),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_every_5_minutes_fail_at_once_and_recovery_at_once() {
        let mut s = State::default();
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(decide(&mut s, "a", true, at(0)), Some(Ping::Up));
        assert_eq!(decide(&mut s, "a", true, at(60)), None);
        assert_eq!(decide(&mut s, "a", true, at(300)), Some(Ping::Up));
        assert_eq!(decide(&mut s, "a", false, at(310)), Some(Ping::Fail), "the first failure at once");
        assert_eq!(decide(&mut s, "a", false, at(400)), None);
        assert_eq!(decide(&mut s, "a", false, at(610)), Some(Ping::Fail), "then every 5 min");
        assert_eq!(decide(&mut s, "a", true, at(620)), Some(Ping::Up), "recovery at once");
        assert_eq!(decide(&mut s, "a", true, at(700)), None);
        // Two accounts: one failing makes the round failed until it recovers.
        assert_eq!(decide(&mut s, "b", false, at(710)), Some(Ping::Fail));
        assert_eq!(decide(&mut s, "a", true, at(720)), None, "b still fails");
        assert_eq!(decide(&mut s, "b", true, at(730)), Some(Ping::Up));
    }
}
