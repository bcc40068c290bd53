-- spotguard schema, version 11: a channel's place in the outbox follows where it sends.

-- A fingerprint of the channel's destination (its URL, topic or mail server and recipients;
-- never the value itself, which may hold a secret). A channel renamed, or renumbered by
-- moving in the config file, keeps its place by it; a name that now sends somewhere else
-- starts afresh. NULL for rows from before: those are matched by name once.
ALTER TABLE channels ADD COLUMN destination TEXT;
