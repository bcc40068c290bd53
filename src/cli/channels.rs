//! `spotguard channels test [NAME]`: sends a test message through each (or one) channel and
//! says, per channel, delivered or the one-sentence reason. Exit 1 if any failed, 2 for an
//! unknown NAME. Opens no database and asks Spotify nothing.

use std::process::ExitCode;

use crate::config::channels::channel_names;
use crate::config::{Config, Source};
use crate::notify::channel::{Links, Message, build};
use crate::text::terminal;

#[derive(Debug, clap::Args)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Send a test message through every channel, or the one named
    Test {
        /// A channel's name (as `status` shows it, e.g. `ntfy-1`)
        name: Option<String>,
    },
}

/// Exit status for a NAME that no channel has.
const EXIT_UNKNOWN_NAME: u8 = 2;

impl Cmd {
    pub async fn run(self, config: Config, source: Source) -> anyhow::Result<ExitCode> {
        let Action::Test { name } = self.action;
        let names = channel_names(&config.channels);
        if let Some(n) = &name
            && !names.contains(n)
        {
            eprintln!(
                "spotguard: no channel named {:?}; configured: {}",
                terminal(n),
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            );
            return Ok(ExitCode::from(EXIT_UNKNOWN_NAME));
        }
        if names.is_empty() {
            println!("no [[channels]] are configured in {}", source.path().display());
            return Ok(ExitCode::SUCCESS);
        }
        let links = Links::from_config(&config);
        let msg = Message::test(&links);
        let mut failed = false;
        let mut clients = crate::notify::channel::Clients::default();
        for (section, n) in config.channels.iter().zip(names) {
            if name.as_ref().is_some_and(|want| *want != n) {
                continue;
            }
            let outcome = match build(section, n.clone(), &config, source.path(), &mut clients) {
                Ok(channel) => channel.send(&msg).await,
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => println!("{n} ({}, {}): delivered", section.kind(), section.shown_target()),
                Err(why) => {
                    failed = true;
                    println!(
                        "{n} ({}, {}): FAILED: {}",
                        section.kind(),
                        section.shown_target(),
                        terminal(&why)
                    );
                }
            }
        }
        Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    }
}
