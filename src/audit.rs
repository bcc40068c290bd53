//! The audit rules: what is known + what Spotify shows now -> what to record and alert.
//!
//! Pure functions over plain data: no I/O, no clock (the time is a parameter), so every
//! rule is tested exhaustively at the bottom of this file. The store loads [`Known`], the
//! poller builds a [`Snapshot`] from a *successful* poll only (a failed or partial poll is
//! never evidence), and the store applies the returned [`Plan`] in one transaction.
//!
//! # Device identity
//! Spotify's device `id` is not stable: clients get a new one when they reconnect, the web
//! player gets one per tab, restricted devices may have none. A device seen now is the
//! device on record
//! 1. whose recorded ids include its `id`; else
//! 2. with the same name and type (type compared case- and separator-insensitively) that no
//!    other device in this same snapshot already claimed by id; the new id is then recorded
//!    as an alias instead of raising an alert.
//!
//! Trade-off, stated plainly: a device that copies the exact name and type of a trusted
//! device *while that device is offline* is taken for it and not flagged. While both are
//! online at once the copy cannot claim the record (rule 2) and is flagged as unknown.
//! The alternative, alerting on every id rotation, buries the person in false alarms.
//!
//! # Absence is evidence only when every device was read
//! Spotify's answer is read per device (`spotify::model`): a device that cannot be read is
//! left out and counted in [`Snapshot::skipped`]. While that count is non-zero, a device
//! missing from the snapshot may be the one that was skipped, so absence concludes nothing:
//! no `sign_out_worked` for a noted device that is not seen, and the store (told through
//! [`Plan::skipped`]) does not let such a poll end a presence interval: a device seen again
//! after it continues the interval it had. The devices that were read are handled as always:
//! a readable unknown device next to an unreadable one is still alerted.
//!
//! # What cannot be seen
//! The poller asks for playback only when a listed device is active or one could not be
//! read (one request per idle poll). A restricted device that plays while missing from the device list is found only
//! when playback is fetched for another reason; the rules handle it then (see
//! `observed_devices`), but the steady state does not look for it.
//!
//! # Alerts
//! - An untrusted device that is online is alerted unless it was alerted within
//!   `realert_after`: a device that flickers off and on (idle and paused devices drop out of
//!   the list) does not re-alert, and one that is simply not seen is not an event.
//! - An untrusted device that is playing is alerted at critical urgency, under the same
//!   re-alert bound; it replaces the "appeared" alert of that device in the same poll.
//! - A device known by its id under another name is recorded as renamed (quietly).
//! - When the distinct devices seen within 30 days reach `device_limit`, one alert, then
//!   none until a full window has passed.
//! - The first look at an account (no device ever recorded) trusts nothing, since an
//!   intruder's device may be among them, and raises one summary instead of an alert per
//!   device. Those devices count as alerted now; a device already playing still gets its
//!   critical alert.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::event::Event;
use crate::spotify::model::{Device, Playback, kind_key};

/// The store's key of a device record.
pub type DeviceKey = i64;

/// The window over which distinct devices are counted against the limit.
pub const LIMIT_WINDOW_DAYS: u32 = 30;

/// A device on record.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownDevice {
    pub key: DeviceKey,
    /// Every Spotify id this device was seen with (its aliases).
    pub spotify_ids: Vec<String>,
    pub name: String,
    pub kind: String,
    pub trusted: bool,
    /// The last "unknown device" alert, for the re-alert bound.
    pub alerted_at: Option<DateTime<Utc>>,
    /// The last "unknown device playing" alert.
    pub play_alerted_at: Option<DateTime<Utc>>,
    /// Muted by the person until then: recorded, never alerted.
    pub muted_until: Option<DateTime<Utc>>,
    /// When "Sign out everywhere" was pressed on its alert, and whether it was followed up.
    pub signout: Option<(DateTime<Utc>, bool)>,
}

/// Everything the rules need from the store about one account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Known {
    /// Devices on record (forgotten ones excluded).
    pub devices: Vec<KnownDevice>,
    /// Keys of devices (forgotten ones included) last seen within the limit window.
    pub seen_in_window: Vec<DeviceKey>,
    /// The last device-limit alert.
    pub limit_alerted_at: Option<DateTime<Utc>>,
    /// No device was ever recorded for the account: this is its first look.
    pub first_run: bool,
}

/// What one successful poll saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub devices: Vec<Device>,
    /// `None`: nothing plays, or no device was active so playback was not asked for.
    pub playback: Option<Playback>,
    /// Devices Spotify listed, or named as playing, that could not be read. Non-zero: a
    /// device missing from `devices` may still be online, so its absence proves nothing.
    pub skipped: usize,
}

