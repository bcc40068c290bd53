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
//! 2. whose name looks the same ([`Skeleton`]: invisible characters dropped, NFKC,
//!    case-folded, confusables mapped) and whose type is the same (compared case- and
//!    separator-insensitively), among the records no other device in this same snapshot
//!    already claimed, *and* whose name proves enough (issue 12, `may_link`); the new id is
//!    then recorded as an alias instead of raising an alert.
//!
//! A generic name proves nothing (`identity`: every browser tab is `Web Player (Chrome)`).
//! So a record that is trusted or muted and whose [`Strength`] is weak or name-derived takes
//! a new id by name only on **continuity**: it was seen at the previous poll
//! ([`Known::previous_poll`], within the presence bridge) and is gone now, an id rotated in
//! use; or the new id has the same shape as one of its ids (`identity::same_shape`: an
//! Echo's uuid). A `null` id gets continuity only. Otherwise the device is new, and its alert
//! is a generic sighting ("A web player connected ... You have trusted a web player before:
//! was this you?") whose Trust trusts that session only; the first one per account says why.
//! So is the critical alert of any untrusted device with a generic name that plays ("A web
//! player is playing ... spotguard cannot tell whether this one is yours").
//! A record opened with `--any-session`, a strong one and a named one link as before; a
//! strong one's new id is a quiet [`Event::DeviceIdChanged`]. Untrusted, unmuted records
//! link as before too: linking grants them nothing. Old and new id online at once stay two.
//!
//! Names are compared by how they look, never by their bytes (issue 11): "Phone\u{200b}",
//! "Phone ", "Ph\u{43e}ne" (a Cyrillic o) are "Phone" to a reader. So a rename that only adds
//! an invisible character is not a new device, and an **imitation** is told apart: an
//! untrusted device whose name looks like a trusted device's while it is not that device.
//! A look-alike with a new id online *next to* the trusted original cannot claim the
//! original's record (rule 2: the original claimed it by id) and is flagged; one with
//! another type is flagged whether or not the original is online (rule 2 never takes it for
//! the original). Its alert says which trusted device it looks like, shows the start of its
//! id and what differs (invisible characters, spaces, other characters by code point, type),
//! and has no Trust button.
//!
//! A device whose generic name is exactly a trusted device's (and of its type) is no
//! imitation, it is a generic sighting; a look-alike of a generic name still is one.
//!
//! Trade-off, stated plainly: a device that copies the look of a trusted device's *chosen*
//! name and its type *while that device is offline* is taken for it and not flagged. While both are
//! online at once the copy cannot claim the record and is flagged as an imitation.
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
//! - A device known under another name is recorded as renamed (quietly), at most
//!   [`MAX_RENAMES_PER_DAY`] times a day per device: a name that changes every poll costs
//!   an update in place, not an event per poll.
//! - More than [`MAX_ALERTS_PER_POLL`] devices to alert in one poll make one `new_devices`
//!   summary (the first few named, imitations counted) instead of an alert each; they count
//!   as alerted. So does any alert in a poll whose answer listed more devices than are read
//!   ([`Snapshot::cut`]): the summary says how many were not read.
//! - When the distinct devices seen within 30 days reach `device_limit`, one alert, then
//!   none until a full window has passed.
//! - Two or more devices alerted as appeared in one poll while a trusted device plays: the
//!   alerts (or their summary) say a Spotify Jam may explain them, and stay alerts.
//! - The first look at an account (no device ever recorded) trusts nothing, since an
//!   intruder's device may be among them, and raises one summary instead of an alert per
//!   device. Those devices count as alerted now; a device already playing still gets its
//!   critical alert.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::event::{Event, GenericSighting, LookAlike};
use crate::identity::{self, Strength};
use crate::spotify::model::{Device, Playback, kind_key};
use crate::text::Skeleton;

/// The store's key of a device record.
pub type DeviceKey = i64;

/// The window over which distinct devices are counted against the limit.
pub const LIMIT_WINDOW_DAYS: u32 = 30;

/// More devices than this to alert in one poll make one summary instead.
pub const MAX_ALERTS_PER_POLL: usize = 5;

/// The most devices a summary names.
pub const SUMMARY_NAMES: usize = 10;

/// Rename events recorded per device within a day; later renames only update the name.
pub const MAX_RENAMES_PER_DAY: u32 = 3;

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
    /// Rename events recorded for it within the last day (see [`MAX_RENAMES_PER_DAY`]).
    pub renames_today: u32,
    /// How much its name and ids prove (`identity::classify`, computed by the store).
    pub strength: Strength,
    /// The person chose `devices trust --any-session`: every session with this name and type
    /// is this device, whatever its strength (the behaviour before issue 12).
    pub any_session: bool,
    /// When it was last seen (`None`: never, for records built by hand).
    pub last_seen: Option<DateTime<Utc>>,
    /// When its newest id was first seen: how long that id has lasted, for
    /// [`Event::DeviceIdChanged`].
    pub id_since: Option<DateTime<Utc>>,
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
    /// The account's previous successful poll, if it is recent enough to bridge (the store's
    /// presence bridge): a record last seen then and missing now left within one poll interval.
    pub previous_poll: Option<DateTime<Utc>>,
    /// A generic-name alert already said why spotguard asks about new sessions (once).
    pub identity_explained: bool,
}

