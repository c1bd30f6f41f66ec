-- A run's id is its tick's id (RunId::of_tick): a tick has at most one run, so the tick id
-- is the run row's one unique key, and the separate unique index on `runs.tick_id` goes.
-- It took an entry at every run's insert and another at its end (that update is not HOT),
-- and every begin's conflict check read it as well as the primary key.
--
-- Runs begun before this migration had ids of their own: they take their tick's id, and
-- their attempts follow: an old run id is not found any more, the run is under its tick
-- id (docs/architecture.md). Old run ids were UUIDv7 and tick ids are UUIDv8 (scheduled
-- ticks) or UUIDv5 (manual triggers, and scheduled ticks of older releases), so no
-- rewritten id can collide with another run's. With time-ordered tick ids (the previous
-- release) the primary key still takes its inserts at the right edge.
UPDATE attempts a SET run_id = r.tick_id FROM runs r WHERE a.run_id = r.id AND r.id <> r.tick_id;
UPDATE runs SET id = tick_id WHERE id <> tick_id;
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_tick_id_key;
-- The column stays (the ledger reads it, and it documents the row); it cannot drift.
ALTER TABLE runs ADD CONSTRAINT runs_id_is_tick_id CHECK (id = tick_id);
