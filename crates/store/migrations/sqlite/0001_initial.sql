-- cronhook schema v1 (SQLite, embedded mode). Same tables and meaning as the Postgres
-- schema; instants are INTEGER milliseconds since the epoch, ids are hyphenated UUID text,
-- JSON is TEXT.

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER) * 1000)
);
INSERT INTO projects (id) VALUES ('default');

CREATE TABLE cluster_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE shard_leases (
    shard          INTEGER PRIMARY KEY,
    epoch          INTEGER NOT NULL DEFAULT 0,
    owner          TEXT,
    claimed_at     INTEGER,
    last_write_at  INTEGER
);

CREATE TABLE schedules (
    project_id    TEXT NOT NULL REFERENCES projects (id),
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    definition    TEXT NOT NULL,
    state         TEXT NOT NULL,
    state_reason  TEXT NOT NULL DEFAULT '',
    next_fire_at  INTEGER,
    runs_left     INTEGER,
    version       INTEGER NOT NULL,
    shard         INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE UNIQUE INDEX schedules_id ON schedules (id);
CREATE INDEX schedules_due ON schedules (shard, next_fire_at) WHERE state = 'active';

CREATE TABLE ticks (
    project_id        TEXT NOT NULL,
    id                TEXT PRIMARY KEY,
    schedule_id       TEXT NOT NULL,
    nominal_time      INTEGER NOT NULL,
    fire_time         INTEGER NOT NULL,
    trigger           TEXT NOT NULL,
    schedule_version  INTEGER NOT NULL,
    shard             INTEGER NOT NULL,
    epoch             INTEGER NOT NULL,
    state             TEXT NOT NULL,
    reason            TEXT,
    created_at        INTEGER NOT NULL,
    published_at      INTEGER,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX ticks_open ON ticks (shard, state, created_at) WHERE state IN ('planned', 'published');
CREATE INDEX ticks_schedule ON ticks (project_id, schedule_id, nominal_time DESC);

CREATE TABLE runs (
    project_id        TEXT NOT NULL,
    id                TEXT PRIMARY KEY,
    tick_id           TEXT NOT NULL UNIQUE,
    schedule_id       TEXT NOT NULL,
    nominal_time      INTEGER NOT NULL,
    schedule_version  INTEGER NOT NULL,
    trigger           TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    http_status       INTEGER,
    last_error        TEXT,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    next_attempt_at   INTEGER
);
CREATE INDEX runs_by_schedule ON runs (project_id, schedule_id, nominal_time DESC, id DESC);
CREATE INDEX runs_by_time ON runs (project_id, nominal_time DESC, id DESC);

CREATE TABLE attempts (
    project_id               TEXT NOT NULL,
    run_id                   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    number                   INTEGER NOT NULL,
    started_at               INTEGER NOT NULL,
    duration_ms              INTEGER NOT NULL,
    method                   TEXT NOT NULL,
    url                      TEXT NOT NULL,
    request_headers          TEXT NOT NULL,
    request_body_size        INTEGER NOT NULL,
    request_body_sha256      TEXT NOT NULL,
    response_status          INTEGER,
    response_headers         TEXT NOT NULL,
    response_body            BLOB NOT NULL,
    response_body_truncated  INTEGER NOT NULL,
    error_code               TEXT,
    error_message            TEXT,
    lateness_ms              INTEGER NOT NULL,
    PRIMARY KEY (run_id, number)
);
