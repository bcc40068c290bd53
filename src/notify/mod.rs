//! Delivering events: the outbox dispatcher, desktop notifications, and the URL opener.
//!
//! The poller commits events first; [`Dispatcher::deliver_pending`] then shows each one and
//! marks it delivered right after, so a crash never loses an alert and can repeat one only
//! in the instant between the server accepting it and that commit (at-least-once, on
//! purpose: for a security alert a duplicate beats a loss). With no notification server
//! (headless), it logs one warning and marks events delivered: they stay in the audit log.
//! A failing server is retried on the next round, [`MAX_ATTEMPTS`] times at most. A round
//! ends at the first timeout (a hung server costs one bounded wait per round, never one per
//! alert), and what is left waits for the next round ([`Delivered::failed`] says so).
//! When the database cannot be written, [`Dispatcher::deliver_now`] shows events straight
//! from memory: a full disk must not hide an intruder.

pub mod alert;
pub mod channel;
pub mod desktop;
pub mod heartbeat;
pub mod opener;
pub mod outbox;

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;

pub use alert::{Alert, Capabilities, action, render};
pub use desktop::{Desktop, DesktopError, Invoked};

use crate::event::{Event, Urgency};
use crate::store::{SharedStore, StoreError, StoredEvent};
use crate::text::{MAX_NAME_CHARS, clean};

/// Delivery attempts before an event is given up on (it stays in the log).
pub const MAX_ATTEMPTS: u32 = 5;
/// Events handled per round; the rest wait for the next round.
const BATCH: usize = 50;

/// Sends what the outbox holds.
#[derive(Debug)]
pub struct Dispatcher {
    desktop: Option<Desktop>,
    sign_out_url: String,
    /// Name accounts in summaries only when there are several.
    name_accounts: bool,
    /// The "no notification server" warning is said once per run, not once per event.
    warned_no_server: AtomicBool,
    /// One round at a time: account loops run concurrently, and two rounds reading the same
    /// undelivered rows would show an alert twice.
    round: tokio::sync::Mutex<()>,
}

/// What one round did, for logs and the demo.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub shown: usize,
    pub logged_only: usize,
    pub failed: usize,
    /// The round ended early at a timeout; the rest wait for the next round.
    pub stopped: bool,
}

impl Dispatcher {
    pub fn new(desktop: Option<Desktop>, sign_out_url: &str, name_accounts: bool) -> Dispatcher {
        Dispatcher {
            desktop,
            sign_out_url: sign_out_url.to_string(),
            name_accounts,
            warned_no_server: AtomicBool::new(false),
            round: tokio::sync::Mutex::new(()),
        }
    }

    /// Delivers every undelivered event, oldest first, in batches until the outbox is empty
    /// or a batch makes no progress (every event in it failed and waits for a later round).
    pub async fn deliver_pending(&self, store: &SharedStore) -> Result<Delivered, StoreError> {
        let _round = self.round.lock().await;
        let mut total = Delivered::default();
        loop {
            let (done, fetched) = self.deliver_batch(store).await?;
            total.shown += done.shown;
            total.logged_only += done.logged_only;
            total.failed += done.failed;
            total.stopped |= done.stopped;
            if done.stopped || fetched < BATCH || done.shown + done.logged_only == 0 {
                return Ok(total);
            }
        }
    }

    /// Shows `events` of `account` straight from memory, for when they cannot be recorded.
    /// No buttons that need a record (Trust). Each is logged as it is handled; with no
    /// notification server (or desktop notifications off) that is all. Stops at the first
    /// server timeout. Returns how many of `events`, from the start, were handled: the rest
    /// are for a later try.
    pub async fn deliver_now(&self, account: &str, events: &[Event]) -> usize {
        let _round = self.round.lock().await;
        let caps = match &self.desktop {
            Some(_) => match Desktop::capabilities().await {
                Ok(caps) => Some(caps),
                Err(DesktopError::TimedOut(what)) => {
                    tracing::warn!(
                        "the notification server did not answer {what}; alerts wait for the next try"
                    );
                    return 0;
                }
                Err(e) => {
                    tracing::warn!("alerts that could not be recorded are only logged: {e}");
                    None
                }
            },
            None => None,
        };
        let now = Utc::now();
        for (handled, event) in events.iter().enumerate() {
            let shown = match (&self.desktop, &caps) {
                (Some(desktop), Some(caps)) if event.urgency() != Urgency::Quiet => {
                    match render(event, now, account, self.name_accounts, caps, &self.sign_out_url) {
                        Some(mut alert) => {
                            alert.actions.retain(|(key, _)| *key != action::TRUST);
                            let about = Invoked {
                                event_id: 0,
                                account: account.to_string(),
                                device: None,
                                action: String::new(),
                            };
                            desktop.show(&alert, about).await
                        }
                        None => Ok(()),
                    }
                }
                _ => Ok(()),
            };
            match shown {
                Err(DesktopError::TimedOut(what)) => {
                    tracing::warn!(
                        "the notification server did not answer {what}; alerts wait for the next try"
                    );
                    return handled;
                }
                Err(e) => tracing::warn!("could not show an alert that could not be recorded: {e}"),
                Ok(()) => {}
            }
            tracing::info!(kind = event.kind(), account = %account, "{}", clean(&event.describe(), 4 * MAX_NAME_CHARS));
        }
        events.len()
    }