/// The settings the rules depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub realert_after: Duration,
    pub device_limit: u32,
    /// Devices these match are recorded but never alerted (the person's own web player tabs).
    pub ignore: Vec<IgnoreRule>,
}

/// A device the person does not want alerts for: a name pattern and/or a type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRule {
    /// A name pattern: `*` is any run of characters, `?` one; case-insensitive.
    #[serde(default)]
    pub name: Option<String>,
    /// A device type, compared like everywhere (case and `_` ignored).
    #[serde(default, rename = "type")]
    pub device_type: Option<String>,
}

impl IgnoreRule {
    /// Whether the rule covers `d`; a rule with neither field covers nothing.
    pub fn matches(&self, d: &Device) -> bool {
        if self.name.is_none() && self.device_type.is_none() {
            return false;
        }
        self.name.as_deref().is_none_or(|p| glob(&p.to_lowercase(), &d.name.to_lowercase()))
            && self.device_type.as_deref().is_none_or(|t| kind_key(t) == kind_key(&d.kind))
    }
}

/// `*` and `?` matching, iterative with one backtrack point: linear for any pattern.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Which record a seen device belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Known(DeviceKey),
    /// Not on record: the store creates it.
    New,
}

/// One device seen in this poll, resolved, with what to update on its record.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub target: Target,
    pub device: Device,
    /// A Spotify id not yet recorded for this device.
    pub new_alias: Option<String>,
    /// Set the record's name to `device.name` (a rename, or a new device).
    pub renamed: bool,
    pub alerted: bool,
    pub play_alerted: bool,
    /// Muted or matched by an ignore rule: recorded, never alerted, not "untrusted" for `check`.
    pub silenced: bool,
}

/// What became of a "Sign out everywhere" on a device's alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOutOutcome {
    /// Gone at a successful poll: the remedy worked; the follow-up ends.
    Worked,
    /// Still online after [`SIGN_OUT_GRACE`]: the "partner device" notice was given.
    StillOnline,
}

/// How long "Sign out everywhere" may take before a device still online is called a partner
/// device: Spotify says it "can take up to 1 hour to take effect everywhere".
pub const SIGN_OUT_GRACE: Duration = Duration::from_secs(60 * 60);

/// An event and the seen device it is about (an index into [`Plan::seen`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEvent {
    pub seen: Option<usize>,
    pub event: Event,
}

/// What the store must write for this poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub seen: Vec<Seen>,
    pub events: Vec<PlannedEvent>,
    pub limit_alerted: bool,
    /// Follow-ups of "Sign out everywhere" that this poll settles.
    pub sign_outs: Vec<(DeviceKey, SignOutOutcome)>,
    /// [`Snapshot::skipped`]: non-zero tells the store that devices not in `seen` may still be
    /// online, so their presence must not be taken as ended.
    pub skipped: usize,
}

impl Plan {
    /// Whether every device seen is trusted (or silenced by a mute or an ignore rule).
    pub fn all_trusted(&self, known: &Known) -> bool {
        self.seen.iter().filter(|s| !s.silenced).all(|s| match s.target {
            Target::Known(key) => known.devices.iter().any(|d| d.key == key && d.trusted),
            Target::New => false,
        })
    }
}

