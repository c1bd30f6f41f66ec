-- See the Postgres migration of the same name.
ALTER TABLE attempts ADD COLUMN dns_ms INTEGER;
ALTER TABLE attempts ADD COLUMN connect_ms INTEGER;
ALTER TABLE attempts ADD COLUMN ttfb_ms INTEGER;
