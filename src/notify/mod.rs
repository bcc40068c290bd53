//! Delivering events: the outbox dispatcher, desktop notifications, and the URL opener.
//!
//! The poller commits events first; [`Dispatcher::deliver_pending`] then shows each one and
//! marks it delivered right after, so a crash never loses an alert and can repeat one only
//! in the instant between the server accepting it and that commit (at-least-once, on
//! purpose: for a security alert a duplicate beats a loss). With no notification server
//! (headless), it logs one warning and marks events delivered: they stay in the audit log.
//! A failing server is retried on the next round, [`MAX_ATTEMPTS`] times at most.

pub mod alert;
pub mod desktop;
pub mod opener;

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;

pub use alert::{Alert, Capabilities, action, render};
pub use desktop::{Desktop, DesktopError, Invoked};

use crate::event::Urgency;
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

    /// Delivers every undelivered event, oldest first.
    pub async fn deliver_pending(&self, store: &SharedStore) -> Result<Delivered, StoreError> {
        let _round = self.round.lock().await;
        let mut done = Delivered::default();
        let pending = store.call(|s| s.undelivered(BATCH)).await?;
        if pending.is_empty() {
            return Ok(done);
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
            match shown {
                Ok(true) => {
                    done.shown += 1;
                    store.call(move |s| s.mark_delivered(id, Utc::now())).await?;
                }
                Ok(false) => {
                    done.logged_only += 1;
                    store.call(move |s| s.mark_delivered(id, Utc::now())).await?;
                }
                Err(DesktopError::NoServer(why)) => {
                    if !self.warned_no_server.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "no desktop notification server, so alerts are only logged and kept in history ({why})"
                        );
                    }
                    done.logged_only += 1;
                    store.call(move |s| s.mark_delivered(id, Utc::now())).await?;
                }
                Err(e) => {
                    done.failed += 1;
                    let last = ev.attempts + 1 >= MAX_ATTEMPTS;
                    tracing::warn!(event = id, attempt = ev.attempts + 1, "could not show the alert: {e}");
                    store
                        .call(move |s| {
                            s.note_attempt(id)?;
                            if last { s.mark_delivered(id, Utc::now()) } else { Ok(()) }
                        })
                        .await?;
                }
            }
        }
        Ok(done)
    }
}

fn about(ev: &StoredEvent) -> Invoked {
    Invoked { event_id: ev.id, account: ev.account.clone(), device: ev.device, action: String::new() }
}
