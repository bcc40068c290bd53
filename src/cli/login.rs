//! `spotguard login` and `spotguard logout`: authorise spotguard for an account, or forget it.
//!
//! A login is for the Spotify user the account already watches: when `/me` names another one,
//! nothing is saved unless `--switch-user` says that is intended.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use chrono::Utc;

use crate::auth::login::Callback;
use crate::auth::oauth::TokenError;
use crate::context::Context;
use crate::notify::opener;
use crate::text::terminal;

#[derive(Debug, clap::Args)]
pub struct Cmd {
    /// The account to log in [default: the first configured]
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// Print the login URL instead of opening a browser
    #[arg(long)]
    no_browser: bool,
    /// How long to wait for Spotify's answer
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Accept a different Spotify user than the one this account watched until now (its
    /// device history then continues under the new user; a new [[accounts]] entry keeps them
    /// apart)
    #[arg(long)]
    switch_user: bool,
}

impl Cmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        let account = super::pick_account(&ctx, self.account.as_deref()).await?;
        let oauth = ctx.oauth(&account.name)?.ok_or_else(|| {
            anyhow!(
                "set spotify.client_id in {} to your Spotify app's Client ID (from \
                 https://developer.spotify.com/dashboard; no client secret is needed)",
                ctx.source.path().display()
            )
        })?;
        let callback = Callback::bind(ctx.config.spotify.redirect_uri.as_str()).await?;
        let auth = oauth.authorize();
        println!("Log in to Spotify to let spotguard watch account {}.", account.name);
        let opened = !self.no_browser && opener::open(&ctx.config.alerts.opener, &auth.url).await;
        if opened {
            println!("Your browser should now show Spotify's login page. If it does not, open:");
        } else {
            println!("Open this URL in a browser:");
        }
        // A line of its own: scripts and tests read it.
        println!("{}", auth.url);
        let code = callback.wait(&auth.state, self.timeout).await?;
        let tokens = oauth.exchange(code, auth).await.map_err(|e| match e {
            TokenError::Revoked => anyhow!(
                "Spotify refused the authorization code (it expired or was already used); run `spotguard login` again"
            ),
            e => anyhow!(e),
        })?;
        let user =
            ctx.client.me(&tokens.access_token).await.context("logged in, but cannot read the account")?;
        let label = match user.display_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => format!("\u{201c}{}\u{201d} ({})", terminal(name), terminal(&user.id)),
            None => terminal(&user.id),
        };
        // Whoever completes the login decides whose tokens these are: a code from another
        // person's login (a forged callback, a shared browser) must not quietly make this
        // account's history theirs. Checked before anything is saved.
        let id = account.id;
        let watched = ctx.store.call(move |s| s.spotify_user(id)).await?;
        if let Some(watched) = watched.filter(|w| *w != user.id) {
            if !self.switch_user {
                bail!(
                    "this login is Spotify user {label}, but account {} watches Spotify user {}: nothing was \
                     stored; log in as {} (log out of Spotify in the browser first), or pass --switch-user \
                     if this account should watch {label} from now on",
                    account.name,
                    terminal(&watched),
                    terminal(&watched)
                );
            }
            println!(
                "Switching account {} from Spotify user {} to {label}: its device history continues under the \
                 new user.",
                account.name,
                terminal(&watched)
            );
        }
        {
            // Under the token lock: a refresh of the old login in flight elsewhere finishes
            // first instead of overwriting this login with its save.
            let _lock = ctx.tokens.lock(&account.name).await?;
            ctx.tokens.save(&account.name, &tokens).await?;
        }
        let (id, user_id, authorized_at) = (account.id, user.id.clone(), tokens.authorized_at);
        ctx.store.call(move |s| s.record_login(id, Utc::now(), &user_id, authorized_at)).await?;
        println!(
            "Logged in: spotguard now watches Spotify user {label} as account {}; tokens are kept in {}. \
             Spotify ends this login on {}: run `spotguard login` again before then.",
            account.name,
            ctx.tokens.describe(&account.name).await,
            tokens.login_expires_at().with_timezone(&chrono::Local).format("%Y-%m-%d")
        );
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct LogoutCmd {
    /// The account to log out [default: the first configured]
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
}

impl LogoutCmd {
    pub async fn run(self, ctx: Context) -> anyhow::Result<ExitCode> {
        let account = super::pick_account(&ctx, self.account.as_deref()).await?;
        // Under the token lock, so a refresh in flight cannot write the tokens back.
        let removed = {
            let _lock = ctx.tokens.lock(&account.name).await?;
            ctx.tokens.remove(&account.name).await?
        };
        if removed {
            println!("Removed the stored tokens of account {}.", account.name);
        } else {
            println!("Account {} had no stored tokens.", account.name);
        }
        println!(
            "To remove spotguard's access for good, choose Remove access for your spotguard app on {} \
             (an access token already issued works for up to an hour).",
            ctx.config.alerts.apps_url.as_str()
        );
        Ok(ExitCode::SUCCESS)
    }
}
