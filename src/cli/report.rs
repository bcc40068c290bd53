//! `spotguard report --html FILE`: the timeline page, written atomically and private (0600,
//! less the umask) with [`crate::fsutil::write_atomic`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;

use crate::context::Context;
use crate::report::{ReportData, render};

#[derive(Debug, clap::Args)]
pub struct Cmd {
    /// Where to write the page
    #[arg(long, value_name = "FILE")]
    html: PathBuf,
    /// How many days the timeline covers
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=400))]
    days: u32,
    /// The account [default: the first configured]
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
}

impl Cmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        let account = super::pick_account(&ctx, self.account.as_deref()).await?;
        let to = Utc::now();
        let from = to - chrono::Duration::days(i64::from(self.days));
        let id = account.id;
        let (devices, presence, events) = ctx
            .store
            .call(move |s| {
                Ok((s.devices(id, false)?, s.presence(id, from, to)?, s.history(from, Some(id), None, 500)?))
            })
            .await?;
        let page = render(&ReportData {
            account: account.name.clone(),
            generated: to,
            from,
            to,
            devices,
            presence,
            events,
        });
        // Private: the page lists the account's devices and when they were used. 0600 less the
        // umask, through a fresh temporary file that a planted link cannot redirect.
        let out = self.html.clone();
        tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&out, page.as_bytes(), 0o600))
            .await
            .context("the writer stopped")?
            .with_context(|| format!("cannot write {}", self.html.display()))?;
        println!("Wrote {} (last {} days of account {}).", self.html.display(), self.days, account.name);
        Ok(ExitCode::SUCCESS)
    }
}