/// The rules. `now` is the poll's time.
pub fn evaluate(known: &Known, snapshot: &Snapshot, policy: &Policy, now: DateTime<Utc>) -> Plan {
    let observed = observed_devices(snapshot);
    let targets = resolve(known, &observed);
    let realert = chrono::Duration::from_std(policy.realert_after).unwrap_or(chrono::Duration::MAX);
    let due = |last: Option<DateTime<Utc>>| last.is_none_or(|t| now.signed_duration_since(t) >= realert);
    let playing_index = playing_index(snapshot, &observed);

    let mut plan = Plan { skipped: snapshot.skipped, ..Plan::default() };
    for (i, (device, target)) in observed.into_iter().zip(targets).enumerate() {
        let record = match target {
            Target::Known(key) => known.devices.iter().find(|d| d.key == key),
            Target::New => None,
        };
        let trusted = record.is_some_and(|r| r.trusted);
        let silenced = record.and_then(|r| r.muted_until).is_some_and(|until| until > now)
            || policy.ignore.iter().any(|rule| rule.matches(&device));
        let new_alias = match (&device.id, record) {
            (Some(id), Some(r)) if !r.spotify_ids.contains(id) => Some(id.clone()),
            _ => None,
        };
        let mut seen = Seen {
            target,
            renamed: record.is_none_or(|r| r.name != device.name),
            device,
            new_alias,
            alerted: false,
            play_alerted: false,
            silenced,
        };
        if let Some(r) = record.filter(|_| seen.renamed) {
            plan.events.push(PlannedEvent {
                seen: Some(i),
                event: Event::DeviceRenamed {
                    from: r.name.clone(),
                    to: seen.device.name.clone(),
                    device_type: seen.device.kind.clone(),
                },
            });
        }
        if !trusted && !silenced {
            let playback = snapshot.playback.as_ref().filter(|p| p.is_playing && playing_index == Some(i));
            if let Some(p) = playback.filter(|_| due(record.and_then(|r| r.play_alerted_at))) {
                seen.play_alerted = true;
                // The louder alert says all the quieter one would; it counts as both.
                seen.alerted = true;
                plan.events.push(PlannedEvent {
                    seen: Some(i),
                    event: Event::UnknownPlaying {
                        name: seen.device.name.clone(),
                        device_type: seen.device.kind.clone(),
                        what: p.describe(),
                        private_session: seen.device.is_private_session,
                        track: p.item.as_ref().map(|i| i.name.clone()).filter(|n| !n.is_empty()),
                        artists: p
                            .item
                            .as_ref()
                            .map(|i| i.artists.iter().map(|a| a.name.clone()).collect())
                            .unwrap_or_default(),
                    },
                });
            } else if known.first_run {
                // Reported in the one summary below.
                seen.alerted = true;
            } else if due(record.and_then(|r| r.alerted_at)) {
                seen.alerted = true;
                plan.events.push(PlannedEvent {
                    seen: Some(i),
                    event: Event::DeviceAppeared {
                        name: seen.device.name.clone(),
                        device_type: seen.device.kind.clone(),
                        spotify_id: seen.device.id.clone(),
                        // A trusted record with this very name and type that this device is
                        // not: the original claimed it by id, so this one is a copy.
                        imitates: known.devices.iter().any(|r| {
                            r.trusted
                                && seen.target != Target::Known(r.key)
                                && r.name == seen.device.name
                                && kind_key(&r.kind) == kind_key(&seen.device.kind)
                        }),
                    },
                });
            }
        }
        plan.seen.push(seen);
    }

    // Follow up "Sign out everywhere": gone means it worked; still there after the grace
    // period means a partner device, which sign-out does not cover. Gone counts only when
    // every device was read: a skipped one may be this one.
    let grace = chrono::Duration::from_std(SIGN_OUT_GRACE).unwrap_or(chrono::Duration::hours(1));
    for (r, (pressed, followed)) in known.devices.iter().filter_map(|r| Some((r, r.signout?))) {
        let here = plan.seen.iter().position(|s| s.target == Target::Known(r.key));
        match here {
            None if snapshot.skipped > 0 => {}
            None => {
                plan.sign_outs.push((r.key, SignOutOutcome::Worked));
                plan.events.push(PlannedEvent {
                    seen: None,
                    event: Event::SignOutWorked { name: r.name.clone(), device_type: r.kind.clone() },
                });
            }
            Some(i) if !followed && now.signed_duration_since(pressed) >= grace => {
                plan.sign_outs.push((r.key, SignOutOutcome::StillOnline));
                plan.events.push(PlannedEvent {
                    seen: Some(i),
                    event: Event::StillOnlineAfterSignOut {
                        name: r.name.clone(),
                        device_type: r.kind.clone(),
                        minutes: u32::try_from(now.signed_duration_since(pressed).num_minutes())
                            .unwrap_or(u32::MAX),
                    },
                });
            }
            Some(_) => {}
        }
    }
    let to_review: Vec<&Seen> = plan.seen.iter().filter(|s| !s.silenced).collect();
    if known.first_run && !to_review.is_empty() {
        plan.events.push(PlannedEvent {
            seen: None,
            event: Event::FirstRun {
                count: u32::try_from(to_review.len()).unwrap_or(u32::MAX),
                names: to_review.iter().take(10).map(|s| s.device.name.clone()).collect(),
            },
        });
    }
    let count = distinct_in_window(known, &plan);
    let window = chrono::Duration::days(i64::from(LIMIT_WINDOW_DAYS));
    let limit_due = known.limit_alerted_at.is_none_or(|t| now.signed_duration_since(t) >= window);
    if count >= policy.device_limit && limit_due {
        plan.limit_alerted = true;
        plan.events.push(PlannedEvent {
            seen: None,
            event: Event::DeviceLimit { count, limit: policy.device_limit, window_days: LIMIT_WINDOW_DAYS },
        });
    }
    plan
}

