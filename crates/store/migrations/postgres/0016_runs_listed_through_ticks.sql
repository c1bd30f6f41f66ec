-- A run's id is its tick's id, and a run copies its tick's project, schedule and nominal
-- time, so the ledger's tick indexes `ticks_by_time (project_id, nominal_time, id)` and
-- `ticks_schedule (project_id, schedule_id, nominal_time)` already order every run: a run
-- never exists without its tick (a tick is purged only once its run is gone). ListRuns
-- and retention now read runs through those indexes, one primary-key probe per tick, and
-- the two run indexes that duplicated them go. Each took an entry at a run's insert and
-- another at its end (that update is not HOT): 4 of the 16 index entries a delivery wrote.
DROP INDEX IF EXISTS runs_by_schedule;
DROP INDEX IF EXISTS runs_by_time;
