//! What the buttons on a notification do, with the configuration in force when pressed:
//! open the sign-out or apps page (and note the sign-out to follow it up), or trust the device.
//! Only presses the desktop layer believed arrive here (from the server, for an offered key).

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use crate::context::Context;
use crate::event::TrustedBy;
use crate::notify::{Invoked, action, opener};

/// Carries out the buttons pressed on notifications, with the configuration in force now.
pub(super) async fn handle_actions(current: watch::Receiver<Context>, mut invoked: mpsc::Receiver<Invoked>) {
    while let Some(inv) = invoked.recv().await {
        let ctx = current.borrow().clone();
        tracing::info!(event = inv.event_id, action = %crate::text::terminal(&inv.action), "notification action");
        match inv.action.as_str() {
            action::DEFAULT | action::SIGN_OUT => {
                // Follow it up: gone at the next polls, or probably a partner device.
                if let Some(key) = inv.device
                    && let Err(e) = ctx.store.call(move |s| s.mark_signout(key, Utc::now())).await
                {
                    tracing::error!("cannot note the sign-out: {e}");
                }
                let opener = ctx.config.alerts.opener.clone();
                let url = ctx.config.alerts.sign_out_url.as_str().to_string();
                tokio::spawn(async move {
                    opener::open(&opener, &url).await;
                });
            }
            action::APPS => {
                let opener = ctx.config.alerts.opener.clone();
                let url = ctx.config.alerts.apps_url.as_str().to_string();
                tokio::spawn(async move {
                    opener::open(&opener, &url).await;
                });
            }
            action::TRUST => {
                let Some(key) = inv.device else { continue };
                match ctx.store.call(move |s| s.trust(key, TrustedBy::Notification, Utc::now())).await {
                    Ok(true) => tracing::info!(device = key, "device trusted from the notification"),
                    Ok(false) => tracing::debug!(device = key, "device was already trusted or is gone"),
                    Err(e) => tracing::error!("cannot trust the device: {e}"),
                }
            }
            other => tracing::debug!(action = %crate::text::terminal(other), "unknown action ignored"),
        }
    }
}
