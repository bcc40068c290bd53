//! `spotguard demo`: the real daemon against a stand-in for Spotify, in a short story.
//!
//! For someone with no Spotify app registered yet. Everything is real but Spotify: the
//! daemon, its schedule, a temporary SQLite database, and the desktop notification (or a
//! plain word that no notification server is running). Two trusted devices are online, then
//! a device nobody knows appears, then it starts playing. Nothing outside a temp dir is
//! touched, and the fake listens on loopback only.

pub(crate) mod stand_in;

use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use crate::auth::{Secret, TokenSet};
use crate::config::{BaseUrl, Config, HumanDuration, Source, TokenStoreKind};
use crate::context::Context;
use crate::daemon::{self, Control, poll};
use crate::event::TrustedBy;
use crate::notify::{Desktop, DesktopError};
use crate::text::terminal;
use stand_in::{StandIn, device, playing};

#[derive(Debug, clap::Args)]
pub struct Cmd {
    /// Seconds between the story's steps
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=60))]
    step: u64,
}

const TOKEN: &str = "demo-access-token";

impl Cmd {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let step = Duration::from_secs(self.step);
        let dir = tempfile::Builder::new().prefix("spotguard-demo-").tempdir()?;
        let spotify = StandIn::start(TOKEN).await?;

        let mut config = Config::default();
        config.spotify.api_base = BaseUrl(spotify.api_base());
        config.storage.database = Some(dir.path().join("spotguard.db"));
        config.schedule.every = Some(HumanDuration(Duration::from_secs(1)));
        // Never the OS secret store: the demo's token must not replace a real login.
        config.auth.token_store = TokenStoreKind::File;
        let ctx = Context::build(config, Source::Defaults(dir.path().join("config.toml")))?;
        ctx.tokens
            .save("default", &TokenSet::new_login(Secret::new(TOKEN), None, chrono::Duration::hours(1)))
            .await?;

        println!("spotguard demo: the real watcher against a fake Spotify on {}", spotify.addr());
        match Desktop::capabilities().await {
            Ok(_) => println!("Alerts will appear as desktop notifications."),
            Err(DesktopError::NoServer(_)) => {
                println!(
                    "No desktop notification server is running here, so the alerts are listed at the end instead."
                )
            }
            Err(e) => println!(
                "The desktop notification server is not answering ({e}); the alerts are listed at the end."
            ),
        }

        // Before the story: the person's own laptop and phone, already reviewed and trusted.
        let laptop = device("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "My laptop", "Computer", false);
        let phone = device("0f9e8d7c6b5a49382716fedcba9876543210abcd", "My phone", "Smartphone", false);
        spotify.set_devices(vec![laptop.clone(), phone.clone()]);
        seed_trusted(&ctx).await?;

        let story_start = Utc::now();
        let (control, controlled) = mpsc::channel(1);
        let daemon = tokio::spawn(daemon::run(ctx.clone(), controlled));

        println!("\n1. Your laptop and phone are online. Both are trusted: no alert.");
        tokio::time::sleep(step).await;
        let intruder = device("5e1ec7ed0000111122223333444455556666777", "Galaxy S24", "Smartphone", false);
        spotify.set_devices(vec![laptop.clone(), phone.clone(), intruder.clone()]);
        println!("2. A device you have never seen signs in to your account: \u{201c}Galaxy S24\u{201d}.");
        tokio::time::sleep(step).await;
        let active = device("5e1ec7ed0000111122223333444455556666777", "Galaxy S24", "Smartphone", true);
        spotify.set_devices(vec![laptop, phone, active.clone()]);
        spotify.set_playback(Some(playing(active, "Blinding Lights", "The Weeknd")));
        println!("3. It starts playing music on your account.");
        tokio::time::sleep(step).await;

        let _ = control.send(Control::Shutdown).await;
        daemon.await??;

        let accounts = ctx.accounts().await?;
        let account = accounts[0].id;
        let events = ctx.store.call(move |s| s.recent_events(account, 20)).await?;
        println!("\nWhat spotguard recorded (newest first):");
        let alerts =
            events.iter().filter(|e| e.at >= story_start && e.event.urgency() > crate::event::Urgency::Quiet);
        for e in alerts {
            println!(
                "  {}  {}",
                e.at.with_timezone(&chrono::Local).format("%H:%M:%S"),
                terminal(&e.event.describe())
            );
        }
        println!("\nDevices on record:");
        let rows = ctx.store.call(move |s| s.devices(account, false)).await?;
        super::devices::print_table(&rows, "default");
        println!(
            "\nEach alert links to Spotify's \u{201c}Sign out everywhere\u{201d} page ({}).\n\
             Spotify has no API to sign a device out: spotguard tells you, and takes you there.\n\
             To watch your own account, see README.md (register an app, then `spotguard run`).",
            ctx.config.alerts.sign_out_url.as_str()
        );
        spotify.stop();
        Ok(ExitCode::SUCCESS)
    }
}

/// One quiet poll that records the two devices, which the person then trusts.
async fn seed_trusted(ctx: &Context) -> anyhow::Result<()> {
    let account = ctx.accounts().await?.remove(0);
    let policy = poll::policy(&ctx.config, &account.name);
    let session = ctx.session(&account.name);
    poll::poll_once(&ctx.client, &session, &ctx.store, &policy, &account, crate::store::Recording::Record)
        .await?;
    let id = account.id;
    ctx.store
        .call(move |s| {
            for d in s.devices(id, false)? {
                s.trust(d.key, TrustedBy::Cli, Utc::now())?;
            }
            // Their first-sight alerts belong to before the story: not shown.
            for e in s.undelivered(100)? {
                s.mark_delivered(e.id, Utc::now())?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}
