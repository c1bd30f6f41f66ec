-- Retention finds old runs and ticks through the ledger's (project_id, nominal_time)
-- indexes instead of indexes on when they ended. Every run end and every tick end added
-- an entry to these two (the updates are never HOT), and index inserts were about half
-- of Postgres' CPU at 10k deliveries/s (docs/benchmarks.md).
DROP INDEX IF EXISTS runs_retention;
DROP INDEX IF EXISTS ticks_retention;
