-- spotguard schema, version 1. Times are Unix milliseconds (UTC).

-- One row per watched Spotify account; the poll columns are overwritten, never appended,
-- so the table does not grow with the number of polls.
CREATE TABLE accounts (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    spotify_user     TEXT,
    created_at       INTEGER NOT NULL,
    last_poll_at     INTEGER,            -- last successful poll
    last_poll_ms     INTEGER,            -- how long it took
    last_poll_devices INTEGER,
    last_error       TEXT,               -- last failed poll's one-line reason, cleared on success
    last_error_at    INTEGER,
    limit_alerted_at INTEGER
);

-- A device as the person knows it; Spotify's ids for it live in device_ids.
CREATE TABLE devices (
    id               INTEGER PRIMARY KEY,
    account_id       INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    type             TEXT NOT NULL,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    trusted          INTEGER NOT NULL DEFAULT 0,
    trusted_at       INTEGER,
    trusted_by       TEXT,
    label            TEXT,
    alerted_at       INTEGER,
    play_alerted_at  INTEGER,
    forgotten_at     INTEGER
);
CREATE INDEX devices_account ON devices(account_id, forgotten_at);

-- Every Spotify id a device was seen with: ids rotate, the device stays.
CREATE TABLE device_ids (
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    spotify_id  TEXT NOT NULL,
    device_id   INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (account_id, spotify_id)
);
CREATE INDEX device_ids_device ON device_ids(device_id);

-- When a device was online: one row per continuous stretch, extended in place.
CREATE TABLE presence (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER NOT NULL
);
CREATE INDEX presence_device ON presence(device_id, ended_at);

-- The audit log and the notification outbox in one: written in the poll's transaction,
-- delivered_at set once the person was told.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    device_id     INTEGER REFERENCES devices(id) ON DELETE SET NULL,
    at            INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    details       TEXT NOT NULL,
    delivered_at  INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_undelivered ON events(id) WHERE delivered_at IS NULL;
CREATE INDEX events_account_at ON events(account_id, at);