/// The device list, plus the playing device when the list lacks it: a restricted device
/// can play without being listed, and may have no id.
fn observed_devices(snapshot: &Snapshot) -> Vec<Device> {
    let mut devices = snapshot.devices.clone();
    if let Some(d) = snapshot.playback.as_ref().and_then(|p| p.device.as_ref())
        && find_same(&devices, d).is_none()
    {
        devices.push(d.clone());
    }
    devices
}

/// The index of the device that plays, if any.
fn playing_index(snapshot: &Snapshot, observed: &[Device]) -> Option<usize> {
    let device = snapshot.playback.as_ref()?.device.as_ref();
    match device {
        Some(d) => find_same(observed, d),
        // No device in the playback answer: the active one in the list is playing.
        None => observed.iter().position(|d| d.is_active),
    }
}

/// The same device within one answer: same id, or with no id the same name and type.
fn find_same(devices: &[Device], d: &Device) -> Option<usize> {
    match &d.id {
        Some(id) => devices.iter().position(|x| x.id.as_ref() == Some(id)),
        None => devices.iter().position(|x| x.name == d.name && kind_key(&x.kind) == kind_key(&d.kind)),
    }
}

/// Applies the identity rule (see the module docs) to every observed device.
fn resolve(known: &Known, observed: &[Device]) -> Vec<Target> {
    let mut targets = vec![Target::New; observed.len()];
    let mut claimed = HashSet::new();
    // Pass 1: ids. A record claimed here is not available to name matching.
    for (t, d) in targets.iter_mut().zip(observed) {
        let Some(id) = &d.id else { continue };
        if let Some(r) = known.devices.iter().find(|r| r.spotify_ids.contains(id))
            && claimed.insert(r.key)
        {
            *t = Target::Known(r.key);
        }
    }
    // Pass 2: name and type, for what ids did not resolve.
    for (t, d) in targets.iter_mut().zip(observed) {
        if *t != Target::New {
            continue;
        }
        let kind = kind_key(&d.kind);
        let found = known
            .devices
            .iter()
            .find(|r| !claimed.contains(&r.key) && r.name == d.name && kind_key(&r.kind) == kind);
        if let Some(r) = found {
            claimed.insert(r.key);
            *t = Target::Known(r.key);
        }
    }
    targets
}

