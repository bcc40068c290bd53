//! Presence: when each device was online, and the retention that prunes old history.

use super::*;

/// One stretch a device was online: (device, start, end).
pub type Presence = (DeviceKey, DateTime<Utc>, DateTime<Utc>);

impl Store {
    /// Deletes events and presence intervals that ended before `before`. Devices stay: their
    /// trust must outlive any retention window. Returns the rows deleted.
    pub fn prune(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        // The newest row is kept whatever its age: ids are max(id) + 1, and the channels'
        // places in the outbox are ids, so deleting the newest would hand its id (or a lower
        // one) to the next event, which every channel would then take as already sent.
        let events = exec(
            &tx,
            "DELETE FROM events WHERE at < ?1 AND delivered_at IS NOT NULL AND id < (SELECT max(id) FROM events)",
            [ms(before)],
        )?;
        let presence = exec(&tx, "DELETE FROM presence WHERE ended_at < ?1", [ms(before)])?;
        tx.commit()?;
        Ok(events + presence)
    }

    /// The account's presence intervals overlapping `[from, to]`: (device, start, end).
    pub fn presence(
        &self,
        account: AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Presence>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT p.device_id, p.started_at, p.ended_at FROM presence p JOIN devices d ON d.id = p.device_id
             WHERE d.account_id = ?1 AND p.ended_at >= ?2 AND p.started_at <= ?3 ORDER BY p.started_at",
        )?;
        let rows = stmt
            .query_map(params![account, ms(from), ms(to)], |r| {
                Ok((r.get(0)?, time(r.get(1)?), time(r.get(2)?)))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
