//! Account state: the accounts, their poll bookkeeping (last poll, last error, rate-limit
//! waits), their login (lost, back, ending soon) and the "not watching" outages.

use super::*;

/// What the last polls of an account left behind, for `status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AccountStatus {
    pub name: String,
    pub spotify_user: Option<String>,
    pub access_lost_at: Option<DateTime<Utc>>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_poll_ms: Option<i64>,
    pub last_poll_devices: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// The start of an outage the "not watching" notice was given for, while it lasts.
    pub not_watching_since: Option<DateTime<Utc>>,
}

impl Store {
    /// The id of the account named `name`, created on first use.
    pub fn account(&mut self, name: &str, now: DateTime<Utc>) -> Result<AccountId, StoreError> {
        exec(
            &self.conn,
            "INSERT INTO accounts (name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![name, ms(now)],
        )?;
        Ok(row(&self.conn, "SELECT id FROM accounts WHERE name = ?1", [name], |r| r.get(0))?)
    }

    /// The account's id if it exists; read-only callers must not create one.
    pub fn find_account(&self, name: &str) -> Result<Option<AccountId>, StoreError> {
        Ok(row(&self.conn, "SELECT id FROM accounts WHERE name = ?1", [name], |r| r.get(0)).optional()?)
    }

    /// Notes a failed poll. Presence and devices are left exactly as they were: a failed
    /// poll is never evidence of anything.
    pub fn record_failure(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE accounts SET last_error = ?2, last_error_at = ?3 WHERE id = ?1",
            params![account, error, ms(now)],
        )?;
        Ok(())
    }

    /// Records (or with `None` clears) until when Spotify asked the account's polls to wait.
    pub fn set_retry_at(&mut self, account: AccountId, at: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        exec(&self.conn, "UPDATE accounts SET retry_at = ?2 WHERE id = ?1", params![account, at.map(ms)])?;
        Ok(())
    }

    /// Until when polls must wait, if Spotify asked for that.
    pub fn retry_at(&self, account: AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> =
            row(&self.conn, "SELECT retry_at FROM accounts WHERE id = ?1", [account], |r| r.get(0))?;
        Ok(at.map(time))
    }

    /// The poll bookkeeping of every account, by name.
    pub fn account_status(&self) -> Result<Vec<AccountStatus>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, last_poll_at, last_poll_ms, last_poll_devices, last_error, last_error_at,
                    spotify_user, access_lost_at, not_watching_since
             FROM accounts ORDER BY name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AccountStatus {
                    name: r.get(0)?,
                    last_poll_at: r.get::<_, Option<i64>>(1)?.map(time),
                    last_poll_ms: r.get(2)?,
                    last_poll_devices: r.get(3)?,
                    last_error: r.get(4)?,
                    last_error_at: r.get::<_, Option<i64>>(5)?.map(time),
                    spotify_user: r.get(6)?,
                    access_lost_at: r.get::<_, Option<i64>>(7)?.map(time),
                    not_watching_since: r.get::<_, Option<i64>>(8)?.map(time),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records that Spotify no longer accepts the account's login, with its event, once.
    /// `login` is the dead login's fingerprint (never a token); it is kept (replaced if
    /// access was already lost) so that a restarted daemon knows which login not to use.
    /// Returns the event's id, or `None` if access was already marked lost.
    pub fn mark_access_lost(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        reason: &str,
        login: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        exec(&tx, "UPDATE accounts SET lost_login = ?2 WHERE id = ?1", params![account, login])?;
        let n = exec(
            &tx,
            "UPDATE accounts SET access_lost_at = ?2 WHERE id = ?1 AND access_lost_at IS NULL",
            params![account, ms(now)],
        )?;
        let id = if n == 1 {
            Some(insert_event(
                &tx,
                account,
                None,
                now,
                &Event::AccessLost { reason: reason.to_string() },
                None,
            )?)
        } else {
            None
        };
        tx.commit()?;
        Ok(id)
    }

    /// When access was lost, if it is.
    pub fn access_lost_at(&self, account: AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> =
            row(&self.conn, "SELECT access_lost_at FROM accounts WHERE id = ?1", [account], |r| r.get(0))?;
        Ok(at.map(time))
    }

    /// The fingerprint of the login that was lost, if access is lost and it is known.
    pub fn lost_login(&self, account: AccountId) -> Result<Option<String>, StoreError> {
        Ok(row(
            &self.conn,
            "SELECT lost_login FROM accounts WHERE id = ?1 AND access_lost_at IS NOT NULL",
            [account],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
    }

    /// The Spotify user the account's last login was for, if one was recorded.
    pub fn spotify_user(&self, account: AccountId) -> Result<Option<String>, StoreError> {
        Ok(row(&self.conn, "SELECT spotify_user FROM accounts WHERE id = ?1", [account], |r| r.get(0))?)
    }

    /// A new login: access is back, and who it is, recorded as an event.
    pub fn record_login(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        user: &str,
        authorized_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        exec(
            &tx,
            "UPDATE accounts SET access_lost_at = NULL, lost_login = NULL, spotify_user = ?2, authorized_at = ?3
             WHERE id = ?1",
            params![account, user, ms(authorized_at)],
        )?;
        insert_event(&tx, account, None, now, &Event::LoggedIn { user: user.to_string() }, Some(now))?;
        tx.commit()?;
        Ok(())
    }

    /// Clears a lost-access mark when another login is found in the token store.
    pub fn clear_access_lost(&mut self, account: AccountId) -> Result<(), StoreError> {
        exec(
            &self.conn,
            "UPDATE accounts SET access_lost_at = NULL, lost_login = NULL WHERE id = ?1",
            [account],
        )?;
        Ok(())
    }

    /// When the account was last polled successfully.
    pub fn last_poll_at(&self, account: AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> =
            row(&self.conn, "SELECT last_poll_at FROM accounts WHERE id = ?1", [account], |r| r.get(0))?;
        Ok(at.map(time))
    }

    /// Records the "not watching" notice for the outage that began at `since`, once per
    /// outage. Returns the event's id, or `None` if this outage was already told.
    pub fn not_watching(
        &mut self,
        account: AccountId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let n = exec(
            &tx,
            "UPDATE accounts SET not_watching_since = ?2 WHERE id = ?1 AND not_watching_since IS NULL",
            params![account, ms(since)],
        )?;
        let id = if n == 1 {
            let event = Event::NotWatching { since, reason: reason.to_string() };
            Some(insert_event(&tx, account, None, now, &event, None)?)
        } else {
            None
        };
        tx.commit()?;
        Ok(id)
    }

    /// Ends a told outage after a successful poll, with a quiet "watching again" event.
    /// Returns the event's id, or `None` if no outage was told.
    pub fn watching_again(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let since: Option<i64> =
            row(&tx, "SELECT not_watching_since FROM accounts WHERE id = ?1", [account], |r| r.get(0))?;
        let id = match since {
            Some(since) => {
                exec(&tx, "UPDATE accounts SET not_watching_since = NULL WHERE id = ?1", [account])?;
                Some(insert_event(
                    &tx,
                    account,
                    None,
                    now,
                    &Event::WatchingAgain { since: time(since) },
                    None,
                )?)
            }
            None => None,
        };
        tx.commit()?;
        Ok(id)
    }

    /// Records the "login ends soon" warning for the login authorised at `authorized_at`,
    /// once per login. Returns the event's id, or `None` if this login was already warned about.
    pub fn warn_login_expiring(
        &mut self,
        account: AccountId,
        now: DateTime<Utc>,
        authorized_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let n = exec(
            &tx,
            "UPDATE accounts SET expiry_warned_for = ?2
             WHERE id = ?1 AND (expiry_warned_for IS NULL OR expiry_warned_for <> ?2)",
            params![account, ms(authorized_at)],
        )?;
        let id = if n == 1 {
            Some(insert_event(&tx, account, None, now, &Event::LoginExpiring { expires_at }, None)?)
        } else {
            None
        };
        tx.commit()?;
        Ok(id)
    }
}
