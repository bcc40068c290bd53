//! `spotguard check`: one poll now, printed, nothing recorded and nothing shown.

use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::EXIT_UNTRUSTED;
use super::format::name;
use crate::audit::Target;
use crate::context::Context;
use crate::daemon::poll;
use crate::event::Event;
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
        let out = Out {
            account: account.name.clone(),
            at: report.at,
            devices: report
                .plan
                .seen
                .iter()
                .map(|s| DeviceOut {
                    id: s.device.id.clone(),
                    name: s.device.name.clone(),
                    kind: s.device.kind.clone(),
                    is_active: s.device.is_active,
                    known: s.target != Target::New,
                    trusted: trusted(s.target),
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
        println!("  {} ({}{active}): {mark}", name(&d.name), name(&d.kind));
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
