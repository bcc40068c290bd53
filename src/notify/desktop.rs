//! Desktop notifications and their buttons: the freedesktop Notifications interface on the
//! session bus, spoken with zbus on the tokio runtime (notify-rust only on macOS).
//!
//! Each round asks the server for its capabilities first, so escaping and links match what
//! the server renders, and a missing server is told apart from a failing one. A button press
//! is believed only if it comes from the unique bus name that answered `Notify`, about that
//! notification, with a key that was offered on it: any other program on the bus can send
//! `ActionInvoked`, and a Trust pressed by one would make a stranger trusted. The listener
//! subscribes before `Notify`, so no signal is missed. Waiting for a click happens in a tokio
//! task, bounded by `notify.action_timeout` and by [`MAX_PENDING`] waits at once: some servers
//! never send `ActionInvoked` nor `NotificationClosed`, and each wait holds a bus connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::alert::{Alert, Capabilities};
use crate::audit::DeviceKey;
#[cfg(not(all(unix, not(target_os = "macos"))))]
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
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    pub async fn show(&self, alert: &Alert, about: Invoked) -> Result<(), DesktopError> {
        let mut n = notify_rust::Notification::new();
        n.appname("spotguard").summary(&alert.summary).body(&alert.body).icon("dialog-warning");
        if alert.urgency == Urgency::Critical {
            n.timeout(notify_rust::Timeout::Never);
        }
        tokio::time::timeout(CALL_TIMEOUT, n.show_async())
            .await
            .map_err(|_| DesktopError::TimedOut("Notify"))?
            .map_err(|e| DesktopError::Failed(one_line(&e)))?;
        let _ = about;
        Ok(())
    }

    /// Shows `alert` and, if it has buttons, waits in the background for one to be pressed.
    ///
    /// On the session bus this is done here rather than through notify-rust, whose signal
    /// match has no sender filter and subscribes only after the notification is up: any
    /// program on the bus could press "Trust". Here the listener subscribes first, to signals
    /// from the server's unique name only, and [`wait_for_click`] accepts only a key that
    /// was offered on this notification.
    #[cfg(all(unix, not(target_os = "macos")))]
    pub async fn show(&self, alert: &Alert, about: Invoked) -> Result<(), DesktopError> {
        let shown = tokio::time::timeout(CALL_TIMEOUT, bus::notify(alert)).await;
        let shown = shown.map_err(|_| DesktopError::TimedOut("Notify"))??;
        self.wait_for_click(shown, alert, about);
        Ok(())
    }

    /// Waits in a background task, bounded, for a button; reports it on the channel.
    #[cfg(all(unix, not(target_os = "macos")))]
    fn wait_for_click(&self, shown: bus::Shown, alert: &Alert, about: Invoked) {
        if alert.actions.is_empty() {
            return;
        }
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::debug!("too many notifications waiting for a click; not waiting for this one");
            return;
        };
        let invoked = self.invoked.clone();
        let wait = self.action_timeout;
        let offered: Vec<String> = alert.actions.iter().map(|(key, _)| (*key).to_string()).collect();
        let mut shown = shown;
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(wait, shown.wait_for_action(&offered)).await {
                Ok(Some(action)) => {
                    // Some servers (dunst) leave it open after an action: close it ourselves.
                    let _ = tokio::time::timeout(CALL_TIMEOUT, shown.close()).await;
                    let _ = invoked.send(Invoked { action, ..about }).await;
                }
                Ok(None) => tracing::debug!(event = about.event_id, "notification closed"),
                Err(_) => tracing::debug!(event = about.event_id, "stopped waiting for a click"),
            }
        });
    }
}

/// The Notifications interface on the session bus, spoken with zbus directly.
#[cfg(all(unix, not(target_os = "macos")))]
mod bus {
    use std::collections::HashMap;

    use futures_util::StreamExt;
    use zbus::Variant as Value;

    use super::{Alert, DesktopError, one_line};
    use crate::event::Urgency;

