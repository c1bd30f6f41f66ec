-- See the Postgres migration of the same name.
DROP INDEX IF EXISTS schedules_due;
CREATE INDEX schedules_due ON schedules (shard, next_fire_at) WHERE state IN ('active', 'paused');
CREATE INDEX ticks_by_time ON ticks (project_id, nominal_time DESC, id DESC);
CREATE INDEX ticks_retention ON ticks (updated_at) WHERE state NOT IN ('planned', 'published');
CREATE INDEX runs_retention ON runs (finished_at) WHERE finished_at IS NOT NULL;
