-- See the Postgres migration of the same name.
ALTER TABLE ticks ADD COLUMN overlap TEXT;