/// What one successful poll saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub devices: Vec<Device>,
    /// `None`: nothing plays, or no device was active so playback was not asked for.
    pub playback: Option<Playback>,
    /// Devices Spotify listed, or named as playing, that were not read: unreadable ones,
    /// and those beyond the most read from one answer (`cut`). Non-zero: a device missing
    /// from `devices` may still be online, so its absence proves nothing.
    pub skipped: usize,
    /// Of `skipped`, the devices beyond `spotify::model::MAX_DEVICES_PER_ANSWER`: counted,
    /// never looked at. Any alert of such a poll goes into one summary that says so.
    pub cut: usize,
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
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
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
    /// This poll's alerts include the one that explains generic names: the store notes it.
    pub identity_explained: bool,
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
    let looks = Looks::of(known, &observed);
    let Resolved { targets, refused } = resolve(known, &observed, &looks, now);
    let realert = chrono::Duration::from_std(policy.realert_after).unwrap_or(chrono::Duration::MAX);
    let due = |last: Option<DateTime<Utc>>| last.is_none_or(|t| now.signed_duration_since(t) >= realert);
    let playing_index = playing_index(snapshot, &observed);

    let mut plan = Plan { skipped: snapshot.skipped, ..Plan::default() };
    for (i, (device, &target)) in observed.into_iter().zip(&targets).enumerate() {
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
        // The trusted device this one looks like while not being it, if any: one online in
        // this snapshot (claimed by another device) rather than one that is not.
        let generic = identity::generic(&seen.device.name, seen.device.id.as_deref());
        // A trusted device of this very name and type is no original to imitate when the name
        // is generic: anyone's Chrome tab is called that (issue 12). A look-alike of it is.
        let same_generic = |r: &KnownDevice| {
            generic.is_some()
                && r.name == seen.device.name
                && kind_key(&r.kind) == kind_key(&seen.device.kind)
        };
        let looks_like = (!trusted)
            .then(|| {
                known
                    .devices
                    .iter()
                    .zip(&looks.known)
                    .filter(|(r, skeleton)| {
                        r.trusted
                            && target != Target::Known(r.key)
                            && !same_generic(r)
                            && skeleton.looks_like(&looks.observed[i])
                    })
                    .max_by_key(|(r, _)| targets.contains(&Target::Known(r.key)))
                    .map(|(r, _)| LookAlike { name: r.name.clone(), device_type: r.kind.clone() })
            })
            .flatten();
        // A long-kept id replaced (a new alias is always a link by name and type): linked as
        // before, but recorded.
        if let (Some(r), Some(_)) = (record, &seen.new_alias)
            && r.strength == Strength::Strong
        {
            let days = r.last_seen.zip(r.id_since).map_or(0, |(last, since)| (last - since).num_days());
            plan.events.push(PlannedEvent {
                seen: Some(i),
                event: Event::DeviceIdChanged {
                    name: r.name.clone(),
                    device_type: r.kind.clone(),
                    stable_days: u32::try_from(days).unwrap_or(0),
                },
            });
        }
        let rename_told = record.is_some_and(|r| r.renames_today < MAX_RENAMES_PER_DAY);
        if let Some(r) = record.filter(|_| seen.renamed && rename_told) {
            plan.events.push(PlannedEvent {
                seen: Some(i),
                event: Event::DeviceRenamed {
                    from: r.name.clone(),
                    to: seen.device.name.clone(),
                    device_type: seen.device.kind.clone(),
                },
            });
        }
        // What an alert about a generic name says (`GenericSighting`); a look-alike's alert
        // says what it imitates instead. Explained once per account, by whichever alert is first.
        let sighting = |explained: bool| {
            generic.filter(|_| looks_like.is_none()).map(|g| {
                let trusted_before =
                    refused[i].is_some() || known.devices.iter().any(|r| r.trusted && same_generic(r));
                let explain = trusted_before && !known.identity_explained && !explained;
                GenericSighting { noun: g.noun().to_string(), trusted_before, explain }
            })
        };
        if !trusted && !silenced {
            let playback = snapshot.playback.as_ref().filter(|p| p.is_playing && playing_index == Some(i));
            if let Some(p) = playback.filter(|_| due(record.and_then(|r| r.play_alerted_at))) {
                seen.play_alerted = true;
                // The louder alert says all the quieter one would; it counts as both.
                seen.alerted = true;
                let generic = sighting(plan.identity_explained);
                plan.identity_explained |= generic.as_ref().is_some_and(|g| g.explain);
                plan.events.push(PlannedEvent {
                    seen: Some(i),
                    event: Event::UnknownPlaying {
                        name: seen.device.name.clone(),
                        device_type: seen.device.kind.clone(),
                        what: p.describe(),
                        private_session: seen.device.is_private_session,
                        looks_like: looks_like.clone(),
                        generic,
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
                let generic = sighting(plan.identity_explained);
                plan.identity_explained |= generic.as_ref().is_some_and(|g| g.explain);
                plan.events.push(PlannedEvent {
                    seen: Some(i),
                    event: Event::DeviceAppeared {
                        name: seen.device.name.clone(),
                        device_type: seen.device.kind.clone(),
                        spotify_id: seen.device.id.clone(),
                        imitates: looks_like.is_some(),
                        looks_like,
                        generic,
                        jam: false,
                    },
                });
            }
        }
        plan.seen.push(seen);
    }
    note_jam(&mut plan, known, snapshot, playing_index);
    summarise_crowds(&mut plan, known, snapshot.cut);

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
                names: to_review.iter().take(SUMMARY_NAMES).map(|s| s.device.name.clone()).collect(),
                not_read: u32::try_from(snapshot.cut).unwrap_or(u32::MAX),
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

/// Spotify Jam: hosting one adds every guest's device to the host's device list, with new
/// names and ids and no Jam flag. Two or more devices alerted as appeared in one poll while a
/// trusted device of the account plays: the alerts say a Jam may explain them, and are still
/// alerts (an intruder can appear during a Jam too).
fn note_jam(plan: &mut Plan, known: &Known, snapshot: &Snapshot, playing: Option<usize>) {
    let trusted_plays = snapshot.playback.as_ref().is_some_and(|p| p.is_playing)
        && playing.and_then(|i| plan.seen.get(i)).is_some_and(|s| match s.target {
            Target::Known(k) => known.devices.iter().any(|d| d.key == k && d.trusted),
            Target::New => false,
        });
    let appeared = plan.events.iter().filter(|e| matches!(e.event, Event::DeviceAppeared { .. })).count();
    if !trusted_plays || appeared < 2 {
        return;
    }
    for e in &mut plan.events {
        if let Event::DeviceAppeared { jam, .. } = &mut e.event {
            *jam = true;
        }
    }
}

/// More than [`MAX_ALERTS_PER_POLL`] "appeared" alerts in one poll, or any in a poll whose
/// answer was cut, become one `new_devices` summary: a person can act on one notification,
/// not on hundreds (15,000 new devices once made 15,000). The devices still count as alerted,
/// so the re-alert bound applies to them as to any. A critical "playing" alert stays its own.
fn summarise_crowds(plan: &mut Plan, known: &Known, cut: usize) {
    let appeared = plan.events.iter().filter(|e| matches!(e.event, Event::DeviceAppeared { .. })).count();
    if known.first_run || appeared == 0 || (appeared <= MAX_ALERTS_PER_POLL && cut == 0) {
        return;
    }
    let (mut names, mut imitating, mut jammed) = (Vec::new(), 0u32, false);
    plan.events.retain(|e| match &e.event {
        Event::DeviceAppeared { name, imitates, jam, .. } => {
            if names.len() < SUMMARY_NAMES {
                names.push(name.clone());
            }
            imitating += u32::from(*imitates);
            jammed |= *jam;
            false
        }
        _ => true,
    });
    plan.events.push(PlannedEvent {
        seen: None,
        event: Event::NewDevices {
            count: u32::try_from(appeared).unwrap_or(u32::MAX),
            names,
            imitating,
            not_read: u32::try_from(cut).unwrap_or(u32::MAX),
            jam: jammed,
        },
    });
}

/// How every name in play looks ([`Skeleton`]), computed once per poll: the known devices'
/// and the observed devices', index for index.
struct Looks {
    known: Vec<Skeleton>,
    observed: Vec<Skeleton>,
}

impl Looks {
    fn of(known: &Known, observed: &[Device]) -> Looks {
        Looks {
            known: known.devices.iter().map(|r| Skeleton::of(&r.name)).collect(),
            observed: observed.iter().map(|d| Skeleton::of(&d.name)).collect(),
        }
    }
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

/// What [`resolve`] decided, index for index with the observed devices.
struct Resolved {
    targets: Vec<Target>,
    /// The trusted (or muted) record of this name and type that a weak name was not enough
    /// to link to: the device is new, and its alert says a device of that name was trusted.
    refused: Vec<Option<DeviceKey>>,
}

/// Whether a name and type match may link the observed device `d` to record `r` (issue 12):
/// always for a record that is neither trusted nor muted (linking grants nothing), for
/// strong and named records, and for one the person opened to any session; for a weak or
/// name-derived record only on continuity (it was seen at the previous poll and is gone now:
/// an id rotated in use) or a new id of the same shape as one of its ids (an Echo's uuid).
fn may_link(r: &KnownDevice, d: &Device, known: &Known, now: DateTime<Utc>) -> bool {
    let guarded = r.trusted || r.muted_until.is_some_and(|u| u > now);
    if !guarded || r.any_session || r.strength.name_is_enough() {
        return true;
    }
    let continuous = known.previous_poll.zip(r.last_seen).is_some_and(|(prev, seen)| seen >= prev);
    let same_shape =
        d.id.as_deref().is_some_and(|new| r.spotify_ids.iter().any(|old| identity::same_shape(old, new)));
    continuous || same_shape
}

/// Applies the identity rule (see the module docs) to every observed device.
fn resolve(known: &Known, observed: &[Device], looks: &Looks, now: DateTime<Utc>) -> Resolved {
    let mut targets = vec![Target::New; observed.len()];
    let mut refused = vec![None; observed.len()];
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
    // Pass 2: how the name looks, and the type, for what ids did not resolve.
    let known_kinds: Vec<String> = known.devices.iter().map(|r| kind_key(&r.kind)).collect();
    for (((t, no), d), skeleton) in targets.iter_mut().zip(&mut refused).zip(observed).zip(&looks.observed) {
        if *t != Target::New {
            continue;
        }
        let kind = kind_key(&d.kind);
        let mut candidates = known
            .devices
            .iter()
            .zip(&looks.known)
            .zip(&known_kinds)
            .filter(|((r, s), k)| !claimed.contains(&r.key) && **k == kind && s.looks_like(skeleton))
            .map(|((r, _), _)| r)
            .peekable();
        let first = candidates.peek().map(|r| r.key);
        match candidates.find(|r| may_link(r, d, known, now)) {
            Some(r) => {
                claimed.insert(r.key);
                *t = Target::Known(r.key);
            }
            None => *no = first,
        }
    }
    Resolved { targets, refused }
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
            renames_today: 0,
            strength: crate::identity::classify(name, &[]),
            any_session: false,
            last_seen: None,
            id_since: None,
        }
    }

    fn policy() -> Policy {
        Policy { realert_after: Duration::from_secs(24 * 3600), device_limit: 6, ignore: Vec::new() }
    }

    fn snap(devices: Vec<Device>) -> Snapshot {
        Snapshot { devices, playback: None, skipped: 0, cut: 0 }
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
            Event::DeviceAppeared { name, device_type, spotify_id, imitates, .. } => {
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
        let k = Known { devices: vec![known(1, &["old"], "Bravia", "CastVideo", true)], ..Known::default() };
        let same = evaluate(&k, &snap(vec![dev(Some("n"), "Bravia", "cast_video")]), &policy(), t(0));
        assert_eq!(same.seen[0].target, Target::Known(1));
        let other = evaluate(&k, &snap(vec![dev(Some("n"), "Bravia", "Computer")]), &policy(), t(0));
        assert_eq!(other.seen[0].target, Target::New);
        assert_eq!(kinds(&other), ["device_appeared"]);
    }

    #[test]
    fn names_match_by_how_they_look_not_by_their_bytes() {
        let k = Known { devices: vec![known(1, &["old"], "Phone", "Smartphone", true)], ..Known::default() };
        // Case is not a difference a reader relies on: a rotated id under "phone" is the phone.
        let plan = evaluate(&k, &snap(vec![dev(Some("n"), "phone", "Smartphone")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::Known(1));
        assert!(plan.seen[0].renamed, "the record takes the name as it now is");
        // Another name is another device.
        let plan = evaluate(&k, &snap(vec![dev(Some("n"), "Phones", "Smartphone")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::New);
        assert!(
            matches!(&plan.events[0].event, Event::DeviceAppeared { imitates: false, looks_like: None, .. }),
            "{:?}",
            plan.events
        );
    }

    /// The look-alikes of issue 11 ("Never fooled"), the same list the skeleton is tested
    /// with (each was alerted as an ordinary unknown "Phone" with a Trust button), and the
    /// byte-exact copy, which was the only one flagged.
    fn look_alikes() -> impl Iterator<Item = &'static str> {
        crate::text::tests::LOOK_ALIKES_OF_PHONE.iter().copied().chain(["Phone"])
    }

    #[test]
    fn each_look_alike_online_next_to_the_trusted_phone_is_an_imitation() {
        let k = Known { devices: vec![known(1, &["orig"], "Phone", "Smartphone", true)], ..Known::default() };
        for name in look_alikes() {
            let s =
                snap(vec![dev(Some("orig"), "Phone", "Smartphone"), dev(Some("copy-1"), name, "Smartphone")]);
            let plan = evaluate(&k, &s, &policy(), t(0));
            assert_eq!(plan.seen[0].target, Target::Known(1), "{name:?}");
            assert_eq!(plan.seen[1].target, Target::New, "{name:?}: the original claimed the record by id");
            assert_eq!(kinds(&plan), ["device_appeared"], "{name:?}");
            match &plan.events[0].event {
                Event::DeviceAppeared { name: n, imitates, looks_like, spotify_id, .. } => {
                    assert!(imitates, "{name:?}");
                    assert_eq!(n, name);
                    assert_eq!(spotify_id.as_deref(), Some("copy-1"));
                    let l = looks_like.as_ref().expect("names the original");
                    assert_eq!((l.name.as_str(), l.device_type.as_str()), ("Phone", "Smartphone"));
                }
                e => panic!("{name:?}: {e:?}"),
            }
        }
    }

    #[test]
    fn a_rename_that_only_adds_a_zero_width_space_is_not_a_new_device() {
        let k = Known { devices: vec![known(1, &["old"], "Phone", "Smartphone", true)], ..Known::default() };
        // Same id, and a rotated id at the same time: the phone either way.
        for id in ["old", "new"] {
            let plan =
                evaluate(&k, &snap(vec![dev(Some(id), "Phone\u{200b}", "Smartphone")]), &policy(), t(0));
            assert_eq!(plan.seen[0].target, Target::Known(1), "id {id}");
            assert!(!plan.events.iter().any(|e| e.event.kind() == "device_appeared"), "{:?}", plan.events);
            assert!(plan.all_trusted(&k), "still the trusted phone");
        }
    }

    #[test]
    fn a_look_alike_of_another_type_is_an_imitation_even_while_the_original_is_offline() {
        let k = Known { devices: vec![known(1, &["orig"], "Phone", "Smartphone", true)], ..Known::default() };
        let plan = evaluate(&k, &snap(vec![dev(Some("c"), "Ph\u{43e}ne", "Computer")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::New, "another type is never taken for the original");
        match &plan.events[0].event {
            Event::DeviceAppeared { imitates: true, looks_like: Some(l), .. } => assert_eq!(l.name, "Phone"),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn a_recorded_look_alike_stays_an_imitation_when_the_original_is_offline() {
        let mut copy = known(2, &["copy"], "Phone\u{200b}", "Smartphone", false);
        copy.alerted_at = Some(t(-2 * 24 * 60));
        let k = Known {
            devices: vec![known(1, &["orig"], "Phone", "Smartphone", true), copy],
            ..Known::default()
        };
        let plan =
            evaluate(&k, &snap(vec![dev(Some("copy"), "Phone\u{200b}", "Smartphone")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::Known(2));
        assert!(
            matches!(&plan.events[0].event, Event::DeviceAppeared { imitates: true, .. }),
            "{:?}",
            plan.events
        );
    }

    #[test]
    fn a_look_alike_that_plays_is_named_as_one() {
        let k = Known { devices: vec![known(1, &["orig"], "Phone", "Smartphone", true)], ..Known::default() };
        let copy = Device { is_active: true, ..dev(Some("copy"), "Ph\u{43e}ne", "Smartphone") };
        let s = Snapshot {
            devices: vec![dev(Some("orig"), "Phone", "Smartphone"), copy.clone()],
            playback: Some(playing(copy, "Song")),
            skipped: 0,
            cut: 0,
        };
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert!(
            matches!(&plan.events[0].event, Event::UnknownPlaying { looks_like: Some(l), .. } if l.name == "Phone"),
            "{:?}",
            plan.events
        );
    }

    fn strangers(n: usize) -> Vec<Device> {
        (0..n).map(|i| dev(Some(&format!("s{i}")), &format!("Stranger {i}"), "Computer")).collect()
    }

    #[test]
    fn more_than_five_new_devices_at_once_make_one_summary() {
        let reviewed =
            Known { devices: vec![known(1, &["a"], "Laptop", "Computer", true)], ..Known::default() };
        let p = Policy { device_limit: 10_000, ..policy() };
        let five = evaluate(&reviewed, &snap(strangers(5)), &p, t(0));
        assert_eq!(kinds(&five), ["device_appeared"; 5], "five are alerted one by one");
        let mut crowd = strangers(2000);
        crowd.push(dev(Some("a"), "Laptop", "Computer"));
        crowd.push(dev(Some("c"), "Laptop\u{200b}", "Computer"));
        let plan = evaluate(&reviewed, &snap(crowd), &p, t(0));
        assert_eq!(kinds(&plan), ["new_devices"]);
        match &plan.events[0].event {
            Event::NewDevices { count, names, imitating, not_read, .. } => {
                assert_eq!((*count, *imitating, *not_read), (2001, 1, 0));
                assert_eq!(names.len(), SUMMARY_NAMES);
                assert_eq!(names[0], "Stranger 0");
            }
            e => panic!("{e:?}"),
        }
        assert!(
            plan.seen.iter().filter(|s| s.target == Target::New).all(|s| s.alerted),
            "told, so the re-alert bound applies"
        );
    }

    #[test]
    fn any_alert_of_a_cut_answer_goes_into_a_summary_that_says_so() {
        let reviewed =
            Known { devices: vec![known(1, &["a"], "Laptop", "Computer", true)], ..Known::default() };
        let s = Snapshot { devices: strangers(1), playback: None, skipped: 1500, cut: 1500 };
        let plan = evaluate(&reviewed, &s, &policy(), t(0));
        assert_eq!(kinds(&plan), ["new_devices"]);
        assert!(matches!(plan.events[0].event, Event::NewDevices { count: 1, not_read: 1500, .. }));
        // Nothing to alert: nothing new to say (the first such poll said it).
        let quiet = Snapshot { devices: vec![dev(Some("a"), "Laptop", "Computer")], ..s };
        assert!(evaluate(&reviewed, &quiet, &policy(), t(0)).events.is_empty());
    }

    #[test]
    fn renames_are_recorded_at_most_three_times_a_day() {
        let mut r = known(1, &["a"], "Laptop", "Computer", true);
        r.renames_today = MAX_RENAMES_PER_DAY - 1;
        let k = Known { devices: vec![r.clone()], ..Known::default() };
        let s = snap(vec![dev(Some("a"), "Laptop 2", "Computer")]);
        assert_eq!(kinds(&evaluate(&k, &s, &policy(), t(0))), ["device_renamed"]);
        r.renames_today = MAX_RENAMES_PER_DAY;
        let k = Known { devices: vec![r], ..Known::default() };
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert!(plan.events.is_empty(), "{:?}", plan.events);
        assert!(plan.seen[0].renamed, "the name is still updated");
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
            matches!(&plan.events[0].event, Event::DeviceAppeared { imitates: true, looks_like: Some(l), .. } if l.name == "Phone"),
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
            cut: 0,
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
        let s = Snapshot { devices: vec![d.clone()], playback: Some(playing(d, "Song")), skipped: 0, cut: 0 };
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
            &Snapshot { devices: vec![d], playback: Some(p), skipped: 0, cut: 0 },
            &policy(),
            t(0),
        );
        assert_eq!(kinds(&plan), ["device_appeared"]);
    }

    #[test]
    fn trusted_device_playing_is_quiet() {
        let k = Known { devices: vec![known(1, &["a"], "Laptop", "Computer", true)], ..Known::default() };
        let d = dev(Some("a"), "Laptop", "Computer");
        let s = Snapshot { devices: vec![d.clone()], playback: Some(playing(d, "Song")), skipped: 0, cut: 0 };
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
            cut: 0,
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
            &Snapshot { devices: vec![d], playback: Some(p), skipped: 0, cut: 0 },
            &policy(),
            t(0),
        );
        assert_eq!(kinds(&plan), ["unknown_playing"]);
    }

    #[test]
    fn device_limit_alerts_once_per_window() {
        let devices: Vec<KnownDevice> =
            (1..=5).map(|i| known(i, &[&format!("id{i}")], &format!("D{i}"), "Computer", true)).collect();
        let k = Known { seen_in_window: (1..=5).collect(), devices, ..Known::default() };
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
            Event::FirstRun { count: 2, names: vec!["Laptop".into(), "Phone".into()], not_read: 0 }
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
            cut: 0,
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
        let partial =
            Snapshot { devices: vec![dev(Some("n"), "New", "Tablet")], playback: None, skipped: 1, cut: 0 };
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
        let s = Snapshot {
            devices: vec![dev(Some("x"), "Speaker", "Speaker")],
            playback: None,
            skipped: 1,
            cut: 0,
        };
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
        let s =
            Snapshot { devices: vec![tab.clone()], playback: Some(playing(tab, "Song")), skipped: 0, cut: 0 };
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
        assert_eq!(
            plan.events[0].event,
            Event::FirstRun { count: 1, names: vec!["Phone".into()], not_read: 0 }
        );
    }

    #[test]
    fn two_new_devices_with_the_same_name_and_no_id_are_two_records() {
        let s = snap(vec![dev(None, "Echo", "Speaker"), dev(Some("b"), "Echo", "Speaker")]);
        let plan = evaluate(&Known::default(), &s, &policy(), t(0));
        assert_eq!(plan.seen.len(), 2);
        assert_eq!(kinds(&plan), ["device_appeared", "device_appeared"]);
    }

    /// A trusted record as the store loads it: its strength computed from its name and ids,
    /// last seen at `seen`.
    fn recorded(
        key: DeviceKey,
        id: &str,
        name: &str,
        kind: &str,
        seen: DateTime<Utc>,
        id_days: i64,
    ) -> KnownDevice {
        let span = crate::identity::IdSpan {
            id: id.into(),
            first_seen: seen - chrono::Duration::days(id_days),
            last_seen: seen,
        };
        KnownDevice {
            strength: crate::identity::classify(name, &[span]),
            last_seen: Some(seen),
            id_since: Some(seen - chrono::Duration::days(id_days)),
            ..known(key, &[id], name, kind, true)
        }
    }

    fn generic_of(plan: &Plan) -> Option<GenericSighting> {
        match &plan.events.first()?.event {
            Event::DeviceAppeared { generic, .. } => generic.clone(),
            _ => None,
        }
    }

    /// Issue 12: a stranger's `Web Player (Chrome)` while the owner's trusted tab is closed.
    #[test]
    fn a_web_player_after_a_gap_is_a_new_session_and_asks() {
        let owner = recorded(1, "tab-1", "Web Player (Chrome)", "Computer", t(-10), 0);
        assert_eq!(owner.strength, Strength::Weak);
        // Ten polls since the owner's tab was last seen.
        let k = Known { devices: vec![owner], previous_poll: Some(t(-1)), ..Known::default() };
        let plan =
            evaluate(&k, &snap(vec![dev(Some("tab-2"), "Web Player (Chrome)", "Computer")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::New, "a generic name alone links nothing");
        assert_eq!(kinds(&plan), ["device_appeared"]);
        assert!(
            matches!(&plan.events[0].event, Event::DeviceAppeared { imitates: false, looks_like: None, .. }),
            "not an imitation: {:?}",
            plan.events
        );
        let g = generic_of(&plan).expect("a generic sighting");
        assert_eq!((g.noun.as_str(), g.trusted_before, g.explain), ("web player", true, true));
        assert!(plan.identity_explained, "said once");
        assert!(!plan.all_trusted(&k));
        // Once explained, never again.
        let k = Known { identity_explained: true, ..k };
        let plan =
            evaluate(&k, &snap(vec![dev(Some("tab-2"), "Web Player (Chrome)", "Computer")]), &policy(), t(0));
        assert!(!generic_of(&plan).expect("generic").explain);
        // Without an id (restricted), only timing could link it: still new.
        let plan = evaluate(&k, &snap(vec![dev(None, "Web Player (Chrome)", "Computer")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::New);
    }

    /// The critical alert for a stranger's web player that plays says what the "connected"
    /// alert says: a generic name, a web player trusted before, explained once per account.
    #[test]
    fn a_web_player_playing_after_a_gap_is_a_generic_sighting_too() {
        let owner = recorded(1, "tab-1", "Web Player (Chrome)", "Computer", t(-10), 0);
        let k = Known { devices: vec![owner], previous_poll: Some(t(-1)), ..Known::default() };
        let tab = dev(Some("tab-2"), "Web Player (Chrome)", "Computer");
        let s = Snapshot {
            devices: vec![Device { is_active: true, ..tab.clone() }],
            playback: Some(playing(tab, "Song")),
            skipped: 0,
            cut: 0,
        };
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert_eq!(kinds(&plan), ["unknown_playing"]);
        let Event::UnknownPlaying { generic: Some(g), looks_like: None, .. } = &plan.events[0].event else {
            panic!("a generic sighting: {:?}", plan.events)
        };
        assert_eq!((g.noun.as_str(), g.trusted_before, g.explain), ("web player", true, true));
        assert!(plan.identity_explained, "said once, whichever alert says it");
        let k = Known { identity_explained: true, ..k };
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert!(
            matches!(&plan.events[0].event, Event::UnknownPlaying { generic: Some(g), .. } if !g.explain),
            "{:?}",
            plan.events
        );
        // A chosen name is no generic sighting.
        let laptop = dev(Some("x"), "Anna's laptop", "Computer");
        let s = Snapshot {
            devices: vec![Device { is_active: true, ..laptop.clone() }],
            playback: Some(playing(laptop, "Song")),
            skipped: 0,
            cut: 0,
        };
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert!(
            matches!(&plan.events[0].event, Event::UnknownPlaying { generic: None, .. }),
            "{:?}",
            plan.events
        );
    }

    #[test]
    fn a_web_player_rotating_its_id_between_two_polls_is_the_same_one() {
        let owner = recorded(1, "tab-1", "Web Player (Chrome)", "Computer", t(-1), 0);
        let k = Known { devices: vec![owner], previous_poll: Some(t(-1)), ..Known::default() };
        for id in [Some("tab-2"), None] {
            let plan = evaluate(&k, &snap(vec![dev(id, "Web Player (Chrome)", "Computer")]), &policy(), t(0));
            assert_eq!(plan.seen[0].target, Target::Known(1), "{id:?}: continuity");
            assert!(plan.events.is_empty(), "{:?}", plan.events);
        }
        // No previous poll within the bridge (the store leaves it out): no continuity.
        let k = Known { previous_poll: None, ..k };
        let plan =
            evaluate(&k, &snap(vec![dev(Some("tab-2"), "Web Player (Chrome)", "Computer")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::New);
        // Old and new online at once stay two devices.
        let k = Known { previous_poll: Some(t(-1)), ..k };
        let s = snap(vec![
            dev(Some("tab-1"), "Web Player (Chrome)", "Computer"),
            dev(Some("tab-2"), "Web Player (Chrome)", "Computer"),
        ]);
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert_eq!((plan.seen[0].target, plan.seen[1].target), (Target::Known(1), Target::New));
        assert!(generic_of(&plan).is_some_and(|g| g.trusted_before), "{:?}", plan.events);
    }

    #[test]
    fn an_echo_id_of_the_same_shape_links_after_a_gap() {
        let uuid = "8a4f7e21-3c5b-4d6e-9f10-2b3c4d5e6f70";
        let echo = recorded(1, &format!("{uuid}_amzn_1"), "Echo Dot", "Speaker", t(-600), 0);
        let k = Known { devices: vec![echo], previous_poll: Some(t(-1)), ..Known::default() };
        let same = evaluate(
            &k,
            &snap(vec![dev(Some(&format!("{uuid}_amzn_2")), "Echo Dot", "Speaker")]),
            &policy(),
            t(0),
        );
        assert_eq!(same.seen[0].target, Target::Known(1));
        assert!(same.events.is_empty());
        let other = "0b4f7e21-3c5b-4d6e-9f10-2b3c4d5e6f70_amzn_1";
        let plan = evaluate(&k, &snap(vec![dev(Some(other), "Echo Dot", "Speaker")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::New);
    }

    #[test]
    fn a_name_derived_id_comes_back_by_id_and_another_id_under_that_name_is_new() {
        use sha1::Digest as _;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let md5 = hex(&md5::Md5::digest(b"Living Room"));
        let cast = recorded(1, &md5, "Living Room", "CastAudio", t(-600), 0);
        assert_eq!(cast.strength, Strength::NameDerived);
        let pi_id = hex(&sha1::Sha1::digest(b"Kitchen Pi"));
        let pi = KnownDevice { key: 2, ..recorded(2, &pi_id, "Kitchen Pi", "Speaker", t(-600), 0) };
        assert_eq!(pi.strength, Strength::NameDerived);
        let k = Known { devices: vec![cast, pi], previous_poll: Some(t(-1)), ..Known::default() };
        let back = evaluate(
            &k,
            &snap(vec![
                dev(Some(&md5), "Living Room", "CastAudio"),
                dev(Some(&pi_id), "Kitchen Pi", "Speaker"),
            ]),
            &policy(),
            t(0),
        );
        assert!(back.events.is_empty(), "{:?}", back.events);
        assert!(back.all_trusted(&k));
        let other = evaluate(&k, &snap(vec![dev(Some("other"), "Kitchen Pi", "Speaker")]), &policy(), t(0));
        assert_eq!(other.seen[0].target, Target::New, "the same name always has the same id");
        assert_eq!(kinds(&other), ["device_appeared"]);
    }

    #[test]
    fn any_session_brings_back_linking_by_name() {
        let owner = KnownDevice {
            any_session: true,
            ..recorded(1, "tab-1", "Web Player (Chrome)", "Computer", t(-600), 0)
        };
        let k = Known { devices: vec![owner], ..Known::default() };
        let plan =
            evaluate(&k, &snap(vec![dev(Some("tab-9"), "Web Player (Chrome)", "Computer")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::Known(1));
        assert!(plan.events.is_empty());
    }

    #[test]
    fn an_untrusted_weak_record_still_absorbs_its_sessions() {
        let mut r = recorded(1, "i-1", "iPhone", "Smartphone", t(-600), 0);
        r.trusted = false;
        r.alerted_at = Some(t(-600));
        let k = Known { devices: vec![r], ..Known::default() };
        let plan = evaluate(&k, &snap(vec![dev(Some("i-2"), "iPhone", "Smartphone")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::Known(1), "linking grants nothing: no record per session");
        assert!(plan.events.is_empty(), "within the re-alert bound");
    }

    #[test]
    fn a_strong_record_with_a_new_id_is_linked_and_recorded_quietly() {
        let desk = recorded(1, "desk-1", "Anna's desktop", "Computer", t(-3 * 24 * 60), 40);
        assert_eq!(desk.strength, Strength::Strong);
        let k = Known { devices: vec![desk], ..Known::default() };
        let plan =
            evaluate(&k, &snap(vec![dev(Some("desk-2"), "Anna's desktop", "Computer")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::Known(1));
        assert_eq!(kinds(&plan), ["device_id_changed"]);
        assert_eq!(plan.events[0].event.urgency(), crate::event::Urgency::Quiet);
        assert!(matches!(plan.events[0].event, Event::DeviceIdChanged { stable_days: 40, .. }));
        // A named record (no long-kept id) links as before, without an event.
        let named = recorded(1, "lap-1", "Anna's laptop", "Computer", t(-3 * 24 * 60), 2);
        let k = Known { devices: vec![named], ..Known::default() };
        let plan =
            evaluate(&k, &snap(vec![dev(Some("lap-2"), "Anna's laptop", "Computer")]), &policy(), t(0));
        assert_eq!(plan.seen[0].target, Target::Known(1));
        assert!(plan.events.is_empty());
    }

    #[test]
    fn a_look_alike_of_a_generic_trusted_name_is_still_an_imitation() {
        let owner = recorded(1, "tab-1", "Web Player (Chrome)", "Computer", t(-600), 0);
        let k = Known { devices: vec![owner], ..Known::default() };
        let plan = evaluate(
            &k,
            &snap(vec![dev(Some("tab-2"), "Web Player (Chr\u{43e}me)", "Computer")]),
            &policy(),
            t(0),
        );
        assert!(
            matches!(&plan.events[0].event, Event::DeviceAppeared { imitates: true, generic: None, .. }),
            "{:?}",
            plan.events
        );
    }

    /// Issue 11 leftover: hosting a Spotify Jam adds the guests' devices to the host's list.
    #[test]
    fn two_new_devices_while_a_trusted_device_plays_mention_a_jam_and_still_alert() {
        let k = Known { devices: vec![known(1, &["a"], "Laptop", "Computer", true)], ..Known::default() };
        let host = Device { is_active: true, ..dev(Some("a"), "Laptop", "Computer") };
        let guests = [dev(Some("g1"), "Guest 1", "Smartphone"), dev(Some("g2"), "Guest 2", "Smartphone")];
        let s = Snapshot {
            devices: vec![host.clone(), guests[0].clone(), guests[1].clone()],
            playback: Some(playing(host.clone(), "Song")),
            skipped: 0,
            cut: 0,
        };
        let plan = evaluate(&k, &s, &policy(), t(0));
        assert_eq!(kinds(&plan), ["device_appeared", "device_appeared"]);
        assert!(plan.events.iter().all(|e| matches!(e.event, Event::DeviceAppeared { jam: true, .. })));
        // One guest: no hint. Nothing playing: no hint.
        let one = Snapshot { devices: vec![host.clone(), guests[0].clone()], ..s.clone() };
        assert!(matches!(
            evaluate(&k, &one, &policy(), t(0)).events[0].event,
            Event::DeviceAppeared { jam: false, .. }
        ));
        let idle = Snapshot { playback: None, ..s.clone() };
        let plan = evaluate(&k, &idle, &policy(), t(0));
        assert!(plan.events.iter().all(|e| matches!(e.event, Event::DeviceAppeared { jam: false, .. })));
        // A crowd while playing: the summary carries it.
        let mut crowd = s.devices.clone();
        crowd.extend(strangers(6));
        let p = Policy { device_limit: 100, ..policy() };
        let plan = evaluate(&k, &Snapshot { devices: crowd, ..s }, &p, t(0));
        assert!(matches!(plan.events[0].event, Event::NewDevices { jam: true, .. }), "{:?}", plan.events);
    }
}
