//! The `spotguard` command line: parse, call the library, print. Nothing else.
//!
//! One file per subcommand, each with a `Cmd` (its parsed flags, plain data) and a `run`.
//! Commands get their dependencies as arguments; fast commands open only what they need.
//! Everything printed that came from Spotify goes through [`crate::text::terminal`].

mod channels;
mod check;
pub(crate) mod demo;
mod devices;
mod doctor;
#[cfg(feature = "fake")]
mod fake_server;
mod format;
mod history;
mod login;
mod report;
mod run;
mod service;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::context::Context;

/// Exit status of `check` when a device that is not trusted is online.
pub const EXIT_UNTRUSTED: u8 = 3;

/// The version and the commit it was built from: "0.1.0 (commit 1a2b3c4d5e6f)".
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SPOTGUARD_GIT_COMMIT"), ")");

/// Tells you the moment a device you do not know uses your Spotify account.
#[derive(Debug, Parser)]
#[command(name = "spotguard", version = VERSION, propagate_version = true)]
#[command(
    after_help = "Start with `spotguard demo` to see what an alert looks like, no Spotify account needed."
)]
pub struct Cli {
    /// The config file [default: $XDG_CONFIG_HOME/spotguard/config.toml]
    #[arg(long, global = true, env = "SPOTGUARD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the watcher: poll Spotify on the schedule and alert on unknown devices
    #[command(after_help = "Example: spotguard run --config ~/.config/spotguard/config.toml")]
    Run(run::Cmd),
    /// Poll once now and print what is online and what would alert (exit 3: untrusted devices)
    #[command(after_help = "Example: spotguard check --json")]
    Check(check::Cmd),
    /// List the devices seen on the account, or trust or forget one
    #[command(after_help = "Examples:\n  spotguard devices\n  spotguard devices trust \"Kitchen speaker\"")]
    Devices(devices::Cmd),
    /// Show what happened while you were away: alerts, trust, logins, newest first
    #[command(
        after_help = "Examples:\n  spotguard history\n  spotguard history --since 30d --device \"Galaxy S24\" --json"
    )]
    History(history::Cmd),
    /// Write a self-contained HTML page: who was online when, the devices, the events
    #[command(after_help = "Example: spotguard report --html ~/spotguard.html --days 14")]
    Report(report::Cmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Example: spotguard completions bash > ~/.local/share/bash-completion/completions/spotguard"
    )]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Log in to Spotify (OAuth2 with PKCE) so spotguard can watch an account
    #[command(after_help = "Examples:\n  spotguard login\n  spotguard login --account kid --no-browser")]
    Login(login::Cmd),
    /// Delete an account's stored tokens
    #[command(after_help = "Example: spotguard logout --account kid")]
    Logout(login::LogoutCmd),
    /// Check that everything is wired up: config, database, logins, Spotify, notifications, service
    #[command(after_help = "Example: spotguard doctor --notify")]
    Doctor(doctor::Cmd),
    /// Show each account's login and last poll
    #[command(after_help = "Example: spotguard status --json")]
    Status(status::Cmd),
    /// Send a test message through the extra channels (ntfy, webhooks, e-mail)
    #[command(after_help = "Examples:\n  spotguard channels test\n  spotguard channels test ntfy-1")]
    Channels(channels::Cmd),
    /// Install, remove or inspect spotguard as a per-user service (systemd, launchd)
    #[command(after_help = "Examples:\n  spotguard service install\n  spotguard service status")]
    Service(service::Cmd),
    /// Show what spotguard does against a built-in fake Spotify: no account needed
    #[command(after_help = "Example: spotguard demo --step 2")]
    Demo(demo::Cmd),
    /// Serve the fake Spotify Web API on loopback (for benchmarks and scripts)
    #[cfg(feature = "fake")]
    #[command(hide = true)]
    FakeSpotify(fake_server::Cmd),
}

/// Runs the parsed command; the exit code is the caller's to return.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(cmd) => cmd.run().await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "spotguard", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::History(cmd) => cmd.run(context(cli.config)?).await,
        Command::Report(cmd) => cmd.run(context(cli.config)?).await,
        #[cfg(feature = "fake")]
        Command::FakeSpotify(cmd) => cmd.run().await,
        Command::Run(cmd) => {
            // Before the context reads anything secret.
            run::forbid_dumps();
            match context(cli.config) {
                Ok(ctx) => cmd.run(ctx).await,
                Err(e) => Err(run::cannot_start(e).await),
            }
        }
        Command::Check(cmd) => cmd.run(context(cli.config)?).await,
        Command::Devices(cmd) => cmd.run(context(cli.config)?).await,
        Command::Login(cmd) => cmd.run(context(cli.config)?).await,
        Command::Logout(cmd) => cmd.run(context(cli.config)?).await,
        Command::Status(cmd) => cmd.run(context(cli.config)?).await,
        Command::Channels(cmd) => {
            let (config, source) = Config::load(cli.config.as_deref())?;
            cmd.run(config, source).await
        }
        Command::Doctor(cmd) => cmd.run(context(cli.config)?).await,
        Command::Service(cmd) => cmd.run(context(cli.config)?).await,
    }
}

/// The account a command is about: the named one (which must be configured), or the first.
async fn pick_account(ctx: &Context, name: Option<&str>) -> anyhow::Result<crate::daemon::poll::Account> {
    let accounts = ctx.accounts().await?;
    match name {
        None => accounts.into_iter().next().context("no account is configured"),
        Some(n) => accounts.into_iter().find(|a| a.name == n).with_context(|| {
            format!(
                "no account named {:?} in the config; configured: {}",
                crate::text::terminal(n),
                ctx.account_names().join(", ")
            )
        }),
    }
}

/// Loads the configuration and builds the running parts from it.
fn context(config: Option<PathBuf>) -> anyhow::Result<Context> {
    let (config, source) = Config::load(config.as_deref())?;
    Context::build(config, source).context("cannot start")
}
