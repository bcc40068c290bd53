-- spotguard schema, version 3: a rate limit's wait survives restarts and reloads.

-- Until when Spotify asked this app to wait (429 Retry-After, quota); cleared by a success.
ALTER TABLE accounts ADD COLUMN retry_at INTEGER;
