//! The `spotguard` binary: parse the command line, set up logging, build the runtime, run.
//! Exit codes are decided here and nowhere else.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use spotguard::cli::{self, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    // Multi-thread, because tokio-cron-scheduler hangs on a current-thread runtime; one
    // worker is plenty for a daemon that wakes once a minute (blocking SQLite calls go to the
    // blocking pool).
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spotguard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spotguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. `RUST_LOG` (or `SPOTGUARD_LOG`) filters; the default is `info` for the
/// daemon and `warn` for the interactive commands, whose output is on stdout.
fn init_tracing(cli: &Cli) {
    let default = match cli.command {
        Command::Run(_) => "spotguard=info",
        // The demo narrates on stdout; its daemon's warnings (1 s polls, no server) are staged.
        Command::Demo(_) => "spotguard=error",
        _ => "spotguard=warn",
    };
    let filter = std::env::var("SPOTGUARD_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // Under systemd stderr goes to the journal, which stamps each line itself.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    match (cli.log_format, journal) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Human, true) => builder.with_target(false).without_time().init(),
        (LogFormat::Human, false) => builder.with_target(false).init(),
    }
}
