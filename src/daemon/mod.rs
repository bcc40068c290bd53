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

mod account;
mod actions;
pub mod backoff;
pub mod lock;
pub mod poll;
pub mod supervisor;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{ConfigError, WARN_EVERY_BELOW};
use crate::context::Context;
use crate::notify::{Desktop, Dispatcher, Invoked};
use crate::schedule::{AccountClock, ScheduleError, SystemClock};
use crate::spotify::SpotifyError;
use crate::store::{SharedStore, StoreError};
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
    #[error("{0} ended unexpectedly; exiting so the service manager restarts spotguard")]
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
    let actions = tokio::spawn(actions::handle_actions(watched, invoked_rx));
    // The configuration in force before a reload: if the new one cannot start (a CA file
    // that cannot be read, a database refusing writes), the old one runs again instead of
    // the daemon exiting, which systemd's start limit could make for good.
    let mut previous: Option<Context> = None;
    let result = loop {
        let mut generation = match Generation::start(ctx.clone(), liveness.clone(), invoked_tx.clone()).await
        {
            Ok(g) => g,
            Err(e) => match previous.take() {
                Some(old) => {
                    tracing::error!(
                        "the changed configuration cannot start; the old one stays in force: {e}"
                    );
                    ctx = old;
                    let _ = current.send(ctx.clone());
                    continue;
                }
                None => return Err(e),
            },
        };
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
                // An account loop or a delivery task only ends when told to: one that ends on
                // its own panicked.
                Some(ended) = generation.loops.join_next() => {
                    break Err(DaemonError::LoopDied(format!("an account's poll loop ({})", why(ended))));
                }
                Some(ended) = generation.outlets.join_next() => {
                    break Err(DaemonError::LoopDied(format!("an alert delivery task ({})", why(ended))));
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
                previous = Some(std::mem::replace(&mut ctx, new));
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

/// Why a task that should run until told to stop ended.
fn why(ended: Result<(), tokio::task::JoinError>) -> String {
    match ended {
        Err(e) if e.is_panic() => "it panicked".to_string(),
        Err(e) => e.to_string(),
        Ok(()) => "it stopped".to_string(),
    }
}

/// One configuration's worth of running parts: the account loops (each with its clock), the
/// housekeeping.
struct Generation {
    accounts: usize,
    stop: watch::Sender<bool>,
    loops: JoinSet<()>,
    housekeeping: tokio::task::JoinHandle<()>,
    /// The desktop's delivery task and one task per `[[channels]]` entry.
    outlets: JoinSet<()>,
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
        // Supervised like the account loops: a delivery task that ends on its own (a panic)
        // ends the generation, rather than leaving alerts silently undelivered.
        let mut outlets = JoinSet::new();
        outlets.spawn(deliveries(
            dispatcher.clone(),
            ctx.store.clone(),
            desktop_kick.clone(),
            recording.clone(),
        ));
        // Each channel delivers on its own, so a channel that is down delays only itself.
        let links = crate::notify::channel::Links::from_config(&ctx.config);
        let mut kicks = vec![desktop_kick];
        let mut clients = crate::notify::channel::Clients::default();
        let mut channels = Vec::new();
        let built = crate::notify::channel::build_all(&ctx.config, ctx.source.path(), &mut clients)?;
        // Registered before the first poll: a new channel gets this run's alerts.
        let states = crate::notify::outbox::register(&built, &ctx.store).await?;
        for (channel, state) in built.into_iter().zip(states) {
            tracing::info!(channel = %channel.name, kind = channel.kind, to = %channel.target, "alerts also go to this channel");
            let kick = Arc::new(tokio::sync::Notify::new());
            kicks.push(kick.clone());
            let channel = Arc::new(channel);
            channels.push(channel.clone());
            outlets.spawn(crate::notify::outbox::run(channel, ctx.store.clone(), kick, links.clone(), state));
        }
        let kick = Arc::new(Kick(kicks));
        let channels: Arc<[Arc<crate::notify::channel::Channel>]> = channels.into();
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
                channels: channels.clone(),
                links: links.clone(),
            };
            // Everything the loop logs carries the account once, from this span.
            let span = tracing::info_span!("account", account = %account.name);
            let account_loop = account::account_loop(ctx.clone(), shared, account, clock, stop_rx.clone());
            loops.spawn(tracing::Instrument::instrument(account_loop, span));
        }
        Ok(Generation { accounts: count, stop, loops, housekeeping, outlets })
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
        self.outlets.shutdown().await;
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
    /// The `[[channels]]`, for alerts pushed from memory when they cannot be recorded.
    channels: Arc<[Arc<crate::notify::channel::Channel>]>,
    links: crate::notify::channel::Links,
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
    /// The "cannot record anything" notice was handled for this outage.
    told: std::sync::atomic::AtomicBool,
    /// ... and pushed to the channels.
    pushed: std::sync::atomic::AtomicBool,
}
