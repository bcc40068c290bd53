//! Desktop notifications through notify-rust (zbus, on the tokio runtime), and their buttons.
//!
//! Each alert asks the server for its capabilities first (one call; alerts are rare), so
//! escaping and links match what the server renders, and a missing server is told apart
//! from a failing one. `show_async` is used, never the blocking `show()`, which can panic
//! inside a tokio runtime. Waiting for a click happens in a tokio task, not a thread,
//! bounded by `notify.action_timeout` and by [`MAX_PENDING`] waits at once: some servers
//! never send `ActionInvoked` nor `NotificationClosed`, and each wait holds a bus connection.
//! notify-rust reports a close as `__closed`/`Closed`: that is not an action and is ignored.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::alert::{Alert, Capabilities};
use crate::audit::DeviceKey;
use crate::event::Urgency;

/// How many notifications may wait for a click at once; more are shown without waiting.
pub const MAX_PENDING: usize = 32;
/// Bound on one D-Bus call to the server: a wedged server must not stall the outbox.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A button the person pressed, with what it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoked {
    pub event_id: i64,
    pub account: String,
    pub device: Option<DeviceKey>,
    pub action: String,
}

/// Why a notification was not shown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DesktopError {
    #[error("no desktop notification server is running ({0})")]
    NoServer(String),
    #[error("the notification server failed: {0}")]
    Failed(String),
    /// The server did not answer within the bound: it is probably hung, so the rest of a
    /// round waits for the next one rather than for one timeout after another.
    #[error("the notification server did not answer {0} within 5s")]
    TimedOut(&'static str),
}

/// Shows alerts on the session bus and reports pressed buttons on a channel.
#[derive(Debug)]
pub struct Desktop {
    invoked: mpsc::Sender<Invoked>,
    action_timeout: Duration,
    pending: Arc<Semaphore>,
}

impl Desktop {
    pub fn new(invoked: mpsc::Sender<Invoked>, action_timeout: Duration) -> Desktop {
        // notify-rust's bundle lookup can hang on recent macOS unless an application is set.
        #[cfg(target_os = "macos")]
        let _ = notify_rust::set_application("com.apple.Terminal");
        Desktop { invoked, action_timeout, pending: Arc::new(Semaphore::new(MAX_PENDING)) }
    }

    /// macOS notification centre: plain text, and notify-rust offers no buttons there.
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    pub async fn capabilities() -> Result<Capabilities, DesktopError> {
        Ok(Capabilities::default())
    }

    /// What the server can do; `NoServer` if there is no bus or no server on it.
    #[cfg(all(unix, not(target_os = "macos")))]
    pub async fn capabilities() -> Result<Capabilities, DesktopError> {
        let fut = async {
            let conn = zbus::Connection::session().await.map_err(|e| DesktopError::NoServer(one_line(&e)))?;
            let reply = conn
                .call_method(
                    Some("org.freedesktop.Notifications"),
                    "/org/freedesktop/Notifications",
                    Some("org.freedesktop.Notifications"),
                    "GetCapabilities",
                    &(),
                )
                .await
                .map_err(|e| match &e {
                    // The bus answers for the missing name; a server would have answered itself.
                    zbus::Error::FDO(fdo)
                        if matches!(
                            **fdo,
                            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
                        ) =>
                    {
                        DesktopError::NoServer("nothing owns org.freedesktop.Notifications".into())
                    }
                    _ => DesktopError::Failed(one_line(&e)),
                })?;
            let list: Vec<String> =
                reply.body().deserialize().map_err(|e| DesktopError::Failed(one_line(&e)))?;
            Ok(Capabilities::from_list(&list))
        };
        tokio::time::timeout(CALL_TIMEOUT, fut)
            .await
            .unwrap_or(Err(DesktopError::TimedOut("GetCapabilities")))
    }

    /// Shows `alert` and, if it has buttons, waits in the background for one to be pressed.
    pub async fn show(&self, alert: &Alert, about: Invoked) -> Result<(), DesktopError> {
        let mut n = notify_rust::Notification::new();
        n.appname("spotguard").summary(&alert.summary).body(&alert.body).icon("dialog-warning");
        for (key, label) in &alert.actions {
            n.action(key, label);
        }
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            n.urgency(match alert.urgency {
                Urgency::Critical => notify_rust::Urgency::Critical,
                Urgency::Normal | Urgency::Quiet => notify_rust::Urgency::Normal,
            });
            n.hint(notify_rust::Hint::Category("security".into()));
        }
        if alert.urgency == Urgency::Critical {
            n.timeout(notify_rust::Timeout::Never);
        }
        let handle = tokio::time::timeout(CALL_TIMEOUT, n.show_async())
            .await
            .map_err(|_| DesktopError::TimedOut("Notify"))?
            .map_err(|e| DesktopError::Failed(one_line(&e)))?;
        #[cfg(all(unix, not(target_os = "macos")))]
        self.wait_for_click(handle, alert, about);
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        let _ = (handle, about);
        Ok(())
    }

    /// Waits in a background task, bounded, for a button; reports it on the channel.
    #[cfg(all(unix, not(target_os = "macos")))]
    fn wait_for_click(&self, handle: notify_rust::NotificationHandle, alert: &Alert, about: Invoked) {
        if alert.actions.is_empty() {
            return;
        }
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::debug!("too many notifications waiting for a click; not waiting for this one");
            return;
        };
        let invoked = self.invoked.clone();
        let wait = self.action_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let mut pressed = None;
            let waited = tokio::time::timeout(
                wait,
                handle.wait_for_action_async(|r| {
                    pressed = match r {
                        notify_rust::NotificationResponse::Default => Some("default".to_string()),
                        notify_rust::NotificationResponse::Action(a) => Some(a.clone()),
                        // A close, or anything else, is not a request to do something.
                        _ => None,
                    }
                }),
            )
            .await;
            match (waited, pressed) {
                (Ok(()), Some(action)) => {
                    // Some servers (dunst) leave it open after an action: close it ourselves.
                    let _ = tokio::time::timeout(CALL_TIMEOUT, handle.close_async()).await;
                    let _ = invoked.send(Invoked { action, ..about }).await;
                }
                (Ok(()), None) => tracing::debug!(event = about.event_id, "notification closed"),
                (Err(_), _) => tracing::debug!(event = about.event_id, "stopped waiting for a click"),
            }
        });
    }
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}
