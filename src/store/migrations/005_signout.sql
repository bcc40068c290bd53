-- spotguard schema, version 5: following up a "Sign out everywhere".

-- When the person pressed "Sign out everywhere" on this device's alert; cleared once the
-- device is gone (the remedy worked).
ALTER TABLE devices ADD COLUMN signout_at INTEGER;
-- Whether the "probably a partner device" notice was given for that sign-out.
ALTER TABLE devices ADD COLUMN signout_followed INTEGER NOT NULL DEFAULT 0;
