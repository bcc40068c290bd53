//! `spotguard doctor`: one line per check, pass or fail, and the fix for each failure.
//! It makes at most one Web API request per account, and shows a notification only when
//! asked (`--notify`).

use std::process::ExitCode;

use tokio::sync::mpsc;

use crate::config::Source;
use crate::context::Context;
use crate::event::Urgency;
use crate::notify::{Alert, Desktop, DesktopError, Invoked};
use crate::text::terminal;

#[derive(Debug, clap::Args)]
pub struct Cmd {
    /// Also send a test desktop notification
    #[arg(long)]
    notify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, verdict: Verdict, what: &str, detail: &str, fix: Option<&str>) {
        let mark = match verdict {
            Verdict::Pass => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        self.failed |= verdict == Verdict::Fail;
        println!("{mark}  {what}: {}", terminal(detail));
        if let (Some(fix), false) = (fix, verdict == Verdict::Pass) {
            println!("      fix: {fix}");
        }
    }
}

impl Cmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        let mut r = Report { failed: false };
        match &ctx.source {
            Source::File(p) => r.line(Verdict::Pass, "config", &format!("{} is valid", p.display()), None),
            Source::Defaults(p) => r.line(
                Verdict::Warn,
                "config",
                &format!("no file at {}: every value is a default", p.display()),
                Some("copy config.example.toml there and set spotify.client_id"),
            ),
        }
        match ctx.store.call(|s| s.integrity_check()).await {
            Ok(ok) if ok == "ok" => {
                r.line(Verdict::Pass, "database", &ctx.config.database_path()?.display().to_string(), None)
            }
            Ok(problem) => r.line(
                Verdict::Fail,
                "database",
                &problem,
                Some("stop spotguard and move the database aside; it starts a new one"),
            ),
            Err(e) => r.line(Verdict::Fail, "database", &e.to_string(), None),
        }
        for name in ctx.account_names() {
            let login_fix = format!("spotguard login --account {name}");
            match ctx.tokens.load(&name).await {
                Ok(t) => {
                    r.line(
                        Verdict::Pass,
                        &format!("login ({name})"),
                        &format!(
                            "kept in {}, ends {}",
                            ctx.tokens.describe(&name).await,
                            t.login_expires_at().format("%Y-%m-%d")
                        ),
                        None,
                    );
                    let refreshable = t.refresh_token.is_some() && !ctx.config.client_id(&name).is_empty();
                    r.line(
                        if refreshable { Verdict::Pass } else { Verdict::Fail },
                        &format!("refresh ({name})"),
                        if refreshable {
                            "a refresh token and a Client ID are there"
                        } else {
                            "tokens cannot be refreshed"
                        },
                        Some(&format!("set spotify.client_id, then {login_fix}")),
                    );
                }
                Err(e) => {
                    r.line(Verdict::Fail, &format!("login ({name})"), &e.to_string(), Some(&login_fix));
                    continue;
                }
            }
            let session = ctx.session(&name);
            let reached = match session.access().await {
                Ok(access) => ctx.client.devices(&access.token).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match reached {
                Ok(list) if list.cut > 0 => r.line(
                    Verdict::Warn,
                    &format!("Spotify API ({name})"),
                    &format!(
                        "answered: {} device(s) online, {} more not read (spotguard reads {} per answer)",
                        list.devices.len(),
                        list.cut + list.skipped,
                        crate::spotify::model::MAX_DEVICES_PER_ANSWER
                    ),
                    Some("no account has that many devices: see `spotguard devices` and sign out everywhere"),
                ),
                Ok(list) if list.skipped > 0 => r.line(
                    Verdict::Warn,
                    &format!("Spotify API ({name})"),
                    &format!(
                        "answered: {} device(s) online, {} more that could not be read",
                        list.devices.len(),
                        list.skipped
                    ),
                    Some("the log names the field; such a device is left out of each poll"),
                ),
                Ok(list) => r.line(
                    Verdict::Pass,
                    &format!("Spotify API ({name})"),
                    &format!("answered: {} device(s) online", list.devices.len()),
                    None,
                ),
                Err(e) => r.line(
                    Verdict::Fail,
                    &format!("Spotify API ({name})"),
                    &e,
                    Some("see the message; `spotguard check` repeats the request"),
                ),
            }
        }
        match Desktop::capabilities().await {
            Ok(caps) => {
                let has = [
                    ("actions", caps.actions),
                    ("body-markup", caps.body_markup),
                    ("body-hyperlinks", caps.body_hyperlinks),
                ]
                .iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ");
                let note =
                    if caps.actions { has } else { format!("{has}; no buttons: alerts cannot be clicked") };
                r.line(Verdict::Pass, "notifications", &format!("a server answers ({note})"), None);
                if self.notify {
                    let (tx, _rx) = mpsc::channel(1);
                    let desktop = Desktop::new(tx, std::time::Duration::from_secs(1));
                    let alert = Alert {
                        summary: "spotguard test notification".into(),
                        body: "If you can read this, spotguard's alerts reach you.".into(),
                        urgency: Urgency::Normal,
                        actions: Vec::new(),
                    };
                    let about =
                        Invoked { event_id: 0, account: String::new(), device: None, action: String::new() };
                    match desktop.show(&alert, about).await {
                        Ok(()) => r.line(Verdict::Pass, "test notification", "sent", None),
                        Err(e) => r.line(Verdict::Fail, "test notification", &e.to_string(), None),
                    }
                }
            }
            Err(DesktopError::NoServer(why)) => r.line(
                Verdict::Warn,
                "notifications",
                &format!("no notification server ({why}): alerts are only logged"),
                Some("run spotguard in a desktop session, or start a notification daemon (dunst, mako)"),
            ),
            Err(e) => r.line(Verdict::Fail, "notifications", &e.to_string(), None),
        }
        let names = crate::config::channels::channel_names(&ctx.config.channels);
        let mut clients = crate::notify::channel::Clients::default();
        for (section, name) in ctx.config.channels.iter().zip(names) {
            let what = format!("channel {name} ({})", section.kind());
            let channel = match crate::notify::channel::build(
                section,
                name,
                &ctx.config,
                ctx.source.path(),
                &mut clients,
            ) {
                Ok(c) => c,
                Err(e) => {
                    r.line(
                        Verdict::Fail,
                        &what,
                        &e.to_string(),
                        Some("see the message; the README has each channel's setup"),
                    );
                    continue;
                }
            };
            match channel.probe().await {
                Ok(ok) => r.line(Verdict::Pass, &what, &ok, None),
                Err(e) => r.line(Verdict::Fail, &what, &e, Some("check the URL, the network and ca_file")),
            }
            if self.notify {
                let msg = crate::notify::channel::Message::test(&crate::notify::channel::Links::from_config(
                    &ctx.config,
                ));
                match channel.send(&msg).await {
                    Ok(()) => {
                        r.line(Verdict::Pass, &format!("test message ({})", channel.name), "delivered", None)
                    }
                    Err(e) => r.line(Verdict::Fail, &format!("test message ({})", channel.name), &e, None),
                }
            }
        }
        if let Some(url) = &ctx.config.health.ping_url {
            // Not pinged: a ping from here would tell the service the daemon is alive.
            r.line(
                Verdict::Pass,
                "heartbeat",
                &format!("configured: {}", crate::config::redact_url(&url.0)),
                None,
            );
        }
        let unit = crate::service::service_path(
            crate::service::Manager::native(),
            &std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default(),
            std::env::var_os("XDG_CONFIG_HOME")
                .map(std::path::PathBuf::from)
                .filter(|p| p.is_absolute())
                .as_deref(),
        );
        if unit.exists() || std::path::Path::new(crate::service::systemd::PACKAGED_UNIT).exists() {
            let shown = if unit.exists() {
                unit.display().to_string()
            } else {
                crate::service::systemd::PACKAGED_UNIT.to_string()
            };
            r.line(Verdict::Pass, "service", &format!("installed at {shown}"), None);
        } else {
            r.line(
                Verdict::Warn,
                "service",
                "not installed: spotguard stops with this terminal",
                Some("spotguard service install"),
            );
        }
        match crate::daemon::lock::holder(&ctx.config.database_path()?) {
            Some(pid) => r.line(
                Verdict::Pass,
                "daemon",
                &pid.map_or("running".to_string(), |p| format!("running (pid {p})")),
                None,
            ),
            None => r.line(
                Verdict::Warn,
                "daemon",
                "not running: nothing is watching now",
                Some("spotguard service install"),
            ),
        }
        Ok(if r.failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    }
}
