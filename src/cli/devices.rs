//! `spotguard devices [trust|forget]`: the devices on record, and the person's verdicts.
//!
//! `trust --all` prints what it is about to trust and asks on a terminal; without one it
//! trusts nothing unless `--yes` says the list is accepted unseen. The IDENTITY column is how
//! much a device's name and id prove (`identity::Strength`); `trust --any-session` opens a
//! device to every session of its name and type, and says the risk once.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::bail;
use chrono::Utc;
use serde::Serialize;

use super::format::{ago, name, table};
use crate::context::Context;
use crate::event::TrustedBy;
use crate::store::{DeviceRow, Found};

#[derive(Debug, clap::Args)]
pub struct Cmd {
    #[command(subcommand)]
    action: Option<Action>,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Include forgotten devices
    #[arg(long)]
    all: bool,
    /// The account [default: the first configured]
    #[arg(long, global = true, value_name = "NAME")]
    account: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Trust a device: it will not be alerted on again (--all: every device online now)
    #[command(
        after_help = "Examples:\n  spotguard devices trust \"Kitchen speaker\"\n  spotguard devices trust --all\n  \
                      spotguard devices trust --all --yes   (in a script: no question)\n  \
                      spotguard devices trust \"Web Player (Chrome)\" --any-session"
    )]
    Trust {
        /// The device's id, an id prefix (4+ characters), or its name
        #[arg(required_unless_present = "all")]
        device: Option<String>,
        /// Trust every untrusted device Spotify listed at the last poll: prints them and asks
        #[arg(long, conflicts_with = "device")]
        all: bool,
        /// With --all: do not ask (needed when stdin is not a terminal)
        #[arg(long, requires = "all")]
        yes: bool,
        /// Every session with this name and type passes for this device, even when the name is
        /// generic (anyone's `Web Player (Chrome)` would)
        #[arg(long, conflicts_with = "all")]
        any_session: bool,
    },
    /// Take trust back: the device is alerted on again like any unknown one
    #[command(after_help = "Example: spotguard devices untrust \"Old laptop\"")]
    Untrust {
        /// The device's id, an id prefix (4+ characters), or its name
        device: String,
    },
    /// Give a device your own label, shown in listings (no LABEL clears it)
    #[command(after_help = "Example: spotguard devices label 3f2a \"Anna's phone\"")]
    Label {
        /// The device's id, an id prefix (4+ characters), or its name
        device: String,
        /// The label
        label: Option<String>,
    },
    /// Mute a device: it is recorded but not alerted on, for a while or until unmuted
    #[command(after_help = "Example: spotguard devices mute \"Living room TV\" --for 7d")]
    Mute {
        /// The device's id, an id prefix (4+ characters), or its name
        device: String,
        /// How long [default: until `devices unmute`]
        #[arg(long = "for", value_parser = humantime::parse_duration, value_name = "DURATION")]
        duration: Option<std::time::Duration>,
    },
    /// End a mute
    #[command(after_help = "Example: spotguard devices unmute \"Living room TV\"")]
    Unmute {
        /// The device's id, an id prefix (4+ characters), or its name
        device: String,
    },
    /// Merge two records that are one device (Spotify changed its id and name at once)
    #[command(after_help = "Example: spotguard devices merge \"Anna's Phone\" \"Phone\"   (keeps the first)")]
    Merge {
        /// The record to keep (its name stays)
        keep: String,
        /// The record folded into it and removed
        other: String,
    },
    /// Forget a device: if it comes back, it is new and untrusted again
    #[command(after_help = "Example: spotguard devices forget 3f2a")]
    Forget {
        /// The device's id, an id prefix (4+ characters), or its name
        device: String,
    },
}

/// The `--json` shape of one device; field names are stable.
#[derive(Debug, Serialize)]
struct DeviceJson<'a> {
    id: Option<&'a str>,
    key: i64,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    trusted: bool,
    first_seen: String,
    last_seen: String,
    online: bool,
    label: Option<&'a str>,
    forgotten: bool,
    /// RFC 3339, or absent when not muted; year 9999 means until unmuted.
    muted_until: Option<String>,
    /// How much its name and ids prove: weak, name_derived, strong or named.
    strength: &'static str,
    /// Every session with its name and type passes for it (`trust --any-session`).
    any_session: bool,
}

