//! The poll clock: when each account polls.
//!
//! Every account has its own [`AccountClock`], so a slow account never delays another and one
//! account's polls never overlap (its loop asks for the next tick only after a poll ends).
//! Missed ticks are skipped, never burst.
//!
//! - **`every`** (the default) runs on tokio's monotonic timer. Wall-clock steps (NTP, a person
//!   setting the time) do not touch it, and a suspend pauses it, so after a resume the next
//!   poll comes within one interval. Each account sits at a stable phase within the interval,
//!   derived from its name ([`phase`]), so N accounts poll evenly spread, also across restarts;
//!   the first poll after start comes within `min(interval, N × 100 ms)`, so one account is
//!   looked at at once and a thousand do not start in a herd.
//! - **`cron`** lines are wall-clock times (UTC): the next one is computed with croner (the
//!   parser tokio-cron-scheduler used) and slept towards in steps of at most
//!   [`CRON_RECHECK`], re-reading the wall clock after each, so a clock step either way or a
//!   suspend delays a poll by at most that. Accounts are spread over the minute after each
//!   time (at most half the gap to the next one).
//!
//! tokio-cron-scheduler was dropped: a repeated job stopped firing for good after a late
//! firing (a suspend, a forward step), and its loop woke every 500 ms whatever the schedule.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::config::Schedule;

/// The longest a cron clock sleeps before it looks at the wall clock again.
pub const CRON_RECHECK: Duration = Duration::from_secs(60);

/// The first poll after start comes within this much per account (capped at one interval).
const START_SPREAD_PER_ACCOUNT: Duration = Duration::from_millis(100);

/// A cron line that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the poll schedule ({0}): this is a bug, please report it")]
pub struct ScheduleError(String);

fn parse_cron(line: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder().seconds(croner::parser::Seconds::Required).build().parse(line)
}

/// Checks a 6-field cron line with the parser the clock uses.
pub fn validate_cron(line: &str) -> Result<(), String> {
    let cron = parse_cron(line).map_err(|e| e.to_string())?;
    // A line that never fires (31 February) parses; it must not silently mean "never watch".
    cron.find_next_occurrence(&Utc::now(), false).map(|_| ()).map_err(|_| "it never fires".to_string())
}

/// A stable phase in `[0, 1)` for an account: a hash of its name (FNV-1a, then the
/// MurmurHash3 finaliser so that names differing in one character land far apart), so it
/// survives restarts and does not depend on the order of `[[accounts]]` (std's hasher is not
/// stable across releases).
pub fn phase(account: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    // The top 53 bits make an exact f64 in [0, 1).
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a clock reads the wall time. The system's, or a test's that it can step.
pub trait WallClock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Debug)]
enum Kind {
    Every {
        interval: Duration,
        /// The grid: ticks fall on `anchor + k × interval` (anchor carries the phase).
        anchor: Instant,
        /// The last tick, so the first grid tick after the start tick keeps half an interval.
        last: Option<Instant>,
    },
    Cron {
        cron: Box<croner::Cron>,
        phase: f64,
        /// The wall time of the next poll (the cron time plus the account's spread).
        target: Option<DateTime<Utc>>,
    },
}

/// One account's clock: [`AccountClock::tick`] waits for its next poll.
#[derive(Debug)]
pub struct AccountClock {
    kind: Kind,
    wall: Arc<dyn WallClock>,
    /// When the clock next wakes (a tick, or a cron re-check): the watchdog's measure of a
    /// clock that is alive.
    due: Instant,
}

impl AccountClock {
    /// The clock of `account`, one of `accounts`, starting now.
    pub fn new(
        schedule: &Schedule,
        account: &str,
        accounts: usize,
        wall: Arc<dyn WallClock>,
    ) -> Result<AccountClock, ScheduleError> {
        let now = Instant::now();
        let phase = phase(account);
        let (kind, due) = match schedule {
            Schedule::Every(interval) => {
                let interval = (*interval).max(Duration::from_millis(1));
                let spread = interval.min(START_SPREAD_PER_ACCOUNT * accounts.max(1) as u32);
                let first = now + spread.mul_f64(phase);
                let anchor = now + interval.mul_f64(phase);
                (Kind::Every { interval, anchor, last: None }, first)
            }
            Schedule::Cron(line) => {
                let cron = parse_cron(line).map_err(|e| ScheduleError(e.to_string()))?;
                (Kind::Cron { cron: Box::new(cron), phase, target: None }, now)
            }
        };
        Ok(AccountClock { kind, wall, due })
    }

