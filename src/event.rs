//! The events spotguard records: the audit log and the notification outbox share them.
//!
//! An event is plain data, serialised as JSON into the `events` table with its `kind` as a
//! tag, so that `history` and later versions can read what earlier ones wrote. Adding a
//! variant is compatible; renaming a field is not. An older spotguard reading a kind a newer
//! one wrote gets [`Event::Unknown`]; a row it cannot read at all, [`Event::Unreadable`]:
//! neither is ever written, and neither stops the rest of the outbox or the history. No I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::spotify::model::{MAX_DEVICES_PER_ANSWER, kind_key};

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
    FirstRun {
        count: u32,
        names: Vec<String>,
        /// Listed devices beyond the most read from one answer: not looked at. (Absent in
        /// events written before this field.)
        #[serde(default, skip_serializing_if = "is_zero")]
        not_read: u32,
    },
    /// A device that is not trusted is online, and was not alerted within `realert_after`.
    DeviceAppeared {
        name: String,
        device_type: String,
        spotify_id: Option<String>,
        /// Its name looks like a trusted device's (the same skeleton, `text::Skeleton`) while
        /// it is not that device: a copy made to pass for it. (Absent in events written
        /// before this field.)
        #[serde(default)]
        imitates: bool,
        /// The trusted device it looks like, so the alert can say what differs. (Absent in
        /// events written before this field; then the name is the same.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        looks_like: Option<LookAlike>,
        /// Its name is a generic default (`identity::generic`): the alert names the kind of
        /// device, not the name, and its Trust button trusts this session only. (Absent in
        /// events written before this field.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generic: Option<GenericSighting>,
        /// Several unknown devices appeared while a trusted device was playing: perhaps a
        /// Spotify Jam the person hosts (guests' devices join the host's device list).
        #[serde(default, skip_serializing_if = "is_false")]
        jam: bool,
    },
    /// More new devices at once than are alerted one by one: one summary instead of an alert
    /// each. They count as alerted, and stay untrusted.
    NewDevices {
        count: u32,
        /// The first few, in the answer's order.
        names: Vec<String>,
        /// How many of them look like a trusted device.
        imitating: u32,
        /// Listed devices beyond the most read from one answer: not looked at.
        not_read: u32,
        /// A trusted device was playing: perhaps a Jam (see `DeviceAppeared`).
        #[serde(default, skip_serializing_if = "is_false")]
        jam: bool,
    },
    /// A device that is not trusted is playing.
    UnknownPlaying {
        name: String,
        device_type: String,
        what: String,
        private_session: bool,
        /// The trusted device it looks like while not being it (see `DeviceAppeared`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        looks_like: Option<LookAlike>,
        /// Its name is a generic default (see `DeviceAppeared`): the alert says spotguard
        /// cannot tell whether it is the person's own device. (Absent in events written
        /// before this field.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generic: Option<GenericSighting>,
        /// The track's (or episode's) own name and its artists, for webhooks. (Absent in
        /// events written before these fields.)
        #[serde(default)]
        track: Option<String>,
        #[serde(default)]
        artists: Vec<String>,
    },
    /// A known device (matched by its Spotify id) now has another name.
    DeviceRenamed { from: String, to: String, device_type: String },
    /// A device whose one id had lasted weeks (`identity::Strength::Strong`) came back with a
    /// new id and was linked by its name and type: quiet, for `history`.
    DeviceIdChanged { name: String, device_type: String, stable_days: u32 },
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

/// The trusted device an imitation looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookAlike {
    pub name: String,
    pub device_type: String,
}

/// A device with a generic name (issue 12), as its alert tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenericSighting {
    /// What kind of device the name says it is: "web player", "iPhone" (`identity::Generic::noun`).
    pub noun: String,
    /// A trusted device of the account has this very name: "You have trusted a web player
    /// before: was this you?"
    pub trusted_before: bool,
    /// The first such alert of the account: it says why spotguard asks now (once).
    #[serde(default, skip_serializing_if = "is_false")]
    pub explain: bool,
}

