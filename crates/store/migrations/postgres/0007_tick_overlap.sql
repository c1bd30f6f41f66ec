-- A tick's own overlap policy when it is not the schedule's (backfills choose theirs).
ALTER TABLE ticks ADD COLUMN overlap TEXT;
