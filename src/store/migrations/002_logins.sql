-- spotguard schema, version 2: the state of each account's login.

-- When Spotify stopped accepting the login (invalid_grant); cleared by a new login.
ALTER TABLE accounts ADD COLUMN access_lost_at INTEGER;
-- The authorisation time of the login last warned about as ending soon: one warning per login.
ALTER TABLE accounts ADD COLUMN expiry_warned_for INTEGER;
-- When the current login was made, and whose it is, for `status`.
ALTER TABLE accounts ADD COLUMN authorized_at INTEGER;
