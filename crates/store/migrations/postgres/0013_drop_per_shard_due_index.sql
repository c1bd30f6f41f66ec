-- The due query reads `schedules_due_time (next_fire_at)` in order, with sorts disabled
-- (see PgStore::due_schedules), so the per-shard `schedules_due (shard, next_fire_at)`
-- is never read: pg_stat_user_indexes showed 0 scans of it over a benchmark run. Every
-- plan commit still added an entry to it for each schedule it advanced (that update is
-- never HOT). A planner owning few of many shards reads past other shards' rows in
-- `next_fire_at` order; that was already so with this index in place.
DROP INDEX IF EXISTS schedules_due;
