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

impl Store {
    /// Registers a channel (by name) if it is new: it starts at the events recorded from
    /// now on. Returns its state.
    pub fn channel(&self, name: &str, kind: &str) -> Result<ChannelState, StoreError> {
        exec(
            &self.conn,
            "INSERT INTO channels (name, type, done_through)
             VALUES (?1, ?2, (SELECT COALESCE(MAX(id), 0) FROM events))
             ON CONFLICT(name) DO UPDATE SET type = excluded.type",
            params![name, kind],
        )?;
        self.channels()?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or(StoreError::Task(format!("channel {name} vanished")))
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
