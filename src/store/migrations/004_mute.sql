-- spotguard schema, version 4: muted devices are recorded but never alerted.

-- Until when the device is muted (a far-future time for "until unmuted").
ALTER TABLE devices ADD COLUMN muted_until INTEGER;
