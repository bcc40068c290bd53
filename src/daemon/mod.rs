//! The daemon: one poll loop per account, driven by the schedule, with the outbox behind it.
//!
//! [`run`] takes shutdown as a future. On start it delivers what a previous run committed but
//! did not show (crash recovery), then polls each account on every tick of its own
//! [`AccountClock`] (the first at once). A loop never overlaps itself, skips ticks while
//! backing off, tells the watchdog when its clock is due, and logs on state changes (failing,
//! recovered), not on every poll. On shutdown it stops the loops and lets an in-flight poll
//! finish within [`SHUTDOWN_GRACE`]; past that the task is dropped: a request in flight is
//! abandoned, and a database write already under way completes whole or not at all (one
//! SQLite transaction per poll): nothing is ever half-written.

pub mod backoff;
pub mod lock;
pub mod poll;
pub mod supervisor;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::auth::Session;
use crate::config::{ConfigError, WARN_EVERY_BELOW};
use crate::context::Context;
use crate::event::TrustedBy;
use crate::notify::{Desktop, Dispatcher, Invoked, action, opener};
use crate::schedule::{AccountClock, ScheduleError, SystemClock, Wake};
use crate::spotify::SpotifyError;
use crate::store::{SharedStore, StoreError};
use backoff::{Backoff, Failure};
use poll::Account;
use supervisor::Liveness;

/// How long an in-flight poll may take to finish once shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What can stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spotify(#[from] SpotifyError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Channel(#[from] crate::notify::channel::ChannelError),
    #[error(
        "an account's poll loop ended unexpectedly ({0}); exiting so the service manager restarts spotguard"
    )]
    LoopDied(String),
}

/// What the daemon is asked to do from outside (signals, the demo, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop: SIGTERM, SIGINT.
    Shutdown,
    /// Read the configuration again: SIGHUP. A bad new one is refused and the old one kept.
    Reload,
}

