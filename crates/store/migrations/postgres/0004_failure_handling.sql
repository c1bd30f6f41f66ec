-- Auto-pause counts consecutive failed runs per schedule; failure notifications are ticks
-- whose request is not the schedule's own (target_override).
ALTER TABLE schedules ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ticks ADD COLUMN target_override JSONB;
