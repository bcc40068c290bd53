//! Delivery to the extra channels: one task per channel, each reading the outbox in order.
//!
//! A channel keeps its place in the `channels` table (everything up to `done_through` is done
//! for it), so a restart re-sends only what that channel did not accept, and a channel that is
//! down delays nothing but itself: not the desktop, not another channel, not a poll. A failed
//! send is retried after 5 s, doubling to a 5-minute cap, for 24 h; then the event is given
//! up (one log line, a `status` entry). With nothing to send a task waits on its kick alone:
//! no timer, no connection.
//!
//! Alerts that could not be recorded (a full disk) have no place in the outbox: they are
//! pushed from memory ([`push_unrecorded`]), a few tries each, so the phone hears of an
//! intruder even then.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use super::channel::{Channel, Links, Message};
use crate::store::{ChannelEntry, ChannelState, SharedStore, StoreError};

/// The first retry comes this soon after a failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Retries are never further apart than this.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// After failing this long, the event is given up on this channel.
pub const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);
/// Whether an alert failing for `failing_for`, after `failed` attempts, is given up.
fn give_up(failing_for: chrono::Duration, failed: u32) -> bool {
    failing_for >= GIVE_UP_AFTER && failed >= GIVE_UP_ATTEMPTS
}

/// ...and at least this many failed attempts: after a laptop slept (or spotguard was stopped)
/// for a day, the first try on waking, before the network is up, must not be the last.
pub const GIVE_UP_ATTEMPTS: u32 = 20;
/// Events read from the store at a time.
const BATCH: usize = 20;

/// The wait before attempt `failed + 1`: 5 s doubling to 5 min, less up to 20 % of jitter
/// (`jitter` in 0..1) so that many channels failing together do not retry in step.
pub fn retry_after(failed: u32, jitter: f64) -> Duration {
    let base = FIRST_RETRY.saturating_mul(1u32 << failed.saturating_sub(1).min(10)).min(MAX_RETRY);
    base.mul_f64(1.0 - 0.2 * jitter.clamp(0.0, 1.0))
}

/// Registers `channels` in the store, before any poll of this run can record an event they
/// must get: each keeps its place by destination, a new one starts at the newest event
/// ([`crate::store::Store::register_channels`]). Their states, in order.
pub async fn register(channels: &[Channel], store: &SharedStore) -> Result<Vec<ChannelState>, StoreError> {
    let wanted: Vec<ChannelEntry> = channels
        .iter()
        .map(|c| ChannelEntry {
            name: c.name.clone(),
            kind: c.kind.to_string(),
            destination: c.destination.clone(),
        })
        .collect();
    store.call(move |s| s.register_channels(&wanted)).await
}