impl Cmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        let picked = super::pick_account(&ctx, self.account.as_deref()).await?;
        let account_name = picked.name.clone();
        let account = Some(picked.id);
        match self.action {
            None => {
                let all = self.all;
                let rows = match account {
                    Some(a) => ctx.store.call(move |s| s.devices(a, all)).await?,
                    None => Vec::new(),
                };
                if self.json {
                    print_json(&rows)?;
                } else {
                    print_table(&rows, &account_name);
                }
            }
            Some(Action::Trust { all: true, yes, .. }) => {
                let rows = match account {
                    Some(a) => ctx.store.call(move |s| s.devices(a, false)).await?,
                    None => Vec::new(),
                };
                let online: Vec<DeviceRow> = rows.into_iter().filter(|d| d.online && !d.trusted).collect();
                if online.is_empty() {
                    say("No untrusted device was online at the last poll; nothing to trust.");
                    return Ok(ExitCode::SUCCESS);
                }
                // An intruder online right now would be on this list: the person reads it
                // before anything is trusted, and a script must say it accepts it unseen.
                say(&if yes {
                    format!("Trusting {} device(s) Spotify listed at the last poll:", online.len())
                } else {
                    format!("Spotify listed {} untrusted device(s) at the last poll:", online.len())
                });
                for d in &online {
                    say(&format!("  {} ({})", name(&d.name), name(&d.kind)));
                }
                if !yes {
                    if !std::io::stdin().is_terminal() {
                        bail!(
                            "nothing was trusted: `devices trust --all` asks before trusting, and stdin is not \
                             a terminal; read the list above, then pass --yes to trust them without a question"
                        );
                    }
                    if !confirm(&format!("Trust all {}? [y/N] ", online.len())).await? {
                        say("Nothing was trusted.");
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                // Exactly the devices shown, even if a poll changed the list meanwhile.
                let keys: Vec<i64> = online.iter().map(|d| d.key).collect();
                ctx.store
                    .call(move |s| {
                        for k in keys {
                            s.trust(k, TrustedBy::Cli, Utc::now())?;
                        }
                        Ok(())
                    })
                    .await?;
                say(&format!("Trusted {} device(s).", online.len()));
            }
            Some(Action::Trust { device, any_session, .. }) => {
                let device = device.unwrap_or_default();
                let d = resolve(&ctx, account, &device).await?;
                let key = d.key;
                if any_session {
                    // The risk, said once, where the choice is made.
                    say(&format!(
                        "Every session called {} ({}) will now pass for this device, also one a stranger \
                         opens on your account{}.",
                        name(&d.name),
                        name(&d.kind),
                        if d.strength.name_is_enough() {
                            String::new()
                        } else {
                            " (it has a name many devices share)".to_string()
                        }
                    ));
                    ctx.store.call(move |s| s.set_any_session(key, true)).await?;
                }
                let changed = ctx.store.call(move |s| s.trust(key, TrustedBy::Cli, Utc::now())).await?;
                say(&if changed {
                    format!("Trusted {} ({}).", name(&d.name), name(&d.kind))
                } else {
                    format!("{} ({}) was already trusted.", name(&d.name), name(&d.kind))
                });
            }
            Some(Action::Untrust { device }) => {
                let d = resolve(&ctx, account, &device).await?;
                let key = d.key;
                let changed = ctx.store.call(move |s| s.untrust(key)).await?;
                say(&if changed {
                    format!("{} ({}) is no longer trusted.", name(&d.name), name(&d.kind))
                } else {
                    format!("{} ({}) was not trusted.", name(&d.name), name(&d.kind))
                });
            }
            Some(Action::Label { device, label }) => {
                let d = resolve(&ctx, account, &device).await?;
                let key = d.key;
                let text = label.as_deref().map(|l| crate::text::clean(l, crate::text::MAX_NAME_CHARS));
                let stored = text.clone();
                ctx.store.call(move |s| s.label(key, stored.as_deref())).await?;
                say(&match text {
                    Some(l) => format!("{} ({}) is now labelled {:?}.", name(&d.name), name(&d.kind), l),
                    None => format!("{} ({}) has no label now.", name(&d.name), name(&d.kind)),
                });
            }
            Some(Action::Mute { device, duration }) => {
                let d = resolve(&ctx, account, &device).await?;
                let until = duration
                    .map(|f| Utc::now() + chrono::Duration::from_std(f).unwrap_or(chrono::Duration::MAX));
                let key = d.key;
                let how_long = until.map_or(crate::store::Mute::UntilUnmuted, crate::store::Mute::Until);
                ctx.store.call(move |s| s.mute(key, how_long)).await?;
                say(&match until {
                    Some(u) => format!(
                        "Muted {} ({}) until {}: it is recorded but not alerted on.",
                        name(&d.name),
                        name(&d.kind),
                        u.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M")
                    ),
                    None => format!(
                        "Muted {} ({}) until `spotguard devices unmute`: it is recorded but not alerted on.",
                        name(&d.name),
                        name(&d.kind)
                    ),
                });
            }
            Some(Action::Unmute { device }) => {
                let d = resolve(&ctx, account, &device).await?;
                let key = d.key;
                ctx.store.call(move |s| s.unmute(key)).await?;
                say(&format!("{} ({}) is alerted on again.", name(&d.name), name(&d.kind)));
            }
            Some(Action::Merge { keep, other }) => {
                let k = resolve(&ctx, account, &keep).await?;
                let o = resolve(&ctx, account, &other).await?;
                if k.key == o.key {
                    anyhow::bail!("{:?} and {:?} are the same device already", name(&keep), name(&other));
                }
                let (kk, ok) = (k.key, o.key);
                ctx.store.call(move |s| s.merge(kk, ok, Utc::now())).await?;
                say(&format!(
                    "Merged {} ({}) into {} ({}): one device now, with both histories.",
                    name(&o.name),
                    name(&o.kind),
                    name(&k.name),
                    name(&k.kind)
                ));
            }
            Some(Action::Forget { device }) => {
                let d = resolve(&ctx, account, &device).await?;
                let key = d.key;
                ctx.store.call(move |s| s.forget(key, Utc::now())).await?;
                say(&format!(
                    "Forgot {} ({}). If it comes back it will be alerted on as a new device.",
                    name(&d.name),
                    name(&d.kind)
                ));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Asks a yes/no question on the terminal; only `y` or `yes` is a yes.
async fn confirm(question: &str) -> anyhow::Result<bool> {
    print!("{question}");
    std::io::stdout().flush()?;
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Finds exactly one device or explains why not, changing nothing.
async fn resolve(ctx: &Context, account: Option<i64>, query: &str) -> anyhow::Result<DeviceRow> {
    let found = match account {
        Some(a) => {
            let q = query.to_string();
            ctx.store.call(move |s| s.find_device(a, &q)).await?
        }
        None => Found::None,
    };
    match found {
        Found::One(d) => Ok(d),
        Found::None => bail!("no device matches {:?}; `spotguard devices` lists them", name(query)),
        Found::Ambiguous(list) => {
            let names: Vec<String> = list
                .iter()
                .map(|d| {
                    format!(
                        "{} ({}, id {})",
                        name(&d.name),
                        name(&d.kind),
                        d.id.as_deref().map_or("none".into(), name)
                    )
                })
                .collect();
            bail!(
                "{:?} matches {} devices: {}; give the id instead",
                name(query),
                list.len(),
                names.join("; ")
            )
        }
    }
}

fn say(line: &str) {
    println!("{line}");
}

fn print_json(rows: &[DeviceRow]) -> anyhow::Result<()> {
    let out: Vec<DeviceJson<'_>> = rows
        .iter()
        .map(|d| DeviceJson {
            id: d.id.as_deref(),
            key: d.key,
            name: &d.name,
            kind: &d.kind,
            trusted: d.trusted,
            first_seen: d.first_seen.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            last_seen: d.last_seen.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            online: d.online,
            label: d.label.as_deref(),
            forgotten: d.forgotten,
            muted_until: d
                .muted_until
                .filter(|u| *u > Utc::now())
                .map(|u| u.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            strength: d.strength.as_str(),
            any_session: d.any_session,
        })
        .collect();
    println!("{}", crate::text::json_safe(serde_json::to_string_pretty(&out)?));
    Ok(())
}

pub(super) fn print_table(rows: &[DeviceRow], account: &str) {
    if rows.is_empty() {
        println!("No devices seen yet on account {account}. `spotguard run` records them as it polls.");
        return;
    }
    let now = Utc::now();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            vec![
                name(&d.name),
                name(&d.kind),
                match (d.forgotten, d.trusted, d.muted_until.is_some_and(|u| u > now)) {
                    (true, _, _) => "forgotten",
                    (false, true, _) => "yes",
                    (false, false, true) => "muted",
                    (false, false, false) => "NO",
                }
                .to_string(),
                ago(d.first_seen, now),
                ago(d.last_seen, now),
                if d.online { "yes" } else { "" }.to_string(),
                d.strength.word(d.any_session).to_string(),
                d.id.as_deref().map(|i| name(&i.chars().take(12).collect::<String>())).unwrap_or_default(),
                d.label.as_deref().map(name).unwrap_or_default(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["NAME", "TYPE", "TRUSTED", "FIRST SEEN", "LAST SEEN", "ONLINE", "IDENTITY", "ID", "LABEL"],
            &body
        )
    );
}
