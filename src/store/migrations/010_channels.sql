-- spotguard schema, version 10: delivery to the extra channels (ntfy, webhooks, e-mail).

-- One row per configured channel, by name. Each channel reads the outbox in event order on
-- its own: every event with an id above `done_through` is still to be sent (or skipped, by
-- urgency) to it. A channel added later starts at the events recorded after it appeared,
-- not the whole history. The head event's retry state lives here too: the channel keeps
-- order, so only one event per channel is ever being retried.
CREATE TABLE channels (
    name              TEXT PRIMARY KEY,
    type              TEXT NOT NULL,
    done_through      INTEGER NOT NULL,   -- events.id: everything up to it is done here
    attempts          INTEGER NOT NULL DEFAULT 0,   -- failed attempts at the next event
    failing_since     INTEGER,            -- first failed attempt at the next event
    last_delivered_at INTEGER,
    last_error        TEXT,               -- one line, never a secret or a URL path
    last_error_at     INTEGER,
    given_up          INTEGER NOT NULL DEFAULT 0    -- events given up after 24 h of retries
);
