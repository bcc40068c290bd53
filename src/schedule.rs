//! The poll clock: turns the configured schedule into ticks, one channel per account.
//!
//! tokio-cron-scheduler fires the jobs. It has no guard against a slow run overlapping the
//! next, and a repeated job can fire several times in a row to catch up after a suspend, so
//! it never runs a poll itself: each firing only *offers* a tick to every account's
//! channel of capacity one (`try_send`), and each account's loop drains what piled up while it
//! was busy. Polls of one account therefore never overlap and never burst. The scheduler
//! needs a multi-thread runtime (it hangs on a current-thread one): `main` builds one.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::Schedule;

/// A scheduling failure: the scheduler could not be built or started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the poll schedule ({0}): this is a bug, please report it")]
pub struct ScheduleError(String);

/// Checks a 6-field cron line with the same parser the scheduler uses.
pub fn validate_cron(line: &str) -> Result<(), String> {
    Job::new_async(line, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|_| "the scheduler cannot parse it".to_string())
}

/// The receiving end of one account's ticks.
#[derive(Debug)]
pub struct Ticks {
    rx: mpsc::Receiver<()>,
}

impl Ticks {
    /// Waits for the next tick. `None` once the scheduler is gone.
    pub async fn next(&mut self) -> Option<()> {
        self.rx.recv().await
    }

    /// Drops the ticks that arrived while a poll ran: a late poll is skipped, not repeated.
    pub fn skip_missed(&mut self) -> usize {
        let mut n = 0;
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

/// A running scheduler; `stop` shuts it down.
pub struct Clock {
    scheduler: JobScheduler,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock").finish_non_exhaustive()
    }
}

impl Clock {
    /// Starts the scheduler with one job that offers a tick to each of `accounts` channels.
    pub async fn start(schedule: &Schedule, accounts: usize) -> Result<(Clock, Vec<Ticks>), ScheduleError> {
        let err = |e: tokio_cron_scheduler::JobSchedulerError| ScheduleError(e.to_string());
        let (senders, ticks): (Vec<_>, Vec<_>) = (0..accounts)
            .map(|_| {
                let (tx, rx) = mpsc::channel(1);
                (tx, Ticks { rx })
            })
            .unzip();
        let fire = move |_, _| {
            for tx in &senders {
                // Full means a tick is already waiting: dropping this one is the point.
                let _ = tx.try_send(());
            }
            Box::pin(async {}) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        };
        let job = match schedule {
            Schedule::Every(every) => Job::new_repeated_async(*every, fire).map_err(err)?,
            Schedule::Cron(line) => Job::new_async(line.as_str(), fire).map_err(err)?,
        };
        let scheduler = JobScheduler::new().await.map_err(err)?;
        scheduler.add(job).await.map_err(err)?;
        scheduler.start().await.map_err(err)?;
        Ok((Clock { scheduler }, ticks))
    }

    /// Stops firing; bounded so a wedged scheduler cannot hold up shutdown.
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.scheduler.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_validation_uses_the_scheduler_parser() {
        assert!(validate_cron("0 */5 * * * *").is_ok());
        assert!(validate_cron("0 61 * * * *").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ticks_never_pile_up_beyond_one() {
        let (clock, mut ticks) =
            Clock::start(&Schedule::Every(Duration::from_secs(1)), 2).await.expect("scheduler starts");
        // Let several firings pass without consuming: at most one may be waiting.
        tokio::time::sleep(Duration::from_millis(3300)).await;
        let waiting = ticks[0].skip_missed();
        assert_eq!(waiting, 1, "a busy account sees one pending tick, not a burst");
        // Both accounts got their own tick.
        assert_eq!(ticks[1].skip_missed(), 1);
        clock.stop().await;
    }
}
