//! How long to stay quiet after a failed poll, and when to say so.
//!
//! Transient failures (5xx, network, timeouts, 202, malformed answers) back off
//! exponentially with full jitter from [`BASE`] to [`CAP`]. A 429 waits exactly as long as
//! Spotify's `Retry-After` says (bounded by [`RATE_LIMIT_CAP`]); `QUOTA_EXCEEDED` is the app's
//! quota, not a burst, so it waits at least [`QUOTA_WAIT`]. Failures the person must fix
//! (a refused token, a 403) wait [`NEEDS_PERSON`]: no loop of failing requests. The
//! scheduler's ticks are skipped while backing off, never queued. Pure: time is a parameter.

use std::time::{Duration, Instant};

/// The first wait after a transient failure.
pub const BASE: Duration = Duration::from_secs(30);
/// The longest wait after transient failures.
pub const CAP: Duration = Duration::from_secs(30 * 60);
/// A quota 429 waits at least this long.
pub const QUOTA_WAIT: Duration = Duration::from_secs(60 * 60);
/// Spotify has sent Retry-After values of a day; more than that is not believed.
pub const RATE_LIMIT_CAP: Duration = crate::spotify::MAX_RETRY_AFTER;
/// The wait when only the person can fix it (log in again, fix the app's user list).
pub const NEEDS_PERSON: Duration = Duration::from_secs(15 * 60);

/// What kind of failure it was, as far as waiting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Transient,
    RateLimited {
        retry_after: Duration,
        quota: bool,
    },
    NeedsPerson,
    /// No tokens yet: reading the store costs nothing, so every tick looks again and a login
    /// made while the daemon runs is picked up at the next tick.
    NotLoggedIn,
}

/// The backoff state of one account.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    /// Whether polls must be skipped at `now`.
    pub fn blocked(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure at `now`; `jitter` in [0, 1) picks the wait within the window.
    /// Returns the wait.
    pub fn fail(&mut self, failure: Failure, now: Instant, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = match failure {
            Failure::Transient => {
                let exp = BASE.saturating_mul(1u32 << (self.failures - 1).min(16)).min(CAP);
                // Full jitter over the upper half: spread out, but never a zero wait.
                exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
            }
            Failure::RateLimited { retry_after, quota } => {
                let wait = if quota { retry_after.max(QUOTA_WAIT) } else { retry_after };
                wait.min(RATE_LIMIT_CAP)
            }
            Failure::NeedsPerson => NEEDS_PERSON,
            Failure::NotLoggedIn => Duration::ZERO,
        };
        self.until = Some(now + wait);
        wait
    }

    /// Waits until `until` without counting a failure: a wait Spotify asked for before a
    /// restart or a reload.
    pub fn defer_until(&mut self, until: Instant) {
        self.until = Some(until);
    }

    /// Records a success; returns how many failures it ends.
    pub fn succeed(&mut self) -> u32 {
        self.until = None;
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_grow_to_the_cap_with_jitter() {
        let now = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.fail(Failure::Transient, now, 1.0), Duration::from_secs(30));
        assert_eq!(b.fail(Failure::Transient, now, 1.0), Duration::from_secs(60));
        assert_eq!(b.fail(Failure::Transient, now, 0.0), Duration::from_secs(60), "half of 120");
        for _ in 0..40 {
            b.fail(Failure::Transient, now, 1.0);
        }
        assert_eq!(b.fail(Failure::Transient, now, 1.0), CAP);
        assert!(b.blocked(now + CAP - Duration::from_secs(1)));
        assert!(!b.blocked(now + CAP));
    }

    #[test]
    fn retry_after_is_honoured_and_quota_waits_long() {
        let now = Instant::now();
        let mut b = Backoff::default();
        let w = b.fail(Failure::RateLimited { retry_after: Duration::from_secs(7), quota: false }, now, 0.3);
        assert_eq!(w, Duration::from_secs(7));
        let w = b.fail(Failure::RateLimited { retry_after: Duration::from_secs(7), quota: true }, now, 0.3);
        assert_eq!(w, QUOTA_WAIT);
        let w = b.fail(
            Failure::RateLimited { retry_after: Duration::from_secs(10_000_000), quota: false },
            now,
            0.3,
        );
        assert_eq!(w, RATE_LIMIT_CAP);
    }

    #[test]
    fn success_clears_and_reports_the_streak() {
        let now = Instant::now();
        let mut b = Backoff::default();
        b.fail(Failure::NeedsPerson, now, 0.5);
        b.fail(Failure::Transient, now, 0.5);
        assert!(b.blocked(now));
        assert_eq!(b.succeed(), 2);
        assert!(!b.blocked(now));
        assert_eq!(b.failures(), 0);
    }
}
