//! `spotguard status`: per account, the login (valid, until when) and the last poll.
//! Reads the token store and the database only: no request to Spotify.

use std::process::ExitCode;

use chrono::{DateTime, Local, Utc};
use serde::Serialize;

use super::format::ago;
use crate::context::Context;
use crate::text::terminal;

#[derive(Debug, clap::Args)]
pub struct Cmd {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

/// The `--json` shape of one account; field names are stable.
#[derive(Debug, Serialize)]
struct AccountOut {
    account: String,
    spotify_user: Option<String>,
    logged_in: bool,
    /// Why the login cannot be used, if it cannot.
    login_problem: Option<String>,
    access_lost_at: Option<DateTime<Utc>>,
    authorized_at: Option<DateTime<Utc>>,
    /// Spotify ends logins six months after authorisation.
    login_expires_at: Option<DateTime<Utc>>,
    access_token_expires_at: Option<DateTime<Utc>>,
    last_poll_at: Option<DateTime<Utc>>,
    last_poll_ms: Option<i64>,
    last_poll_devices: Option<i64>,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    /// Set while the daemon has told the person it cannot check the account: since when.
    not_watching_since: Option<DateTime<Utc>>,
    /// When the running daemon polls next.
    next_poll_at: Option<DateTime<Utc>>,
    trusted_devices: usize,
    unknown_devices: usize,
}

/// The `--json` shape of the whole answer.
#[derive(Debug, Serialize)]
struct StatusOut {
    /// The pid of the daemon running on this database, if one is.
    daemon_pid: Option<u32>,
    daemon_running: bool,
    schedule: String,
    accounts: Vec<AccountOut>,
    /// The `[[channels]]`, in config order.
    channels: Vec<ChannelOut>,
}

/// The `--json` shape of one channel; field names are stable.
#[derive(Debug, Serialize)]
struct ChannelOut {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    last_delivered_at: Option<DateTime<Utc>>,
    /// The last failed attempt's reason, or the last alert given up on (after 24 h).
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    /// Alerts this channel has yet to accept.
    waiting: i64,
    /// Alerts given up on after 24 h of failed attempts.
    given_up: i64,
}

/// The kinds a channel sends, by its `min_urgency` (an imitation, a `device_appeared` that
/// critical channels also get, is counted under normal only).
fn channel_kinds(min: crate::config::MinUrgency) -> &'static [&'static str] {
    match min {
        crate::config::MinUrgency::Normal => &[
            "first_run",
            "device_appeared",
            "unknown_playing",
            "device_limit",
            "access_lost",
            "login_expiring",
            "still_online_after_sign_out",
            "not_watching",
        ],
        crate::config::MinUrgency::Critical => &["unknown_playing", "access_lost", "not_watching"],
    }
}

