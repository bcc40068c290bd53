-- spotguard schema, version 8: which login was lost.

-- The fingerprint (TokenSet::login_fingerprint: 16 hex digits of a SHA-256 of the refresh
-- token, never the token) of the login Spotify refused when access was lost. Any stored login
-- with another fingerprint resumes polling, also after a restart. NULL: access was lost before
-- this column existed, or is not lost.
ALTER TABLE accounts ADD COLUMN lost_login TEXT;