/// Runs the daemon until told to shut down (or the control channel closes).
pub async fn run(mut ctx: Context, mut control: mpsc::Receiver<Control>) -> Result<(), DaemonError> {
    let liveness = Arc::new(Liveness::default());
    let watchdog = tokio::spawn(supervisor::watchdog(liveness.clone()));
    // Buttons outlive generations: a notification shown before a reload can still be clicked.
    let (invoked_tx, invoked_rx) = mpsc::channel(16);
    let (current, watched) = watch::channel(ctx.clone());
    let actions = tokio::spawn(handle_actions(watched, invoked_rx));
    let result = loop {
        let mut generation = Generation::start(ctx.clone(), liveness.clone(), invoked_tx.clone()).await?;
        supervisor::ready(&format!(
            "watching {} account(s), polling {}",
            generation.accounts,
            ctx.config.schedule()
        ));
        let next = loop {
            tokio::select! {
                c = control.recv() => match c {
                    None | Some(Control::Shutdown) => break Ok(None),
                    Some(Control::Reload) => {
                        supervisor::reloading();
                        match ctx.reloaded().await {
                            Ok(new) => break Ok(Some(new)),
                            Err(e) => {
                                tracing::error!("the changed configuration is refused; the old one stays in force: {e:#}");
                                supervisor::ready("reload refused: the old configuration stays in force");
                            }
                        }
                    }
                },
                // An account loop only ends when told to: one that ends on its own panicked.
                Some(ended) = generation.loops.join_next() => {
                    let why = match ended {
                        Err(e) if e.is_panic() => "it panicked".to_string(),
                        Err(e) => e.to_string(),
                        Ok(()) => "it stopped".to_string(),
                    };
                    break Err(DaemonError::LoopDied(why));
                }
            }
        };
        if !matches!(next, Ok(Some(_))) {
            supervisor::stopping();
            tracing::info!("stopping");
        }
        generation.stop().await;
        match next {
            Ok(Some(new)) => {
                tracing::info!(config = %new.source.path().display(), "configuration reloaded");
                ctx = new;
                let _ = current.send(ctx.clone());
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    actions.abort();
    watchdog.abort();
    if result.is_ok() {
        tracing::info!("stopped");
    }
    result
}

/// One configuration's worth of running parts: the account loops (each with its clock), the
/// housekeeping.
struct Generation {
    accounts: usize,
    stop: watch::Sender<bool>,
    loops: JoinSet<()>,
    housekeeping: tokio::task::JoinHandle<()>,
    deliveries: tokio::task::JoinHandle<()>,
    /// One task per `[[channels]]` entry.
    channels: Vec<tokio::task::JoinHandle<()>>,
}

impl Generation {
    async fn start(
        ctx: Context,
        liveness: Arc<Liveness>,
        invoked_tx: mpsc::Sender<Invoked>,
    ) -> Result<Generation, DaemonError> {
        let schedule = ctx.config.schedule();
        if let crate::config::Schedule::Every(every) = schedule
            && every < WARN_EVERY_BELOW
        {
            tracing::warn!(
                "polling {schedule} is more often than useful; Spotify rate-limits apps, 60s is plenty"
            );
        }
        let accounts = ctx.accounts().await?;
        // A headless host (no session bus, no display) with channels: the desktop is skipped
        // from the start, said once here, instead of a warning at the first alert.
        let headless = ctx.config.notify.desktop
            && !ctx.config.channels.is_empty()
            && !crate::notify::graphical_session()
            && matches!(Desktop::capabilities().await, Err(crate::notify::DesktopError::NoServer(_)));
        if headless {
            tracing::info!(
                channels = ctx.config.channels.len(),
                "no desktop notification server here; alerts go to the channels only"
            );
        }
        let desktop = (ctx.config.notify.desktop && !headless)
            .then(|| Desktop::new(invoked_tx, ctx.config.notify.action_timeout.0));
        let dispatcher =
            Arc::new(Dispatcher::new(desktop, ctx.config.alerts.sign_out_url.as_str(), accounts.len() > 1));
        let recording = Arc::new(RecordingState::default());
        // Deliveries run in their own task, kicked after polls: a hung notification server
        // then slows alerts down, never polls, READY or the watchdog. Its first round
        // delivers what a previous run committed but did not get to show.
        let desktop_kick = Arc::new(tokio::sync::Notify::new());
        let deliveries = tokio::spawn(deliveries(
            dispatcher.clone(),
            ctx.store.clone(),
            desktop_kick.clone(),
            recording.clone(),
        ));
        // Each channel delivers on its own, so a channel that is down delays only itself.
        let links = crate::notify::channel::Links::from_config(&ctx.config);
        let mut kicks = vec![desktop_kick];
        let mut channels = Vec::new();
        let mut clients = crate::notify::channel::Clients::default();
        for channel in crate::notify::channel::build_all(&ctx.config, ctx.source.path(), &mut clients)? {
            tracing::info!(channel = %channel.name, kind = channel.kind, to = %channel.target, "alerts also go to this channel");
            let kick = Arc::new(tokio::sync::Notify::new());
            kicks.push(kick.clone());
            // Registered before the first poll: a new channel gets this run's alerts.
            let state = crate::notify::outbox::register(&channel, &ctx.store).await?;
            channels.push(tokio::spawn(crate::notify::outbox::run(
                Arc::new(channel),
                ctx.store.clone(),
                kick,
                links.clone(),
                state,
            )));
        }
        let kick = Arc::new(Kick(kicks));
        let heartbeat = match &ctx.config.health.ping_url {
            Some(url) => {
                let ca = match &ctx.config.health.ca_file {
                    Some(f) => Some(
                        std::fs::read(crate::config::channels::expand_path(f, ctx.source.path())).map_err(
                            |e| crate::notify::channel::ChannelError::CaFile {
                                channel: "health".into(),
                                path: f.clone(),
                                why: e.to_string(),
                            },
                        )?,
                    ),
                    None => None,
                };
                let http = clients.get("health", ca.as_deref())?;
                Some(Arc::new(crate::notify::heartbeat::Heartbeat::new(url.0.clone(), http)))
            }
            None => None,
        };
        let housekeeping = tokio::spawn(prune_daily(ctx.clone()));
        let count = accounts.len();
        let wall: Arc<dyn crate::schedule::WallClock> = Arc::new(SystemClock);
        let clocks = accounts
            .iter()
            .map(|a| AccountClock::new(&schedule, &a.name, count, wall.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let (stop, stop_rx) = watch::channel(false);
        let mut loops = JoinSet::new();
        tracing::info!(
            accounts = accounts.len(),
            database = %ctx.store.path().display(),
            "spotguard is watching, polling {schedule}"
        );
        for (account, clock) in accounts.into_iter().zip(clocks) {
            let shared = Shared {
                dispatcher: dispatcher.clone(),
                liveness: liveness.clone(),
                recording: recording.clone(),
                kick: kick.clone(),
                heartbeat: heartbeat.clone(),
            };
            loops.spawn(account_loop(ctx.clone(), shared, account, clock, stop_rx.clone()));
        }
        Ok(Generation { accounts: count, stop, loops, housekeeping, deliveries, channels })
    }

    /// Stops the loops and lets an in-flight poll finish within [`SHUTDOWN_GRACE`].
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        let loops = &mut self.loops;
        let drained =
            tokio::time::timeout(SHUTDOWN_GRACE, async { while loops.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("a poll did not finish in time and was abandoned; nothing was half-written");
            self.loops.shutdown().await;
        }
        self.housekeeping.abort();
        // At-least-once: an alert cut off here is shown again by the next generation.
        self.deliveries.abort();
        for c in &self.channels {
            c.abort();
        }
    }
}

/// Deletes history older than `storage.keep_events`: at start, then once a day.
async fn prune_daily(ctx: Context) {
    let keep =
        chrono::Duration::from_std(ctx.config.storage.keep_events.0).unwrap_or(chrono::Duration::days(400));
    let mut day = tokio::time::interval(Duration::from_secs(86_400));
    day.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        day.tick().await;
        match ctx.store.call(move |s| s.prune(Utc::now() - keep)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "old history deleted"),
            Err(e) => tracing::warn!("cannot delete old history: {e}"),
        }
    }
}

/// What every account loop of a generation shares.
#[derive(Debug, Clone)]
struct Shared {
    dispatcher: Arc<Dispatcher>,
    liveness: Arc<Liveness>,
    recording: Arc<RecordingState>,
    /// Wakes the delivery tasks: there are events in the outbox.
    kick: Arc<Kick>,
    /// The heartbeat, if `health.ping_url` is set.
    heartbeat: Option<Arc<crate::notify::heartbeat::Heartbeat>>,
}

/// Wakes every delivery task (the desktop's and each channel's) at once.
#[derive(Debug)]
struct Kick(Vec<Arc<tokio::sync::Notify>>);

impl Kick {
    fn notify_one(&self) {
        for k in &self.0 {
            k.notify_one();
        }
    }
}

/// How long a delivery round that left events behind (a failing or hung server) waits before
/// trying again, unless a new event comes first.
const REDELIVER_AFTER: Duration = Duration::from_secs(30);

/// The outbox's task: a round now, then one per kick, and one [`REDELIVER_AFTER`] a round
/// that left events behind. While the database takes no writes it waits: a round could show
/// an alert but not mark it shown, and would show it again and again (alerts come from
/// memory meanwhile).
async fn deliveries(
    dispatcher: Arc<Dispatcher>,
    store: SharedStore,
    kick: Arc<tokio::sync::Notify>,
    recording: Arc<RecordingState>,
) {
    loop {
        let retry = if recording.failing.load(Ordering::Relaxed) {
            true
        } else {
            match dispatcher.deliver_pending(&store).await {
                Ok(done) => done.failed > 0,
                Err(e) => {
                    tracing::error!("cannot deliver alerts: {e}");
                    true
                }
            }
        };
        if retry {
            tokio::select! {
                _ = kick.notified() => {}
                _ = tokio::time::sleep(REDELIVER_AFTER) => {}
            }
        } else {
            kick.notified().await;
        }
    }
}

/// Whether the database takes writes, shared by the account loops: the "nothing is being
/// recorded" notice is given once per outage of the file, not once per account or poll.
#[derive(Debug, Default)]
struct RecordingState {
    failing: std::sync::atomic::AtomicBool,
}

/// One account's loop: poll on each tick of its clock (the first comes at once, or spread
/// over a moment when there are many accounts), never overlapping, never bursting.
async fn account_loop(
    ctx: Context,
    shared: Shared,
    account: Account,
    mut clock: AccountClock,
    mut stop: watch::Receiver<bool>,
) {
    let session = ctx.session(&account.name);
    let mut state = LoopState {
        lost: lost_login(&ctx, &session, &account).await,
        outage: Some((Instant::now(), Utc::now())),
        check_recovery: true,
        ..LoopState::default()
    };
    // A wait Spotify asked for outlives restarts and reloads: polling early gets longer bans.
    let id = account.id;
    if let Ok(Some(until)) = ctx.store.call(move |s| s.retry_at(id)).await
        && let Ok(left) = (until - Utc::now()).to_std()
    {
        tracing::info!(account = %account.name, "Spotify asked to wait; next poll in {}", humantime::format_duration(Duration::from_secs(left.as_secs())));
        state.backoff.defer_until(Instant::now() + left);
    }
    if state.lost.is_some() {
        tracing::warn!(
            account = %account.name,
            "not watching: Spotify no longer accepts this login; run `spotguard login --account {}`",
            account.name
        );
    }
    // The watchdog's view of this clock: when it should wake next.
    let watch = shared.liveness.clock(&account.name);
    loop {
        watch.sleeping_until(clock.due());
        let wake = tokio::select! {
            biased;
            _ = stop.changed() => break,
            wake = clock.wake() => wake,
        };
        if *stop.borrow() {
            break;
        }
        if state.lost.is_none() {
            tell_if_silent(&ctx, &shared, &account, &mut state).await;
        }
        if wake == Wake::Recheck {
            continue;
        }
        if state.lost.is_some() && !relogged(&ctx, &session, &account, &mut state).await {
            // Not polled: a failed round for the heartbeat, so `/fail` keeps coming.
            if let Some(hb) = &shared.heartbeat {
                hb.round(&account.name, false);
            }
            continue;
        }
        if state.backoff.blocked(Instant::now()) {
            tracing::debug!(account = %account.name, "backing off; poll skipped");
            continue;
        }
        let _busy = shared.liveness.polling(&account.name);
        poll_and_deliver(&ctx, &shared, &session, &account, &mut state).await;
    }
}

/// What a loop remembers between polls.
#[derive(Debug, Default)]
struct LoopState {
    backoff: Backoff,
    /// The last failure's message: a repeat of it is not logged again.
    last_error: Option<String>,
    /// Access is lost: polling waits for the token store to hold another login than the
    /// dead one. Inside, the dead login's fingerprint ([`crate::auth::TokenSet::login_fingerprint`]);
    /// `None` when it is not known (lost before spotguard kept it, and no tokens stored at
    /// start): then any stored login counts as another.
    lost: Option<Option<String>>,
    /// Since when no poll has succeeded: the last success, or this run's start. Measured on
    /// the monotonic clock, which stands still in a suspend: a laptop's night is no outage.
    outage: Option<(Instant, DateTime<Utc>)>,
    /// The "not watching" notice was given for this outage.
    told_silent: bool,
    /// A success must end a told outage, which may have been told by an earlier run.
    check_recovery: bool,
    /// Alerts shown from memory while the database cannot be written, so that one intruder
    /// is shown once, not at every poll (nothing records that it was alerted).
    shown_unrecorded: std::collections::HashSet<String>,
}

/// Shown-from-memory alerts remembered at most; past it the memory starts again.
const MAX_SHOWN_UNRECORDED: usize = 1000;

/// At start: the dead login, if access was lost and the token store holds no other login
/// (persisted by fingerprint, so a token put in place while the daemon was stopped counts).
async fn lost_login(ctx: &Context, session: &Session, account: &Account) -> Option<Option<String>> {
    let id = account.id;
    let (lost_at, dead) =
        ctx.store.call(move |s| Ok((s.access_lost_at(id)?, s.lost_login(id)?))).await.ok()?;
    let lost_at = lost_at?;
    let stored = session.stored().await;
    let dead = match (dead, &stored) {
        (Some(dead), _) => Some(dead),
        // Lost before fingerprints were kept: the stored login is the dead one unless it was
        // authorised after access was lost.
        (None, Ok(t)) if t.authorized_at <= lost_at => Some(t.login_fingerprint()),
        (None, _) => None,
    };
    match stored {
        Ok(t) if dead.as_deref() != Some(t.login_fingerprint().as_str()) => {
            let _ = ctx.store.call(move |s| s.clear_access_lost(id)).await;
            None
        }
        _ => Some(dead),
    }
}

/// While access is lost: whether the token store holds another login than the dead one (read
/// from the store, no network). Another refresh token is another login, whatever its
/// `authorized_at`: a refresh made by `spotguard check`, say, or tokens put in place.
async fn relogged(ctx: &Context, session: &Session, account: &Account, state: &mut LoopState) -> bool {
    let Some(dead) = &state.lost else { return true };
    match session.stored().await {
        Ok(t) if dead.as_deref() != Some(t.login_fingerprint().as_str()) => {
            let id = account.id;
            if let Err(e) = ctx.store.call(move |s| s.clear_access_lost(id)).await {
                tracing::error!("cannot record the new login: {e}");
            }
            tracing::info!(account = %account.name, "new login found; watching again");
            state.lost = None;
            state.backoff.succeed();
            true
        }
        _ => false,
    }
}

/// The STATUS= line after a poll: "default: last poll 12:00:03, 3 devices, all trusted", and
/// ", 1 unreadable" when Spotify listed devices that could not be read.
fn status_line(account: &str, report: &poll::Outcome) -> String {
    let unknown = report
        .plan
        .seen
        .iter()
        .filter(|s| match s.target {
            crate::audit::Target::Known(k) => !report.known.devices.iter().any(|d| d.key == k && d.trusted),
            crate::audit::Target::New => true,
        })
        .count();
    let verdict = if unknown == 0 { "all trusted".to_string() } else { format!("{unknown} not trusted") };
    let unreadable = match report.snapshot.skipped {
        0 => String::new(),
        n => format!(", {n} unreadable"),
    };
    format!(
        "{account}: last poll {}, {} device(s), {verdict}{unreadable}",
        report.at.with_timezone(&chrono::Local).format("%H:%M:%S"),
        report.plan.seen.len()
    )
}

/// A week before a login ends, one notification that a new one is needed.
const LOGIN_WARNING: chrono::Duration = chrono::Duration::days(7);

async fn poll_and_deliver(
    ctx: &Context,
    shared: &Shared,
    session: &Session,
    account: &Account,
    state: &mut LoopState,
) {
    let policy = poll::policy(&ctx.config, &account.name);
    let mut deliver = false;
    let polled =
        poll::poll_once(&ctx.client, session, &ctx.store, &policy, account, crate::store::Recording::Record)
            .await;
    if let Some(hb) = &shared.heartbeat {
        hb.round(&account.name, polled.is_ok());
    }
    match polled {
        Ok(report) => {
            let ended = state.backoff.succeed();
            if ended > 0 {
                tracing::info!(account = %account.name, "polling works again after {ended} failed polls");
                let id = account.id;
                if let Err(e) = ctx.store.call(move |s| s.set_retry_at(id, None)).await {
                    tracing::error!("cannot clear the rate-limit wait: {e}");
                }
            }
            state.last_error = None;
            tracing::debug!(
                account = %account.name,
                devices = report.plan.seen.len(),
                unreadable = report.snapshot.skipped,
                events = report.event_ids.len(),
                took_ms = report.took.as_millis() as u64,
                "polled"
            );
            deliver |= !report.event_ids.is_empty();
            state.outage = None;
            let told = std::mem::take(&mut state.told_silent);
            if std::mem::take(&mut state.check_recovery) || told {
                let id = account.id;
                match ctx.store.call(move |s| s.watching_again(id, Utc::now())).await {
                    Ok(Some(_)) => {
                        tracing::info!(account = %account.name, "watching again");
                        deliver = true;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        state.check_recovery = true;
                        tracing::error!("cannot record that polls work again: {e}");
                    }
                }
            }
            match &report.unrecorded {
                Some(why) => not_recorded(shared, &account.name, &report, why, state).await,
                None if shared.recording.failing.swap(false, Ordering::Relaxed) => {
                    tracing::info!("the database takes writes again; recording resumes");
                    state.shown_unrecorded.clear();
                    shared.kick.notify_one();
                }
                None => state.shown_unrecorded.clear(),
            }
            supervisor::status(&status_line(&account.name, &report));
            let (id, access) = (account.id, report.access.clone());
            if Utc::now() + LOGIN_WARNING >= access.login_expires_at {
                match ctx
                    .store
                    .call(move |s| {
                        s.warn_login_expiring(id, Utc::now(), access.authorized_at, access.login_expires_at)
                    })
                    .await
                {
                    Ok(warned) => deliver |= warned.is_some(),
                    Err(e) => tracing::error!("cannot record the login warning: {e}"),
                }
            }
        }
        Err(e) if e.is_access_lost() => {
            let dead = e.lost_login().map(str::to_string);
            let (id, reason, login) = (account.id, e.to_string(), dead.clone());
            match ctx.store.call(move |s| s.mark_access_lost(id, Utc::now(), &reason, login.as_deref())).await
            {
                Ok(event) => deliver |= event.is_some(),
                Err(se) => tracing::error!("cannot record the lost access: {se}"),
            }
            state.lost = Some(dead);
            tracing::error!(
                account = %account.name,
                "{e}; not polling this account until `spotguard login --account {}`",
                account.name
            );
        }
        Err(e) => {
            if state.outage.is_none() {
                state.outage = Some((Instant::now(), Utc::now()));
            }
            let failure = e.failure();
            let wait = state.backoff.fail(failure, Instant::now(), fastrand::f64());
            if let Failure::RateLimited { .. } = failure {
                let (id, until) =
                    (account.id, Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default());
                if let Err(e) = ctx.store.call(move |s| s.set_retry_at(id, Some(until))).await {
                    tracing::error!("cannot record the rate-limit wait: {e}");
                }
            }
            let message = e.to_string();
            let id = account.id;
            let stored = message.clone();
            if let Err(se) = ctx.store.call(move |s| s.record_failure(id, Utc::now(), &stored)).await {
                tracing::error!("cannot record the failed poll: {se}");
            }
            let wait = humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)));
            if state.last_error.as_deref() != Some(message.as_str()) {
                match (&e, failure) {
                    (_, Failure::RateLimited { quota: true, .. }) => tracing::warn!(
                        account = %account.name,
                        "Spotify says this app's request quota is used up; polling pauses for {wait}"
                    ),
                    (_, Failure::NotLoggedIn) => tracing::error!(
                        account = %account.name,
                        "{message}; polling starts at the first tick after the login"
                    ),
                    (_, Failure::NeedsPerson) => {
                        tracing::error!(account = %account.name, "{message}; retrying in {wait}")
                    }
                    _ => {
                        tracing::warn!(account = %account.name, "poll failed: {message}; next try in {wait}")
                    }
                }
                state.last_error = Some(message);
            } else {
                tracing::debug!(account = %account.name, "poll failed again: {message}; next try in {wait}");
            }
        }
    }
    if deliver {
        shared.kick.notify_one();
    }
}