impl Cmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        let running = crate::daemon::lock::holder(&ctx.config.database_path()?);
        let every = match ctx.config.schedule() {
            crate::config::Schedule::Every(d) => chrono::Duration::from_std(d).ok(),
            crate::config::Schedule::Cron(_) => None,
        };
        let polls = ctx.store.call(|s| s.account_status()).await?;
        // Trusted and unknown devices per account name, from the same read-only store.
        let names = ctx.account_names();
        let counts = ctx
            .store
            .call(move |s| {
                let mut out = Vec::new();
                for n in names {
                    let rows = match s.find_account(&n)? {
                        Some(a) => s.devices(a, false)?,
                        None => Vec::new(),
                    };
                    let trusted = rows.iter().filter(|d| d.trusted).count();
                    out.push((n, trusted, rows.len() - trusted));
                }
                Ok(out)
            })
            .await?;
        let mut out = Vec::new();
        for name in ctx.account_names() {
            let tokens = ctx.tokens.load(&name).await;
            let poll = polls.iter().find(|p| p.name == name);
            out.push(AccountOut {
                account: name.clone(),
                spotify_user: poll.and_then(|p| p.spotify_user.clone()),
                logged_in: tokens.is_ok() && poll.is_none_or(|p| p.access_lost_at.is_none()),
                login_problem: tokens.as_ref().err().map(|e| e.to_string()),
                access_lost_at: poll.and_then(|p| p.access_lost_at),
                authorized_at: tokens.as_ref().ok().map(|t| t.authorized_at),
                login_expires_at: tokens.as_ref().ok().map(|t| t.login_expires_at()),
                access_token_expires_at: tokens.as_ref().ok().map(|t| t.expires_at),
                last_poll_at: poll.and_then(|p| p.last_poll_at),
                last_poll_ms: poll.and_then(|p| p.last_poll_ms),
                last_poll_devices: poll.and_then(|p| p.last_poll_devices),
                last_error: poll.and_then(|p| p.last_error.clone()),
                last_error_at: poll.and_then(|p| p.last_error_at),
                not_watching_since: poll.and_then(|p| p.not_watching_since),
                trusted_devices: counts.iter().find(|c| c.0 == name).map_or(0, |c| c.1),
                unknown_devices: counts.iter().find(|c| c.0 == name).map_or(0, |c| c.2),
                next_poll_at: match (running, every, ctx.config.schedule()) {
                    (Some(_), Some(every), _) => poll.and_then(|p| p.last_poll_at).map(|t| t + every),
                    (Some(_), None, crate::config::Schedule::Cron(line)) => {
                        crate::schedule::next_cron_poll(&line, &name, chrono::Utc::now())
                    }
                    _ => None,
                },
            });
        }
        let names = crate::config::channels::channel_names(&ctx.config.channels);
        let wanted: Vec<(String, String, &'static [&'static str])> = ctx
            .config
            .channels
            .iter()
            .zip(names)
            .map(|(c, n)| (n, c.kind().to_string(), channel_kinds(c.min_urgency())))
            .collect();
        let channels = ctx
            .store
            .call(move |s| {
                let states = s.channels()?;
                let mut out = Vec::new();
                for (name, kind, kinds) in wanted {
                    let st = states.iter().find(|c| c.name == name);
                    out.push(ChannelOut {
                        waiting: match st {
                            Some(st) => s.count_after(st.done_through, kinds)?,
                            None => 0,
                        },
                        name,
                        kind,
                        last_delivered_at: st.and_then(|c| c.last_delivered_at),
                        last_error: st.and_then(|c| c.last_error.clone()),
                        last_error_at: st.and_then(|c| c.last_error_at),
                        given_up: st.map_or(0, |c| c.given_up),
                    });
                }
                Ok(out)
            })
            .await?;
        let status = StatusOut {
            channels,
            daemon_pid: running.flatten(),
            daemon_running: running.is_some(),
            schedule: ctx.config.schedule().to_string(),
            accounts: out,
        };
        if self.json {
            println!("{}", crate::text::json_safe(serde_json::to_string_pretty(&status)?));
        } else {
            match running {
                Some(Some(pid)) => println!("daemon: running (pid {pid}), polling {}", status.schedule),
                Some(None) => println!("daemon: running, polling {}", status.schedule),
                None => println!("daemon: not running (`spotguard run`, or `spotguard service install`)"),
            }
            for a in &status.accounts {
                print_text(a);
            }
            for c in &status.channels {
                let last = c.last_delivered_at.map_or("never".to_string(), |t| ago(t, Utc::now()));
                println!("Channel {} ({}): last delivered {last}, {} waiting", c.name, c.kind, c.waiting);
                if let (Some(e), Some(at)) = (&c.last_error, c.last_error_at) {
                    println!("  last error ({}): {}", ago(at, Utc::now()), terminal(e));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn day(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d").to_string()
}

fn print_text(a: &AccountOut) {
    let now = Utc::now();
    let who =
        a.spotify_user.as_deref().map(|u| format!(" (Spotify user {})", terminal(u))).unwrap_or_default();
    println!("Account {}{who}", a.account);
    match (&a.login_problem, a.access_lost_at, a.login_expires_at) {
        (Some(problem), _, _) => println!("  login: none: {problem}"),
        (None, Some(lost), _) => println!(
            "  login: LOST {} (Spotify refused it): run `spotguard login --account {}`",
            ago(lost, now),
            a.account
        ),
        (None, None, Some(ends)) => {
            let soon =
                if ends - now < chrono::Duration::days(7) { " (soon: run `spotguard login`)" } else { "" };
            println!("  login: valid until {}{soon}", day(ends));
        }
        (None, None, None) => println!("  login: unknown"),
    }
    match a.last_poll_at {
        Some(at) => println!(
            "  last poll: {} ({}), {} device(s), {} ms",
            at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S"),
            ago(at, now),
            a.last_poll_devices.unwrap_or(0),
            a.last_poll_ms.unwrap_or(0)
        ),
        None => println!("  last poll: never"),
    }
    if let Some(since) = a.not_watching_since {
        println!(
            "  NOT WATCHING: no successful check since {} ({})",
            since.with_timezone(&Local).format("%Y-%m-%d %H:%M"),
            ago(since, now)
        );
    }
    println!("  devices: {} trusted, {} not trusted", a.trusted_devices, a.unknown_devices);
    if let Some(next) = a.next_poll_at {
        println!("  next poll: {}", next.with_timezone(&Local).format("%H:%M:%S"));
    }
    if let (Some(e), Some(at)) = (&a.last_error, a.last_error_at) {
        println!("  last error ({}): {}", ago(at, now), terminal(e));
    }
}
