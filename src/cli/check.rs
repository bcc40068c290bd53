//! `spotguard check`: one poll now, printed, nothing recorded and nothing shown.
//!
//! Each device's identity strength is the one `devices` shows (`identity::Strength::word`,
//! `strength` in JSON): its record's, or for a device not on record what its name and id
//! alone give, which is what the record will get when the daemon records it.

use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::EXIT_UNTRUSTED;
use super::format::name;
use crate::audit::{Seen, Target};
use crate::context::Context;
use crate::daemon::poll;
use crate::event::Event;
use crate::identity::{self, IdSpan, Strength};
use crate::spotify::Device;
use crate::text::terminal;

#[derive(Debug, clap::Args)]
pub struct Cmd {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
    /// The account to check [default: the first configured]
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
}

#[derive(Debug, Serialize)]
struct DeviceOut {
    id: Option<String>,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    is_active: bool,
    known: bool,
    trusted: bool,
    /// How much its name and ids prove: weak, name_derived, strong or named (as `devices --json`).
    strength: &'static str,
    /// Every session with its name and type passes for it (`trust --any-session`).
    any_session: bool,
    /// What `strength` and `any_session` read as in a listing; text output only.
    #[serde(skip)]
    identity: &'static str,
}

#[derive(Debug, Serialize)]
struct Out {
    account: String,
    at: chrono::DateTime<chrono::Utc>,
    devices: Vec<DeviceOut>,
    /// Devices Spotify listed that were not read: unreadable (the log says what was wrong),
    /// or beyond the most read from one answer (`over_the_bound` of them).
    unreadable: usize,
    /// Of `unreadable`, the devices beyond `spotify::model::MAX_DEVICES_PER_ANSWER`.
    over_the_bound: usize,
    playing: Option<String>,
    would_alert: Vec<Event>,
    /// Every device online is trusted: false while one could not be read, since it may not be.
    all_trusted: bool,
}

impl Cmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        let account = super::pick_account(&ctx, self.account.as_deref()).await?;
        let policy = poll::policy(&ctx.config, &account.name);
        let session = ctx.session(&account.name);
        let report = poll::poll_once(
            &ctx.client,
            &session,
            &ctx.store,
            &policy,
            &account,
            crate::store::Recording::DryRun,
        )
        .await
        .with_context(|| format!("cannot poll Spotify for account {}", account.name))?;
        let trusted = |t: Target| match t {
            Target::Known(k) => report.known.devices.iter().any(|d| d.key == k && d.trusted),
            Target::New => false,
        };
        let identity = |s: &Seen| match s.target {
            Target::Known(k) => report
                .known
                .devices
                .iter()
                .find(|d| d.key == k)
                // Every target the rules return is a loaded record; the cautious word otherwise.
                .map_or((Strength::Weak, false), |d| (d.strength, d.any_session)),
            Target::New => (new_record_strength(&s.device, report.at), false),
        };
        let out = Out {
            account: account.name.clone(),
            at: report.at,
            devices: report
                .plan
                .seen
                .iter()
                .map(|s| {
                    let (strength, any_session) = identity(s);
                    DeviceOut {
                        id: s.device.id.clone(),
                        name: s.device.name.clone(),
                        kind: s.device.kind.clone(),
                        is_active: s.device.is_active,
                        known: s.target != Target::New,
                        trusted: trusted(s.target),
                        strength: strength.as_str(),
                        any_session,
                        identity: strength.word(any_session),
                    }
                })
                .collect(),
            unreadable: report.snapshot.skipped,
            over_the_bound: report.snapshot.cut,
            playing: report.snapshot.playback.as_ref().filter(|p| p.is_playing).map(|p| p.describe()),
            would_alert: report
                .plan
                .events
                .iter()
                .map(|e| e.event.clone())
                .filter(|e| e.urgency() > crate::event::Urgency::Quiet)
                .collect(),
            all_trusted: report.plan.all_trusted(&report.known) && report.snapshot.skipped == 0,
        };
        if self.json {
            println!("{}", crate::text::json_safe(serde_json::to_string_pretty(&out)?));
        } else {
            print_text(&out);
        }
        Ok(if out.all_trusted { ExitCode::SUCCESS } else { ExitCode::from(EXIT_UNTRUSTED) })
    }
}

/// The strength a record made now for `device` gets: its name, and its id seen once.
fn new_record_strength(device: &Device, at: DateTime<Utc>) -> Strength {
    let ids: Vec<IdSpan> =
        device.id.iter().map(|id| IdSpan { id: id.clone(), first_seen: at, last_seen: at }).collect();
    identity::classify(&device.name, &ids)
}

fn print_text(out: &Out) {
    println!("Spotify account {}: {} device(s) online", terminal(&out.account), out.devices.len());
    for d in &out.devices {
        let mark = if d.trusted {
            "trusted"
        } else if d.known {
            "NOT TRUSTED"
        } else {
            "NEW, NOT TRUSTED"
        };
        let active = if d.is_active { ", active" } else { "" };
        println!("  {} ({}{active}): {mark}; identity {}", name(&d.name), name(&d.kind), d.identity);
    }
    if out.over_the_bound > 0 {
        println!(
            "  {} more device(s) not read (spotguard reads {} per answer): NOT KNOWN TO BE TRUSTED",
            out.over_the_bound,
            crate::spotify::model::MAX_DEVICES_PER_ANSWER
        );
    }
    if out.unreadable > out.over_the_bound {
        println!(
            "  {} more device(s) that could not be read: NOT KNOWN TO BE TRUSTED",
            out.unreadable - out.over_the_bound
        );
    }
    if let Some(p) = &out.playing {
        println!("Playing: {}", name(p));
    }
    if out.would_alert.is_empty() {
        println!("Nothing to alert.");
    } else {
        println!("Would alert:");
        for e in &out.would_alert {
            println!("  - {}", name(&e.describe()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: Option<&str>, name: &str) -> Device {
        Device { id: id.map(str::to_string), name: name.into(), kind: "Computer".into(), ..Device::default() }
    }

    /// A device not on record gets the strength its record will get: what `devices` shows next.
    #[test]
    fn a_new_device_is_judged_by_its_name_and_its_id_seen_once() {
        use sha1::Digest as _;
        let at = Utc::now();
        let derived: String = sha1::Sha1::digest(b"Kitchen Pi").iter().map(|b| format!("{b:02x}")).collect();
        let cases = [
            (device(Some("tab-2"), "Web Player (Chrome)"), Strength::Weak),
            (device(Some(&derived), "Kitchen Pi"), Strength::NameDerived),
            (device(Some("desk-1"), "Anna's desktop"), Strength::Named),
            (device(None, "Anna's desktop"), Strength::Named),
            (device(None, "iPhone"), Strength::Weak),
        ];
        for (d, want) in cases {
            assert_eq!(new_record_strength(&d, at), want, "{d:?}");
        }
    }
}
