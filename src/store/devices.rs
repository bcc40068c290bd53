//! The device records as the person handles them: listing and finding, trust, labels,
//! mutes, merging and forgetting, and the sign-out follow-up mark.

use super::*;

/// A device as listed to the person.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceRow {
    /// The store's key: stable, unlike Spotify's id.
    pub key: DeviceKey,
    /// The Spotify id seen most recently, if any.
    pub id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub trusted: bool,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Seen in the account's latest successful poll.
    pub online: bool,
    /// Muted until then (far future: until unmuted).
    pub muted_until: Option<DateTime<Utc>>,
    pub label: Option<String>,
    pub forgotten: bool,
    /// How much its name and ids prove (`identity::Strength`).
    pub strength: Strength,
    /// Every session with this name and type passes for it (`devices trust --any-session`).
    pub any_session: bool,
}

/// How a device query resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    One(DeviceRow),
    None,
    /// Several devices match; nothing should change.
    Ambiguous(Vec<DeviceRow>),
}

/// How long [`Store::mute`] silences a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mute {
    Until(DateTime<Utc>),
    UntilUnmuted,
}

pub(super) const DEVICE_ROW_SQL: &str = "
    SELECT d.id,
           (SELECT spotify_id FROM device_ids i WHERE i.device_id = d.id ORDER BY last_seen DESC LIMIT 1),
           d.name, d.type, d.trusted, d.first_seen, d.last_seen, d.label, d.forgotten_at,
           d.last_seen = a.last_poll_at, d.muted_until, d.strength, d.any_session
    FROM devices d JOIN accounts a ON a.id = d.account_id
    WHERE d.account_id = ?1
    ORDER BY d.last_seen DESC, d.id DESC";

pub(super) fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        key: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        trusted: r.get(4)?,
        first_seen: time(r.get(5)?),
        last_seen: time(r.get(6)?),
        label: r.get(7)?,
        forgotten: r.get::<_, Option<i64>>(8)?.is_some(),
        online: r.get::<_, Option<bool>>(9)?.unwrap_or(false),
        muted_until: r.get::<_, Option<i64>>(10)?.map(time),
        strength: Strength::parse(r.get::<_, Option<String>>(11)?.as_deref()),
        any_session: r.get(12)?,
    })
}