impl GenericSighting {
    /// "; a trusted web player has this name too" when one has, for the history line.
    fn trusted_too(&self) -> String {
        if self.trusted_before {
            format!("; a trusted {} has this name too", self.noun)
        } else {
            String::new()
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
            Event::NewDevices { .. } => "new_devices",
            Event::UnknownPlaying { .. } => "unknown_playing",
            Event::DeviceRenamed { .. } => "device_renamed",
            Event::DeviceIdChanged { .. } => "device_id_changed",
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
            | Event::NewDevices { .. }
            | Event::DeviceLimit { .. }
            | Event::LoginExpiring { .. }
            | Event::StillOnlineAfterSignOut { .. } => Urgency::Normal,
            Event::DeviceRenamed { .. }
            | Event::DeviceIdChanged { .. }
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
            Event::FirstRun { count, names, not_read } => {
                format!(
                    "first look at the account: {count} device(s) online ({}){}; review them",
                    names.join(", "),
                    not_listed(*not_read)
                )
            }
            Event::DeviceAppeared { name, device_type, imitates: false, generic: Some(g), jam, .. } => {
                format!(
                    "{} {} connected: \u{201c}{name}\u{201d} ({device_type}), a generic name, so not taken for any \
                 trusted device{}{}",
                    article(&g.noun),
                    g.noun,
                    g.trusted_too(),
                    jam_note(*jam)
                )
            }
            Event::DeviceAppeared { name, device_type, imitates: false, jam, .. } => {
                format!("unknown device \u{201c}{name}\u{201d} ({device_type}) is online{}", jam_note(*jam))
            }
            Event::DeviceAppeared { name, device_type, imitates: true, looks_like: None, .. } => format!(
                "unknown device \u{201c}{name}\u{201d} ({device_type}) is online next to your trusted device of that name: one is not yours"
            ),
            Event::DeviceAppeared {
                name,
                device_type,
                spotify_id,
                imitates: true,
                looks_like: Some(l),
                ..
            } => {
                format!(
                    "unknown device \u{201c}{name}\u{201d} ({device_type}, {}) looks like your trusted \u{201c}{}\u{201d} \
                     and is not it: {}",
                    short_id(spotify_id.as_deref()),
                    l.name,
                    how_it_differs(name, device_type, l).join(", ")
                )
            }
            Event::NewDevices { count, names, imitating, not_read, jam } => format!(
                "{count} new devices at once ({}{}){}{}{}",
                names.join(", "),
                if (*count as usize) > names.len() { ", ..." } else { "" },
                match imitating {
                    0 => String::new(),
                    n => format!("; {n} of them look like trusted devices"),
                },
                not_listed(*not_read),
                jam_note(*jam)
            ),
            Event::UnknownPlaying { name, device_type, what, looks_like: None, generic: Some(g), .. } => {
                format!(
                    "{} {} is playing {what}: \u{201c}{name}\u{201d} ({device_type}), a generic name, so not taken for \
                 any trusted device{}",
                    article(&g.noun),
                    g.noun,
                    g.trusted_too()
                )
            }
            Event::UnknownPlaying { name, device_type, what, looks_like: None, .. } => {
                format!("unknown device \u{201c}{name}\u{201d} ({device_type}) is playing {what}")
            }
            Event::UnknownPlaying { name, device_type, what, looks_like: Some(l), .. } => format!(
                "unknown device \u{201c}{name}\u{201d} ({device_type}) is playing {what}; it looks like your \
                 trusted \u{201c}{}\u{201d} and is not it: {}",
                l.name,
                how_it_differs(name, device_type, l).join(", ")
            ),
            Event::DeviceRenamed { from, to, .. } => {
                format!("device \u{201c}{from}\u{201d} is now called \u{201c}{to}\u{201d}")
            }
            Event::DeviceIdChanged { name, device_type, stable_days } => format!(
                "\u{201c}{name}\u{201d} ({device_type}) came back with a new id after keeping one for {stable_days} days"
            ),
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

/// "an" before a vowel ("an iPhone", "an Android phone"), else "a".
pub fn article(noun: &str) -> &'static str {
    if noun.starts_with(|c: char| "aeiouAEIOU".contains(c)) { "an" } else { "a" }
}

/// "; hosting a Jam? ...", or nothing.
fn jam_note(jam: bool) -> &'static str {
    if jam {
        "; a trusted device was playing: hosting a Jam? guests' devices show up on your account"
    } else {
        ""
    }
}

/// "; N more listed were not read", or nothing.
fn not_listed(not_read: u32) -> String {
    match not_read {
        0 => String::new(),
        n => format!("; {n} more listed were not read (spotguard reads {MAX_DEVICES_PER_ANSWER} per answer)"),
    }
}

/// The start of a Spotify id, enough to tell two apart: "id 1a2b3c4d…", or "no id".
pub fn short_id(id: Option<&str>) -> String {
    match id {
        None => "no id".to_string(),
        Some(id) if id.chars().count() <= 12 => format!("id {id}"),
        Some(id) => format!("id {}…", id.chars().take(8).collect::<String>()),
    }
}

/// What tells an imitation from the trusted device it looks like: its name's differences
/// (`text::differences`) and its type, if that differs too; "another id" when nothing else
/// does (an exact copy).
pub fn how_it_differs(name: &str, device_type: &str, original: &LookAlike) -> Vec<String> {
    let mut out: Vec<String> = crate::text::differences(name, &original.name)
        .into_iter()
        .map(|d| format!("its name has {d}"))
        .collect();
    if kind_key(device_type) != kind_key(&original.device_type) {
        out.push(format!("its type is {device_type}, yours is {}", original.device_type));
    }
    if out.is_empty() {
        out.push("only its id differs".to_string());
    }
    out
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
    "new_devices",
    "unknown_playing",
    "device_renamed",
    "device_id_changed",
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
                imitates: false,
                looks_like: None,
                generic: None,
                jam: false,
            }
        );
    }

    #[test]
    fn the_kinds_added_for_look_alikes_and_crowds_round_trip_and_older_rows_still_read() {
        let samples = [
            Event::NewDevices {
                count: 500,
                names: vec!["A".into()],
                imitating: 1,
                not_read: 1500,
                jam: true,
            },
            Event::DeviceIdChanged { name: "Desk".into(), device_type: "Computer".into(), stable_days: 40 },
            Event::DeviceAppeared {
                name: "Web Player (Chrome)".into(),
                device_type: "Computer".into(),
                spotify_id: Some("w2".into()),
                imitates: false,
                looks_like: None,
                generic: Some(GenericSighting {
                    noun: "web player".into(),
                    trusted_before: true,
                    explain: true,
                }),
                jam: false,
            },
            Event::FirstRun { count: 500, names: vec!["A".into()], not_read: 1500 },
            Event::UnknownPlaying {
                name: "iPhone".into(),
                device_type: "Smartphone".into(),
                what: "a podcast episode".into(),
                private_session: false,
                looks_like: None,
                generic: Some(GenericSighting {
                    noun: "iPhone".into(),
                    trusted_before: true,
                    explain: false,
                }),
                track: None,
                artists: Vec::new(),
            },
            Event::DeviceAppeared {
                name: "Phone\u{200b}".into(),
                device_type: "Smartphone".into(),
                spotify_id: Some("x".into()),
                imitates: true,
                looks_like: Some(LookAlike { name: "Phone".into(), device_type: "Smartphone".into() }),
                generic: None,
                jam: false,
            },
        ];
        for e in samples {
            assert!(KINDS.contains(&e.kind()), "{}", e.kind());
            assert_eq!(decode(&serde_json::to_string(&e).expect("json")), e);
        }
        assert_eq!(
            decode(r#"{"kind":"first_run","count":2,"names":["A","B"]}"#),
            Event::FirstRun { count: 2, names: vec!["A".into(), "B".into()], not_read: 0 }
        );
        let first =
            serde_json::to_string(&Event::FirstRun { count: 1, names: vec![], not_read: 0 }).expect("json");
        assert!(!first.contains("not_read"), "written as before when there is nothing to say: {first}");
        assert!(matches!(
            decode(
                r#"{"kind":"unknown_playing","name":"S","device_type":"Speaker","what":"x","private_session":false}"#
            ),
            Event::UnknownPlaying { looks_like: None, .. }
        ));
    }

    #[test]
    fn a_look_alike_is_described_with_what_it_looks_like_and_what_differs() {
        let e = Event::DeviceAppeared {
            name: "Ph\u{43e}ne".into(),
            device_type: "Computer".into(),
            spotify_id: Some("4f2a9c1b7e5d3a0b9c8d".into()),
            imitates: true,
            looks_like: Some(LookAlike { name: "Phone".into(), device_type: "Smartphone".into() }),
            generic: None,
            jam: false,
        };
        assert_eq!(
            e.describe(),
            "unknown device \u{201c}Ph\u{43e}ne\u{201d} (Computer, id 4f2a9c1b…) looks like your trusted \
             \u{201c}Phone\u{201d} and is not it: its name has other characters (U+043E), its type is Computer, \
             yours is Smartphone"
        );
    }

    #[test]
    fn a_generic_name_is_described_as_the_kind_of_device_with_its_article() {
        let e = Event::UnknownPlaying {
            name: "iPhone".into(),
            device_type: "Smartphone".into(),
            what: "a podcast episode".into(),
            private_session: false,
            looks_like: None,
            generic: Some(GenericSighting { noun: "iPhone".into(), trusted_before: true, explain: false }),
            track: None,
            artists: Vec::new(),
        };
        let Event::UnknownPlaying { name, device_type, generic, .. } = e.clone() else { unreachable!() };
        let appeared = Event::DeviceAppeared {
            name,
            device_type,
            spotify_id: None,
            imitates: false,
            looks_like: None,
            generic,
            jam: false,
        };
        assert!(appeared.describe().starts_with("an iPhone connected: "), "{}", appeared.describe());
        assert_eq!(
            e.describe(),
            "an iPhone is playing a podcast episode: \u{201c}iPhone\u{201d} (Smartphone), a generic name, so not \
             taken for any trusted device; a trusted iPhone has this name too"
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
