-- cronhook schema v1 (Postgres). Every table carries project_id from day one.

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO projects (id) VALUES ('default');

-- Cluster-wide settings every node must agree on (e.g. shard_count).
CREATE TABLE cluster_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Fencing: the epoch of each shard's current owner. Every planner write for a shard
-- checks (and locks) this row in the same transaction.
CREATE TABLE shard_leases (
    shard          INTEGER PRIMARY KEY,
    epoch          BIGINT NOT NULL DEFAULT 0,
    owner          TEXT,
    claimed_at     TIMESTAMPTZ,
    last_write_at  TIMESTAMPTZ
);

CREATE TABLE schedules (
    project_id    TEXT NOT NULL REFERENCES projects (id),
    id            UUID NOT NULL,
    name          TEXT NOT NULL,
    -- the user's definition (spec, target, policies) as JSON; see cronhook_core::NewSchedule
    definition    JSONB NOT NULL,
    state         TEXT NOT NULL,
    state_reason  TEXT NOT NULL DEFAULT '',
    next_fire_at  TIMESTAMPTZ,
    runs_left     BIGINT,
    version       BIGINT NOT NULL,
    shard         INTEGER NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE UNIQUE INDEX schedules_id ON schedules (id);
CREATE INDEX schedules_due ON schedules (shard, next_fire_at) WHERE state = 'active';

-- The tick ledger and the planner's outbox: one row per tick decided.
CREATE TABLE ticks (
    project_id        TEXT NOT NULL,
    id                UUID PRIMARY KEY,
    schedule_id       UUID NOT NULL,
    nominal_time      TIMESTAMPTZ NOT NULL,
    fire_time         TIMESTAMPTZ NOT NULL,
    trigger           TEXT NOT NULL,
    schedule_version  BIGINT NOT NULL,
    shard             INTEGER NOT NULL,
    epoch             BIGINT NOT NULL,
    state             TEXT NOT NULL,
    reason            TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    published_at      TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX ticks_open ON ticks (shard, state, created_at) WHERE state IN ('planned', 'published');
CREATE INDEX ticks_schedule ON ticks (project_id, schedule_id, nominal_time DESC);

CREATE TABLE runs (
    project_id        TEXT NOT NULL,
    id                UUID PRIMARY KEY,
    tick_id           UUID NOT NULL UNIQUE,
    schedule_id       UUID NOT NULL,
    nominal_time      TIMESTAMPTZ NOT NULL,
    schedule_version  BIGINT NOT NULL,
    trigger           TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    http_status       INTEGER,
    last_error        TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    started_at        TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    next_attempt_at   TIMESTAMPTZ
);
CREATE INDEX runs_by_schedule ON runs (project_id, schedule_id, nominal_time DESC, id DESC);
CREATE INDEX runs_by_time ON runs (project_id, nominal_time DESC, id DESC);

CREATE TABLE attempts (
    project_id               TEXT NOT NULL,
    run_id                   UUID NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    number                   INTEGER NOT NULL,
    started_at               TIMESTAMPTZ NOT NULL,
    duration_ms              BIGINT NOT NULL,
    method                   TEXT NOT NULL,
    url                      TEXT NOT NULL,
    request_headers          JSONB NOT NULL,
    request_body_size        BIGINT NOT NULL,
    request_body_sha256      TEXT NOT NULL,
    response_status          INTEGER,
    response_headers         JSONB NOT NULL,
    response_body            BYTEA NOT NULL,
    response_body_truncated  BOOLEAN NOT NULL,
    error_code               TEXT,
    error_message            TEXT,
    lateness_ms              BIGINT NOT NULL,
    PRIMARY KEY (run_id, number)
);