/// Gives the "not watching" notice once the account has gone `alerts.silent_after` without a
/// successful poll (once per outage; the store remembers it across restarts).
async fn tell_if_silent(ctx: &Context, shared: &Shared, account: &Account, state: &mut LoopState) {
    let silent_after = ctx.config.alerts.silent_after.0;
    let Some((began, since)) = state.outage else { return };
    if silent_after.is_zero() || state.told_silent || began.elapsed() < silent_after {
        return;
    }
    let reason = state.last_error.clone().unwrap_or_else(|| "no poll has finished yet".into());
    let (id, text) = (account.id, reason.clone());
    match ctx.store.call(move |s| s.not_watching(id, since, Utc::now(), &text)).await {
        Ok(told) => {
            state.told_silent = true;
            tracing::error!(account = %account.name, "not watching: no successful poll since {since}: {reason}");
            if told.is_some() {
                shared.kick.notify_one();
            }
        }
        Err(e) => {
            // It cannot be recorded: say it from memory, once.
            state.told_silent = true;
            tracing::error!(account = %account.name, "not watching since {since}: {reason}; and cannot record it: {e}");
            shared
                .dispatcher
                .deliver_now(&account.name, &[crate::event::Event::NotWatching { since, reason }])
                .await;
        }
    }
}

