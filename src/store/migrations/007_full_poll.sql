-- spotguard schema, version 7: polls that could not read every device.

-- The last successful poll that read every device Spotify listed. A poll that left out a
-- device it could not read cannot tell that any device went offline, so a device seen again
-- continues the presence interval it had at this poll (within the presence bridge).
ALTER TABLE accounts ADD COLUMN last_full_poll_at INTEGER;
-- Every poll before this version failed on an unreadable device instead of leaving it out.
UPDATE accounts SET last_full_poll_at = last_poll_at;
