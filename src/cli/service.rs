//! `spotguard service install|uninstall|status`: run spotguard as a per-user service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::config::Source;
use crate::daemon::Context;
use crate::service::{self, Manager, Plan, Target};

#[derive(Debug, clap::Args)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Write the service file, then enable and start it
    #[command(after_help = "Example: spotguard service install --dry-run")]
    Install {
        /// Print the file and the commands instead of writing and running them
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop, disable and remove the service (the data stays)
    #[command(after_help = "Example: spotguard service uninstall --dry-run")]
    Uninstall {
        /// Print what would be removed and run instead
        #[arg(long)]
        dry_run: bool,
    },
    /// Say whether the service is installed, enabled and running, and when it last polled
    #[command(after_help = "Example: spotguard service status")]
    Status,
}

struct Env {
    manager: Manager,
    home: PathBuf,
    xdg_config: Option<PathBuf>,
    uid: u32,
}

fn env() -> anyhow::Result<Env> {
    let home = std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set")?;
    let xdg_config = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    #[cfg(unix)]
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&home).map(|m| m.uid()).unwrap_or(0)
    };
    #[cfg(not(unix))]
    let uid = 0;
    Ok(Env { manager: Manager::native(), home, xdg_config, uid })
}

impl Cmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        let env = env()?;
        match self.action {
            Action::Install { dry_run } => {
                let database = ctx.config.database_path()?;
                let target = Target {
                    binary: std::env::current_exe()
                        .and_then(|p| p.canonicalize())
                        .context("cannot tell where the spotguard binary is")?,
                    config: match &ctx.source {
                        Source::File(p) => Some(absolute(p)?),
                        Source::Defaults(_) => None,
                    },
                    data_dir: absolute(database.parent().unwrap_or(Path::new(".")))?,
                };
                let plan =
                    service::install(env.manager, &env.home, env.xdg_config.as_deref(), &target, env.uid);
                if dry_run {
                    show(&plan);
                    return Ok(ExitCode::SUCCESS);
                }
                apply(&plan, env.manager).await?;
                println!("Installed and started spotguard as a user service: {}", plan.path.display());
                if env.manager == Manager::Systemd {
                    println!(
                        "A user service stops when you log out. To keep it running without a login (alerts are \
                         then only logged): loginctl enable-linger $USER"
                    );
                    println!("Logs: journalctl --user -u spotguard -f");
                }
            }
            Action::Uninstall { dry_run } => {
                let plan = service::uninstall(env.manager, &env.home, env.xdg_config.as_deref(), env.uid);
                if dry_run {
                    show(&plan);
                    return Ok(ExitCode::SUCCESS);
                }
                if !plan.path.exists() {
                    println!(
                        "spotguard is not installed as a service ({} does not exist).",
                        plan.path.display()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                apply(&plan, env.manager).await?;
                println!(
                    "Removed the spotguard service. Its data stays in {}.",
                    ctx.config.database_path()?.parent().unwrap_or(Path::new(".")).display()
                );
            }
            Action::Status => status(&ctx, &env).await?,
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

fn show(plan: &Plan) {
    match &plan.contents {
        Some(text) => println!("Would write {}:\n{text}", plan.path.display()),
        None => println!("Would remove {}", plan.path.display()),
    }
    println!("Would run:");
    for c in &plan.commands {
        println!("  {}", c.join(" "));
    }
}

/// Writes or removes the file, in the order that keeps the manager consistent, and runs
/// the commands.
async fn apply(plan: &Plan, manager: Manager) -> anyhow::Result<()> {
    match &plan.contents {
        Some(text) => {
            if let Some(dir) = plan.path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(&plan.path, text)
                .with_context(|| format!("cannot write {}", plan.path.display()))?;
            for (i, c) in plan.commands.iter().enumerate() {
                // launchd's first command boots out an older copy; it fails when there is none.
                let may_fail = manager == Manager::Launchd && i == 0;
                run(c, &plan.path, may_fail).await?;
            }
        }
        None => {
            // Stop and disable first, while the unit still exists.
            if let Some((first, rest)) = plan.commands.split_first() {
                run(first, &plan.path, true).await?;
                std::fs::remove_file(&plan.path)
                    .with_context(|| format!("cannot remove {}", plan.path.display()))?;
                for c in rest {
                    run(c, &plan.path, false).await?;
                }
            }
        }
    }
    Ok(())
}

async fn run(words: &[String], file: &Path, may_fail: bool) -> anyhow::Result<()> {
    let Some((program, args)) = words.split_first() else { return Ok(()) };
    let out = tokio::process::Command::new(program).args(args).output().await;
    let failure = match out {
        Ok(o) if o.status.success() => return Ok(()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("no message").to_string(),
        Err(e) => e.to_string(),
    };
    if may_fail {
        tracing::debug!("{} failed: {failure}", words.join(" "));
        return Ok(());
    }
    bail!(
        "`{}` failed ({}); the service file is at {}. Without a user session bus (ssh, containers) \
         systemctl --user cannot work: run `systemctl --user daemon-reload && systemctl --user enable --now \
         spotguard` from your desktop session",
        words.join(" "),
        crate::text::terminal(&failure),
        file.display()
    )
}

/// Installed? Enabled? Running? And what the database says of the last polls.
async fn status(ctx: &Context, env: &Env) -> anyhow::Result<()> {
    let path = service::service_path(env.manager, &env.home, env.xdg_config.as_deref());
    println!(
        "service file: {} ({})",
        path.display(),
        if path.exists() { "installed" } else { "not installed: `spotguard service install`" }
    );
    if env.manager == Manager::Systemd {
        for what in ["is-enabled", "is-active"] {
            let out = tokio::process::Command::new("systemctl")
                .args(["--user", what, service::SYSTEMD_UNIT])
                .output()
                .await;
            let answer = match out {
                Ok(o) if !o.stdout.is_empty() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
                Ok(o) => {
                    format!("unknown ({})", String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or(""))
                }
                Err(e) => format!("unknown (cannot run systemctl: {e})"),
            };
            println!("{}: {}", what.trim_start_matches("is-"), crate::text::terminal(&answer));
        }
    }
    for a in ctx.store.call(|s| s.account_status()).await? {
        let last = a.last_poll_at.map_or("never".to_string(), |t| super::format::ago(t, chrono::Utc::now()));
        println!("account {}: last poll {last}", a.name);
    }
    Ok(())
}
