//! One account's loop: its clock, its poll, what a poll's outcome means (success, lost
//! access, a failure and its backoff), the "not watching" notice, and alerts shown from memory
//! when the database takes no writes. Everything it logs is inside the account's span, so the
//! account is named once, not in every line's fields.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::backoff::{Backoff, Failure};
use super::poll::{self, Account};
use super::{Shared, supervisor};
use crate::auth::Session;
use crate::context::Context;
use crate::schedule::{AccountClock, Wake};

/// One account's loop: poll on each tick of its clock (the first comes at once, or spread
/// over a moment when there are many accounts), never overlapping, never bursting.
pub(super) async fn account_loop(
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
        tracing::info!(
            "Spotify asked to wait; next poll in {}",
            humantime::format_duration(Duration::from_secs(left.as_secs()))
        );
        state.backoff.defer_until(Instant::now() + left);
    }
    if state.lost.is_some() {
        tracing::warn!(
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
            tracing::debug!("backing off; poll skipped");
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
    /// ... and pushed to the channels (each tries a few times on its own, once).
    pushed_unrecorded: std::collections::HashSet<String>,
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
            tracing::info!("new login found; watching again");
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
    let polled =
        poll::poll_once(&ctx.client, session, &ctx.store, &policy, account, crate::store::Recording::Record)
            .await;
    if let Some(hb) = &shared.heartbeat {
        hb.round(&account.name, polled.is_ok());
    }
    let deliver = match polled {
        Ok(report) => succeeded(ctx, shared, account, state, &report).await,
        Err(e) if e.is_access_lost() => lost(ctx, account, state, &e).await,
        Err(e) => {
            failed(ctx, account, state, &e).await;
            false
        }
    };
    if deliver {
        shared.kick.notify_one();
    }
}

/// After a successful poll: the backoff and the outage end, the database's health, the status
/// line and the "ends soon" warning. Returns whether events wait for delivery.
async fn succeeded(
    ctx: &Context,
    shared: &Shared,
    account: &Account,
    state: &mut LoopState,
    report: &poll::Outcome,
) -> bool {
    let mut deliver = false;
    let ended = state.backoff.succeed();
    if ended > 0 {
        tracing::info!("polling works again after {ended} failed polls");
        let id = account.id;
        if let Err(e) = ctx.store.call(move |s| s.set_retry_at(id, None)).await {
            tracing::error!("cannot clear the rate-limit wait: {e}");
        }
    }
    state.last_error = None;
    tracing::debug!(
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
                tracing::info!("watching again");
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
        Some(why) => not_recorded(shared, &account.name, report, why, state).await,
        None if shared.recording.failing.swap(false, Ordering::Relaxed) => {
            tracing::info!("the database takes writes again; recording resumes");
            shared.recording.told.store(false, Ordering::Relaxed);
            shared.recording.pushed.store(false, Ordering::Relaxed);
            state.shown_unrecorded.clear();
            state.pushed_unrecorded.clear();
            shared.kick.notify_one();
        }
        None => {
            state.shown_unrecorded.clear();
            state.pushed_unrecorded.clear();
        }
    }
    supervisor::status(&status_line(&account.name, report));
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
    deliver
}

/// Spotify no longer accepts the login: recorded once, and the loop waits for another login.
/// Returns whether an event waits for delivery.
async fn lost(ctx: &Context, account: &Account, state: &mut LoopState, e: &poll::PollError) -> bool {
    let mut deliver = false;
    let dead = e.lost_login().map(str::to_string);
    let (id, reason, login) = (account.id, e.to_string(), dead.clone());
    match ctx.store.call(move |s| s.mark_access_lost(id, Utc::now(), &reason, login.as_deref())).await {
        Ok(event) => deliver |= event.is_some(),
        Err(se) => tracing::error!("cannot record the lost access: {se}"),
    }
    state.lost = Some(dead);
    tracing::error!("{e}; not polling this account until `spotguard login --account {}`", account.name);
    deliver
}

/// A failed poll: the backoff, the rate-limit wait kept across restarts, the error `status`
/// shows, and one log line per distinct error.
async fn failed(ctx: &Context, account: &Account, state: &mut LoopState, e: &poll::PollError) {
    if state.outage.is_none() {
        state.outage = Some((Instant::now(), Utc::now()));
    }
    let failure = e.failure();
    let wait = state.backoff.fail(failure, Instant::now(), fastrand::f64());
    if let Failure::RateLimited { .. } = failure {
        let (id, until) = (account.id, Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default());
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
            (_, Failure::RateLimited { quota: true, .. }) => {
                tracing::warn!("Spotify says this app's request quota is used up; polling pauses for {wait}")
            }
            (_, Failure::NotLoggedIn) => {
                tracing::error!("{message}; polling starts at the first tick after the login")
            }
            (_, Failure::NeedsPerson) => {
                tracing::error!("{message}; retrying in {wait}")
            }
            _ => {
                tracing::warn!("poll failed: {message}; next try in {wait}")
            }
        }
        state.last_error = Some(message);
    } else {
        tracing::debug!("poll failed again: {message}; next try in {wait}");
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
            tracing::error!("not watching: no successful poll since {since}: {reason}");
            if told.is_some() {
                shared.kick.notify_one();
            }
        }
        Err(e) => {
            // It cannot be recorded: say it from memory, once it is taken (a hung server gets
            // another try at the next wake).
            tracing::error!("not watching since {since}: {reason}; and cannot record it: {e}");
            let notice = [crate::event::Event::NotWatching { since, reason }];
            state.told_silent = shared.dispatcher.deliver_now(&account.name, &notice).await > 0;
        }
    }
}

