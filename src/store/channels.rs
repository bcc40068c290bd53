//! Per-channel delivery (ntfy, webhooks, e-mail): each channel's place in the outbox, the
//! retry state of the event it is stuck on, and the events after its place.

use super::*;

/// A channel's delivery state, for `status` and the channel's task.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChannelState {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Every event up to this id is done for the channel.
    #[serde(skip)]
    pub done_through: i64,
    /// Failed attempts at the next event.
    #[serde(skip)]
    pub attempts: u32,
    #[serde(skip)]
    pub failing_since: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub given_up: i64,
}

/// A configured channel, as [`Store::register_channels`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEntry {
    pub name: String,
    pub kind: String,
    /// [`crate::config::channels::ChannelSection::destination`]
    pub destination: String,
}

impl Store {
    /// Makes the channel rows the configured channels, in one transaction, and returns their
    /// states in the order given. A channel keeps its row (its place in the outbox, its retry
    /// state) when its destination is the row's, whatever its name now: renamed, or
    /// renumbered because another channel was added before it. A row from before
    /// destinations were kept is matched by name. A channel with no row starts at the events
    /// recorded from now on; rows no channel claims are deleted (a channel removed and added
    /// back later starts afresh too).
    pub fn register_channels(&mut self, wanted: &[ChannelEntry]) -> Result<Vec<ChannelState>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut rows: Vec<(String, Option<String>)> = {
            let mut stmt = tx.prepare_cached("SELECT name, destination FROM channels")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        // Each configured channel's row: by destination, else a legacy row by name.
        let mut claimed: Vec<Option<String>> = Vec::with_capacity(wanted.len());
        for w in wanted {
            let at = rows
                .iter()
                .position(|(_, d)| d.as_deref() == Some(w.destination.as_str()))
                .or_else(|| rows.iter().position(|(n, d)| d.is_none() && *n == w.name));
            claimed.push(at.map(|i| rows.swap_remove(i).0));
        }
        // Unclaimed rows go; claimed ones move aside first, so that names can be swapped.
        for (name, _) in &rows {
            exec(&tx, "DELETE FROM channels WHERE name = ?1", [name])?;
        }
        for old in claimed.iter().flatten() {
            exec(&tx, "UPDATE channels SET name = '\u{1}' || name WHERE name = ?1", [old])?;
        }
        for (w, old) in wanted.iter().zip(&claimed) {
            match old {
                Some(old) => exec(
                    &tx,
                    "UPDATE channels SET name = ?2, type = ?3, destination = ?4 WHERE name = '\u{1}' || ?1",
                    params![old, w.name, w.kind, w.destination],
                )?,
                None => exec(
                    &tx,
                    "INSERT INTO channels (name, type, destination, done_through)
                     VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(id), 0) FROM events))",
                    params![w.name, w.kind, w.destination],
                )?,
            };
            if let Some(old) = old.as_deref().filter(|old| *old != w.name) {
                tracing::info!(channel = %w.name, "this channel was {old}; it keeps its place in the outbox");
            }
        }
        tx.commit()?;
        let states = self.channels()?;
        wanted
            .iter()
            .map(|w| {
                states
                    .iter()
                    .find(|c| c.name == w.name)
                    .cloned()
                    .ok_or(StoreError::Task(format!("channel {} vanished", w.name)))
            })
            .collect()
    }

    /// Every registered channel's state, by name.
    pub fn channels(&self) -> Result<Vec<ChannelState>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, type, done_through, attempts, failing_since, last_delivered_at, last_error,
                    last_error_at, given_up FROM channels ORDER BY name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ChannelState {
                    name: r.get(0)?,
                    kind: r.get(1)?,
                    done_through: r.get(2)?,
                    attempts: r.get(3)?,
                    failing_since: r.get::<_, Option<i64>>(4)?.map(time),
                    last_delivered_at: r.get::<_, Option<i64>>(5)?.map(time),
                    last_error: r.get(6)?,
                    last_error_at: r.get::<_, Option<i64>>(7)?.map(time),
                    given_up: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Events after `after`, oldest first, for a channel (quarantined ones included: they
    /// decode as unreadable, which no channel sends).
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, a.name, e.device_id, e.at, e.details, 0
             FROM events e JOIN accounts a ON a.id = e.account_id
             WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
        )?;
        let rows =
            stmt.query_map(params![after, limit as i64], stored_event)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// How many events after `after` have one of `kinds`: what a channel has waiting.
    pub fn count_after(&self, after: i64, kinds: &[&str]) -> Result<i64, StoreError> {
        let mut n = 0;
        let mut stmt = self.conn.prepare_cached("SELECT COUNT(*) FROM events WHERE id > ?1 AND kind = ?2")?;
        for k in kinds {
            n += stmt.query_row(params![after, k], |r| r.get::<_, i64>(0))?;
        }
        Ok(n)
    }

    /// The channel is done with every event up to `id`: sent when `delivered_at` is set,
    /// else skipped. The retry state starts over.
    pub fn channel_done(
        &self,
        name: &str,
        id: i64,
        delivered_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE channels SET done_through = MAX(done_through, ?2), attempts = 0, failing_since = NULL,
                    last_delivered_at = COALESCE(?3, last_delivered_at) WHERE name = ?1",
            params![name, id, delivered_at.map(ms)],
        )?;
        Ok(())
    }

    /// A failed attempt at the channel's next event.
    pub fn channel_failed(&self, name: &str, now: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE channels SET attempts = attempts + 1, failing_since = COALESCE(failing_since, ?2),
                    last_error = ?3, last_error_at = ?2 WHERE name = ?1",
            params![name, ms(now), error],
        )?;
        Ok(())
    }

    /// The channel gives up on event `id` (retried too long): it stays in the log.
    pub fn channel_gave_up(
        &self,
        name: &str,
        id: i64,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE channels SET done_through = MAX(done_through, ?2), attempts = 0, failing_since = NULL,
                    given_up = given_up + 1, last_error = ?4, last_error_at = ?3 WHERE name = ?1",
            params![name, id, ms(now), error],
        )?;
        Ok(())
    }

    /// The Spotify id a device was last seen with, if any.
    pub fn spotify_id(&self, key: DeviceKey) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT spotify_id FROM device_ids WHERE device_id = ?1 ORDER BY last_seen DESC LIMIT 1",
                [key],
                |r| r.get(0),
            )
            .optional()?)
    }
}
