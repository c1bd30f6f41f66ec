//! Postgres implementation (distributed mode). Instants are `TIMESTAMPTZ`, JSON is `JSONB`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cronhook_core::{
    Attempt, OverlapPolicy, ProjectId, Run, RunId, RunStatus, Schedule, ScheduleId, ScheduleState, Tick, TickId,
    TickState, Timestamp,
};
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::rows::{
    AttemptRow, Begun, EffectStep, LEDGER_RUN, LEDGER_STATE, LEDGER_UPDATED_AT, LedgerRow, OVERLAP_BUFFER_FULL,
    OVERLAP_CANCELLED, RunRow, ScheduleRow, TickRow, auto_pause_reason, begin_results, corrupt, first_copies,
    inserted_begins, last_error, legacy_of, overlap_reason_running, plan_effects, safe, stale_etag, statement_chunks,
    to_json,
};
use crate::{
    AttemptRecord, BeginRun, Error, LeaseOwner, NextFire, PlanOutcome, PlannedSchedule, PlannedTick, Result, RunFilter,
    RunLease, RunStore, ScheduleStore, ShardLease, TickFilter, TickStore,
};

/// Stores everything in Postgres.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

fn dt(t: Timestamp) -> DateTime<Utc> {
    t.to_chrono().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn ms(row: &PgRow, col: &str) -> Result<i64> {
    Ok(row.try_get::<DateTime<Utc>, _>(col)?.timestamp_millis())
}

fn ms_opt(row: &PgRow, col: &str) -> Result<Option<i64>> {
    Ok(row.try_get::<Option<DateTime<Utc>>, _>(col)?.map(|d| d.timestamp_millis()))
}

fn shard_list(shards: &[u32]) -> Vec<i32> {
    shards.iter().map(|s| *s as i32).collect()
}

const SCHEDULE_COLS: &str = "project_id, id, definition::text AS definition, state, state_reason, next_fire_at, \
                             runs_left, version, shard, created_at, updated_at";
const TICK_COLS: &str = "t.project_id, t.id, t.schedule_id, t.nominal_time, t.fire_time, t.trigger, \
                         t.schedule_version, t.shard, t.epoch, s.definition::text AS definition, t.target_override::text AS target_override, t.overlap";
/// True for a tick `t` without a run: a scalar subquery, which Postgres runs as one probe of
/// the runs' primary key per tick. As `NOT EXISTS` it may become a hash anti join that
/// reads every run (30 days of them) in each pass, or once per shard: a reconciliation
/// pass in a 10k/s benchmark ran for 43 s that way, with the planner stalled.
const NO_RUN: &str = "(SELECT r.id FROM runs r WHERE r.id = t.id) IS NULL";

/// The reconciliation cursor of shard `shard` (an SQL expression; migration 0014).
fn cursor_of(shard: &str) -> String {
    format!("COALESCE((SELECT rc.published_before FROM reconcile_cursors rc WHERE rc.shard = {shard}), '-infinity')")
}

/// A `FROM` list of the ticks `t` (columns `cols`) that the shards `$1` published since
/// their reconciliation cursors, with more conditions `and` on them: one range scan of
/// `ticks_published` per shard. `OFFSET 0` keeps Postgres from flattening the `LATERAL`
/// subquery into a join, where the cursor became a join filter over every published tick
/// whenever the statistics made that look cheaper (1-2.6 s a pass, growing, in a 10k/s
/// benchmark, with the planner stalled meanwhile).
fn published_since_cursor(cols: &str, and: &str) -> String {
    format!(
        "UNNEST($1::int[]) AS c(shard) LEFT JOIN reconcile_cursors rc ON rc.shard = c.shard \
         CROSS JOIN LATERAL (SELECT {cols} FROM ticks t WHERE t.shard = c.shard AND t.state = 'published' \
         AND t.published_at >= COALESCE(rc.published_before, '-infinity') {and} OFFSET 0) t"
    )
}

/// [`TickStore::ticks_without_run`]'s scan: `$1` shards, `$2` published before, `$3` limit.
fn ticks_without_run_sql() -> String {
    let since = published_since_cursor("t.*", &format!("AND t.published_at < $2 AND {NO_RUN}"));
    format!(
        "SELECT {TICK_COLS}, t.published_at FROM {since} \
         JOIN schedules s ON s.id = t.schedule_id ORDER BY t.fire_time LIMIT $3"
    )
}

/// [`TickStore::unfinished_ticks`]'s scan: `$1` shards, `$2` limit.
fn unfinished_ticks_sql() -> String {
    let since = published_since_cursor("t.id", "");
    format!(
        "WITH ids AS ( \
           SELECT t.id FROM ticks t WHERE t.shard = ANY($1) AND t.state = 'planned' \
           UNION SELECT t.id FROM {since} \
           UNION SELECT r.id FROM runs r WHERE r.shard = ANY($1) AND r.status IN ('pending', 'running') \
             AND NOT r.parked \
           UNION SELECT r.id FROM runs r WHERE r.shard = ANY($1) AND r.parked) \
         SELECT {TICK_COLS} FROM ids JOIN ticks t ON t.id = ids.id JOIN schedules s ON s.id = t.schedule_id \
         WHERE t.state IN ('planned', 'published') \
         AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = t.id AND r.status IN ('succeeded', 'failed', 'cancelled')) \
         ORDER BY t.fire_time, t.id LIMIT $2"
    )
}

/// The start of ListRuns, up to the project's bind: runs are read through their ticks'
/// ledger indexes (a run's id, project, schedule and nominal time are its tick's; migration
/// 0016), each by one probe of its primary key. The fenced (`OFFSET 0`) lateral subquery
/// keeps that a nested loop in the ticks' order whatever the statistics: a page never
/// joins over all runs.
fn list_runs_sql() -> String {
    format!(
        "SELECT r.* FROM ticks t CROSS JOIN LATERAL (SELECT {RUN_COLS} FROM runs WHERE runs.id = t.id OFFSET 0) r \
         WHERE t.project_id = "
    )
}

const RUN_COLS: &str = "project_id, id, tick_id, schedule_id, nominal_time, schedule_version, trigger, status, \
                        attempt_count, http_status, last_error, created_at, started_at, finished_at, next_attempt_at, parked";

fn schedule_row(r: &PgRow) -> Result<Schedule> {
    ScheduleRow {
        project_id: r.try_get("project_id")?,
        id: r.try_get("id")?,
        definition: r.try_get("definition")?,
        state: r.try_get("state")?,
        state_reason: r.try_get("state_reason")?,
        next_fire_at: ms_opt(r, "next_fire_at")?,
        runs_left: r.try_get("runs_left")?,
        version: r.try_get("version")?,
        shard: i64::from(r.try_get::<i32, _>("shard")?),
        created_at: ms(r, "created_at")?,
        updated_at: ms(r, "updated_at")?,
    }
    .into_domain()
}

fn tick_row(r: &PgRow) -> Result<Tick> {
    TickRow {
        project_id: r.try_get("project_id")?,
        id: r.try_get("id")?,
        schedule_id: r.try_get("schedule_id")?,
        nominal_time: ms(r, "nominal_time")?,
        fire_time: ms(r, "fire_time")?,
        trigger: r.try_get("trigger")?,
        schedule_version: r.try_get("schedule_version")?,
        shard: i64::from(r.try_get::<i32, _>("shard")?),
        epoch: r.try_get("epoch")?,
        definition: r.try_get("definition")?,
        target_override: r.try_get("target_override")?,
        overlap: r.try_get("overlap")?,
    }
    .into_domain()
}

fn run_row(r: &PgRow) -> Result<Run> {
    RunRow {
        project_id: r.try_get("project_id")?,
        id: r.try_get("id")?,
        tick_id: r.try_get("tick_id")?,
        schedule_id: r.try_get("schedule_id")?,
        nominal_time: ms(r, "nominal_time")?,
        schedule_version: r.try_get("schedule_version")?,
        trigger: r.try_get("trigger")?,
        status: r.try_get("status")?,
        attempt_count: i64::from(r.try_get::<i32, _>("attempt_count")?),
        http_status: r.try_get::<Option<i32>, _>("http_status")?.map(i64::from),
        last_error: r.try_get("last_error")?,
        created_at: ms(r, "created_at")?,
        started_at: ms_opt(r, "started_at")?,
        finished_at: ms_opt(r, "finished_at")?,
        next_attempt_at: ms_opt(r, "next_attempt_at")?,
        parked: r.try_get("parked")?,
    }
    .into_domain()
}

/// An existing run read with its lease owner (`RUN_COLS, lease_owner`).
fn begun_row(r: &PgRow) -> Result<Begun> {
    let owner: Option<Uuid> = r.try_get("lease_owner")?;
    Ok(Begun { run: run_row(r)?, owner: owner.map(LeaseOwner::from_uuid), created: false })
}

fn attempt_row(r: &PgRow) -> Result<Attempt> {
    AttemptRow {
        run_id: r.try_get("run_id")?,
        number: i64::from(r.try_get::<i32, _>("number")?),
        started_at: ms(r, "started_at")?,
        duration_ms: r.try_get("duration_ms")?,
        method: r.try_get("method")?,
        url: r.try_get("url")?,
        request_headers: r.try_get("request_headers")?,
        request_body_size: r.try_get("request_body_size")?,
        request_body_sha256: r.try_get("request_body_sha256")?,
        response_status: r.try_get::<Option<i32>, _>("response_status")?.map(i64::from),
        response_headers: r.try_get("response_headers")?,
        response_body: r.try_get("response_body")?,
        response_body_truncated: r.try_get("response_body_truncated")?,
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        lateness_ms: r.try_get("lateness_ms")?,
        dns_ms: r.try_get("dns_ms")?,
        connect_ms: r.try_get("connect_ms")?,
        ttfb_ms: r.try_get("ttfb_ms")?,
    }
    .into_domain()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// Retention deletes of a batch of runs and of ticks. They find old rows through the
/// ledger's `ticks_by_time (project_id, nominal_time)` index, one range per project: no
/// index on `finished_at` or `updated_at`, which every run end and tick end would have to
/// update (migration 0012), and none on runs' nominal times (a run is found through its
/// tick, one primary-key probe each: migration 0016). A row is old once both its nominal
/// time and its end are past the cutoff.
const PURGE_RUNS: &str = "DELETE FROM runs WHERE id IN (SELECT t.id FROM ticks t \
     WHERE t.project_id = ANY(ARRAY(SELECT id FROM projects)) AND t.nominal_time < $1 \
     AND (SELECT r.finished_at FROM runs r WHERE r.id = t.id) < $1 LIMIT $2) \
     RETURNING id";
/// See [`PURGE_RUNS`]; a tick goes only once its run is gone.
const PURGE_TICKS: &str = "DELETE FROM ticks WHERE id IN (SELECT id FROM ticks \
     WHERE project_id = ANY(ARRAY(SELECT id FROM projects)) AND nominal_time < $1 \
     AND state NOT IN ('planned', 'published') AND updated_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = ticks.id) LIMIT $2)";

/// Records a tick outside a plan (manual trigger, failure notification, backfill) in
/// `planned`, unless its id, or the legacy id of a scheduled tick's fire time, is a tick.
async fn insert_tick_in<'e>(e: impl sqlx::PgExecutor<'e>, t: &Tick) -> Result<bool> {
    let target_override = match t.trigger {
        cronhook_core::TriggerKind::Notification => Some(to_json(&t.target)?),
        _ => None,
    };
    let legacy = t.id.legacy_of(t.schedule_id, t.nominal_time);
    let res = sqlx::query(
        "INSERT INTO ticks (project_id, id, schedule_id, nominal_time, fire_time, trigger, schedule_version, \
         shard, epoch, state, created_at, updated_at, target_override, overlap) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'planned', now(), now(), $10::jsonb, $11 \
         WHERE NOT EXISTS (SELECT 1 FROM ticks o WHERE o.id = $12) ON CONFLICT (id) DO NOTHING",
    )
    .bind(t.project_id.as_str())
    .bind(t.id.as_uuid())
    .bind(t.schedule_id.as_uuid())
    .bind(dt(t.nominal_time))
    .bind(dt(t.fire_time))
    .bind(t.trigger.as_str())
    .bind(t.schedule_version)
    .bind(t.shard as i32)
    .bind(t.epoch)
    .bind(target_override)
    .bind((t.trigger == cronhook_core::TriggerKind::Backfill).then(|| t.overlap.as_str()))
    .bind(legacy.map(|l| *l.as_uuid()))
    .execute(e)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Begins the runs of a batch of ticks on `conn` (see [`RunStore::begin_run`]): one insert,
/// then one take-over of the runs that existed, then one read of who holds them.
async fn begin_runs_in(
    conn: &mut sqlx::PgConnection,
    items: &[(Tick, RunLease)],
    now: Timestamp,
) -> Result<Vec<BeginRun>> {
    let inserts = first_copies(items);
    let inserted = sqlx::query(
        "INSERT INTO runs (project_id, id, tick_id, schedule_id, nominal_time, schedule_version, trigger, status, \
         created_at, shard, lease_until, lease_owner) SELECT p, i, t, s, n, v, tr, 'pending', $8, sh, l, o \
         FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::uuid[], $5::timestamptz[], $6::bigint[], $7::text[], \
         $9::int[], $10::timestamptz[], $11::uuid[]) AS x(p, i, t, s, n, v, tr, sh, l, o) \
         WHERE EXISTS (SELECT 1 FROM ticks WHERE ticks.id = x.t) ON CONFLICT (id) DO NOTHING RETURNING id",
    )
    .bind(inserts.iter().map(|(t, _)| t.project_id.to_string()).collect::<Vec<_>>())
    .bind(inserts.iter().map(|(t, _)| *RunId::of_tick(t.id).as_uuid()).collect::<Vec<_>>())
    .bind(inserts.iter().map(|(t, _)| *t.id.as_uuid()).collect::<Vec<_>>())
    .bind(inserts.iter().map(|(t, _)| *t.schedule_id.as_uuid()).collect::<Vec<_>>())
    .bind(inserts.iter().map(|(t, _)| dt(t.nominal_time)).collect::<Vec<_>>())
    .bind(inserts.iter().map(|(t, _)| t.schedule_version).collect::<Vec<_>>())
    .bind(inserts.iter().map(|(t, _)| t.trigger.as_str()).collect::<Vec<_>>())
    .bind(dt(now))
    .bind(inserts.iter().map(|(t, _)| t.shard as i32).collect::<Vec<_>>())
    .bind(inserts.iter().map(|(_, l)| dt(l.until)).collect::<Vec<_>>())
    .bind(inserts.iter().map(|(_, l)| *l.owner.as_uuid()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let created: HashSet<Uuid> = inserted.iter().map(|r| r.try_get("id")).collect::<sqlx::Result<_>>()?;
    let mut found: HashMap<TickId, Begun> =
        inserted_begins(&inserts, |id| created.contains(id.as_uuid()), now).collect();
    let others: Vec<&(Tick, RunLease)> = items.iter().filter(|(t, _)| !found.contains_key(&t.id)).collect();
    if !others.is_empty() {
        // Take over what no live delivery holds (one row wins per run), then read back
        // who holds each.
        sqlx::query(
            "UPDATE runs SET lease_until = v.l, lease_owner = v.o \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::uuid[]) AS v(t, l, o) \
             WHERE runs.id = v.t AND runs.status NOT IN ('succeeded', 'failed', 'cancelled') \
             AND (runs.lease_owner IS NULL OR runs.lease_owner = v.o OR runs.parked OR runs.lease_until IS NULL \
             OR runs.lease_until < $4)",
        )
        .bind(others.iter().map(|(t, _)| *RunId::of_tick(t.id).as_uuid()).collect::<Vec<_>>())
        .bind(others.iter().map(|(_, l)| dt(l.until)).collect::<Vec<_>>())
        .bind(others.iter().map(|(_, l)| *l.owner.as_uuid()).collect::<Vec<_>>())
        .bind(dt(now))
        .execute(&mut *conn)
        .await?;
        let rows = sqlx::query(safe(format!("SELECT {RUN_COLS}, lease_owner FROM runs WHERE id = ANY($1)")))
            .bind(others.iter().map(|(t, _)| *RunId::of_tick(t.id).as_uuid()).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
        for r in &rows {
            let b = begun_row(r)?;
            found.insert(b.run.tick_id, b);
        }
    }
    begin_results(items.iter().map(|(t, l)| (&t.id, l.owner)), found)
}

/// [`begin_runs_in`] for one tick.
async fn begin_one_in(conn: &mut sqlx::PgConnection, tick: &Tick, lease: RunLease, now: Timestamp) -> Result<BeginRun> {
    let mut out = begin_runs_in(conn, &[(tick.clone(), lease)], now).await?;
    out.pop().ok_or_else(|| Error::Corrupt(format!("no begin result for tick {}", tick.id)))
}

/// Applies a final run's consequences to its schedule (auto-pause count, notification).
/// Applies the consequences of the final runs among `recs` to their schedules (failure
/// counts and auto-pause, notifications, buffered ticks), in a few statements per batch.
async fn apply_effects(tx: &mut sqlx::Transaction<'_, Postgres>, recs: &[AttemptRecord]) -> Result<()> {
    let plan = plan_effects(recs);
    for step in &plan.steps {
        match step {
            EffectStep::Reset(list) => {
                sqlx::query(
                    "UPDATE schedules s SET consecutive_failures = 0 FROM UNNEST($1::text[], $2::uuid[]) AS v(p, i) \
                     WHERE s.project_id = v.p AND s.id = v.i AND s.consecutive_failures <> 0",
                )
                .bind(list.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>())
                .bind(list.iter().map(|(_, i)| *i.as_uuid()).collect::<Vec<_>>())
                .execute(&mut **tx)
                .await?;
            }
            EffectStep::One(rec, fx) => {
                if rec.status == RunStatus::Failed {
                    let n: Option<i32> = sqlx::query_scalar(
                        "UPDATE schedules SET consecutive_failures = consecutive_failures + 1 \
                         WHERE project_id = $1 AND id = $2 RETURNING consecutive_failures",
                    )
                    .bind(rec.project_id.as_str())
                    .bind(fx.schedule_id.as_uuid())
                    .fetch_optional(&mut **tx)
                    .await?;
                    if fx.auto_pause_after > 0 && n.is_some_and(|n| n as u32 >= fx.auto_pause_after) {
                        sqlx::query(
                            "UPDATE schedules SET state = 'paused', state_reason = $3, version = version + 1, \
                             updated_at = now() WHERE project_id = $1 AND id = $2 AND state = 'active'",
                        )
                        .bind(rec.project_id.as_str())
                        .bind(fx.schedule_id.as_uuid())
                        .bind(auto_pause_reason(fx.auto_pause_after))
                        .execute(&mut **tx)
                        .await?;
                    }
                }
                if let Some(n) = &fx.notification {
                    insert_tick_in(&mut **tx, n).await?;
                }
            }
        }
    }
    // overlap buffer_one: the run ended, the schedule's buffered tick goes to the outbox
    if !plan.ended.is_empty() {
        sqlx::query(
            "UPDATE ticks SET state = 'planned', reason = NULL, fire_time = now(), updated_at = now() WHERE id IN \
             (SELECT (SELECT b.id FROM ticks b WHERE b.schedule_id = e.i AND b.state = 'buffered' \
             ORDER BY b.nominal_time LIMIT 1) FROM UNNEST($1::uuid[]) AS e(i))",
        )
        .bind(plan.ended.iter().map(|i| *i.as_uuid()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl PgStore {
    /// Connects, runs migrations, and records `shard_count` if the cluster has none yet.
    pub async fn connect(url: &str, shard_count: u32) -> Result<Self> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        Self::from_pool(pool, shard_count).await
    }

    /// Uses an existing pool (migrating it first).
    pub async fn from_pool(pool: PgPool, shard_count: u32) -> Result<Self> {
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = Self { pool };
        store.init_shards(shard_count).await?;
        Ok(store)
    }

    async fn init_shards(&self, shard_count: u32) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO cluster_settings (key, value) VALUES ('shard_count', $1) ON CONFLICT DO NOTHING")
            .bind(shard_count.to_string())
            .execute(&mut *tx)
            .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM cluster_settings WHERE key = 'shard_count'")
            .fetch_one(&mut *tx)
            .await?;
        let n: i32 = stored.parse().map_err(|_| corrupt("cluster_settings.shard_count", &stored))?;
        if n as u32 != shard_count {
            tracing::warn!(
                configured = shard_count,
                stored = n,
                "shard count is fixed at cluster creation; using the stored one"
            );
        }
        sqlx::query("INSERT INTO shard_leases (shard) SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING")
            .bind(n)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Returns the pool (for tests and admin queries).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn insert_schedule(&self, s: &Schedule) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO schedules (project_id, id, name, definition, state, state_reason, next_fire_at, runs_left, \
             version, shard, created_at, updated_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(s.project_id.as_str())
        .bind(s.id.as_uuid())
        .bind(&s.def.name)
        .bind(to_json(&s.def)?)
        .bind(s.state.as_str())
        .bind(&s.state_reason)
        .bind(s.next_fire_at.map(dt))
        .bind(s.runs_left.map(|n| n as i64))
        .bind(s.version)
        .bind(s.shard as i32)
        .bind(dt(s.created_at))
        .bind(dt(s.updated_at))
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists(format!("schedule {}", s.id))),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_schedule(&self, project: &ProjectId, id: ScheduleId) -> Result<Schedule> {
        let row = sqlx::query(safe(format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE project_id = $1 AND id = $2")))
            .bind(project.as_str())
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("schedule {id}")))?;
        schedule_row(&row)
    }

    async fn list_schedules(
        &self,
        project: &ProjectId,
        state: Option<ScheduleState>,
        after: Option<ScheduleId>,
        limit: u32,
    ) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(safe(format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE project_id = $1 AND ($2::text IS NULL OR state = $2) \
             AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4"
        )))
        .bind(project.as_str())
        .bind(state.map(ScheduleState::as_str))
        .bind(after.map(|a| *a.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule_row).collect()
    }

    async fn update_schedule(&self, s: &Schedule, expected_version: i64, next_fire: NextFire) -> Result<Schedule> {
        let (set_next, next) = match next_fire {
            NextFire::Keep => (false, None),
            NextFire::Set(t) => (true, t),
        };
        let row = sqlx::query(safe(format!(
            "UPDATE schedules SET name = $3, definition = $4::jsonb, state = $5, state_reason = $6, \
             next_fire_at = CASE WHEN $7 THEN $8 ELSE next_fire_at END, \
             runs_left = CASE WHEN $7 THEN $9 ELSE runs_left END, \
             consecutive_failures = CASE WHEN $5 = 'active' AND state <> 'active' THEN 0 ELSE consecutive_failures END, \
             version = version + 1, updated_at = $10 \
             WHERE project_id = $1 AND id = $2 AND version = $11 RETURNING {SCHEDULE_COLS}"
        )))
        .bind(s.project_id.as_str())
        .bind(s.id.as_uuid())
        .bind(&s.def.name)
        .bind(to_json(&s.def)?)
        .bind(s.state.as_str())
        .bind(&s.state_reason)
        .bind(set_next)
        .bind(next.map(dt))
        .bind(s.runs_left.map(|n| n as i64))
        .bind(dt(s.updated_at))
        .bind(expected_version)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => schedule_row(&r),
            None => {
                let current = self.get_schedule(&s.project_id, s.id).await?;
                Err(stale_etag(s.id, current.version, expected_version))
            }
        }
    }

    async fn delete_schedule(&self, project: &ProjectId, id: ScheduleId, expected_version: Option<i64>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let deleted: Option<i32> = sqlx::query_scalar(
            "DELETE FROM schedules WHERE project_id = $1 AND id = $2 AND ($3::bigint IS NULL OR version = $3) \
             RETURNING shard",
        )
        .bind(project.as_str())
        .bind(id.as_uuid())
        .bind(expected_version)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(shard) = deleted else {
            drop(tx);
            let current = self.get_schedule(project, id).await?;
            return Err(stale_etag(id, current.version, expected_version.unwrap_or_default()));
        };
        // Its ticks that no worker has: in the outbox, or published since the shard's
        // reconciliation cursor (every tick published before it has a run).
        sqlx::query(safe(format!(
            "UPDATE ticks SET state = 'cancelled', reason = 'schedule deleted', updated_at = now() \
             WHERE schedule_id = $1 AND shard = $2 AND (state = 'planned' OR (state = 'published' \
             AND published_at >= {})) AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = ticks.id)",
            cursor_of("$2")
        )))
        .bind(id.as_uuid())
        .bind(shard)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl TickStore for PgStore {
    async fn now(&self) -> Result<Timestamp> {
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&self.pool).await?;
        Ok(Timestamp::from_chrono(now))
    }

    async fn shard_count(&self) -> Result<u32> {
        let v: String = sqlx::query_scalar("SELECT value FROM cluster_settings WHERE key = 'shard_count'")
            .fetch_one(&self.pool)
            .await?;
        v.parse().map_err(|_| corrupt("cluster_settings.shard_count", &v))
    }

    async fn list_ticks(&self, project: &ProjectId, f: &TickFilter) -> Result<Vec<cronhook_core::LedgerEntry>> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT t.id, t.schedule_id, t.nominal_time, t.fire_time, {LEDGER_STATE} AS state, t.reason, t.trigger, \
             t.created_at, {LEDGER_UPDATED_AT} AS updated_at \
             FROM ticks t {LEDGER_RUN} WHERE t.project_id = "
        ));
        qb.push_bind(project.as_str());
        if let Some(s) = f.schedule_id {
            qb.push(" AND t.schedule_id = ").push_bind(*s.as_uuid());
        }
        if !f.states.is_empty() {
            let st: Vec<&str> = f.states.iter().map(|s| s.as_str()).collect();
            qb.push(format_args!(" AND {LEDGER_STATE} = ANY(")).push_bind(st).push(")");
        }
        if let Some(t) = f.from {
            qb.push(" AND t.nominal_time >= ").push_bind(dt(t));
        }
        if let Some(t) = f.to {
            qb.push(" AND t.nominal_time < ").push_bind(dt(t));
        }
        if let Some((t, id)) = f.before {
            qb.push(" AND (t.nominal_time, t.id) < (").push_bind(dt(t)).push(", ").push_bind(*id.as_uuid()).push(")");
        }
        qb.push(" ORDER BY t.nominal_time DESC, t.id DESC LIMIT ").push_bind(i64::from(f.limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                LedgerRow {
                    id: r.try_get("id")?,
                    schedule_id: r.try_get("schedule_id")?,
                    nominal_time: ms(r, "nominal_time")?,
                    fire_time: ms(r, "fire_time")?,
                    state: r.try_get("state")?,
                    reason: r.try_get("reason")?,
                    trigger: r.try_get("trigger")?,
                    created_at: ms(r, "created_at")?,
                    updated_at: ms(r, "updated_at")?,
                }
                .into_domain()
            })
            .collect()
    }

    async fn purge_before(&self, cutoff: Timestamp, limit: u32) -> Result<u64> {
        // attempts go with their runs (no foreign key: migration 0011); ticks only once
        // their run is gone
        let mut tx = self.pool.begin().await?;
        let runs: Vec<Uuid> =
            sqlx::query_scalar(PURGE_RUNS).bind(dt(cutoff)).bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        sqlx::query("DELETE FROM attempts WHERE run_id = ANY($1)").bind(&runs).execute(&mut *tx).await?;
        // A tick whose outcome was its run's (LEDGER_STATE) goes with it (a run's id is its tick's).
        let with_runs = sqlx::query("DELETE FROM ticks WHERE id = ANY($1) AND state IN ('planned', 'published')")
            .bind(&runs)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        let runs = runs.len() as u64 + with_runs;
        let ticks =
            sqlx::query(PURGE_TICKS).bind(dt(cutoff)).bind(i64::from(limit)).execute(&self.pool).await?.rows_affected();
        Ok(runs + ticks)
    }

    async fn shard_leases(&self) -> Result<Vec<ShardLease>> {
        let rows = sqlx::query("SELECT shard, epoch, owner, claimed_at FROM shard_leases ORDER BY shard")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ShardLease {
                    shard: r.try_get::<i32, _>("shard")? as u32,
                    epoch: r.try_get("epoch")?,
                    owner: r.try_get("owner")?,
                    claimed_at: ms_opt(r, "claimed_at")?.map(Timestamp::from_millis),
                })
            })
            .collect()
    }

    async fn max_epoch(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(epoch) FROM shard_leases").fetch_one(&self.pool).await?;
        Ok(v.unwrap_or(0))
    }

    async fn claim_shard(&self, shard: u32, epoch: i64, owner: &str) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE shard_leases SET epoch = $2, owner = $3, claimed_at = now() WHERE shard = $1 AND epoch <= $2",
        )
        .bind(shard as i32)
        .bind(epoch)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn due_schedules(&self, shards: &[u32], horizon: Timestamp, limit: u32) -> Result<Vec<Schedule>> {
        // The only good plan is the `next_fire_at` index in order, stopping after `limit`
        // matches. Postgres picks it when its statistics know the due rows; when they do not
        // (a herd inserted seconds before it fires, before autovacuum analyzed it) it chose
        // a plan that read every due row and sorted them, on every pass (a 100k herd took
        // 61.5 s instead of about 15, docs/benchmarks.md). Without sorts that plan is gone.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL enable_sort = off").execute(&mut *tx).await?;
        let rows = sqlx::query(safe(format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE state IN ('active', 'paused') AND shard = ANY($1) \
             AND next_fire_at <= $2 ORDER BY next_fire_at LIMIT $3"
        )))
        .bind(shard_list(shards))
        .bind(dt(horizon))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(schedule_row).collect()
    }

    async fn commit_plans(&self, epochs: &[(u32, i64)], plan: &[PlannedSchedule]) -> Result<PlanOutcome> {
        let mut tx = self.pool.begin().await?;
        // Fencing (DESIGN.md invariant 4): the lease rows are locked here (in shard order, so
        // two planners never deadlock) and held until commit, so a concurrent claim with a
        // newer epoch waits for us, and our writes fail once it committed.
        let mut shards: Vec<i32> = epochs.iter().map(|(s, _)| *s as i32).collect();
        shards.sort_unstable();
        let current: HashMap<u32, i64> = sqlx::query_as::<_, (i32, i64)>(
            "SELECT shard, epoch FROM shard_leases WHERE shard = ANY($1) ORDER BY shard FOR UPDATE",
        )
        .bind(&shards)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(s, e)| (s as u32, e))
        .collect();
        let mut out = PlanOutcome::default();
        let mut valid: HashMap<u32, i64> = HashMap::new();
        for &(shard, epoch) in epochs {
            if current.get(&shard) == Some(&epoch) {
                valid.insert(shard, epoch);
            } else {
                out.fenced.push((shard, epoch));
            }
        }
        if valid.is_empty() {
            return Ok(out);
        }
        // The row locks above are the fence; writing `last_write_at` as well cost an UPDATE of
        // up to every shard's row per pass (a herd touches all 256) and nothing reads it.
        let plan: Vec<&PlannedSchedule> = plan.iter().filter(|p| valid.contains_key(&p.shard)).collect();
        // Two statements whatever the batch: one UPDATE of every schedule (UNNEST), then one
        // INSERT of the ticks of those that advanced (docs/benchmarks.md has the figures).
        let advanced_ids: HashSet<Uuid> = sqlx::query(
            "UPDATE schedules s SET next_fire_at = v.nx, runs_left = v.rl, \
             state = CASE WHEN v.nx IS NULL THEN 'completed' ELSE s.state END, \
             state_reason = CASE WHEN v.nx IS NULL THEN 'no more fire times' ELSE s.state_reason END \
             FROM UNNEST($1::text[], $2::uuid[], $3::bigint[], $4::timestamptz[], $5::bigint[], $6::timestamptz[]) \
             AS v(p, i, ver, nx, rl, ex) \
             WHERE s.project_id = v.p AND s.id = v.i AND s.version = v.ver AND s.next_fire_at = v.ex \
             AND s.state IN ('active', 'paused') RETURNING s.id",
        )
        .bind(plan.iter().map(|p| p.project_id.as_str()).collect::<Vec<_>>())
        .bind(plan.iter().map(|p| *p.schedule_id.as_uuid()).collect::<Vec<_>>())
        .bind(plan.iter().map(|p| p.expected_version).collect::<Vec<_>>())
        .bind(plan.iter().map(|p| p.new_next.map(dt)).collect::<Vec<_>>())
        .bind(plan.iter().map(|p| p.runs_left.map(|n| n as i64)).collect::<Vec<_>>())
        .bind(plan.iter().map(|p| dt(p.expected_next)).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<Uuid, _>(0))
        .collect::<std::result::Result<_, _>>()?;
        out.advanced = advanced_ids.len();
        out.stale = plan.len() - advanced_ids.len();
        let ticks: Vec<(&PlannedSchedule, &PlannedTick)> = plan
            .iter()
            .copied()
            .filter(|p| advanced_ids.contains(p.schedule_id.as_uuid()))
            .flat_map(|p| p.ticks.iter().map(move |t| (p, t)))
            .collect();
        for chunk in ticks.chunks(10_000) {
            let rows = sqlx::query(
                "INSERT INTO ticks (project_id, id, schedule_id, nominal_time, fire_time, trigger, \
                 schedule_version, shard, epoch, state, reason, created_at, updated_at, published_at) \
                 SELECT p, i, s, n, f, 'scheduled', v, sh, e, st, r, now(), now(), \
                 CASE WHEN st = 'published' THEN now() END FROM UNNEST($1::text[], \
                 $2::uuid[], $3::uuid[], $4::timestamptz[], $5::timestamptz[], $6::bigint[], $7::text[], $8::int[], \
                 $9::bigint[], $10::text[], $11::uuid[]) AS x(p, i, s, n, f, v, st, sh, e, r, l) \
                 WHERE x.n > now() OR NOT EXISTS (SELECT 1 FROM ticks o WHERE o.id = x.l) \
                 ON CONFLICT (id) DO NOTHING RETURNING id, state",
            )
            .bind(chunk.iter().map(|(p, _)| p.project_id.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, t)| *t.id.as_uuid()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(p, _)| *p.schedule_id.as_uuid()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, t)| dt(t.nominal_time)).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, t)| dt(t.fire_time)).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(p, _)| p.expected_version).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, t)| t.state.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(p, _)| p.shard as i32).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(p, _)| valid.get(&p.shard).copied().unwrap_or_default()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, t)| t.reason.as_deref()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(p, t)| legacy_of(p, t).map(|l| *l.as_uuid())).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?;
            for r in rows {
                let state: String = r.try_get("state")?;
                if state == TickState::Planned.as_str() || state == TickState::Published.as_str() {
                    out.new_ticks.push(TickId::from_uuid(r.try_get("id")?));
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn insert_tick(&self, t: &Tick) -> Result<bool> {
        insert_tick_in(&self.pool, t).await
    }

    async fn insert_backfill(&self, ticks: &[Tick]) -> Result<u32> {
        let mut tx = self.pool.begin().await?;
        // A plan commit updates the schedule before it inserts its ticks: once this holds
        // the row, every tick a planner recorded for it is visible to the inserts below.
        let schedules: BTreeSet<Uuid> = ticks.iter().map(|t| *t.schedule_id.as_uuid()).collect();
        sqlx::query("SELECT 1 FROM schedules WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(schedules.into_iter().collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        let mut created = 0;
        for t in ticks {
            created += u32::from(insert_tick_in(&mut *tx, t).await?);
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn ticks_to_publish(&self, shards: &[u32], until: Timestamp, limit: u32) -> Result<Vec<Tick>> {
        let rows = sqlx::query(safe(format!(
            "SELECT {TICK_COLS} FROM ticks t JOIN schedules s ON s.id = t.schedule_id \
             WHERE t.shard = ANY($1) AND t.state = 'planned' AND t.fire_time <= $2 \
             AND {NO_RUN} ORDER BY t.fire_time LIMIT $3"
        )))
        .bind(shard_list(shards))
        .bind(dt(until))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tick_row).collect()
    }

    async fn ticks_without_run(&self, shards: &[u32], before: Timestamp, limit: u32) -> Result<Vec<Tick>> {
        // From each shard's cursor on: every tick published before it has a run.
        let rows = sqlx::query(safe(ticks_without_run_sql()))
            .bind(shard_list(shards))
            .bind(dt(before))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let ticks: Vec<Tick> = rows.iter().map(tick_row).collect::<Result<_>>()?;
        if ticks.len() < limit as usize {
            // Every run-less tick in range was read: each shard's cursor moves to its oldest
            // one (still to be republished), or to `before` (never past the present).
            let mut first: BTreeMap<u32, DateTime<Utc>> = BTreeMap::new();
            for (t, r) in ticks.iter().zip(&rows) {
                let at: DateTime<Utc> = r.try_get("published_at")?;
                first.entry(t.shard).and_modify(|f| *f = (*f).min(at)).or_insert(at);
            }
            sqlx::query(
                "INSERT INTO reconcile_cursors (shard, published_before) \
                 SELECT c.shard, LEAST(COALESCE(f.at, $2), now()) FROM UNNEST($1::int[]) AS c(shard) \
                 LEFT JOIN UNNEST($3::int[], $4::timestamptz[]) AS f(shard, at) ON f.shard = c.shard \
                 ON CONFLICT (shard) DO UPDATE \
                 SET published_before = GREATEST(reconcile_cursors.published_before, EXCLUDED.published_before)",
            )
            .bind(shard_list(shards))
            .bind(dt(before))
            .bind(first.keys().map(|s| *s as i32).collect::<Vec<_>>())
            .bind(first.values().copied().collect::<Vec<_>>())
            .execute(&self.pool)
            .await?;
        }
        Ok(ticks)
    }

    async fn unfinished_ticks(&self, shards: &[u32], limit: u32) -> Result<Vec<Tick>> {
        // The outbox, what was published since each shard's reconciliation cursor, and the
        // ticks of unfinished runs (a published tick stays `published` once delivered).
        let rows = sqlx::query(safe(unfinished_ticks_sql()))
            .bind(shard_list(shards))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tick_row).collect()
    }

    async fn mark_published(&self, ids: &[TickId], at: Timestamp) -> Result<()> {
        let ids: Vec<Uuid> = ids.iter().map(|i| *i.as_uuid()).collect();
        sqlx::query(
            "UPDATE ticks SET state = 'published', published_at = $2, updated_at = $2 \
             WHERE id = ANY($1) AND state IN ('planned', 'published')",
        )
        .bind(ids)
        .bind(dt(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn unmark_published(&self, ids: &[TickId]) -> Result<()> {
        let ids: Vec<Uuid> = ids.iter().map(|i| *i.as_uuid()).collect();
        sqlx::query(
            "UPDATE ticks SET state = 'planned', published_at = NULL, updated_at = now() \
             WHERE id = ANY($1) AND state = 'published' AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = ticks.id)",
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn due_retries(
        &self,
        shards: &[u32],
        horizon: Timestamp,
        redispatch_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Tick>> {
        let rows = sqlx::query(safe(format!(
            "SELECT {RETRY_COLS} FROM runs r JOIN ticks t ON t.id = r.id JOIN schedules s ON s.id = t.schedule_id \
             WHERE r.parked AND r.status = 'running' AND r.shard = ANY($1) AND r.next_attempt_at <= $2 \
             AND (r.dispatched_for IS DISTINCT FROM r.next_attempt_at OR r.dispatched_at < $3) \
             ORDER BY r.next_attempt_at LIMIT $4"
        )))
        .bind(shard_list(shards))
        .bind(dt(horizon))
        .bind(dt(redispatch_before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tick_row).collect()
    }

    async fn mark_dispatched(&self, ids: &[TickId], at: Timestamp) -> Result<()> {
        let ids: Vec<Uuid> = ids.iter().map(|i| *RunId::of_tick(*i).as_uuid()).collect();
        sqlx::query("UPDATE runs SET dispatched_at = $2, dispatched_for = next_attempt_at WHERE id = ANY($1)")
            .bind(ids)
            .bind(dt(at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn stuck_runs(&self, shards: &[u32], now: Timestamp, limit: u32) -> Result<Vec<Tick>> {
        let rows = sqlx::query(safe(format!(
            "SELECT {TICK_COLS} FROM runs r JOIN ticks t ON t.id = r.id JOIN schedules s ON s.id = t.schedule_id \
             WHERE r.status IN ('pending', 'running') AND NOT r.parked AND r.shard = ANY($1) AND r.lease_until < $2 \
             ORDER BY r.lease_until LIMIT $3"
        )))
        .bind(shard_list(shards))
        .bind(dt(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tick_row).collect()
    }

    async fn extend_leases(&self, ids: &[TickId], until: Timestamp) -> Result<()> {
        let ids: Vec<Uuid> = ids.iter().map(|i| *RunId::of_tick(*i).as_uuid()).collect();
        sqlx::query("UPDATE runs SET lease_until = $2, lease_owner = NULL WHERE id = ANY($1)")
            .bind(ids)
            .bind(dt(until))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

const RETRY_COLS: &str = "t.project_id, t.id, t.schedule_id, t.nominal_time, r.next_attempt_at AS fire_time, \
                          t.trigger, t.schedule_version, t.shard, t.epoch, s.definition::text AS definition, t.target_override::text AS target_override, t.overlap";

#[async_trait]
impl RunStore for PgStore {
    async fn begin_run(&self, tick: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun> {
        begin_one_in(&mut *self.pool.acquire().await?, tick, lease, now).await
    }

    async fn record_attempt(&self, rec: &AttemptRecord) -> Result<()> {
        self.record_attempts(std::slice::from_ref(rec)).await
    }

    async fn begin_runs(&self, items: &[(Tick, RunLease)], now: Timestamp) -> Vec<Result<BeginRun>> {
        let begun = match self.pool.acquire().await {
            Ok(mut conn) => begin_runs_in(&mut conn, items, now).await,
            Err(e) => Err(e.into()),
        };
        match begun {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => {
                let msg = e.to_string();
                items.iter().map(|_| Err(Error::Corrupt(format!("batched begin_run failed: {msg}")))).collect()
            }
        }
    }

    async fn record_attempts(&self, all: &[AttemptRecord]) -> Result<()> {
        if all.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for recs in statement_chunks(all, usize::MAX) {
            let atts: Vec<&Attempt> = recs.iter().map(|r| &r.attempt).collect();
            let mut headers_in = Vec::with_capacity(recs.len());
            let mut headers_out = Vec::with_capacity(recs.len());
            for r in recs {
                headers_in.push(to_json(&r.attempt.request_headers)?);
                headers_out.push(to_json(&r.attempt.response_headers)?);
            }
            sqlx::query(
                "INSERT INTO attempts (project_id, run_id, number, started_at, duration_ms, method, url, request_headers, \
                 request_body_size, request_body_sha256, response_status, response_headers, response_body, \
                 response_body_truncated, error_code, error_message, lateness_ms, dns_ms, connect_ms, ttfb_ms) \
                 SELECT p, r, n, s, d, m, u, rh::jsonb, bs, sha, st, sh::jsonb, b, tr, ec, em, l, dn, cn, tf FROM UNNEST(\
                 $1::text[], $2::uuid[], $3::int[], $4::timestamptz[], $5::bigint[], $6::text[], $7::text[], $8::text[], \
                 $9::bigint[], $10::text[], $11::int[], $12::text[], $13::bytea[], $14::bool[], $15::text[], $16::text[], \
                 $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[]) \
                 AS v(p, r, n, s, d, m, u, rh, bs, sha, st, sh, b, tr, ec, em, l, dn, cn, tf) \
                 WHERE EXISTS (SELECT 1 FROM runs WHERE runs.id = v.r) \
                 ON CONFLICT (run_id, number) DO NOTHING",
            )
            .bind(recs.iter().map(|r| r.project_id.to_string()).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| *x.run_id.as_uuid()).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.number as i32).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| dt(x.started_at)).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.duration_ms).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.method.clone()).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.url.clone()).collect::<Vec<_>>())
            .bind(headers_in)
            .bind(atts.iter().map(|x| x.request_body_size as i64).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.request_body_sha256.clone()).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.response_status.map(i32::from)).collect::<Vec<_>>())
            .bind(headers_out)
            .bind(atts.iter().map(|x| x.response_body.clone()).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.response_body_truncated).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.error_code.clone()).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.error_message.clone()).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.lateness_ms).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.timing.dns_ms).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.timing.connect_ms).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.timing.ttfb_ms).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE runs SET status = v.status, attempt_count = GREATEST(runs.attempt_count, v.n), \
                 http_status = v.http, last_error = v.err, started_at = COALESCE(runs.started_at, v.started), \
                 finished_at = v.finished, next_attempt_at = v.next, parked = v.parked, lease_until = v.lease, \
                 lease_owner = CASE WHEN v.lease IS NULL THEN NULL ELSE runs.lease_owner END FROM UNNEST($1::uuid[], $2::text[], $3::int[], $4::int[], $5::text[], $6::timestamptz[], \
                 $7::timestamptz[], $8::timestamptz[], $9::bool[], $10::timestamptz[]) \
                 AS v(id, status, n, http, err, started, finished, next, parked, lease) \
                 WHERE runs.id = v.id AND runs.status NOT IN ('succeeded', 'failed', 'cancelled')",
            )
            .bind(atts.iter().map(|x| *x.run_id.as_uuid()).collect::<Vec<_>>())
            .bind(recs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.number as i32).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| x.response_status.map(i32::from)).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| last_error(x)).collect::<Vec<_>>())
            .bind(atts.iter().map(|x| dt(x.started_at)).collect::<Vec<_>>())
            .bind(recs.iter().map(|r| r.finished_at.map(dt)).collect::<Vec<_>>())
            .bind(recs.iter().map(|r| r.next_attempt_at.map(dt)).collect::<Vec<_>>())
            .bind(recs.iter().map(|r| r.park && r.next_attempt_at.is_some()).collect::<Vec<_>>())
            .bind(recs.iter().map(|r| r.lease_until.map(dt)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            // The tick is not written: a published tick's outcome is its run's (LEDGER_STATE).
        }
        apply_effects(&mut tx, all).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn begin_run_exclusive(&self, tick: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun> {
        let mut tx = self.pool.begin().await?;
        // One transaction at a time per schedule, whichever worker runs it.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(tick.schedule_id.to_string())
            .execute(&mut *tx)
            .await?;
        let (recorded, exists): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM ticks WHERE id = $1), EXISTS (SELECT 1 FROM runs WHERE id = $2)",
        )
        .bind(tick.id.as_uuid())
        .bind(RunId::of_tick(tick.id).as_uuid())
        .fetch_one(&mut *tx)
        .await?;
        if !recorded && !exists {
            // A copy of a purged tick: it must not cancel, skip or buffer anything.
            tx.rollback().await?;
            return Ok(BeginRun::Unrecorded);
        }
        if exists {
            // A copy of a tick that has its run: the run decides (done, resumed or held).
            let out = begin_one_in(&mut tx, tick, lease, now).await?;
            tx.commit().await?;
            return Ok(out);
        }
        let busy: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT id, tick_id FROM runs WHERE schedule_id = $1 AND status IN ('pending', 'running') \
             AND trigger <> 'notification' AND tick_id <> $2",
        )
        .bind(tick.schedule_id.as_uuid())
        .bind(tick.id.as_uuid())
        .fetch_all(&mut *tx)
        .await?;
        if let Some((busy_run, _)) = busy.first() {
            let set_state = |state: &'static str, reason: String| {
                sqlx::query("UPDATE ticks SET state = $2, reason = $3, updated_at = now() WHERE id = $1")
                    .bind(*tick.id.as_uuid())
                    .bind(state)
                    .bind(reason)
            };
            match tick.overlap {
                OverlapPolicy::Allow => {}
                OverlapPolicy::Skip => {
                    let reason = overlap_reason_running(busy_run);
                    set_state("skipped", reason.clone()).execute(&mut *tx).await?;
                    tx.commit().await?;
                    return Ok(BeginRun::Skipped(reason));
                }
                OverlapPolicy::BufferOne => {
                    let full: Option<Uuid> = sqlx::query_scalar(
                        "SELECT id FROM ticks WHERE schedule_id = $1 AND state = 'buffered' AND id <> $2 LIMIT 1",
                    )
                    .bind(tick.schedule_id.as_uuid())
                    .bind(tick.id.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await?;
                    if full.is_some() {
                        let reason = OVERLAP_BUFFER_FULL.to_owned();
                        set_state("skipped", reason.clone()).execute(&mut *tx).await?;
                        tx.commit().await?;
                        return Ok(BeginRun::Skipped(reason));
                    }
                    set_state("buffered", format!("waiting for run {}", busy_run)).execute(&mut *tx).await?;
                    tx.commit().await?;
                    return Ok(BeginRun::Buffered);
                }
                OverlapPolicy::CancelPrevious => {
                    let runs: Vec<Uuid> = busy.iter().map(|b| b.0).collect();
                    let ticks: Vec<Uuid> = busy.iter().map(|b| b.1).collect();
                    sqlx::query(
                        "UPDATE runs SET status = 'cancelled', finished_at = now(), last_error = $2 \
                         WHERE id = ANY($1) AND status NOT IN ('succeeded', 'failed', 'cancelled')",
                    )
                    .bind(runs)
                    .bind(OVERLAP_CANCELLED)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE ticks SET state = 'cancelled', reason = $2, updated_at = now() WHERE id = ANY($1)",
                    )
                    .bind(ticks)
                    .bind(format!("overlap: cancelled for tick {}", tick.id))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        let out = begin_one_in(&mut tx, tick, lease, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn release_runs(&self, held: &[(TickId, LeaseOwner)], now: Timestamp) -> Result<()> {
        if held.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE runs SET lease_until = $3, lease_owner = NULL FROM UNNEST($1::uuid[], $2::uuid[]) AS v(t, o) \
             WHERE runs.id = v.t AND runs.lease_owner = v.o AND runs.status NOT IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(held.iter().map(|(t, _)| *RunId::of_tick(*t).as_uuid()).collect::<Vec<_>>())
        .bind(held.iter().map(|(_, o)| *o.as_uuid()).collect::<Vec<_>>())
        .bind(dt(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn run_status(&self, project: &ProjectId, id: RunId) -> Result<RunStatus> {
        let s: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE project_id = $1 AND id = $2")
            .bind(project.as_str())
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        let s = s.ok_or_else(|| Error::NotFound(format!("run {id}")))?;
        RunStatus::parse(&s).ok_or_else(|| corrupt("runs.status", &s))
    }

    async fn pause_schedule(&self, project: &ProjectId, id: ScheduleId, reason: &str) -> Result<()> {
        sqlx::query(
            "UPDATE schedules SET state = 'paused', state_reason = $3, version = version + 1, updated_at = now() \
             WHERE project_id = $1 AND id = $2 AND state = 'active'",
        )
        .bind(project.as_str())
        .bind(id.as_uuid())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_run(&self, project: &ProjectId, id: RunId) -> Result<(Run, Vec<Attempt>)> {
        let r = sqlx::query(safe(format!("SELECT {RUN_COLS} FROM runs WHERE project_id = $1 AND id = $2")))
            .bind(project.as_str())
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("run {id}")))?;
        let attempts = sqlx::query(
            "SELECT run_id, number, started_at, duration_ms, method, url, request_headers::text AS request_headers, \
             request_body_size, request_body_sha256, response_status, response_headers::text AS response_headers, \
             response_body, response_body_truncated, error_code, error_message, lateness_ms, dns_ms, connect_ms, ttfb_ms \
             FROM attempts WHERE run_id = $1 ORDER BY number",
        )
        .bind(id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok((run_row(&r)?, attempts.iter().map(attempt_row).collect::<Result<_>>()?))
    }

    async fn list_runs(&self, project: &ProjectId, f: &RunFilter) -> Result<Vec<Run>> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(list_runs_sql());
        qb.push_bind(project.as_str());
        if let Some(s) = f.schedule_id {
            qb.push(" AND t.schedule_id = ").push_bind(*s.as_uuid());
        }
        if !f.statuses.is_empty() {
            let st: Vec<&str> = f.statuses.iter().map(|s| RunStatus::as_str(*s)).collect();
            qb.push(" AND r.status = ANY(").push_bind(st).push(")");
        }
        if let Some(t) = f.from {
            qb.push(" AND t.nominal_time >= ").push_bind(dt(t));
        }
        if let Some(t) = f.to {
            qb.push(" AND t.nominal_time < ").push_bind(dt(t));
        }
        if let Some((t, id)) = f.before {
            qb.push(" AND (t.nominal_time, t.id) < (").push_bind(dt(t)).push(", ").push_bind(*id.as_uuid()).push(")");
        }
        qb.push(" ORDER BY t.nominal_time DESC, t.id DESC LIMIT ").push_bind(i64::from(f.limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(run_row).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test fails

    use super::*;

    /// Returns the plan of `sql` for shards 0-3 (`with_before`: a `$2` instant before `$3`).
    async fn plan_of(pool: &PgPool, sql: &str, with_before: bool) -> Vec<String> {
        let q = sqlx::query_scalar::<_, String>(safe(format!("EXPLAIN {sql}"))).bind(vec![0i32, 1, 2, 3]);
        let q = if with_before { q.bind(Utc::now()).bind(500i64) } else { q.bind(500i64) };
        q.fetch_all(pool).await.unwrap()
    }

    /// The scans the planner runs on every pass or reconciliation have plans that do not
    /// grow with the tables, whatever their statistics (here those of empty tables, the
    /// state in which Postgres picked the plans that stalled a 10k/s benchmark's planner):
    /// each shard's published ticks are read from its cursor on as an index range, and a
    /// tick's run is looked up by one probe of its primary key, never by a join over runs.
    #[tokio::test]
    async fn planner_scans_read_index_ranges_and_probe_runs_by_key() {
        let url = cronhook_test_utils::postgres::fresh_database_url().await.unwrap();
        let store = PgStore::connect(&url, 4).await.unwrap();
        let reconcile = plan_of(&store.pool, &ticks_without_run_sql(), true).await;
        let unfinished = plan_of(&store.pool, &unfinished_ticks_sql(), false).await;
        for plan in [&reconcile, &unfinished] {
            let cursor: Vec<&String> = plan.iter().filter(|l| l.contains("rc.published_before")).collect();
            assert!(!cursor.is_empty() && cursor.iter().all(|l| l.contains("Index Cond")), "{plan:#?}");
        }
        assert!(reconcile.iter().any(|l| l.contains("SubPlan")), "{reconcile:#?}");
        let joins_runs = |l: &String| l.contains("Anti Join") || l.contains("Seq Scan on runs");
        assert!(!reconcile.iter().any(joins_runs), "{reconcile:#?}");
    }

    /// Runs have no time index of their own (migration 0016): a ListRuns page and a
    /// retention batch walk the ticks' ledger index and probe each tick's run by its key,
    /// never joining over all runs, whatever the statistics.
    #[tokio::test]
    async fn runs_are_listed_and_purged_through_their_ticks() {
        let url = cronhook_test_utils::postgres::fresh_database_url().await.unwrap();
        let store = PgStore::connect(&url, 4).await.unwrap();
        let explain = |sql: String| format!("EXPLAIN {sql}");
        let list = explain(format!("{}$1 ORDER BY t.nominal_time DESC, t.id DESC LIMIT $2", list_runs_sql()));
        let list: Vec<String> =
            sqlx::query_scalar(safe(list)).bind("default").bind(100i64).fetch_all(&store.pool).await.unwrap();
        let purge: Vec<String> = sqlx::query_scalar(safe(explain(PURGE_RUNS.to_owned())))
            .bind(Utc::now())
            .bind(500i64)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        for plan in [&list, &purge] {
            assert!(plan.iter().any(|l| l.contains("ticks_by_time")), "{plan:#?}");
            assert!(plan.iter().any(|l| l.contains("runs_pkey")), "{plan:#?}");
            let joins_all = |l: &String| {
                l.contains("Hash Join")
                    || l.contains("Merge Join")
                    || l.contains("Seq Scan on runs")
                    || l.contains("Seq Scan on ticks")
            };
            assert!(!plan.iter().any(joins_all), "{plan:#?}");
        }
        assert!(!list.iter().any(|l| l.contains("Sort")), "in the index's order: {list:#?}");
    }
}