/// A poll whose plan could not be written: its alerts are shown from memory (once each while
/// the outage lasts), and the "nothing is being recorded" notice once per outage. What the
/// server did not take (a timeout) is tried again at the next poll.
async fn not_recorded(
    shared: &Shared,
    account: &str,
    report: &poll::Outcome,
    why: &str,
    state: &mut LoopState,
) {
    if !shared.recording.failing.swap(true, Ordering::Relaxed) {
        tracing::error!("the database cannot be written, so nothing is being recorded: {why}");
    }
    if state.shown_unrecorded.len() > MAX_SHOWN_UNRECORDED {
        state.shown_unrecorded.clear();
    }
    if state.pushed_unrecorded.len() > MAX_SHOWN_UNRECORDED {
        state.pushed_unrecorded.clear();
    }
    // The channels first: their tasks run on their own, so a hung desktop server cannot
    // keep the phone from hearing of an intruder.
    if !shared.channels.is_empty() {
        let mut push = Vec::new();
        if !shared.recording.pushed.swap(true, Ordering::Relaxed) {
            push.push(crate::event::Event::NotRecording { reason: why.to_string() });
        }
        push.extend(
            report
                .plan
                .events
                .iter()
                .filter(|planned| state.pushed_unrecorded.insert(planned.event.describe()))
                .map(|planned| planned.event.clone()),
        );
        crate::notify::outbox::push_unrecorded(&shared.channels, &shared.links, account, &push);
    }
    let mut events = Vec::new();
    let notice = !shared.recording.told.load(Ordering::Relaxed);
    if notice {
        events.push(crate::event::Event::NotRecording { reason: why.to_string() });
    }
    events.extend(
        report
            .plan
            .events
            .iter()
            .filter(|planned| !state.shown_unrecorded.contains(&planned.event.describe()))
            .map(|planned| planned.event.clone()),
    );
    if events.is_empty() {
        return;
    }
    let handled = shared.dispatcher.deliver_now(account, &events).await;
    for (i, event) in events.iter().take(handled).enumerate() {
        if notice && i == 0 {
            shared.recording.told.store(true, Ordering::Relaxed);
        } else {
            state.shown_unrecorded.insert(event.describe());
        }
    }
}