impl Store {
    /// The account's devices, most recently seen first.
    pub fn devices(&self, account: AccountId, include_forgotten: bool) -> Result<Vec<DeviceRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(DEVICE_ROW_SQL)?;
        let rows = stmt.query_map([account], device_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows.into_iter().filter(|d| include_forgotten || !d.forgotten).collect())
    }

    /// Finds a device by store key, Spotify id, id prefix (4+ characters) or unique name
    /// (case-insensitive). An exact key or id wins over prefixes and names.
    pub fn find_device(&self, account: AccountId, query: &str) -> Result<Found, StoreError> {
        let query = query.trim();
        let devices = self.devices(account, false)?;
        let ids = self.ids_by_device(account)?;
        let ids_of = |key: DeviceKey| ids.iter().filter(move |(k, _)| *k == key).map(|(_, id)| id.as_str());
        let exact: Vec<&DeviceRow> = devices
            .iter()
            .filter(|d| query.parse::<DeviceKey>().ok() == Some(d.key) || ids_of(d.key).any(|id| id == query))
            .collect();
        let candidates: Vec<&DeviceRow> = if exact.is_empty() {
            let lower = query.to_lowercase();
            devices
                .iter()
                .filter(|d| {
                    (query.len() >= 4 && ids_of(d.key).any(|id| id.starts_with(query)))
                        || d.name.to_lowercase() == lower
                })
                .collect()
        } else {
            exact
        };
        Ok(match candidates.as_slice() {
            [] => Found::None,
            [one] => Found::One((*one).clone()),
            many => Found::Ambiguous(many.iter().map(|d| (*d).clone()).collect()),
        })
    }

    fn ids_by_device(&self, account: AccountId) -> Result<Vec<(DeviceKey, String)>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT device_id, spotify_id FROM device_ids WHERE account_id = ?1")?;
        let rows =
            stmt.query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Takes trust back: the device is alerted on again like any unknown one.
    pub fn untrust(&mut self, key: DeviceKey) -> Result<bool, StoreError> {
        let n = exec(
            &self.conn,
            "UPDATE devices SET trusted = 0, trusted_at = NULL, trusted_by = NULL, alerted_at = NULL, any_session = 0
             WHERE id = ?1 AND trusted = 1 AND forgotten_at IS NULL",
            [key],
        )?;
        Ok(n == 1)
    }

    /// Mutes a device: recorded, never alerted. Returns whether the device exists.
    pub fn mute(&mut self, key: DeviceKey, how_long: Mute) -> Result<bool, StoreError> {
        // "Until unmuted" is stored as the last millisecond of year 9999.
        let until = match how_long {
            Mute::Until(at) => ms(at),
            Mute::UntilUnmuted => 253_402_300_799_999,
        };
        let n = exec(&self.conn, "UPDATE devices SET muted_until = ?2 WHERE id = ?1", params![key, until])?;
        Ok(n == 1)
    }

    /// Ends a device's mute. Returns whether the device exists.
    pub fn unmute(&mut self, key: DeviceKey) -> Result<bool, StoreError> {
        let n = exec(&self.conn, "UPDATE devices SET muted_until = NULL WHERE id = ?1", [key])?;
        Ok(n == 1)
    }

    /// Notes that "Sign out everywhere" was pressed on this device's alert, to follow it up.
    pub fn mark_signout(&mut self, key: DeviceKey, now: DateTime<Utc>) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE devices SET signout_at = ?2, signout_followed = 0 WHERE id = ?1",
            params![key, ms(now)],
        )?;
        Ok(())
    }

    /// Sets (or with `None` clears) the person's own label for a device.
    pub fn label(&mut self, key: DeviceKey, label: Option<&str>) -> Result<bool, StoreError> {
        let n = exec(&self.conn, "UPDATE devices SET label = ?2 WHERE id = ?1", params![key, label])?;
        Ok(n == 1)
    }

    /// Lets every session with this device's name and type pass for it, or with `false` only
    /// what its strength allows (`devices trust --any-session`). Returns false if no such device.
    pub fn set_any_session(&mut self, key: DeviceKey, any: bool) -> Result<bool, StoreError> {
        let n = exec(
            &self.conn,
            "UPDATE devices SET any_session = ?2 WHERE id = ?1 AND forgotten_at IS NULL",
            params![key, any],
        )?;
        Ok(n == 1)
    }

    /// Trusts a device and records who did. Returns false if it was already trusted.
    pub fn trust(&mut self, key: DeviceKey, by: TrustedBy, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let row: Option<(AccountId, String, String, bool)> = row(
            &tx,
            "SELECT account_id, name, type, trusted FROM devices WHERE id = ?1 AND forgotten_at IS NULL",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
        let Some((account, name, device_type, trusted)) = row else { return Ok(false) };
        if trusted {
            return Ok(false);
        }
        let by_text = match by {
            TrustedBy::Cli => "cli",
            TrustedBy::Notification => "notification",
        };
        exec(
            &tx,
            "UPDATE devices SET trusted = 1, trusted_at = ?2, trusted_by = ?3 WHERE id = ?1",
            params![key, ms(now), by_text],
        )?;
        // The person's own act needs no notification: it is born delivered.
        insert_event(
            &tx,
            account,
            Some(key),
            now,
            &Event::DeviceTrusted { name, device_type, by },
            Some(now),
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Folds device `merged` into `kept`: its Spotify ids, presence and events move over, the
    /// first and last sightings combine, and `kept` is trusted if either was. `merged` is
    /// deleted. For one device that Spotify showed as two (a new id and a new name at once).
    pub fn merge(
        &mut self,
        kept: DeviceKey,
        merged: DeviceKey,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let (account, kept_name, merged_name): (AccountId, String, String) = row(
            &tx,
            "SELECT k.account_id, k.name, m.name FROM devices k JOIN devices m ON m.account_id = k.account_id
             WHERE k.id = ?1 AND m.id = ?2",
            params![kept, merged],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        exec(&tx, "UPDATE device_ids SET device_id = ?1 WHERE device_id = ?2", params![kept, merged])?;
        exec(&tx, "UPDATE presence SET device_id = ?1 WHERE device_id = ?2", params![kept, merged])?;
        exec(&tx, "UPDATE events SET device_id = ?1 WHERE device_id = ?2", params![kept, merged])?;
        exec(
            &tx,
            "UPDATE devices SET
                first_seen = min(first_seen, (SELECT first_seen FROM devices WHERE id = ?2)),
                last_seen = max(last_seen, (SELECT last_seen FROM devices WHERE id = ?2)),
                trusted = max(trusted, (SELECT trusted FROM devices WHERE id = ?2)),
                label = coalesce(label, (SELECT label FROM devices WHERE id = ?2))
             WHERE id = ?1",
            params![kept, merged],
        )?;
        exec(&tx, "DELETE FROM devices WHERE id = ?1", [merged])?;
        refresh_strength(&tx, kept)?;
        insert_event(
            &tx,
            account,
            Some(kept),
            now,
            &Event::DevicesMerged { kept: kept_name, merged: merged_name },
            Some(now),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a device: it leaves the list and its ids are released, so if it comes back it
    /// is a new, untrusted device. Its history (events, presence) stays.
    pub fn forget(&mut self, key: DeviceKey, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let n = exec(
            &tx,
            "UPDATE devices SET forgotten_at = ?2, trusted = 0 WHERE id = ?1 AND forgotten_at IS NULL",
            params![key, ms(now)],
        )?;
        exec(&tx, "DELETE FROM device_ids WHERE device_id = ?1", [key])?;
        tx.commit()?;
        Ok(n == 1)
    }
}
