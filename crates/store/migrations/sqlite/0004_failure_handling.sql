-- See the Postgres migration of the same name.
ALTER TABLE schedules ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ticks ADD COLUMN target_override TEXT;
