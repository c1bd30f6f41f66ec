-- The due-schedules query filters the owned shards and orders by next_fire_at. With only
-- the (shard, next_fire_at) index, a herd (100k schedules due at once) made every pass
-- read all due rows of every owned shard and sort them, to return 500 (400 ms per pass,
-- docs/benchmarks.md). In next_fire_at order, a pass reads about batch size times the
-- number of planners rows and stops.
-- Building it blocks writes to schedules while it builds; on a large table, create it
-- beforehand with CREATE INDEX CONCURRENTLY under this name: IF NOT EXISTS then skips it.
CREATE INDEX IF NOT EXISTS schedules_due_time ON schedules (next_fire_at) WHERE state IN ('active', 'paused');