    /// When the clock next wakes.
    pub fn due(&self) -> Instant {
        self.due
    }

    /// Waits for the next poll. A tick that passed while the caller was busy (a long poll) is
    /// skipped: the next one comes on the grid, within one interval, never as a burst.
    pub async fn tick(&mut self) {
        while self.wake().await == Wake::Recheck {}
    }

    /// Sleeps until the clock's next wake-up: a poll, or (cron) a look at the wall clock, after
    /// which [`AccountClock::due`] has moved on. The daemon's loop uses this so the watchdog
    /// sees every wake-up of a live clock.
    pub async fn wake(&mut self) -> Wake {
        match &mut self.kind {
            Kind::Every { interval, anchor, last } => {
                let now = Instant::now();
                if last.is_some() && now > self.due + *interval / 2 {
                    // Far behind (a poll ran past the tick): skip to the next grid point, within
                    // one interval. A tick only a little late is simply taken now.
                    self.due = grid_at_or_after(*anchor, *interval, now);
                }
                tokio::time::sleep_until(self.due).await;
                let fired = self.due;
                *last = Some(fired);
                // The next grid point at least half an interval on: after the start tick (off
                // the grid) that may skip one, never crowd two.
                self.due = grid_at_or_after(*anchor, *interval, fired + *interval / 2);
                Wake::Poll
            }
            Kind::Cron { cron, phase, target } => {
                let wall = self.wall.now();
                let goal = match *target {
                    Some(t) => t,
                    None => {
                        let t = next_cron(cron, *phase, wall);
                        *target = Some(t);
                        t
                    }
                };
                if wall >= goal {
                    // Computed afresh from the wall clock: times missed while asleep or
                    // skipped by a clock step are not caught up one by one.
                    *target = None;
                    self.due = Instant::now();
                    return Wake::Poll;
                }
                let left = (goal - wall).to_std().unwrap_or(Duration::ZERO).min(CRON_RECHECK);
                self.due = Instant::now() + left;
                tokio::time::sleep_until(self.due).await;
                Wake::Recheck
            }
        }
    }
}

/// Why [`AccountClock::wake`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Time to poll.
    Poll,
    /// Not yet: the clock looked at the wall time and sleeps on.
    Recheck,
}

/// When a daemon running `cron` polls `account` next after `now` (for `status`).
pub fn next_cron_poll(line: &str, account: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    parse_cron(line).ok().map(|cron| next_cron(&cron, phase(account), now))
}

/// The first `anchor + k × interval` (k may be negative) at or after `t`.
fn grid_at_or_after(anchor: Instant, interval: Duration, t: Instant) -> Instant {
    if t <= anchor {
        let behind = anchor - t;
        let steps = (behind.as_nanos() / interval.as_nanos()) as u32;
        return anchor - interval * steps;
    }
    let ahead = t - anchor;
    let steps = ahead.as_nanos().div_ceil(interval.as_nanos());
    anchor + interval * u32::try_from(steps).unwrap_or(u32::MAX)
}

