-- See the Postgres migration of the same name.
DROP INDEX IF EXISTS runs_retention;
DROP INDEX IF EXISTS ticks_retention;
