//! Events: the outbox (undelivered rows, delivery marks and attempts, quarantine of rows
//! that cannot be read) and the history read back from it.

use super::*;

/// An event waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub account: String,
    pub device: Option<DeviceKey>,
    pub at: DateTime<Utc>,
    pub event: Event,
    pub attempts: u32,
}

/// An events row (id, account, device, at, details, attempts) as an event. Never fails on
/// the row's content: a value of the wrong type or JSON that does not decode gives
/// [`Event::Unreadable`], a kind from a newer version [`Event::Unknown`].
pub(super) fn stored_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    use rusqlite::types::ValueRef;
    let id: i64 = r.get(0)?;
    let account: String = r.get::<_, Option<String>>(1).ok().flatten().unwrap_or_default();
    let device = r.get_ref(2).ok().and_then(|v| v.as_i64().ok());
    let at = r.get_ref(3).ok().and_then(|v| v.as_i64().ok());
    let attempts =
        r.get_ref(5).ok().and_then(|v| v.as_i64().ok()).unwrap_or(0).clamp(0, u32::MAX.into()) as u32;
    let event = match (at, r.get_ref(4)?) {
        (None, _) => Event::Unreadable { reason: "its time is not a number".into() },
        (_, ValueRef::Text(t) | ValueRef::Blob(t)) => match std::str::from_utf8(t) {
            Ok(details) => crate::event::decode(details),
            Err(_) => Event::Unreadable { reason: "its details are not UTF-8".into() },
        },
        _ => Event::Unreadable { reason: "it has no details".into() },
    };
    Ok(StoredEvent { id, account, device, at: time(at.unwrap_or(0)), event, attempts })
}

pub(super) fn insert_event(
    tx: &Transaction<'_>,
    account: AccountId,
    device: Option<DeviceKey>,
    at: DateTime<Utc>,
    event: &Event,
    delivered_at: Option<DateTime<Utc>>,
) -> Result<i64, StoreError> {
    let details =
        serde_json::to_string(event).map_err(|e| StoreError::BadEvent { id: 0, reason: e.to_string() })?;
    exec(
        tx,
        "INSERT INTO events (account_id, device_id, at, kind, details, delivered_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![account, device, ms(at), event.kind(), details, delivered_at.map(ms)],
    )?;
    Ok(tx.last_insert_rowid())
}

impl Store {
    /// Events not yet delivered, oldest first. A row that cannot be read is quarantined here
    /// (marked, kept for `history`, logged once) and left out, so it never blocks the rest.
    pub fn undelivered(&mut self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        // Until a batch holds no unreadable row: each round sets some aside for good, so this
        // ends, and a batch is only short when the outbox is (the dispatcher relies on that).
        loop {
            let mut stmt = self.conn.prepare_cached(
                "SELECT e.id, a.name, e.device_id, e.at, e.details, e.attempts
                 FROM events e JOIN accounts a ON a.id = e.account_id
                 WHERE e.delivered_at IS NULL AND e.quarantined_at IS NULL ORDER BY e.id LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], stored_event)?.collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            let (ready, unreadable): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|ev| !matches!(ev.event, Event::Unreadable { .. }));
            if unreadable.is_empty() {
                return Ok(ready);
            }
            for ev in unreadable {
                if let Event::Unreadable { reason } = &ev.event {
                    tracing::warn!(event = ev.id, "a stored alert cannot be read and is set aside: {reason}");
                }
                exec(
                    &self.conn,
                    "UPDATE events SET quarantined_at = ?2 WHERE id = ?1",
                    params![ev.id, ms(Utc::now())],
                )?;
            }
        }
    }

    /// How many events wait for delivery (read only: unlike [`Store::undelivered`], nothing
    /// is set aside).
    pub fn pending(&self) -> Result<usize, StoreError> {
        let n: i64 = row(
            &self.conn,
            "SELECT count(*) FROM events WHERE delivered_at IS NULL AND quarantined_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Marks an event as delivered.
    pub fn mark_delivered(&mut self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        exec(&self.conn, "UPDATE events SET delivered_at = ?2 WHERE id = ?1", params![id, ms(now)])?;
        Ok(())
    }

    /// Counts a failed delivery attempt.
    pub fn note_attempt(&mut self, id: i64) -> Result<(), StoreError> {
        exec(&self.conn, "UPDATE events SET attempts = attempts + 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    /// The account's latest events, newest first.
    pub fn recent_events(&self, account: AccountId, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, a.name, e.device_id, e.at, e.details, e.attempts
             FROM events e JOIN accounts a ON a.id = e.account_id
             WHERE e.account_id = ?1 ORDER BY e.at DESC, e.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![account, limit as i64], stored_event)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Events since `since`, newest first, optionally of one account and one device.
    pub fn history(
        &self,
        since: DateTime<Utc>,
        account: Option<AccountId>,
        device: Option<DeviceKey>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, a.name, e.device_id, e.at, e.details, e.attempts
             FROM events e JOIN accounts a ON a.id = e.account_id
             WHERE e.at >= ?1 AND (?2 IS NULL OR e.account_id = ?2) AND (?3 IS NULL OR e.device_id = ?3)
             ORDER BY e.at DESC, e.id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![ms(since), account, device, limit as i64], stored_event)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
