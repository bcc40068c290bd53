//! Recording a poll: what is known about an account's devices ([`Known`]), and the one
//! transaction that reads it, lets the pure rules plan, and writes the plan (devices, ids,
//! presence, events), or on a file that takes no writes returns the plan unrecorded.

use super::*;

/// What [`Store::poll`] read, planned and wrote.
#[derive(Debug)]
pub struct Polled {
    pub known: Known,
    pub plan: Plan,
    /// The new events' ids; empty for a dry run or when nothing could be written.
    pub ids: Vec<i64>,
    /// Why the plan could not be written, if it could not: nothing of this poll is recorded.
    pub unrecorded: Option<StoreError>,
}

/// Whether a poll's plan is written ([`Store::poll`]): `check --dry-run`-style callers only look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    Record,
    DryRun,
}

/// What the audit rules need to know about `account` at `now`, read on `conn` (the store's
/// connection, or a poll's transaction).
/// `bridge` bounds how old the previous poll may be to count as one poll interval ago.
pub(super) fn load_known_on(
    conn: &Connection,
    account: AccountId,
    now: DateTime<Utc>,
    bridge: Duration,
) -> Result<Known, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.name, d.type, d.trusted, d.alerted_at, d.play_alerted_at,
                (SELECT group_concat(spotify_id, char(31)) FROM device_ids i WHERE i.device_id = d.id),
                d.muted_until, d.signout_at, d.signout_followed, d.strength, d.any_session, d.last_seen,
                (SELECT first_seen FROM device_ids i WHERE i.device_id = d.id ORDER BY last_seen DESC LIMIT 1)
         FROM devices d WHERE d.account_id = ?1 AND d.forgotten_at IS NULL",
    )?;
    let mut devices = stmt
        .query_map([account], |r| {
            let ids: Option<String> = r.get(6)?;
            Ok(KnownDevice {
                key: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                trusted: r.get(3)?,
                alerted_at: r.get::<_, Option<i64>>(4)?.map(time),
                play_alerted_at: r.get::<_, Option<i64>>(5)?.map(time),
                muted_until: r.get::<_, Option<i64>>(7)?.map(time),
                signout: r.get::<_, Option<i64>>(8)?.map(time).map(|at| (at, r.get(9).unwrap_or(false))),
                spotify_ids: ids.map(|s| s.split('\u{1f}').map(str::to_string).collect()).unwrap_or_default(),
                renames_today: 0,
                strength: Strength::parse(r.get::<_, Option<String>>(10)?.as_deref()),
                any_session: r.get(11)?,
                last_seen: Some(time(r.get(12)?)),
                id_since: r.get::<_, Option<i64>>(13)?.map(time),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // Rename events of the last day, per device: one range of the account's events (indexed
    // by account and time), not a scan per device.
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, count(*) FROM events
         WHERE account_id = ?1 AND at >= ?2 AND kind = 'device_renamed' AND device_id IS NOT NULL
         GROUP BY device_id",
    )?;
    let day_ago = ms(now - chrono::Duration::days(1));
    let renames: std::collections::HashMap<DeviceKey, u32> = stmt
        .query_map(params![account, day_ago], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for d in &mut devices {
        d.renames_today = renames.get(&d.key).copied().unwrap_or(0);
    }
    let since = ms(now - chrono::Duration::days(i64::from(LIMIT_WINDOW_DAYS)));
    let mut stmt = conn.prepare_cached("SELECT id FROM devices WHERE account_id = ?1 AND last_seen >= ?2")?;
    let seen_in_window = stmt.query_map(params![account, since], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let (limit_alerted_at, last_poll, explained): (Option<i64>, Option<i64>, Option<i64>) = row(
        conn,
        "SELECT limit_alerted_at, last_poll_at, identity_explained_at FROM accounts WHERE id = ?1",
        [account],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let limit_alerted_at = limit_alerted_at.map(time);
    let bridge = chrono::Duration::from_std(bridge).unwrap_or(chrono::Duration::MAX);
    let previous_poll = last_poll.map(time).filter(|at| now.signed_duration_since(*at) <= bridge);
    let first_run =
        !row(conn, "SELECT EXISTS (SELECT 1 FROM devices WHERE account_id = ?1)", [account], |r| {
            r.get::<_, bool>(0)
        })?;
    Ok(Known {
        devices,
        seen_in_window,
        limit_alerted_at,
        first_run,
        previous_poll,
        identity_explained: explained.is_some(),
    })
}

pub(super) fn record_poll_tx(
    tx: &Transaction<'_>,
    account: AccountId,
    now: DateTime<Utc>,
    took: Duration,
    plan: &Plan,
    bridge: Duration,
) -> Result<Vec<i64>, StoreError> {
    let now_ms = ms(now);
    let bridge_ms = bridge.as_millis() as i64;
    let (prev_poll, last_full): (Option<i64>, Option<i64>) =
        row(tx, "SELECT last_poll_at, last_full_poll_at FROM accounts WHERE id = ?1", [account], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    // An interval that reached `since` goes on. Normally that is the previous successful
    // poll. Polls since the last full one left out devices they could not read, so they
    // could not see a device go: reaching the last full poll is enough then, but never
    // further back than the bridge. Too long since any successful poll: nothing bridges.
    let since = prev_poll
        .filter(|prev| now_ms - prev <= bridge_ms)
        .map(|prev| prev.min(last_full.unwrap_or(i64::MIN).max(now_ms - bridge_ms)));
    let mut keys = Vec::with_capacity(plan.seen.len());
    for seen in &plan.seen {
        let d = &seen.device;
        let key = match seen.target {
            Target::Known(key) => {
                exec(
                    tx,
                    "UPDATE devices SET last_seen = ?2,
                        name = CASE WHEN ?3 THEN ?4 ELSE name END,
                        alerted_at = CASE WHEN ?5 THEN ?2 ELSE alerted_at END,
                        play_alerted_at = CASE WHEN ?6 THEN ?2 ELSE play_alerted_at END
                     WHERE id = ?1",
                    params![key, now_ms, seen.renamed, d.name, seen.alerted, seen.play_alerted],
                )?;
                key
            }
            Target::New => {
                exec(tx,
                    "INSERT INTO devices (account_id, name, type, first_seen, last_seen, alerted_at, play_alerted_at)
                     VALUES (?1, ?2, ?3, ?4, ?4, CASE WHEN ?5 THEN ?4 END, CASE WHEN ?6 THEN ?4 END)",
                    params![account, d.name, d.kind, now_ms, seen.alerted, seen.play_alerted],
                )?;
                tx.last_insert_rowid()
            }
        };
        if let Some(id) = &d.id {
            // The usual case, the same id on the same record, moves only `last_seen`: setting
            // `device_id` too, even to its value, rewrites its index entry and one more page
            // goes to the WAL at every poll.
            let same = exec(
                tx,
                "UPDATE device_ids SET last_seen = ?4 WHERE account_id = ?1 AND spotify_id = ?2 AND device_id = ?3",
                params![account, id, key, now_ms],
            )?;
            if same == 0 {
                exec(tx,
                    "INSERT INTO device_ids (account_id, spotify_id, device_id, first_seen, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?4)
                     ON CONFLICT(account_id, spotify_id) DO UPDATE SET device_id = excluded.device_id, last_seen = excluded.last_seen",
                    params![account, id, key, now_ms],
                )?;
            }
            // An id that rotates every poll must not add a row every poll: the newest
            // MAX_ALIASES stay. Only a new alias can push one out, so only then is it checked.
            if seen.new_alias.is_some() {
                exec(
                    tx,
                    "DELETE FROM device_ids WHERE device_id = ?1 AND spotify_id NOT IN (
                         SELECT spotify_id FROM device_ids WHERE device_id = ?1
                         ORDER BY last_seen DESC, first_seen DESC LIMIT ?2)",
                    params![key, MAX_ALIASES],
                )?;
            }
        }
        extend_presence(tx, key, since, now_ms)?;
        refresh_strength(tx, key)?;
        keys.push(key);
    }
    let mut ids = Vec::with_capacity(plan.events.len());
    for e in &plan.events {
        let device = e.seen.and_then(|i| keys.get(i).copied());
        ids.push(insert_event(tx, account, device, now, &e.event, None)?);
    }
    for (key, outcome) in &plan.sign_outs {
        match outcome {
            SignOutOutcome::Worked => {
                exec(tx, "UPDATE devices SET signout_at = NULL, signout_followed = 0 WHERE id = ?1", [key])?
            }
            SignOutOutcome::StillOnline => {
                exec(tx, "UPDATE devices SET signout_followed = 1 WHERE id = ?1", [key])?
            }
        };
    }
    exec(
        tx,
        "UPDATE accounts SET last_poll_at = ?2, last_poll_ms = ?3, last_poll_devices = ?4,
            last_error = NULL, last_error_at = NULL,
            limit_alerted_at = CASE WHEN ?5 THEN ?2 ELSE limit_alerted_at END,
            last_full_poll_at = CASE WHEN ?6 THEN ?2 ELSE last_full_poll_at END,
            identity_explained_at = CASE WHEN ?7 THEN ?2 ELSE identity_explained_at END
         WHERE id = ?1",
        params![
            account,
            now_ms,
            took.as_millis() as i64,
            plan.seen.len() as i64,
            plan.limit_alerted,
            plan.skipped == 0,
            plan.identity_explained
        ],
    )?;
    Ok(ids)
}

/// Computes and stores the strength of record `key` from its name and recorded ids.
pub(super) fn refresh_strength(tx: &Transaction<'_>, key: DeviceKey) -> Result<(), StoreError> {
    let name: String = row(tx, "SELECT name FROM devices WHERE id = ?1", [key], |r| r.get(0))?;
    let mut stmt =
        tx.prepare_cached("SELECT spotify_id, first_seen, last_seen FROM device_ids WHERE device_id = ?1")?;
    let ids = stmt
        .query_map([key], |r| {
            Ok(IdSpan { id: r.get(0)?, first_seen: time(r.get(1)?), last_seen: time(r.get(2)?) })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let strength = crate::identity::classify(&name, &ids);
    // Written only when it changed: this runs for every seen device at every poll, and an
    // UPDATE to the same value still dirties the page and goes to the WAL.
    exec(
        tx,
        "UPDATE devices SET strength = ?2 WHERE id = ?1 AND strength IS NOT ?2",
        params![key, strength.as_str()],
    )?;
    Ok(())
}

/// A device whose latest interval reaches `since` (the previous successful poll, or further
/// back across polls that left out unreadable devices; see `record_poll_tx`) extends it;
/// otherwise it starts a new one. Failed polls do not move `last_poll_at`, so a short stretch
/// of failures is bridged and a long one is not.
pub(super) fn extend_presence(
    tx: &Transaction<'_>,
    key: DeviceKey,
    since: Option<i64>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let open: Option<i64> = match since {
        Some(prev) => row(
            tx,
            "SELECT id FROM presence WHERE device_id = ?1 AND ended_at >= ?2 ORDER BY ended_at DESC LIMIT 1",
            params![key, prev],
            |r| r.get(0),
        )
        .optional()?,
        None => None,
    };
    match open {
        Some(id) => exec(tx, "UPDATE presence SET ended_at = ?2 WHERE id = ?1", params![id, now_ms])?,
        None => exec(
            tx,
            "INSERT INTO presence (device_id, started_at, ended_at) VALUES (?1, ?2, ?2)",
            params![key, now_ms],
        )?,
    };
    Ok(())
}

impl Store {
    /// What the audit rules need to know about `account` at `now`.
    pub fn load_known(&self, account: AccountId, now: DateTime<Utc>) -> Result<Known, StoreError> {
        load_known_on(&self.conn, account, now, self.bridge)
    }

    /// One poll, one transaction: reads what is known, lets `decide` (the pure audit rules)
    /// plan, and records the plan, under one IMMEDIATE transaction, so nothing can change
    /// between the read and the write and SQLite takes its locks once. With
    /// [`Recording::DryRun`] nothing is written (a read transaction).
    ///
    /// When the plan cannot be written because the file cannot be (a full disk, an I/O
    /// error, a read-only file), what is known is read again without writing and the plan
    /// made from it is returned with [`Polled::unrecorded`] set: the caller still alerts from
    /// memory. Only a failure to read is an error.
    pub fn poll(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        took: Duration,
        recording: Recording,
        decide: impl Fn(&Known) -> Plan,
    ) -> Result<Polled, StoreError> {
        if recording == Recording::Record {
            let bridge = self.bridge;
            let attempt = (|| {
                let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let known = load_known_on(&tx, account, now, bridge)?;
                let plan = decide(&known);
                let ids = record_poll_tx(&tx, account, now, took, &plan, bridge)?;
                tx.commit()?;
                Ok::<_, StoreError>(Polled { known, plan, ids, unrecorded: None })
            })();
            match attempt {
                Err(e) if e.is_write_failure() => {
                    let mut polled = self.poll(account, now, took, Recording::DryRun, decide)?;
                    polled.unrecorded = Some(e);
                    return Ok(polled);
                }
                other => return other,
            }
        }
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
        let known = load_known_on(&tx, account, now, self.bridge)?;
        let plan = decide(&known);
        tx.commit()?;
        Ok(Polled { known, plan, ids: Vec::new(), unrecorded: None })
    }
}
