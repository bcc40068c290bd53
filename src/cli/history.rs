//! `spotguard history`: what happened while you were away, newest first.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use chrono::{Local, Utc};
use serde::Serialize;

use super::format::name;
use crate::context::Context;
use crate::store::Found;

#[derive(Debug, clap::Args)]
pub struct Cmd {
    /// How far back to look
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration, value_name = "DURATION")]
    since: Duration,
    /// Only this account's events
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// Only this device's events (id, id prefix or name, as for `devices trust`)
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

/// The `--json` shape of one event; the event's own fields are flattened in.
#[derive(Debug, Serialize)]
struct EventJson<'a> {
    id: i64,
    at: String,
    account: &'a str,
    device_key: Option<i64>,
    text: String,
    #[serde(flatten)]
    event: serde_json::Value,
}

/// Plenty for a person to read; `--since` narrows it.
const LIMIT: usize = 10_000;

impl Cmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        let since = Utc::now() - chrono::Duration::from_std(self.since).unwrap_or(chrono::Duration::days(7));
        let account = match (&self.account, &self.device) {
            (None, None) => None,
            (name, _) => Some(super::pick_account(&ctx, name.as_deref()).await?),
        };
        let device = match (&self.device, &account) {
            (Some(query), Some(a)) => {
                let (id, q) = (a.id, query.clone());
                match ctx.store.call(move |s| s.find_device(id, &q)).await? {
                    Found::One(d) => Some(d.key),
                    Found::None => {
                        bail!("no device matches {:?}; `spotguard devices --all` lists them", name(query))
                    }
                    Found::Ambiguous(list) => {
                        bail!("{:?} matches {} devices; give the id instead", name(query), list.len())
                    }
                }
            }
            _ => None,
        };
        let account_id = account.as_ref().map(|a| a.id);
        let events = ctx.store.call(move |s| s.history(since, account_id, device, LIMIT)).await?;
        // Written with errors returned, not println!'s panic: `history | head` closes the pipe
        // early, and main ends quietly on a broken pipe.
        let mut out = std::io::stdout().lock();
        if self.json {
            let list: Vec<EventJson<'_>> = events
                .iter()
                .map(|e| EventJson {
                    id: e.id,
                    at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    account: &e.account,
                    device_key: e.device,
                    text: e.event.describe(),
                    // Kinds this version only reads (a newer one's, an unreadable row) have no
                    // JSON of their own: their kind is said instead, and the rest still prints.
                    event: serde_json::to_value(&e.event)
                        .unwrap_or_else(|_| serde_json::json!({ "kind": e.event.kind() })),
                })
                .collect();
            writeln!(out, "{}", crate::text::json_safe(serde_json::to_string_pretty(&list)?))?;
            return Ok(ExitCode::SUCCESS);
        }
        if events.is_empty() {
            writeln!(out, "Nothing happened in the last {}.", humantime::format_duration(self.since))?;
        }
        for e in &events {
            writeln!(
                out,
                "{}  {:<10}  {}",
                e.at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
                e.account,
                crate::text::terminal(&crate::text::clean(&e.event.describe(), 240))
            )?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