/// The next cron time after `now`, plus the account's share of the spread window (the minute
/// after it, at most half the gap to the following time). A line with no next time (it was
/// validated, so only past its last year) falls back to a day from now.
fn next_cron(cron: &croner::Cron, phase: f64, now: DateTime<Utc>) -> DateTime<Utc> {
    // croner keeps the start's fraction of a second in what it returns; cron times are whole.
    let now = chrono::Timelike::with_nanosecond(&now, 0).unwrap_or(now);
    let Ok(next) = cron.find_next_occurrence(&now, false) else {
        return now + chrono::Duration::days(1);
    };
    let gap = cron
        .find_next_occurrence(&next, false)
        .ok()
        .and_then(|after| (after - next).to_std().ok())
        .unwrap_or(CRON_RECHECK * 2);
    let window = CRON_RECHECK.min(gap / 2);
    next + chrono::Duration::from_std(window.mul_f64(phase)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A wall clock a test sets and steps.
    #[derive(Debug)]
    struct TestWall(Mutex<DateTime<Utc>>);

    impl TestWall {
        fn at(t: &str) -> Arc<TestWall> {
            Arc::new(TestWall(Mutex::new(t.parse().expect("time"))))
        }
        fn step(&self, by: chrono::Duration) {
            *self.0.lock().expect("lock") += by;
        }
    }

    impl WallClock for TestWall {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().expect("lock")
        }
    }

    /// The wall clock follows tokio's (paused) monotonic clock, plus the steps a test makes.
    #[derive(Debug)]
    struct FollowingWall {
        start: Instant,
        base: DateTime<Utc>,
        offset: Mutex<chrono::Duration>,
    }

    impl FollowingWall {
        fn new(t: &str) -> Arc<FollowingWall> {
            Arc::new(FollowingWall {
                start: Instant::now(),
                base: t.parse().expect("time"),
                offset: Mutex::new(chrono::Duration::zero()),
            })
        }
        fn step(&self, by: chrono::Duration) {
            *self.offset.lock().expect("lock") += by;
        }
    }

    impl WallClock for FollowingWall {
        fn now(&self) -> DateTime<Utc> {
            let mono = chrono::Duration::from_std(self.start.elapsed()).expect("small");
            self.base + mono + *self.offset.lock().expect("lock")
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);
    /// tokio's timer has millisecond resolution: a tick may come up to 1 ms after its time.
    const MS: Duration = Duration::from_millis(1);

    fn near(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) <= MS * 2
    }

    fn every(d: Duration) -> Schedule {
        Schedule::Every(d)
    }

    #[test]
    fn cron_validation_uses_the_clocks_parser() {
        assert!(validate_cron("0 */5 * * * *").is_ok());
        assert!(validate_cron("0 61 * * * *").is_err());
        assert!(validate_cron("0 0 0 31 2 *").is_err(), "a line that never fires is refused");
    }

    #[test]
    fn phases_are_stable_and_spread() {
        assert_eq!(phase("default"), phase("default"));
        assert_ne!(phase("default"), phase("kid"));
        let mut p: Vec<f64> = (0..1000).map(|i| phase(&format!("account-{i}"))).collect();
        assert!(p.iter().all(|x| (0.0..1.0).contains(x)));
        p.sort_by(f64::total_cmp);
        // Evenly enough: every tenth of the interval holds 60 to 140 of 1,000 accounts.
        for decile in 0..10 {
            let n = p.iter().filter(|x| (**x * 10.0) as usize == decile).count();
            assert!((60..=140).contains(&n), "decile {decile}: {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_account_polls_at_once_then_on_its_grid() {
        let start = Instant::now();
        let mut c = AccountClock::new(&every(MINUTE), "default", 1, Arc::new(SystemClock)).expect("clock");
        c.tick().await;
        assert!(start.elapsed() <= Duration::from_millis(100), "first poll at once: {:?}", start.elapsed());
        let anchor = start + MINUTE.mul_f64(phase("default"));
        let mut ticks = Vec::new();
        for _ in 0..5 {
            c.tick().await;
            ticks.push(Instant::now());
        }
        for w in ticks.windows(2) {
            assert!(near(w[1] - w[0], MINUTE), "one tick per interval: {:?}", w[1] - w[0]);
        }
        let off = (ticks[0] - anchor).as_nanos() % MINUTE.as_nanos();
        assert!(off <= MS.as_nanos() * 2, "on the account's phase: {off} ns off");
        assert!(ticks[0] - start >= MINUTE / 2, "no second poll right after the first");
    }

    #[tokio::test(start_paused = true)]
    async fn missed_ticks_are_skipped_never_burst() {
        let mut c = AccountClock::new(&every(MINUTE), "default", 1, Arc::new(SystemClock)).expect("clock");
        c.tick().await;
        c.tick().await;
        let on_grid = Instant::now();
        // A poll that ran five and a half intervals.
        tokio::time::advance(MINUTE * 11 / 2).await;
        let late = Instant::now();
        c.tick().await;
        let waited = Instant::now() - late;
        assert!(waited > Duration::ZERO && waited <= MINUTE, "next poll within one interval: {waited:?}");
        let off = (Instant::now() - on_grid).as_nanos() % MINUTE.as_nanos();
        assert!(off <= MS.as_nanos() * 2 || MINUTE.as_nanos() - off <= MS.as_nanos() * 2, "back on the grid");
        let before = Instant::now();
        c.tick().await;
        assert!(near(Instant::now() - before, MINUTE), "then one per interval, no catch-up burst");
    }

    #[tokio::test(start_paused = true)]
    async fn interval_ticks_ignore_wall_clock_steps_and_suspend() {
        // The interval clock never reads the wall clock: steps either way change nothing.
        let wall = TestWall::at("2026-12-02T10:00:00Z");
        let mut c = AccountClock::new(&every(MINUTE), "default", 1, wall.clone()).expect("clock");
        c.tick().await;
        c.tick().await;
        for step in [chrono::Duration::hours(2), chrono::Duration::seconds(-30)] {
            wall.step(step);
            let before = Instant::now();
            c.tick().await;
            assert!(near(Instant::now() - before, MINUTE), "after a step of {step}");
        }
        // A suspend: the monotonic clock stands still while the wall clock jumps a night
        // ahead; on resume the pending sleep simply goes on, less than one interval.
        wall.step(chrono::Duration::hours(9));
        let before = Instant::now();
        c.tick().await;
        assert!(Instant::now() - before <= MINUTE);
    }

    #[tokio::test(start_paused = true)]
    async fn many_accounts_start_spread_and_stay_spread() {
        let n = 1000;
        let mut clocks: Vec<AccountClock> = (0..n)
            .map(|i| {
                AccountClock::new(&every(MINUTE), &format!("a{i}"), n, Arc::new(SystemClock)).expect("clock")
            })
            .collect();
        let start = Instant::now();
        let mut per_second = vec![0u32; 182];
        // Three minutes of ticks, in the order they come.
        let mut due: Vec<(Instant, usize)> = clocks.iter().enumerate().map(|(i, c)| (c.due(), i)).collect();
        loop {
            due.sort();
            let (at, i) = due[0];
            if at - start >= Duration::from_secs(180) {
                break;
            }
            clocks[i].tick().await;
            per_second[(Instant::now() - start).as_secs() as usize] += 1;
            due[0] = (clocks[i].due(), i);
        }
        let most = *per_second.iter().max().expect("seconds");
        // N/60 = 16.7 per second on average; a random phase gives some seconds more.
        assert!(most <= 34, "at most about N/60 × 2 polls in any second, saw {most}");
        assert!(per_second[60..120].iter().sum::<u32>() == n as u32, "every account once a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn cron_survives_forward_and_backward_steps_and_suspend() {
        // Every minute, on the minute (plus this account's spread within 30 s).
        let wall = FollowingWall::new("2026-12-02T10:00:00Z");
        let mut c = AccountClock::new(&Schedule::Cron("0 * * * * *".into()), "default", 1, wall.clone())
            .expect("clock");
        c.tick().await;
        let t0 = Instant::now();
        c.tick().await;
        assert!(near(Instant::now() - t0, MINUTE), "once a minute: {:?}", Instant::now() - t0);

        // Forward 2 h (NTP, or a resume where the monotonic clock also stood still): one poll
        // within a minute, then on schedule again. No burst of 120 missed ones.
        wall.step(chrono::Duration::hours(2));
        let t1 = Instant::now();
        c.tick().await;
        assert!(Instant::now() - t1 <= MINUTE + Duration::from_secs(1), "{:?}", Instant::now() - t1);
        let t2 = Instant::now();
        c.tick().await;
        assert!(Instant::now() - t2 >= Duration::from_secs(30), "no burst: {:?}", Instant::now() - t2);

        // Back 30 s: the wall target is 30 s further away, and nothing is lost.
        wall.step(chrono::Duration::seconds(-30));
        let t3 = Instant::now();
        c.tick().await;
        let gap = Instant::now() - t3;
        assert!(gap <= MINUTE + Duration::from_secs(31), "{gap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_that_is_asleep_has_a_due_time_in_the_future() {
        let mut c = AccountClock::new(&every(MINUTE), "default", 1, Arc::new(SystemClock)).expect("clock");
        c.tick().await;
        assert!(c.due() > Instant::now());
        assert!(c.due() - Instant::now() <= MINUTE);
    }

    #[test]
    fn status_knows_the_next_cron_poll_with_the_accounts_spread() {
        let now: DateTime<Utc> = "2026-12-02T10:30:12Z".parse().expect("time");
        let next = next_cron_poll("0 0 * * * *", "default", now).expect("parses");
        let hour: DateTime<Utc> = "2026-12-02T11:00:00Z".parse().expect("time");
        assert!(next >= hour && next < hour + chrono::Duration::seconds(60), "{next}");
        assert_ne!(next_cron_poll("0 0 * * * *", "kid", now), Some(next), "accounts are spread");
    }

    #[test]
    fn grid_points() {
        let a = Instant::now() + Duration::from_secs(100);
        let i = Duration::from_secs(60);
        assert_eq!(grid_at_or_after(a, i, a), a);
        assert_eq!(grid_at_or_after(a, i, a + Duration::from_secs(1)), a + i);
        assert_eq!(grid_at_or_after(a, i, a - Duration::from_secs(59)), a);
        assert_eq!(grid_at_or_after(a, i, a - Duration::from_secs(61)), a - i);
    }
}
