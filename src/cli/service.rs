//! `spotguard service install|uninstall|status`: run spotguard as a per-user service.
//!
//! On Linux, install writes the user unit (or uses the one a package installed), probes
//! which sandbox profile starts on this host with a transient unit running `service
//! self-check`, enables and starts the unit, and waits until systemd says it is running or
//! why it is not. A failed start is reported with systemd's own words (state, exit status,
//! the journal's last lines), never with a guess.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::config::Source;
use crate::context::Context;
use crate::service::systemd::{self, Profile, UnitState, Verdict};
use crate::service::{self, Manager, Paths, Steps};

/// How long install waits for the unit to report READY (or fail) after starting it.
const START_WAIT: Duration = Duration::from_secs(15);

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
        /// Print the files and the commands instead of writing and running them
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
    /// Check that spotguard can start here: load the config and open the database (what
    /// `service install` runs inside the sandbox it probes)
    #[command(hide = true)]
    SelfCheck,
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
                let target = target(&ctx)?;
                match env.manager {
                    Manager::Systemd => return install_systemd(&env, &target, dry_run).await,
                    Manager::Launchd => {
                        let plan = service::launchd_install(&env.home, &target, env.uid)?;
                        if dry_run {
                            show(&plan);
                            return Ok(ExitCode::SUCCESS);
                        }
                        apply_launchd(&plan).await?;
                        println!(
                            "Installed and started spotguard as a launchd agent: {}",
                            plan.path.display()
                        );
                    }
                }
            }
            Action::Uninstall { dry_run } => {
                let data = ctx.config.database_path()?.parent().unwrap_or(Path::new(".")).to_path_buf();
                match env.manager {
                    Manager::Systemd => return uninstall_systemd(&env, &data, dry_run).await,
                    Manager::Launchd => {
                        let plan = service::launchd_uninstall(&env.home, env.uid);
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
                        apply_launchd(&plan).await?;
                        println!("Removed the spotguard service. Its data stays in {}.", data.display());
                    }
                }
            }
            Action::Status => status(&ctx, &env).await?,
            Action::SelfCheck => {
                // Building the context loaded the config and opened (created, migrated) the
                // database: what the daemon needs before anything else.
                println!(
                    "spotguard can start here: config read, database {} open",
                    ctx.config.database_path()?.display()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// What the service runs, from the running binary and the loaded configuration.
fn target(ctx: &Context) -> anyhow::Result<Paths> {
    let database = ctx.config.database_path()?;
    let config = match &ctx.source {
        Source::File(p) => Some(absolute(p)?),
        Source::Defaults(_) => None,
    };
    let config_dir = match &config {
        Some(c) => c.parent().unwrap_or(Path::new("/")).to_path_buf(),
        None => crate::config::default_config_path()?.parent().unwrap_or(Path::new("/")).to_path_buf(),
    };
    Ok(Paths {
        binary: std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .context("cannot tell where the spotguard binary is")?,
        config,
        config_dir,
        data_dir: absolute(database.parent().unwrap_or(Path::new(".")))?,
    })
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

/// The paths of the user's unit, its drop-ins, and whether a package's unit is used instead.
struct Files {
    user_unit: PathBuf,
    dropins: PathBuf,
    packaged: bool,
}

impl Files {
    fn new(env: &Env, target: Option<&Paths>) -> anyhow::Result<Files> {
        let unit_dir = service::unit_dir(&env.home, env.xdg_config.as_deref());
        let packaged = Path::new(systemd::PACKAGED_UNIT).exists()
            && match target {
                Some(t) => {
                    let default_dir = crate::config::default_config_path()?;
                    systemd::packaged_fits(t, &env.home, default_dir.parent().unwrap_or(Path::new("/")))
                }
                None => true,
            };
        Ok(Files {
            user_unit: unit_dir.join(systemd::UNIT),
            dropins: systemd::dropin_dir(&unit_dir),
            packaged,
        })
    }

    fn profile(&self) -> PathBuf {
        self.dropins.join(systemd::PROFILE_DROPIN)
    }

    fn session(&self) -> PathBuf {
        self.dropins.join(systemd::SESSION_DROPIN)
    }
}

fn session_vars() -> Vec<(&'static str, String)> {
    systemd::DISPLAY_VARS.iter().map(|v| (*v, std::env::var(v).unwrap_or_default())).collect()
}

fn self_check_command(target: &Paths) -> Vec<String> {
    let mut cmd = vec![target.binary.display().to_string()];
    if let Some(c) = &target.config {
        cmd.push("--config".into());
        cmd.push(c.display().to_string());
    }
    cmd.extend(["service".to_string(), "self-check".to_string()]);
    cmd
}

async fn install_systemd(env: &Env, target: &Paths, dry_run: bool) -> anyhow::Result<ExitCode> {
    let files = Files::new(env, Some(target))?;
    // The probe always runs the settings with real paths: transient units get no specifiers.
    let rendered = systemd::render(target)?;
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", env.uid)));
    let full = systemd::sandbox_settings(&rendered, &runtime_dir);
    let reduced = systemd::reduced_settings(&full);
    let check = self_check_command(target);
    let session = systemd::session_dropin(&session_vars());

    if dry_run {
        if files.packaged {
            println!("Would use the packaged unit {} (no copy in your home)", systemd::PACKAGED_UNIT);
        } else {
            println!("Would write {}:\n{rendered}", files.user_unit.display());
        }
        if let Some(s) = &session {
            println!("Would write {}:\n{s}", files.session().display());
        }
        println!("Would run:");
        println!("  systemctl --user daemon-reload");
        println!("  {}", systemd::probe_command(Profile::Full, &full, &check).join(" "));
        println!(
            "If the full sandbox does not start, would write {} and run:\n{}",
            files.profile().display(),
            systemd::reduced_dropin("(systemd's reason)")
        );
        println!("  {}", systemd::probe_command(Profile::Reduced, &reduced, &check).join(" "));
        println!("  systemctl --user daemon-reload");
        println!("  systemctl --user enable {}", systemd::UNIT);
        println!("  systemctl --user restart {}", systemd::UNIT);
        return Ok(ExitCode::SUCCESS);
    }

    // The data dir is bound into the sandbox, so it must exist before the unit starts (the
    // daemon would otherwise write into the empty tmpfs home and lose it on exit).
    create_private_dir(&target.data_dir)?;
    if files.packaged {
        if files.user_unit.exists() {
            remove(&files.user_unit)?;
            println!("Removed {}: the packaged unit is used instead.", files.user_unit.display());
        }
    } else {
        write(&files.user_unit, &rendered)?;
    }
    match &session {
        Some(text) => write(&files.session(), text)?,
        None => remove_if_exists(&files.session())?,
    }
    systemctl(&["daemon-reload"]).await?;

    let profile = match probe(Profile::Full, &full, &check).await {
        Ok(()) => {
            remove_if_exists(&files.profile())?;
            Profile::Full
        }
        Err(why) => {
            if let Err(why_reduced) = probe(Profile::Reduced, &reduced, &check).await {
                bail!(
                    "spotguard cannot start as a service here: the full sandbox failed ({why}) and so did the \
                     reduced one ({why_reduced}); run `spotguard run` in a terminal to see why"
                );
            }
            println!("The full sandbox does not start on this host ({why}); using the reduced profile.");
            write(&files.profile(), &systemd::reduced_dropin(&why))?;
            Profile::Reduced
        }
    };
    systemctl(&["daemon-reload"]).await?;
    systemctl(&["enable", systemd::UNIT]).await?;
    // A unit that hit its start limit before would refuse to start again.
    let _ = run_command(&["systemctl", "--user", "reset-failed", systemd::UNIT]).await;
    // On a reinstall the old run is still active for a moment after the restart is queued:
    // only the new run's state counts.
    let before = show_state().await?.invocation;
    systemctl(&["restart", "--no-block", systemd::UNIT]).await?;

    let state = wait_for_start(&before).await?;
    let unit_shown =
        if files.packaged { PathBuf::from(systemd::PACKAGED_UNIT) } else { files.user_unit.clone() };
    match state.verdict() {
        Verdict::Running => {
            println!("Installed and started spotguard as a user service: {}", unit_shown.display());
            println!("Sandbox: {} ({}).", profile.name(), profile.describe());
            if !state.status_text.is_empty() {
                println!("Status: {}", crate::text::terminal(&state.status_text));
            }
            println!(
                "A user service stops when you log out. To keep it running without a login (alerts are \
                 then only logged): loginctl enable-linger $USER"
            );
            println!("Logs: journalctl --user -u spotguard -f");
            Ok(ExitCode::SUCCESS)
        }
        verdict => {
            let what = if verdict == Verdict::Starting {
                format!("spotguard was installed but did not report ready within {}s", START_WAIT.as_secs())
            } else {
                "spotguard was installed but did not start".to_string()
            };
            eprintln!("{what}: {}.", state.describe());
            explain_failure().await;
            eprintln!(
                "What to do: run `spotguard run` in a terminal to see the error, fix it, then `spotguard \
                 service install` again (or `spotguard service uninstall`). The unit file is {}.",
                unit_shown.display()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Starts the self-check under `settings` in a transient unit; the reason when it does not run.
async fn probe(profile: Profile, settings: &[String], check: &[String]) -> Result<(), String> {
    let cmd = systemd::probe_command(profile, settings, check);
    let words: Vec<&str> = cmd.iter().map(String::as_str).collect();
    match run_command(&words).await {
        Ok(_) => Ok(()),
        Err(Failure::Ran { code, stderr, .. }) => {
            let mut why = systemd::probe_failure(code, &stderr);
            // The failed probe is still loaded: its own exit status says more than
            // systemd-run's "Job ... failed" on older systemd. Then it is cleared away.
            let unit = systemd::probe_unit(profile);
            if let Ok(out) =
                run_command(&["systemctl", "--user", "show", "-p", systemd::SHOW_PROPERTIES, &unit]).await
                && let Some(status) = UnitState::parse(&out).exit_status()
                && !why.starts_with(&status)
            {
                why = format!("{status}; {why}");
            }
            let _ = run_command(&["systemctl", "--user", "reset-failed", &unit]).await;
            Err(crate::text::terminal(&why))
        }
        Err(Failure::NotRun(e)) => Err(format!("cannot run systemd-run: {e}")),
    }
}

/// Polls the unit's state until a run other than `before` runs or fails, or [`START_WAIT`]
/// passes.
async fn wait_for_start(before: &str) -> anyhow::Result<UnitState> {
    let started = Instant::now();
    loop {
        let state = show_state().await?;
        let new_run = before.is_empty() || state.invocation != before;
        let verdict = state.verdict();
        if new_run && verdict != Verdict::Starting {
            return Ok(state);
        }
        if started.elapsed() >= START_WAIT {
            // Still the old run, or still starting: not ready.
            return Ok(UnitState { active: "activating".into(), sub: "start".into(), ..state });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn show_state() -> anyhow::Result<UnitState> {
    let out = systemctl(&["show", "-p", systemd::SHOW_PROPERTIES, systemd::UNIT]).await?;
    Ok(UnitState::parse(&out))
}

/// systemd's own account of a failed start: the status line and the journal's last lines.
async fn explain_failure() {
    if let Ok(out) = run_command(&["systemctl", "--user", "status", "--no-pager", "--lines=0", systemd::UNIT])
        .await
        .or_else(|f| match f {
            Failure::Ran { stdout, .. } => Ok(stdout),
            Failure::NotRun(_) => Err(()),
        })
    {
        for line in
            out.lines().filter(|l| l.contains("Active:") || l.contains("Process:") || l.contains("Main PID:"))
        {
            eprintln!("  {}", crate::text::terminal(line.trim()));
        }
    }
    let journal =
        run_command(&["journalctl", "--user", "-u", systemd::UNIT, "-n", "12", "--no-pager", "-o", "cat"])
            .await
            .unwrap_or_default();
    if journal.trim().is_empty() {
        eprintln!(
            "  (the user journal has no lines for spotguard; `journalctl --user -u spotguard` may need persistent journal storage)"
        );
    } else {
        eprintln!("Last journal lines:");
        for line in journal.lines() {
            eprintln!("  {}", crate::text::terminal(line));
        }
    }
}

async fn uninstall_systemd(env: &Env, data: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let files = Files::new(env, None)?;
    let ours: Vec<PathBuf> = [files.user_unit.clone(), files.profile(), files.session()]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    if dry_run {
        for p in &ours {
            println!("Would remove {}", p.display());
        }
        println!(
            "Would run:\n  systemctl --user disable --now {}\n  systemctl --user daemon-reload",
            systemd::UNIT
        );
        return Ok(ExitCode::SUCCESS);
    }
    if ours.is_empty() && !files.packaged {
        println!("spotguard is not installed as a service ({} does not exist).", files.user_unit.display());
        return Ok(ExitCode::SUCCESS);
    }
    // Stop and disable first, while the unit still exists; a unit that is not loaded is fine.
    if let Err(Failure::Ran { stderr, .. }) =
        run_command(&["systemctl", "--user", "disable", "--now", systemd::UNIT]).await
        && systemd::no_user_bus(&stderr)
    {
        bail!(no_bus_sentence(
            &format!("systemctl --user disable --now {}", systemd::UNIT),
            &stderr,
            &files.user_unit
        ));
    }
    // A unit that had failed would otherwise stay listed as failed after it is gone.
    let _ = run_command(&["systemctl", "--user", "reset-failed", systemd::UNIT]).await;
    for p in &ours {
        remove(p)?;
    }
    let _ = std::fs::remove_dir(&files.dropins);
    systemctl(&["daemon-reload"]).await?;
    println!("Removed the spotguard service. Its data stays in {}.", data.display());
    Ok(ExitCode::SUCCESS)
}

/// Installed? Enabled? Running, and in which sandbox? And what the database says of the last polls.
async fn status(ctx: &Context, env: &Env) -> anyhow::Result<()> {
    match env.manager {
        Manager::Systemd => {
            let files = Files::new(env, None)?;
            let unit = if files.user_unit.exists() {
                format!("{} (installed)", files.user_unit.display())
            } else if files.packaged {
                format!("{} (from the package)", systemd::PACKAGED_UNIT)
            } else {
                format!("{} (not installed: `spotguard service install`)", files.user_unit.display())
            };
            println!("service file: {unit}");
            let enabled = match run_command(&["systemctl", "--user", "is-enabled", systemd::UNIT]).await {
                Ok(out) => out.trim().to_string(),
                Err(Failure::Ran { stdout, .. }) if !stdout.trim().is_empty() => stdout.trim().to_string(),
                Err(Failure::Ran { stderr, .. }) => format!("unknown ({})", first_line(&stderr)),
                Err(Failure::NotRun(e)) => format!("unknown (cannot run systemctl: {e})"),
            };
            println!("enabled: {}", crate::text::terminal(&enabled));
            match show_state().await {
                Ok(state) => println!("state: {}", crate::text::terminal(&state.describe())),
                Err(e) => println!("state: unknown ({e:#})"),
            }
            let profile = files.profile();
            if profile.exists() {
                let why = std::fs::read_to_string(&profile)
                    .ok()
                    .and_then(|t| t.lines().find_map(|l| l.strip_prefix("# Why: ").map(str::to_string)))
                    .unwrap_or_default();
                println!(
                    "sandbox: reduced ({}); the full sandbox did not start: {}",
                    profile.display(),
                    crate::text::terminal(&why)
                );
            } else if files.user_unit.exists() || files.packaged {
                println!("sandbox: full ({})", Profile::Full.describe());
            }
        }
        Manager::Launchd => {
            let path = service::service_path(env.manager, &env.home, None);
            println!(
                "service file: {} ({})",
                path.display(),
                if path.exists() { "installed" } else { "not installed: `spotguard service install`" }
            );
        }
    }
    for a in ctx.store.call(|s| s.account_status()).await? {
        let last = a.last_poll_at.map_or("never".to_string(), |t| super::format::ago(t, chrono::Utc::now()));
        println!("account {}: last poll {last}", a.name);
    }
    Ok(())
}

fn show(plan: &Steps) {
    match &plan.contents {
        Some(text) => println!("Would write {}:\n{text}", plan.path.display()),
        None => println!("Would remove {}", plan.path.display()),
    }
    println!("Would run:");
    for c in &plan.commands {
        println!("  {}", c.join(" "));
    }
}

/// Writes or removes the agent, in the order that keeps launchd consistent, and runs the commands.
async fn apply_launchd(plan: &Steps) -> anyhow::Result<()> {
    match &plan.contents {
        Some(text) => {
            write(&plan.path, text)?;
            for (i, c) in plan.commands.iter().enumerate() {
                let words: Vec<&str> = c.iter().map(String::as_str).collect();
                match run_command(&words).await {
                    Ok(_) => {}
                    // The first command boots out an older copy; it fails when there is none.
                    Err(_) if i == 0 => {}
                    Err(f) => bail!("`{}` failed ({})", c.join(" "), f.sentence()),
                }
            }
        }
        None => {
            for c in &plan.commands {
                let words: Vec<&str> = c.iter().map(String::as_str).collect();
                let _ = run_command(&words).await;
            }
            remove(&plan.path)?;
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn remove(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))
}

fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Why a command did not succeed.
enum Failure {
    /// It ran and exited non-zero (`None`: killed by a signal). systemctl answers on stdout
    /// with a non-zero status too (`status` of a failed unit exits 3, `is-enabled` of a
    /// disabled one 1).
    Ran { code: Option<i32>, stdout: String, stderr: String },
    /// It could not be started.
    NotRun(std::io::Error),
}

impl Failure {
    fn sentence(&self) -> String {
        match self {
            Failure::Ran { code, stderr, .. } => {
                let line = first_line(stderr);
                match code {
                    Some(c) if line.is_empty() => format!("exit status {c}"),
                    Some(c) => format!("exit status {c}: {line}"),
                    None => format!("killed: {line}"),
                }
            }
            Failure::NotRun(e) => e.to_string(),
        }
    }
}

/// The first line of stderr that is not systemd's note of a symlink it made: `enable` reports
/// success on stderr ("Created symlink ..."), so that line is never the reason.
fn first_line(stderr: &str) -> String {
    crate::text::terminal(
        stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("Created symlink") && !l.starts_with("Removed "))
            .unwrap_or(""),
    )
}

/// Runs a command; its stdout on success.
async fn run_command(words: &[&str]) -> Result<String, Failure> {
    let (program, args) = words.split_first().expect("a command has a program");
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(Failure::NotRun)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Failure::Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// `systemctl --user ARGS`, its stdout; a failure as one sentence, with the session-bus advice
/// only when the user manager could not be reached at all.
async fn systemctl(args: &[&str]) -> anyhow::Result<String> {
    let mut words = vec!["systemctl", "--user"];
    words.extend_from_slice(args);
    match run_command(&words).await {
        Ok(out) => Ok(out),
        Err(Failure::Ran { stderr, .. }) if systemd::no_user_bus(&stderr) => {
            bail!(no_bus_sentence(&words.join(" "), &stderr, Path::new("~/.config/systemd/user")))
        }
        Err(f) => bail!("`{}` failed ({})", words.join(" "), f.sentence()),
    }
}

fn no_bus_sentence(command: &str, stderr: &str, file: &Path) -> String {
    format!(
        "`{command}` cannot reach your user's service manager ({}); the service files are in {}. Without a \
         user session bus (ssh without a login session, su, containers) systemctl --user cannot work: run \
         `spotguard service install` from your desktop session, or after `loginctl enable-linger $USER` \
         with XDG_RUNTIME_DIR=/run/user/$(id -u)",
        first_line(stderr),
        file.parent().unwrap_or(file).display()
    )
}
