-- spotguard schema, version 6: never silent.

-- An outbox row that cannot be read (a downgrade, a damaged row): kept for `history`, but
-- never offered for delivery again, so it cannot block the alerts behind it.
ALTER TABLE events ADD COLUMN quarantined_at INTEGER;
-- The start of the outage a "not watching" notice was given for; cleared (with a
-- "watching again" event) at the next successful poll. One notice per outage.
ALTER TABLE accounts ADD COLUMN not_watching_since INTEGER;
