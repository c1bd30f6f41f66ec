-- Runs are listed and purged through the ledger's tick indexes (a run's id, project,
-- schedule and nominal time are its tick's); see the Postgres migration of the same name.
DROP INDEX IF EXISTS runs_by_schedule;
DROP INDEX IF EXISTS runs_by_time;
