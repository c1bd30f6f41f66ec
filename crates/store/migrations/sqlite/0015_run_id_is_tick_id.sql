-- A run's id is its tick's id (RunId::of_tick); see the Postgres migration of the same
-- name. Runs begun before it take their tick's id, and their attempts follow. SQLite keeps
-- the unique constraint on `runs.tick_id` (dropping it needs a table rebuild); both unique
-- keys now hold the same value. The attempts' foreign key is checked at commit, once both
-- tables are rewritten.
PRAGMA defer_foreign_keys = ON;
UPDATE attempts SET run_id = (SELECT r.tick_id FROM runs r WHERE r.id = attempts.run_id)
    WHERE run_id IN (SELECT id FROM runs WHERE id <> tick_id);
UPDATE runs SET id = tick_id WHERE id <> tick_id;
