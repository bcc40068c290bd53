-- spotguard schema, version 9 (issue 12): identity you can trust.

-- How much the device's name and ids prove: weak, name_derived, strong or named
-- (identity::classify). Computed in Rust, which SQL cannot do (sha1/md5 of the name): NULL
-- rows, such as every row right after this migration, are computed when the store opens,
-- and every seen device's again at each poll. Nothing trusted is untrusted by it.
ALTER TABLE devices ADD COLUMN strength TEXT;
-- `devices trust --any-session`: every session with this name and type is this device,
-- whatever its strength (the behaviour before this version, opted into per device).
ALTER TABLE devices ADD COLUMN any_session INTEGER NOT NULL DEFAULT 0;
-- When a generic-name alert said why new sessions are asked about: said once per account.
ALTER TABLE accounts ADD COLUMN identity_explained_at INTEGER;