/// Distinct devices seen within the window, counting this poll's.
fn distinct_in_window(known: &Known, plan: &Plan) -> u32 {
    let mut keys: HashSet<DeviceKey> = known.seen_in_window.iter().copied().collect();
    let mut new = 0u32;
    for s in &plan.seen {
        match s.target {
            Target::Known(k) => {
                keys.insert(k);
            }
            Target::New => new += 1,
        }
    }
    u32::try_from(keys.len()).unwrap_or(u32::MAX).saturating_add(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).single().expect("valid")
            + chrono::Duration::minutes(minutes)
    }

    fn dev(id: Option<&str>, name: &str, kind: &str) -> Device {
        Device { id: id.map(str::to_string), name: name.into(), kind: kind.into(), ..Device::default() }
    }

    fn known(key: DeviceKey, ids: &[&str], name: &str, kind: &str, trusted: bool) -> KnownDevice {
        KnownDevice {
            key,
            spotify_ids: ids.iter().map(|s| s.to_string()).collect(),
            name: name.into(),
            kind: kind.into(),
            trusted,
            alerted_at: None,
            play_alerted_at: None,
            muted_until: None,
            signout: None,
        }
    }

    fn policy() -> Policy {
        Policy { realert_after: Duration::from_secs(24 * 3600), device_limit: 6, ignore: Vec::new() }
    }

    fn snap(devices: Vec<Device>) -> Snapshot {
        Snapshot { devices, playback: None, skipped: 0 }
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.events.iter().map(|e| e.event.kind()).collect()
    }

    fn playing(device: Device, track: &str) -> Playback {
        Playback {
            device: Some(device),
            unreadable_device: false,
            is_playing: true,
            currently_playing_type: Some("track".into()),
            item: Some(crate::spotify::model::Item {
                name: track.into(),
                kind: "track".into(),
                artists: vec![crate::spotify::model::Artist { name: "Band".into() }],
                show: None,
            }),
        }
    }

    #[test]
    fn trusted_device_by_id_is_quiet() {
        let k = Known { devices: vec![known(1, &["a"], "Laptop", "Computer", true)], ..Known::default() };
        let plan = evaluate(&k, &snap(vec![dev(Some("a"), "Laptop", "Computer")]), &policy(), t(0));
        assert!(plan.events.is_empty());
        assert_eq!(plan.seen[0].target, Target::Known(1));
        assert!(!plan.seen[0].renamed);
        assert!(plan.all_trusted(&k));
    }

    #[test]
    fn new_device_alerts_once_and_is_created() {
        let plan =
            evaluate(&Known::default(), &snap(vec![dev(Some("x"), "iPhone", "Smartphone")]), &policy(), t(0));
        assert_eq!(kinds(&plan), ["device_appeared"]);
        assert_eq!(plan.seen[0].target, Target::New);
        assert!(plan.seen[0].alerted);
        assert!(plan.seen[0].renamed, "a new record takes the name");
        assert!(!plan.all_trusted(&Known::default()));
        match &plan.events[0].event {
            Event::DeviceAppeared { name, device_type, spotify_id, imitates } => {
                assert!(!imitates, "nothing to imitate");
                assert_eq!((name.as_str(), device_type.as_str()), ("iPhone", "Smartphone"));
                assert_eq!(spotify_id.as_deref(), Some("x"));
            }
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn untrusted_device_is_not_realerted_within_the_bound_but_is_after() {
        let mut d = known(1, &["x"], "iPhone", "Smartphone", false);
        d.alerted_at = Some(t(0));
        let k = Known { devices: vec![d], ..Known::default() };
        let s = snap(vec![dev(Some("x"), "iPhone", "Smartphone")]);
        // A flicker: gone for a poll, back an hour later.
        assert!(evaluate(&k, &s, &policy(), t(60)).events.is_empty());
        assert!(evaluate(&k, &s, &policy(), t(24 * 60 - 1)).events.is_empty());
        let later = evaluate(&k, &s, &policy(), t(24 * 60));
        assert_eq!(kinds(&later), ["device_appeared"]);
    }

    #[test]
    fn not_being_seen_is_not_an_event() {
        let k = Known { devices: vec![known(1, &["x"], "iPhone", "Smartphone", false)], ..Known::default() };
        let plan = evaluate(&k, &snap(vec![]), &policy(), t(0));
        assert!(plan.events.is_empty());
        assert!(plan.seen.is_empty());
    }

    #[test]
    fn rotated_id_with_same_name_and_type_is_an_alias_not_an_alert() {
        let k = Known { devices: vec![known(1, &["old"], "Phone", "Smartphone", true)], ..Known::default() };
        let plan = evaluate(&k, &snap(vec![dev(Some("new"), "Phone", "smartphone")]), &policy(), t(0));
        assert!(plan.events.is_empty(), "{:?}", plan.events);
        assert_eq!(plan.seen[0].target, Target::Known(1));
        assert_eq!(plan.seen[0].new_alias.as_deref(), Some("new"));
    }

    #[test]
    fn type_casings_match_but_other_types_do_not() {
        let k = Known { devices: vec![known(1, &["old"], "TV", "CastVideo", true)], ..Known::default() };
        let same = evaluate(&k, &snap(vec![dev(Some("n"), "TV", "cast_video")]), &policy(), t(0));
        assert_eq!(same.seen[0].target, Target::Known(1));
        let other = evaluate(&k, &snap(vec![dev(Some("n"), "TV", "Computer")]), &policy(), t(0));
        assert_eq!(other.seen[0].target, Target::New);
        assert_eq!(kinds(&other), ["device_appeared"]);
    }

    #[test]
    fn name_match_is_exact() {
        let k = Known { devices: vec![known(1, &["old"], "Phone", "Smartphone", true)], ..Known::default() };
        let plan = evaluate(&k, &snap(vec![dev(Some("n"), "phone", "Smartphone")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::New);
    }

    #[test]
    fn a_copy_online_next_to_the_original_is_flagged() {
        let k = Known { devices: vec![known(1, &["orig"], "Phone", "Smartphone", true)], ..Known::default() };
        let s =
            snap(vec![dev(Some("copy"), "Phone", "Smartphone"), dev(Some("orig"), "Phone", "Smartphone")]);
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::New, "the copy cannot claim a record claimed by id");
        assert_eq!(plan.seen[1].target, Target::Known(1));
        assert_eq!(kinds(&plan), ["device_appeared"]);
        assert!(
            matches!(plan.events[0].event, Event::DeviceAppeared { imitates: true, .. }),
            "the alert says it is a copy"
        );
    }

    #[test]
    fn null_id_matches_by_name_and_type() {
        let k = Known { devices: vec![known(1, &["a"], "Car", "Automobile", true)], ..Known::default() };
        let plan = evaluate(&k, &snap(vec![dev(None, "Car", "Automobile")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::Known(1));
        assert_eq!(plan.seen[0].new_alias, None);
        assert!(plan.events.is_empty());
    }

    #[test]
    fn rename_of_known_id_is_recorded_and_trust_kept() {
        let k = Known { devices: vec![known(1, &["a"], "Laptop", "Computer", true)], ..Known::default() };
        let plan = evaluate(&k, &snap(vec![dev(Some("a"), "Work laptop", "Computer")]), &policy(), t(0));
        assert_eq!(kinds(&plan), ["device_renamed"]);
        assert!(plan.seen[0].renamed);
        assert!(plan.all_trusted(&k));
        assert_eq!(plan.events[0].event.urgency(), crate::event::Urgency::Quiet);
    }

    #[test]
    fn unknown_device_playing_is_critical_and_replaces_appeared() {
        let d = dev(Some("x"), "Speaker", "Speaker");
        let s = Snapshot {
            devices: vec![Device { is_active: true, ..d.clone() }],
            playback: Some(playing(d, "Song")),
            skipped: 0,
        };
        let plan = evaluate(&Known::default(), &s, &policy(), t(0));
        assert_eq!(kinds(&plan), ["unknown_playing"]);
        assert!(plan.seen[0].alerted && plan.seen[0].play_alerted);
        assert_eq!(plan.events[0].event.urgency(), crate::event::Urgency::Critical);
        match &plan.events[0].event {
            Event::UnknownPlaying { what, .. } => assert_eq!(what, "\u{201c}Song\u{201d} by Band"),
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn playing_after_an_appeared_alert_still_alerts_once() {
        let mut r = known(1, &["x"], "Speaker", "Speaker", false);
        r.alerted_at = Some(t(0));
        let d = dev(Some("x"), "Speaker", "Speaker");
        let s = Snapshot { devices: vec![d.clone()], playback: Some(playing(d, "Song")), skipped: 0 };
        let k = Known { devices: vec![r.clone()], ..Known::default() };
        assert_eq!(kinds(&evaluate(&k, &s, &policy(), t(5))), ["unknown_playing"]);
        r.play_alerted_at = Some(t(5));
        let k = Known { devices: vec![r], ..Known::default() };
        assert!(evaluate(&k, &s, &policy(), t(10)).events.is_empty(), "same play, no repeat");
    }

    #[test]
    fn paused_playback_is_not_playing() {
        let d = dev(Some("x"), "Speaker", "Speaker");
        let mut p = playing(d.clone(), "Song");
        p.is_playing = false;
        let plan = evaluate(
            &Known::default(),
            &Snapshot { devices: vec![d], playback: Some(p), skipped: 0 },
            &policy(),
            t(0),
        );
        assert_eq!(kinds(&plan), ["device_appeared"]);
    }

    #[test]
    fn trusted_device_playing_is_quiet() {
        let k = Known { devices: vec![known(1, &["a"], "Laptop", "Computer", true)], ..Known::default() };
        let d = dev(Some("a"), "Laptop", "Computer");
        let s = Snapshot { devices: vec![d.clone()], playback: Some(playing(d, "Song")), skipped: 0 };
        assert!(evaluate(&k, &s, &policy(), t(0)).events.is_empty());
    }

    #[test]
    fn restricted_device_missing_from_list_is_seen_through_playback() {
        let k = Known { devices: vec![known(1, &["a"], "Laptop", "Computer", true)], ..Known::default() };
        let hidden = Device { is_restricted: true, ..dev(None, "Car", "Automobile") };
        let s = Snapshot {
            devices: vec![dev(Some("a"), "Laptop", "Computer")],
            playback: Some(playing(hidden, "Song")),
            skipped: 0,
        };
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert_eq!(plan.seen.len(), 2);
        assert_eq!(kinds(&plan), ["unknown_playing"]);
        assert_eq!(plan.events[0].seen, Some(1));
    }

    #[test]
    fn playback_without_device_blames_the_active_one() {
        let d = Device { is_active: true, ..dev(Some("x"), "Speaker", "Speaker") };
        let mut p = playing(d.clone(), "Song");
        p.device = None;
        let plan = evaluate(
            &Known::default(),
            &Snapshot { devices: vec![d], playback: Some(p), skipped: 0 },
            &policy(),
            t(0),
        );
        assert_eq!(kinds(&plan), ["unknown_playing"]);
    }

    #[test]
    fn device_limit_alerts_once_per_window() {
        let devices: Vec<KnownDevice> =
            (1..=5).map(|i| known(i, &[&format!("id{i}")], &format!("D{i}"), "Computer", true)).collect();
        let k =
            Known { seen_in_window: (1..=5).collect(), devices, limit_alerted_at: None, first_run: false };
        // Five seen in the window and five now: below the limit of six.
        let five: Vec<Device> =
            (1..=5).map(|i| dev(Some(&format!("id{i}")), &format!("D{i}"), "Computer")).collect();
        assert!(evaluate(&k, &snap(five.clone()), &policy(), t(0)).events.is_empty());
        // A sixth, new one reaches it: appeared + limit.
        let mut six = five;
        six.push(dev(Some("id6"), "D6", "Computer"));
        let plan = evaluate(&k, &snap(six.clone()), &policy(), t(0));
        assert_eq!(kinds(&plan), ["device_appeared", "device_limit"]);
        assert!(plan.limit_alerted);
        assert_eq!(plan.events[1].event, Event::DeviceLimit { count: 6, limit: 6, window_days: 30 });
        // Already alerted 10 days ago: quiet; after 30 days: again.
        let k2 = Known { limit_alerted_at: Some(t(0)), ..k.clone() };
        assert!(!evaluate(&k2, &snap(six.clone()), &policy(), t(10 * 24 * 60)).limit_alerted);
        assert!(evaluate(&k2, &snap(six), &policy(), t(30 * 24 * 60)).limit_alerted);
    }

    #[test]
    fn devices_seen_earlier_in_the_window_count_toward_the_limit() {
        let k = Known { seen_in_window: vec![10, 11, 12, 13, 14], ..Known::default() };
        let plan = evaluate(&k, &snap(vec![dev(Some("z"), "New", "TV")]), &policy(), t(0));
        assert!(plan.limit_alerted);
        let plan = evaluate(&k, &snap(vec![]), &policy(), t(0));
        assert!(!plan.limit_alerted, "five is below six");
    }

    #[test]
    fn the_first_look_raises_one_summary_and_trusts_nothing() {
        let k = Known { first_run: true, ..Known::default() };
        let s = snap(vec![dev(Some("a"), "Laptop", "Computer"), dev(Some("b"), "Phone", "Smartphone")]);
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert_eq!(kinds(&plan), ["first_run"]);
        assert_eq!(
            plan.events[0].event,
            Event::FirstRun { count: 2, names: vec!["Laptop".into(), "Phone".into()] }
        );
        assert!(plan.seen.iter().all(|s| s.alerted && s.target == Target::New));
        assert!(!plan.all_trusted(&k));
        // Nothing online: nothing to say yet.
        assert!(evaluate(&k, &snap(vec![]), &policy(), t(0)).events.is_empty());
    }

    #[test]
    fn a_device_playing_at_the_first_look_still_gets_its_critical_alert() {
        let k = Known { first_run: true, ..Known::default() };
        let d = Device { is_active: true, ..dev(Some("x"), "Speaker", "Speaker") };
        let s = Snapshot {
            devices: vec![d.clone(), dev(Some("y"), "Laptop", "Computer")],
            playback: Some(playing(d, "Song")),
            skipped: 0,
        };
        assert_eq!(kinds(&evaluate(&k, &s, &policy(), t(0))), ["unknown_playing", "first_run"]);
    }

    #[test]
    fn a_sign_out_is_followed_up_gone_or_still_there() {
        let mut r = known(1, &["x"], "Speaker", "Speaker", false);
        r.alerted_at = Some(t(0));
        r.signout = Some((t(0), false));
        let k = Known { devices: vec![r.clone()], ..Known::default() };
        let here = snap(vec![dev(Some("x"), "Speaker", "Speaker")]);
        // Within the hour Spotify allows: nothing yet.
        assert!(evaluate(&k, &here, &policy(), t(59)).events.is_empty());
        // Still there after it: the partner-device notice, once.
        let plan = evaluate(&k, &here, &policy(), t(61));
        assert_eq!(kinds(&plan), ["still_online_after_sign_out"]);
        assert_eq!(plan.sign_outs, [(1, SignOutOutcome::StillOnline)]);
        r.signout = Some((t(0), true));
        let k2 = Known { devices: vec![r], ..Known::default() };
        assert!(evaluate(&k2, &here, &policy(), t(90)).events.is_empty(), "said once");
        // Gone at a successful poll: it worked, quietly recorded.
        let plan = evaluate(&k, &snap(vec![]), &policy(), t(5));
        assert_eq!(kinds(&plan), ["sign_out_worked"]);
        assert_eq!(plan.sign_outs, [(1, SignOutOutcome::Worked)]);
    }

    #[test]
    fn a_poll_that_skipped_a_device_is_no_evidence_that_a_signed_out_device_left() {
        let mut r = known(1, &["x"], "Speaker", "Speaker", false);
        r.alerted_at = Some(t(0));
        r.signout = Some((t(0), false));
        let k = Known { devices: vec![r], ..Known::default() };
        // The noted device is missing, but one device could not be read: it may be that one.
        let partial = Snapshot { devices: vec![dev(Some("n"), "New", "Tablet")], playback: None, skipped: 1 };
        let plan = evaluate(&k, &partial, &policy(), t(5));
        assert!(plan.sign_outs.is_empty(), "{:?}", plan.sign_outs);
        assert_eq!(kinds(&plan), ["device_appeared"], "the device that was read is still alerted");
        assert_eq!(plan.skipped, 1, "the store is told too");
        // After an hour, still not seen in partial polls: no partner-device notice either.
        assert!(
            evaluate(&k, &Snapshot { skipped: 2, ..Snapshot::default() }, &policy(), t(90)).events.is_empty()
        );
        // The same poll with every device read: gone, it worked.
        let full = Snapshot { skipped: 0, ..partial };
        let plan = evaluate(&k, &full, &policy(), t(5));
        assert_eq!(kinds(&plan), ["device_appeared", "sign_out_worked"]);
        assert_eq!(plan.sign_outs, [(1, SignOutOutcome::Worked)]);
    }

    #[test]
    fn a_noted_device_that_was_read_is_followed_up_even_when_another_was_skipped() {
        let mut r = known(1, &["x"], "Speaker", "Speaker", false);
        r.alerted_at = Some(t(0));
        r.signout = Some((t(0), false));
        let k = Known { devices: vec![r], ..Known::default() };
        let s = Snapshot { devices: vec![dev(Some("x"), "Speaker", "Speaker")], playback: None, skipped: 1 };
        let plan = evaluate(&k, &s, &policy(), t(61));
        assert_eq!(kinds(&plan), ["still_online_after_sign_out"], "being seen is evidence either way");
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("web player*", "web player (chrome)"));
        assert!(glob("*phone", "my phone"));
        assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
        assert!(glob("*", "") && glob("**x*", "x"));
        assert!(!glob("web", "web player"));
        assert!(glob("*a*b*c*", &"ab".repeat(1000).replace("b", "bc")));
    }

    #[test]
    fn ignored_devices_are_recorded_but_never_alerted() {
        let rule = IgnoreRule { name: Some("Web Player*".into()), device_type: Some("computer".into()) };
        let p = Policy { ignore: vec![rule], ..policy() };
        let tab = Device { is_active: true, ..dev(Some("t1"), "Web Player (Firefox)", "Computer") };
        let s = Snapshot { devices: vec![tab.clone()], playback: Some(playing(tab, "Song")), skipped: 0 };
        let plan = evaluate(&Known::default(), &s, &p, t(0));
        assert!(plan.events.is_empty(), "not even playing: {:?}", plan.events);
        assert_eq!(plan.seen.len(), 1, "still recorded");
        assert!(plan.all_trusted(&Known::default()), "check does not flag it");
        // Type must match too; and an empty rule matches nothing.
        let other =
            evaluate(&Known::default(), &snap(vec![dev(Some("x"), "Web Player", "Smartphone")]), &p, t(0));
        assert_eq!(kinds(&other), ["device_appeared"]);
        assert!(!IgnoreRule { name: None, device_type: None }.matches(&dev(None, "a", "b")));
    }

    #[test]
    fn a_muted_device_is_quiet_until_the_mute_ends() {
        let mut r = known(1, &["x"], "Speaker", "Speaker", false);
        r.muted_until = Some(t(60));
        let k = Known { devices: vec![r], ..Known::default() };
        let s = snap(vec![dev(Some("x"), "Speaker", "Speaker")]);
        assert!(evaluate(&k, &s, &policy(), t(30)).events.is_empty());
        assert_eq!(kinds(&evaluate(&k, &s, &policy(), t(60))), ["device_appeared"]);
    }

    #[test]
    fn the_first_look_leaves_silenced_devices_out_of_the_summary() {
        let p =
            Policy { ignore: vec![IgnoreRule { name: Some("tv".into()), device_type: None }], ..policy() };
        let k = Known { first_run: true, ..Known::default() };
        let plan = evaluate(
            &k,
            &snap(vec![dev(Some("a"), "TV", "TV"), dev(Some("b"), "Phone", "Smartphone")]),
            &p,
            t(0),
        );
        assert_eq!(plan.events[0].event, Event::FirstRun { count: 1, names: vec!["Phone".into()] });
    }

    #[test]
    fn two_new_devices_with_the_same_name_and_no_id_are_two_records() {
        let s = snap(vec![dev(None, "Echo", "Speaker"), dev(Some("b"), "Echo", "Speaker")]);
        let plan = evaluate(&Known::default(), &s, &policy(), t(0));
        assert_eq!(plan.seen.len(), 2);
        assert_eq!(kinds(&plan), ["device_appeared", "device_appeared"]);
    }
}