/// Delivers the outbox to `channel` from `state` on, until the task is dropped. `kick` says
/// there is news.
pub async fn run(
    channel: Arc<Channel>,
    store: SharedStore,
    kick: Arc<Notify>,
    links: Links,
    state: ChannelState,
) {
    let name = channel.name.clone();
    let mut done = state.done_through;
    let mut failed = state.attempts;
    let mut failing_since = state.failing_since;
    loop {
        let batch = match store.call(move |s| s.events_after(done, BATCH)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(channel = %name, "cannot read the outbox: {e}");
                tokio::time::sleep(MAX_RETRY).await;
                continue;
            }
        };
        if batch.is_empty() {
            kick.notified().await;
            continue;
        }
        for ev in batch {
            let id = ev.id;
            let key = ev.device;
            let spotify_id = match key {
                Some(k) => store.call(move |s| s.spotify_id(k)).await.ok().flatten(),
                None => None,
            };
            let msg = Message::from_event(&ev, spotify_id, &links).filter(|m| channel.wants(m));
            let Some(msg) = msg else {
                let n = name.clone();
                if let Err(e) = store.call(move |s| s.channel_done(&n, id, None)).await {
                    tracing::error!(channel = %name, "cannot record the channel's progress: {e}");
                }
                done = id;
                continue;
            };
            loop {
                let result = channel.send(&msg).await;
                let now = Utc::now();
                let n = name.clone();
                match result {
                    Ok(()) => {
                        if failed > 0 {
                            tracing::info!(channel = %name, event = id, "delivered after {failed} failed attempts");
                        } else {
                            tracing::debug!(channel = %name, event = id, "delivered");
                        }
                        if let Err(e) = store.call(move |s| s.channel_done(&n, id, Some(now))).await {
                            tracing::error!(channel = %name, "cannot record the delivery: {e}");
                        }
                        failed = 0;
                        failing_since = None;
                        break;
                    }
                    Err(why) => {
                        failed += 1;
                        let since = *failing_since.get_or_insert(now);
                        if give_up(now - since, failed) {
                            tracing::error!(
                                channel = %name,
                                event = id,
                                "gave up on an alert after 24 h of failed attempts ({failed}); it stays in `spotguard history`: {why}"
                            );
                            let line = format!("gave up on event {id} after 24 h: {why}");
                            if let Err(e) = store.call(move |s| s.channel_gave_up(&n, id, now, &line)).await {
                                tracing::error!(channel = %name, "cannot record giving up: {e}");
                            }
                            failed = 0;
                            failing_since = None;
                            break;
                        }
                        let wait = retry_after(failed, fastrand::f64());
                        // Said on the first failure, then only in debug: a day of retries is
                        // not hundreds of warnings.
                        if failed == 1 {
                            tracing::warn!(channel = %name, event = id, "could not deliver: {why}; retrying");
                        } else {
                            tracing::debug!(channel = %name, event = id, attempt = failed, "could not deliver: {why}");
                        }
                        let line = why.clone();
                        if let Err(e) = store.call(move |s| s.channel_failed(&n, now, &line)).await {
                            tracing::error!(channel = %name, "cannot record the failed attempt: {e}");
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            done = id;
        }
    }
}

/// Tries per channel for an alert that exists only in memory: nothing recorded it, so
/// nothing could try again after these.
pub const MEMORY_TRIES: u32 = 3;

/// Pushes `events` of `account`, which could not be recorded, to every channel that wants
/// them, from memory: one task per channel, so a channel that is down or hung delays nothing
/// (each send is bounded by the channel's timeout). Each tries [`MEMORY_TRIES`] times on the
/// usual waits, then says once that it gave up.
pub fn push_unrecorded(
    channels: &[Arc<Channel>],
    links: &Links,
    account: &str,
    events: &[crate::event::Event],
) {
    let messages: Vec<Message> =
        events.iter().filter_map(|e| Message::unrecorded(account, e, links)).collect();
    for channel in channels {
        let wanted: Vec<Message> = messages.iter().filter(|m| channel.wants(m)).cloned().collect();
        if wanted.is_empty() {
            continue;
        }
        let channel = channel.clone();
        tokio::spawn(async move {
            for msg in wanted {
                let mut failed = 0;
                loop {
                    match channel.send(&msg).await {
                        Ok(()) => {
                            tracing::info!(channel = %channel.name, kind = msg.kind, "an alert that could not be recorded was delivered");
                            break;
                        }
                        Err(why) if failed + 1 >= MEMORY_TRIES => {
                            tracing::error!(
                                channel = %channel.name,
                                kind = msg.kind,
                                "gave up on an alert that could not be recorded, after {MEMORY_TRIES} tries: {why}"
                            );
                            break;
                        }
                        Err(why) => {
                            failed += 1;
                            tracing::warn!(channel = %channel.name, kind = msg.kind, "could not deliver an alert that could not be recorded: {why}; retrying");
                            tokio::time::sleep(retry_after(failed, fastrand::f64())).await;
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_given_up_after_a_day_and_many_tries_not_at_the_first_try_after_a_long_sleep() {
        let day = GIVE_UP_AFTER;
        assert!(!give_up(day * 2, 1), "a laptop that slept two days: the first try on waking");
        assert!(!give_up(chrono::Duration::hours(23), 200));
        assert!(give_up(day, GIVE_UP_ATTEMPTS));
    }

    #[test]
    fn retries_double_from_5s_to_a_5_minute_cap() {
        let secs: Vec<u64> = (1..=9).map(|n| retry_after(n, 0.0).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert!(retry_after(1, 1.0) >= Duration::from_secs(4));
        assert_eq!(retry_after(1000, 0.0), MAX_RETRY);
    }
}