    /// One batch; returns what it did and how many events it read.
    async fn deliver_batch(&self, store: &SharedStore) -> Result<(Delivered, usize), StoreError> {
        let mut done = Delivered::default();
        let pending = store.call(|s| s.undelivered(BATCH)).await?;
        let fetched = pending.len();
        if pending.is_empty() {
            return Ok((done, 0));
        }
        // One capabilities query per round: the server may have changed since the last.
        let caps = match &self.desktop {
            Some(_) => Some(Desktop::capabilities().await),
            None => None,
        };
        for ev in pending {
            if ev.attempts == 0 {
                tracing::info!(
                    event = ev.id,
                    kind = ev.event.kind(),
                    account = %ev.account,
                    "{}",
                    clean(&ev.event.describe(), 4 * MAX_NAME_CHARS)
                );
            }
            let shown = match (&self.desktop, &caps) {
                _ if ev.event.urgency() == Urgency::Quiet => Ok(false),
                (Some(desktop), Some(Ok(caps))) => {
                    match render(&ev.event, ev.at, &ev.account, self.name_accounts, caps, &self.sign_out_url)
                    {
                        Some(alert) => desktop.show(&alert, about(&ev)).await.map(|()| true),
                        None => Ok(false),
                    }
                }
                (Some(_), Some(Err(e))) => Err(e.clone()),
                _ => Ok(false),
            };
            let id = ev.id;
            // Every outcome is delivered (shown, or logged only) or a failed attempt to retry.
            let delivered = match shown {
                Ok(true) => {
                    done.shown += 1;
                    true
                }
                Ok(false) => {
                    done.logged_only += 1;
                    true
                }
                // A graphical session whose notification server has not started yet (the
                // daemon can start first at login): retry, as for a failing server.
                Err(DesktopError::NoServer(why)) if graphical_session() && ev.attempts + 1 < MAX_ATTEMPTS => {
                    tracing::debug!(event = id, "no notification server yet ({why}); will retry");
                    false
                }
                Err(DesktopError::NoServer(why)) => {
                    if !self.warned_no_server.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "no desktop notification server, so alerts are only logged and kept in history ({why})"
                        );
                    }
                    done.logged_only += 1;
                    true
                }
                Err(e) => {
                    tracing::warn!(event = id, attempt = ev.attempts + 1, "could not show the alert: {e}");
                    // A hung server: one bounded wait per round, the rest go next round.
                    done.stopped = matches!(e, DesktopError::TimedOut(_));
                    false
                }
            };
            if delivered {
                store.call(move |s| s.mark_delivered(id, Utc::now())).await?;
            } else {
                done.failed += 1;
                // After the last attempt it stays in the log, delivered or not.
                let last = ev.attempts + 1 >= MAX_ATTEMPTS;
                store
                    .call(move |s| {
                        s.note_attempt(id)?;
                        if last { s.mark_delivered(id, Utc::now()) } else { Ok(()) }
                    })
                    .await?;
                if done.stopped {
                    break;
                }
            }
        }
        Ok((done, fetched))
    }
}

/// Whether a desktop session is there, so a missing notification server is probably late.
pub(crate) fn graphical_session() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

fn about(ev: &StoredEvent) -> Invoked {
    Invoked { event_id: ev.id, account: ev.account.clone(), device: ev.device, action: String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Policy, Snapshot, evaluate};
    use crate::spotify::Device;
    use crate::store::{Recording, Store};
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_outbox_is_drained_in_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SharedStore::new(Store::open(&dir.path().join("db")).expect("open"));
        store
            .call(|s| {
                let now = Utc::now();
                let a = s.account("default", now)?;
                let policy = Policy {
                    realert_after: Duration::from_secs(86_400),
                    device_limit: 1000,
                    ignore: Vec::new(),
                };
                let dev = |i: usize| Device {
                    id: Some(format!("id-{i}")),
                    name: format!("Device {i}"),
                    kind: "Computer".into(),
                    ..Device::default()
                };
                // A reviewed account, then 120 strangers, five a poll (more at once would be
                // one summary): 120 alerts.
                let reviewed = Snapshot { devices: vec![dev(0)], playback: None, skipped: 0, cut: 0 };
                s.poll(a, now, Duration::ZERO, Recording::Record, |k| evaluate(k, &reviewed, &policy, now))?;
                for first in (1..=120).step_by(5) {
                    let strangers = Snapshot {
                        devices: (first..first + 5).map(dev).collect(),
                        playback: None,
                        skipped: 0,
                        cut: 0,
                    };
                    s.poll(a, now, Duration::ZERO, Recording::Record, |k| {
                        evaluate(k, &strangers, &policy, now)
                    })?;
                }
                Ok(())
            })
            .await
            .expect("seed");
        let dispatcher = Dispatcher::new(None, "https://www.spotify.com/account/overview/", false);
        let done = dispatcher.deliver_pending(&store).await.expect("deliver");
        assert_eq!(
            done.logged_only, 121,
            "the first run's summary and 120 alerts, past the batch of {BATCH}"
        );
        assert!(store.call(|s| s.undelivered(10)).await.expect("outbox").is_empty());
    }
}
