//! The events spotguard records: the audit log and the notification outbox share them.
//!
//! An event is plain data, serialised as JSON into the `events` table with its `kind` as a
//! tag, so that `history` and later versions can read what earlier ones wrote. Adding a
//! variant is compatible; renaming a field is not. No I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How loudly an event asks for attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// Recorded only; nothing is shown.
    Quiet,
    Normal,
    /// Critical notifications do not time out on the desktop.
    Critical,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The account's first successful poll found devices: one summary instead of one alert
    /// per device. They stay untrusted until the person reviews them.
    FirstRun { count: u32, names: Vec<String> },
    /// A device that is not trusted is online, and was not alerted within `realert_after`.
    DeviceAppeared {
        name: String,
        device_type: String,
        spotify_id: Option<String>,
        /// It has the exact name and type of a trusted device that is online at the same
        /// time: a copy made to pass for it. (Absent in events written before this field.)
        #[serde(default)]
        imitates: bool,
    },
    /// A device that is not trusted is playing.
    UnknownPlaying { name: String, device_type: String, what: String, private_session: bool },
    /// A known device (matched by its Spotify id) now has another name.
    DeviceRenamed { from: String, to: String, device_type: String },
    /// The number of distinct devices seen within the window reached the limit.
    DeviceLimit { count: u32, limit: u32, window_days: u32 },
    /// The person trusted a device.
    DeviceTrusted { name: String, device_type: String, by: TrustedBy },
    /// Spotify no longer accepts the account's login: it is not watched until a new login.
    AccessLost { reason: String },
    /// The login ends soon (Spotify ends logins six months after authorisation).
    LoginExpiring { expires_at: DateTime<Utc> },
    /// After "Sign out everywhere", the device was gone at the next successful poll.
    SignOutWorked { name: String, device_type: String },
    /// Long after "Sign out everywhere" the device is still online: probably a partner device
    /// (speaker, TV, console, car), which sign-out does not cover.
    StillOnlineAfterSignOut { name: String, device_type: String, minutes: u32 },
    /// Two records were one device: `merged` was folded into `kept`, histories joined.
    DevicesMerged { kept: String, merged: String },
    /// `spotguard login` authorised the account.
    LoggedIn { user: String },
}

/// Who trusted a device: recorded so history can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustedBy {
    Cli,
    Notification,
}

impl Event {
    /// The stable name stored in the `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::FirstRun { .. } => "first_run",
            Event::DeviceAppeared { .. } => "device_appeared",
            Event::UnknownPlaying { .. } => "unknown_playing",
            Event::DeviceRenamed { .. } => "device_renamed",
            Event::DeviceLimit { .. } => "device_limit",
            Event::DeviceTrusted { .. } => "device_trusted",
            Event::AccessLost { .. } => "access_lost",
            Event::LoginExpiring { .. } => "login_expiring",
            Event::LoggedIn { .. } => "logged_in",
            Event::DevicesMerged { .. } => "devices_merged",
            Event::SignOutWorked { .. } => "sign_out_worked",
            Event::StillOnlineAfterSignOut { .. } => "still_online_after_sign_out",
        }
    }

    /// How the event is delivered: quiet ones only go to the log.
    pub fn urgency(&self) -> Urgency {
        match self {
            // The watcher is blind until the person logs in again: it must not time out.
            Event::UnknownPlaying { .. } | Event::AccessLost { .. } => Urgency::Critical,
            Event::FirstRun { .. }
            | Event::DeviceAppeared { .. }
            | Event::DeviceLimit { .. }
            | Event::LoginExpiring { .. }
            | Event::StillOnlineAfterSignOut { .. } => Urgency::Normal,
            Event::DeviceRenamed { .. }
            | Event::DeviceTrusted { .. }
            | Event::LoggedIn { .. }
            | Event::DevicesMerged { .. }
            | Event::SignOutWorked { .. } => Urgency::Quiet,
        }
    }

    /// One plain line for logs and the terminal. Names are untrusted: callers that write to a
    /// terminal or a notification sanitise them for that medium.
    pub fn describe(&self) -> String {
        match self {
            Event::FirstRun { count, names } => {
                format!(
                    "first look at the account: {count} device(s) online ({}); review them",
                    names.join(", ")
                )
            }
            Event::DeviceAppeared { name, device_type, imitates: false, .. } => {
                format!("unknown device \u{201c}{name}\u{201d} ({device_type}) is online")
            }
            Event::DeviceAppeared { name, device_type, imitates: true, .. } => format!(
                "unknown device \u{201c}{name}\u{201d} ({device_type}) is online next to your trusted device of that name: one is not yours"
            ),
            Event::UnknownPlaying { name, device_type, what, .. } => {
                format!("unknown device \u{201c}{name}\u{201d} ({device_type}) is playing {what}")
            }
            Event::DeviceRenamed { from, to, .. } => {
                format!("device \u{201c}{from}\u{201d} is now called \u{201c}{to}\u{201d}")
            }
            Event::DeviceLimit { count, limit, window_days } => {
                format!("{count} devices used the account in {window_days} days (limit {limit})")
            }
            Event::DeviceTrusted { name, by, .. } => {
                let by = match by {
                    TrustedBy::Cli => "from the command line",
                    TrustedBy::Notification => "from a notification",
                };
                format!("device \u{201c}{name}\u{201d} trusted {by}")
            }
            Event::AccessLost { reason } => format!("access lost: {reason}"),
            Event::LoginExpiring { expires_at } => {
                format!("the login ends on {}", expires_at.format("%Y-%m-%d"))
            }
            Event::LoggedIn { user } => format!("logged in as Spotify user {user}"),
            Event::SignOutWorked { name, device_type } => {
                format!("after Sign out everywhere, \u{201c}{name}\u{201d} ({device_type}) is gone")
            }
            Event::StillOnlineAfterSignOut { name, device_type, minutes } => format!(
                "\u{201c}{name}\u{201d} ({device_type}) is still online {minutes} min after Sign out everywhere: \
                 probably a partner device; remove its access on the apps page"
            ),
            Event::DevicesMerged { kept, merged } => {
                format!("device \u{201c}{merged}\u{201d} merged into \u{201c}{kept}\u{201d}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_written_before_a_field_existed_still_read() {
        let old = r#"{"kind":"device_appeared","name":"Phone","device_type":"Smartphone","spotify_id":null}"#;
        let e: Event = serde_json::from_str(old).expect("an older event");
        assert_eq!(
            e,
            Event::DeviceAppeared {
                name: "Phone".into(),
                device_type: "Smartphone".into(),
                spotify_id: None,
                imitates: false
            }
        );
    }

    #[test]
    fn every_kind_round_trips() {
        let e = Event::StillOnlineAfterSignOut { name: "TV".into(), device_type: "TV".into(), minutes: 61 };
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).expect("json")).expect("read");
        assert_eq!(back, e);
        assert_eq!(back.kind(), "still_online_after_sign_out");
    }
}
