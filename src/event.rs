//! The events spotguard records: the audit log and the notification outbox share them.
//!
//! An event is plain data, serialised as JSON into the `events` table with its `kind` as a
//! tag, so that `history` and later versions can read what earlier ones wrote. Adding a
//! variant is compatible; renaming a field is not. An older spotguard reading a kind a newer
//! one wrote gets [`Event::Unknown`]; a row it cannot read at all, [`Event::Unreadable`]:
//! neither is ever written, and neither stops the rest of the outbox or the history. No I/O here.

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
    UnknownPlaying {
        name: String,
        device_type: String,
        what: String,
        private_session: bool,
        /// The track's (or episode's) own name and its artists, for webhooks. (Absent in
        /// events written before these fields.)
        #[serde(default)]
        track: Option<String>,
        #[serde(default)]
        artists: Vec<String>,
    },
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
    /// No successful poll of the account for `alerts.silent_after`: the person is not
    /// covered, and must hear it. Once per outage.
    NotWatching { since: DateTime<Utc>, reason: String },
    /// Polls of the account work again after a [`Event::NotWatching`] notice.
    WatchingAgain { since: DateTime<Utc> },
    /// The database cannot be written (a full disk, say): alerts still come from memory,
    /// but nothing is recorded. Never stored (it cannot be): shown directly, once per outage.
    NotRecording { reason: String },
    /// A kind a newer spotguard wrote. Read, never written.
    #[serde(skip)]
    Unknown { kind: String },
    /// A stored row that cannot be read at all. Read, never written.
    #[serde(skip)]
    Unreadable { reason: String },
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
            Event::NotWatching { .. } => "not_watching",
            Event::WatchingAgain { .. } => "watching_again",
            Event::NotRecording { .. } => "not_recording",
            Event::Unknown { .. } => "unknown",
            Event::Unreadable { .. } => "unreadable",
        }
    }

    /// How the event is delivered: quiet ones only go to the log.
    pub fn urgency(&self) -> Urgency {
        match self {
            // The watcher is blind until the person logs in again: it must not time out.
            Event::UnknownPlaying { .. }
            | Event::AccessLost { .. }
            | Event::NotWatching { .. }
            | Event::NotRecording { .. } => Urgency::Critical,
            // A newer spotguard thought it worth recording: better shown plainly than lost.
            Event::Unknown { .. }
            | Event::FirstRun { .. }
            | Event::DeviceAppeared { .. }
            | Event::DeviceLimit { .. }
            | Event::LoginExpiring { .. }
            | Event::StillOnlineAfterSignOut { .. } => Urgency::Normal,
            Event::DeviceRenamed { .. }
            | Event::DeviceTrusted { .. }
            | Event::LoggedIn { .. }
            | Event::DevicesMerged { .. }
            | Event::SignOutWorked { .. }
            | Event::WatchingAgain { .. }
            | Event::Unreadable { .. } => Urgency::Quiet,
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
            Event::NotWatching { since, reason } => format!(
                "not watching: no successful check since {}: {reason}",
                since.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M")
            ),
            Event::WatchingAgain { since } => format!(
                "watching again (checks had failed since {})",
                since.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M")
            ),
            Event::NotRecording { reason } => {
                format!("the database cannot be written, so nothing is being recorded: {reason}")
            }
            Event::Unknown { kind } => {
                format!("an event of kind \u{201c}{kind}\u{201d}, written by a newer spotguard")
            }
            Event::Unreadable { reason } => format!("an event that cannot be read ({reason})"),
        }
    }
}

/// Reads a stored event's JSON. Never fails: a kind this version does not know is
/// [`Event::Unknown`], anything else that does not decode is [`Event::Unreadable`].
pub fn decode(details: &str) -> Event {
    match serde_json::from_str::<Event>(details) {
        Ok(e) => e,
        Err(e) => {
            let kind = serde_json::from_str::<serde_json::Value>(details)
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string));
            match kind {
                Some(kind) if !KINDS.contains(&kind.as_str()) => {
                    Event::Unknown { kind: crate::text::clean(&kind, 64) }
                }
                _ => Event::Unreadable { reason: crate::text::clean(&e.to_string(), 160) },
            }
        }
    }
}

/// Every kind this version writes.
const KINDS: &[&str] = &[
    "first_run",
    "device_appeared",
    "unknown_playing",
    "device_renamed",
    "device_limit",
    "device_trusted",
    "access_lost",
    "login_expiring",
    "logged_in",
    "devices_merged",
    "sign_out_worked",
    "still_online_after_sign_out",
    "not_watching",
    "watching_again",
    "not_recording",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_from_a_newer_version_is_unknown_and_a_broken_row_unreadable() {
        assert_eq!(
            decode(r#"{"kind":"hologram_seen","where":"moon"}"#),
            Event::Unknown { kind: "hologram_seen".into() }
        );
        assert!(matches!(decode(r#"{"kind":"device_appeared","name":7}"#), Event::Unreadable { .. }));
        assert!(matches!(decode("not json"), Event::Unreadable { .. }));
        assert!(matches!(decode(r#"{"no":"kind"}"#), Event::Unreadable { .. }));
    }

    #[test]
    fn every_written_kind_is_known() {
        let samples = [
            Event::NotWatching { since: Utc::now(), reason: "x".into() },
            Event::WatchingAgain { since: Utc::now() },
            Event::NotRecording { reason: "x".into() },
            Event::LoggedIn { user: "u".into() },
        ];
        for e in samples {
            assert!(KINDS.contains(&e.kind()), "{}", e.kind());
            assert_eq!(decode(&serde_json::to_string(&e).expect("json")), e);
        }
    }

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