    const NAME: &str = "org.freedesktop.Notifications";
    const PATH: &str = "/org/freedesktop/Notifications";

    /// A notification the server accepted: its id, the server's unique bus name, and the
    /// connection (servers such as dunst send the signals to it alone), already listening.
    pub struct Shown {
        id: u32,
        server: String,
        conn: zbus::Connection,
        signals: zbus::MessageStream,
    }

    /// Subscribes to the server's signals, then calls `Notify`.
    pub async fn notify(alert: &Alert) -> Result<Shown, DesktopError> {
        let failed = |e: zbus::Error| DesktopError::Failed(one_line(&e));
        let conn = zbus::Connection::session().await.map_err(|e| DesktopError::NoServer(one_line(&e)))?;
        // Subscribed before the notification exists, so no signal can come too early. Not
        // filtered by sender here: a signal from anyone else must reach `wait_for_action` to
        // be logged as the forgery it is.
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(NAME)
            .path(PATH)
            .build()
            .map_err(failed)?;
        let signals = zbus::MessageStream::for_match_rule(rule, &conn, std::num::NonZeroUsize::new(16))
            .await
            .map_err(failed)?;
        let actions: Vec<&str> = alert.actions.iter().flat_map(|(key, label)| [*key, *label]).collect();
        let mut hints: HashMap<&str, Value<'_>> = HashMap::new();
        hints.insert(
            "urgency",
            Value::U8(match alert.urgency {
                Urgency::Critical => 2,
                Urgency::Normal | Urgency::Quiet => 1,
            }),
        );
        hints.insert("category", Value::from("security"));
        // Critical ones stay until dismissed (0); the rest as the server likes (-1).
        let expire: i32 = if alert.urgency == Urgency::Critical { 0 } else { -1 };
        let reply = conn
            .call_method(
                Some(NAME),
                PATH,
                Some(NAME),
                "Notify",
                &("spotguard", 0u32, "dialog-warning", &alert.summary, &alert.body, actions, hints, expire),
            )
            .await
            .map_err(failed)?;
        let id: u32 = reply.body().deserialize().map_err(failed)?;
        // The unique name that answered is the server: only its signals are believed.
        let server = reply
            .header()
            .sender()
            .map(|s| s.to_string())
            .ok_or_else(|| DesktopError::Failed("the Notify reply names no sender".into()))?;
        Ok(Shown { id, server, conn, signals })
    }

    impl Shown {
        /// The key pressed on this notification, if one of `offered` is; `None` once it is
        /// closed. A signal from anyone but the server, about another notification, or with a
        /// key that was not offered is ignored (and logged, escaped, once).
        pub async fn wait_for_action(&mut self, offered: &[String]) -> Option<String> {
            let mut warned = false;
            while let Some(msg) = self.signals.next().await {
                let Ok(msg) = msg else { continue };
                let header = msg.header();
                let from_server = header.sender().is_some_and(|s| s.as_str() == self.server);
                match header.member().map(|m| m.as_str()) {
                    Some("ActionInvoked") => {
                        let Ok((id, key)) = msg.body().deserialize::<(u32, String)>() else { continue };
                        if id != self.id {
                            continue;
                        }
                        if from_server && offered.contains(&key) {
                            return Some(key);
                        }
                        if !std::mem::replace(&mut warned, true) {
                            tracing::warn!(
                                notification = self.id,
                                action = %crate::text::terminal(&key),
                                sender = %crate::text::terminal(header.sender().map(|s| s.as_str()).unwrap_or("?")),
                                "ignored a button press that was not offered or not sent by the notification server"
                            );
                        }
                    }
                    Some("NotificationClosed") if from_server => {
                        if matches!(msg.body().deserialize::<(u32, u32)>(), Ok((id, _)) if id == self.id) {
                            return None;
                        }
                    }
                    _ => {}
                }
            }
            None
        }

        /// Asks the server to close the notification.
        pub async fn close(&self) {
            let _ =
                self.conn.call_method(Some(NAME), PATH, Some(NAME), "CloseNotification", &(self.id,)).await;
        }
    }
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}
