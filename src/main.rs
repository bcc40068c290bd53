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
    // One thread runs everything async: a daemon that wakes once a minute needs no thread per
    // core. Blocking calls (SQLite, token files) go to a small pool whose threads stay parked
    // between polls (keep-alive past any sensible interval) instead of exiting 10 s after each
    // poll and being made anew for the next: every such exit was a wake-up of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .thread_keep_alive(std::time::Duration::from_secs(15 * 60))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spotguard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        // The reader went away (`spotguard history | head`): nothing is wrong, stop quietly.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
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