/// A poll whose plan could not be written: its alerts are shown from memory (once each while
/// the outage lasts), and the "nothing is being recorded" notice once per outage.
async fn not_recorded(
    shared: &Shared,
    account: &str,
    report: &poll::Outcome,
    why: &str,
    state: &mut LoopState,
) {
    let mut events = Vec::new();
    if !shared.recording.failing.swap(true, Ordering::Relaxed) {
        tracing::error!("the database cannot be written, so nothing is being recorded: {why}");
        events.push(crate::event::Event::NotRecording { reason: why.to_string() });
    }
    if state.shown_unrecorded.len() > MAX_SHOWN_UNRECORDED {
        state.shown_unrecorded.clear();
    }
    for planned in &report.plan.events {
        if state.shown_unrecorded.insert(planned.event.describe()) {
            events.push(planned.event.clone());
        }
    }
    if !events.is_empty() {
        shared.dispatcher.deliver_now(account, &events).await;
    }
}

/// Carries out the buttons pressed on notifications, with the configuration in force now.
async fn handle_actions(current: watch::Receiver<Context>, mut invoked: mpsc::Receiver<Invoked>) {
    while let Some(inv) = invoked.recv().await {
        let ctx = current.borrow().clone();
        tracing::info!(event = inv.event_id, action = %crate::text::terminal(&inv.action), "notification action");
        match inv.action.as_str() {
            action::DEFAULT | action::SIGN_OUT => {
                // Follow it up: gone at the next polls, or probably a partner device.
                if let Some(key) = inv.device
                    && let Err(e) = ctx.store.call(move |s| s.mark_signout(key, Utc::now())).await
                {
                    tracing::error!("cannot note the sign-out: {e}");
                }
                let opener = ctx.config.alerts.opener.clone();
                let url = ctx.config.alerts.sign_out_url.as_str().to_string();
                tokio::spawn(async move {
                    opener::open(&opener, &url).await;
                });
            }
            action::APPS => {
                let opener = ctx.config.alerts.opener.clone();
                let url = ctx.config.alerts.apps_url.as_str().to_string();
                tokio::spawn(async move {
                    opener::open(&opener, &url).await;
                });
            }
            action::TRUST => {
                let Some(key) = inv.device else { continue };
                match ctx.store.call(move |s| s.trust(key, TrustedBy::Notification, Utc::now())).await {
                    Ok(true) => tracing::info!(device = key, "device trusted from the notification"),
                    Ok(false) => tracing::debug!(device = key, "device was already trusted or is gone"),
                    Err(e) => tracing::error!("cannot trust the device: {e}"),
                }
            }
            other => tracing::debug!(action = %crate::text::terminal(other), "unknown action ignored"),
        }
    }
}
