//! SQLite implementation (embedded mode). Instants are INTEGER milliseconds, ids are
//! hyphenated UUID text. Writers take the database lock up front (`BEGIN IMMEDIATE`): a
//! deferred transaction that later upgrades to a write lock fails with SQLITE_BUSY instead
//! of waiting for the busy timeout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use cronhook_core::{
    Attempt, OverlapPolicy, ProjectId, Run, RunId, RunStatus, Schedule, ScheduleId, ScheduleState, Tick, TickId,
    TickState, Timestamp,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use crate::rows::{
    AttemptRow, Begun, EffectStep, LEDGER_RUN, LEDGER_STATE, LEDGER_UPDATED_AT, LedgerRow, OVERLAP_BUFFER_FULL,
    OVERLAP_CANCELLED, RunRow, ScheduleRow, TickRow, auto_pause_reason, begin_results, corrupt, first_copies, i64_opt,
    inserted_begins, last_error, legacy_of, overlap_reason_running, plan_effects, safe, stale_etag, statement_chunks,
    to_json,
};
use crate::{
    AttemptRecord, BeginRun, Error, LeaseOwner, NextFire, PlanOutcome, PlannedSchedule, PlannedTick, Result, RunFilter,
    RunLease, RunStore, ScheduleStore, ShardLease, TickFilter, TickStore,
};

/// Stores everything in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Every write (one connection).
    writer: SqlitePool,
}

fn uuid(r: &SqliteRow, col: &str) -> Result<Uuid> {
    let s: String = r.try_get(col)?;
    Uuid::try_parse(&s).map_err(|_| corrupt(col, &s))
}

fn id_text(u: &Uuid) -> String {
    u.as_hyphenated().to_string()
}

fn shard_json(shards: &[u32]) -> String {
    let items: Vec<String> = shards.iter().map(u32::to_string).collect();
    format!("[{}]", items.join(","))
}

const SCHEDULE_COLS: &str = "project_id, id, definition, state, state_reason, next_fire_at, runs_left, version, \
                             shard, created_at, updated_at";
const TICK_COLS: &str = "t.project_id, t.id, t.schedule_id, t.nominal_time, t.fire_time, t.trigger, \
                         t.schedule_version, t.shard, t.epoch, s.definition, t.target_override, t.overlap";
/// The reconciliation cursor of shard `shard` (an SQL expression; migration 0014; before
/// the first pass, the beginning of time), as a scalar subquery, so that it bounds the
/// index range.
fn cursor_of(shard: &str) -> String {
    format!(
        "COALESCE((SELECT rc.published_before FROM reconcile_cursors rc WHERE rc.shard = {shard}), \
         -9000000000000000000)"
    )
}
const RUN_COLS: &str = "project_id, id, tick_id, schedule_id, nominal_time, schedule_version, trigger, status, \
                        attempt_count, http_status, last_error, created_at, started_at, finished_at, next_attempt_at, parked";

fn schedule_row(r: &SqliteRow) -> Result<Schedule> {
    ScheduleRow {
        project_id: r.try_get("project_id")?,
        id: uuid(r, "id")?,
        definition: r.try_get("definition")?,
        state: r.try_get("state")?,
        state_reason: r.try_get("state_reason")?,
        next_fire_at: r.try_get("next_fire_at")?,
        runs_left: r.try_get("runs_left")?,
        version: r.try_get("version")?,
        shard: r.try_get("shard")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    }
    .into_domain()
}

fn tick_row(r: &SqliteRow) -> Result<Tick> {
    TickRow {
        project_id: r.try_get("project_id")?,
        id: uuid(r, "id")?,
        schedule_id: uuid(r, "schedule_id")?,
        nominal_time: r.try_get("nominal_time")?,
        fire_time: r.try_get("fire_time")?,
        trigger: r.try_get("trigger")?,
        schedule_version: r.try_get("schedule_version")?,
        shard: r.try_get("shard")?,
        epoch: r.try_get("epoch")?,
        definition: r.try_get("definition")?,
        target_override: r.try_get("target_override")?,
        overlap: r.try_get("overlap")?,
    }
    .into_domain()
}

fn run_row(r: &SqliteRow) -> Result<Run> {
    RunRow {
        project_id: r.try_get("project_id")?,
        id: uuid(r, "id")?,
        tick_id: uuid(r, "tick_id")?,
        schedule_id: uuid(r, "schedule_id")?,
        nominal_time: r.try_get("nominal_time")?,
        schedule_version: r.try_get("schedule_version")?,
        trigger: r.try_get("trigger")?,
        status: r.try_get("status")?,
        attempt_count: r.try_get("attempt_count")?,
        http_status: r.try_get("http_status")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        parked: r.try_get("parked")?,
    }
    .into_domain()
}

fn attempt_row(r: &SqliteRow) -> Result<Attempt> {
    AttemptRow {
        run_id: uuid(r, "run_id")?,
        number: r.try_get("number")?,
        started_at: r.try_get("started_at")?,
        duration_ms: r.try_get("duration_ms")?,
        method: r.try_get("method")?,
        url: r.try_get("url")?,
        request_headers: r.try_get("request_headers")?,
        request_body_size: r.try_get("request_body_size")?,
        request_body_sha256: r.try_get("request_body_sha256")?,
        response_status: r.try_get("response_status")?,
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
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Records a tick outside a plan (manual trigger, failure notification, backfill) in
/// `planned`, unless its id, or the legacy id of a scheduled tick's fire time, is a tick.
async fn insert_tick_in<'e>(e: impl sqlx::SqliteExecutor<'e>, t: &Tick) -> Result<bool> {
    let target_override = match t.trigger {
        cronhook_core::TriggerKind::Notification => Some(to_json(&t.target)?),
        _ => None,
    };
    let now = Timestamp::now().as_millis();
    let legacy = t.id.legacy_of(t.schedule_id, t.nominal_time);
    // (the WHERE also keeps SQLite from reading ON CONFLICT as a join constraint)
    let res = sqlx::query(
        "INSERT INTO ticks (project_id, id, schedule_id, nominal_time, fire_time, trigger, schedule_version, \
         shard, epoch, state, created_at, updated_at, target_override, overlap) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'planned', ?10, ?10, ?11, ?12 \
         WHERE NOT EXISTS (SELECT 1 FROM ticks o WHERE o.id = ?13) ON CONFLICT (id) DO NOTHING",
    )
    .bind(t.project_id.as_str())
    .bind(t.id.to_string())
    .bind(t.schedule_id.to_string())
    .bind(t.nominal_time.as_millis())
    .bind(t.fire_time.as_millis())
    .bind(t.trigger.as_str())
    .bind(t.schedule_version)
    .bind(i64::from(t.shard))
    .bind(t.epoch)
    .bind(now)
    .bind(target_override)
    .bind((t.trigger == cronhook_core::TriggerKind::Backfill).then(|| t.overlap.as_str()))
    .bind(legacy.map(|l| l.to_string()))
    .execute(e)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Applies a final run's consequences to its schedule (auto-pause count, notification).
/// Applies the consequences of the final runs among `recs` to their schedules (failure
/// counts and auto-pause, notifications, buffered ticks), in a few statements per batch.
async fn apply_effects(tx: &mut sqlx::Transaction<'_, Sqlite>, recs: &[AttemptRecord]) -> Result<()> {
    let plan = plan_effects(recs);
    for step in &plan.steps {
        match step {
            EffectStep::Reset(list) => {
                let pairs: Vec<(&str, String)> = list.iter().map(|(p, i)| (p.as_str(), i.to_string())).collect();
                sqlx::query(
                    "UPDATE schedules SET consecutive_failures = 0 WHERE consecutive_failures <> 0 AND \
                     (project_id, id) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') \
                     FROM json_each(?1))",
                )
                .bind(to_json(&pairs)?)
                .execute(&mut **tx)
                .await?;
            }
            EffectStep::One(rec, fx) => {
                if rec.status == RunStatus::Failed {
                    let n: Option<i64> = sqlx::query_scalar(
                        "UPDATE schedules SET consecutive_failures = consecutive_failures + 1 \
                         WHERE project_id = ?1 AND id = ?2 RETURNING consecutive_failures",
                    )
                    .bind(rec.project_id.as_str())
                    .bind(fx.schedule_id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
                    if fx.auto_pause_after > 0 && n.is_some_and(|n| n as u32 >= fx.auto_pause_after) {
                        sqlx::query(
                            "UPDATE schedules SET state = 'paused', state_reason = ?3, version = version + 1, \
                             updated_at = ?4 WHERE project_id = ?1 AND id = ?2 AND state = 'active'",
                        )
                        .bind(rec.project_id.as_str())
                        .bind(fx.schedule_id.to_string())
                        .bind(auto_pause_reason(fx.auto_pause_after))
                        .bind(Timestamp::now().as_millis())
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
        let ended: Vec<String> = plan.ended.iter().map(ToString::to_string).collect();
        sqlx::query(
            "UPDATE ticks SET state = 'planned', reason = NULL, fire_time = ?2, updated_at = ?2 WHERE id IN \
             (SELECT (SELECT b.id FROM ticks b WHERE b.schedule_id = e.value AND b.state = 'buffered' \
             ORDER BY b.nominal_time LIMIT 1) FROM json_each(?1) AS e)",
        )
        .bind(to_json(&ended)?)
        .bind(Timestamp::now().as_millis())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite:path` or a path).
    pub async fn open(url: &str, shard_count: u32) -> Result<Self> {
        let opts = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)?
        } else {
            SqliteConnectOptions::new().filename(Path::new(url))
        };
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a committed transaction survives a process crash (kill -9); only
            // an OS crash or power loss may lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // One writer connection: SQLite has one writer at a time, and writers queueing for
        // this connection (FIFO) beat writers spinning in SQLite's busy handler, which sleeps
        // and retries (measured in docs/benchmarks.md). Readers use their own connections
        // (WAL: they never block the writer nor wait for it).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(opts)
            .await?;
        let store = Self { pool, writer };
        store.init_shards(shard_count).await?;
        Ok(store)
    }

    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn init_shards(&self, shard_count: u32) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO cluster_settings (key, value) VALUES ('shard_count', ?1) ON CONFLICT DO NOTHING")
            .bind(shard_count.to_string())
            .execute(&mut *tx)
            .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM cluster_settings WHERE key = 'shard_count'")
            .fetch_one(&mut *tx)
            .await?;
        let n: i64 = stored.parse().map_err(|_| corrupt("cluster_settings.shard_count", &stored))?;
        if n as u32 != shard_count {
            tracing::warn!(
                configured = shard_count,
                stored = n,
                "shard count is fixed at creation; using the stored one"
            );
        }
        sqlx::query(
            "WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < ?1) \
             INSERT INTO shard_leases (shard) SELECT n FROM s WHERE true ON CONFLICT DO NOTHING",
        )
        .bind(n)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn insert_schedule(&self, s: &Schedule) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO schedules (project_id, id, name, definition, state, state_reason, next_fire_at, runs_left, \
             version, shard, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .bind(s.project_id.as_str())
        .bind(s.id.to_string())
        .bind(&s.def.name)
        .bind(to_json(&s.def)?)
        .bind(s.state.as_str())
        .bind(&s.state_reason)
        .bind(i64_opt(s.next_fire_at))
        .bind(s.runs_left.map(|n| n as i64))
        .bind(s.version)
        .bind(i64::from(s.shard))
        .bind(s.created_at.as_millis())
        .bind(s.updated_at.as_millis())
        .execute(&self.writer)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists(format!("schedule {}", s.id))),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_schedule(&self, project: &ProjectId, id: ScheduleId) -> Result<Schedule> {
        let row = sqlx::query(safe(format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE project_id = ?1 AND id = ?2")))
            .bind(project.as_str())
            .bind(id.to_string())
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
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE project_id = ?1 AND (?2 IS NULL OR state = ?2) \
             AND (?3 IS NULL OR id > ?3) ORDER BY id LIMIT ?4"
        )))
        .bind(project.as_str())
        .bind(state.map(ScheduleState::as_str))
        .bind(after.map(|a| a.to_string()))
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
            "UPDATE schedules SET name = ?3, definition = ?4, state = ?5, state_reason = ?6, \
             next_fire_at = CASE WHEN ?7 THEN ?8 ELSE next_fire_at END, \
             runs_left = CASE WHEN ?7 THEN ?9 ELSE runs_left END, \
             consecutive_failures = CASE WHEN ?5 = 'active' AND state <> 'active' THEN 0 ELSE consecutive_failures END, \
             version = version + 1, updated_at = ?10 \
             WHERE project_id = ?1 AND id = ?2 AND version = ?11 RETURNING {SCHEDULE_COLS}"
        )))
        .bind(s.project_id.as_str())
        .bind(s.id.to_string())
        .bind(&s.def.name)
        .bind(to_json(&s.def)?)
        .bind(s.state.as_str())
        .bind(&s.state_reason)
        .bind(set_next)
        .bind(i64_opt(next))
        .bind(s.runs_left.map(|n| n as i64))
        .bind(s.updated_at.as_millis())
        .bind(expected_version)
        .fetch_optional(&self.writer)
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
        let mut tx = self.write_tx().await?;
        let deleted: Option<i64> = sqlx::query_scalar(
            "DELETE FROM schedules WHERE project_id = ?1 AND id = ?2 AND (?3 IS NULL OR version = ?3) \
             RETURNING shard",
        )
        .bind(project.as_str())
        .bind(id.to_string())
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
            "UPDATE ticks SET state = 'cancelled', reason = 'schedule deleted', updated_at = ?2 \
             WHERE schedule_id = ?1 AND shard = ?3 AND (state = 'planned' OR (state = 'published' \
             AND published_at >= {})) AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = ticks.id)",
            cursor_of("?3")
        )))
        .bind(id.to_string())
        .bind(Timestamp::now().as_millis())
        .bind(shard)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl TickStore for SqliteStore {
    async fn now(&self) -> Result<Timestamp> {
        // Embedded mode: the database and the planner share one machine and one clock.
        Ok(Timestamp::now())
    }

    async fn shard_count(&self) -> Result<u32> {
        let v: String = sqlx::query_scalar("SELECT value FROM cluster_settings WHERE key = 'shard_count'")
            .fetch_one(&self.pool)
            .await?;
        v.parse().map_err(|_| corrupt("cluster_settings.shard_count", &v))
    }

    async fn list_ticks(&self, project: &ProjectId, f: &TickFilter) -> Result<Vec<cronhook_core::LedgerEntry>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT t.id, t.schedule_id, t.nominal_time, t.fire_time, {LEDGER_STATE} AS state, t.reason, t.trigger, \
             t.created_at, {LEDGER_UPDATED_AT} AS updated_at \
             FROM ticks t {LEDGER_RUN} WHERE t.project_id = "
        ));
        qb.push_bind(project.as_str());
        if let Some(s) = f.schedule_id {
            qb.push(" AND t.schedule_id = ").push_bind(s.to_string());
        }
        if !f.states.is_empty() {
            qb.push(format_args!(" AND {LEDGER_STATE} IN ("));
            let mut sep = qb.separated(", ");
            for s in &f.states {
                sep.push_bind(s.as_str());
            }
            qb.push(")");
        }
        if let Some(t) = f.from {
            qb.push(" AND t.nominal_time >= ").push_bind(t.as_millis());
        }
        if let Some(t) = f.to {
            qb.push(" AND t.nominal_time < ").push_bind(t.as_millis());
        }
        if let Some((t, id)) = f.before {
            qb.push(" AND (t.nominal_time, t.id) < (")
                .push_bind(t.as_millis())
                .push(", ")
                .push_bind(id.to_string())
                .push(")");
        }
        qb.push(" ORDER BY t.nominal_time DESC, t.id DESC LIMIT ").push_bind(i64::from(f.limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                LedgerRow {
                    id: uuid(r, "id")?,
                    schedule_id: uuid(r, "schedule_id")?,
                    nominal_time: r.try_get("nominal_time")?,
                    fire_time: r.try_get("fire_time")?,
                    state: r.try_get("state")?,
                    reason: r.try_get("reason")?,
                    trigger: r.try_get("trigger")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                }
                .into_domain()
            })
            .collect()
    }

    async fn purge_before(&self, cutoff: Timestamp, limit: u32) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        // through the ledger's ticks_by_time index, each run by its tick's id, as on Postgres
        let runs: Vec<String> = sqlx::query_scalar(
            "DELETE FROM runs WHERE id IN (SELECT t.id FROM ticks t WHERE t.project_id IN (SELECT id FROM projects) \
             AND t.nominal_time < ?1 AND (SELECT r.finished_at FROM runs r WHERE r.id = t.id) < ?1 LIMIT ?2) \
             RETURNING id",
        )
        .bind(cutoff.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        // A tick whose outcome was its run's (LEDGER_STATE) goes with it (a run's id is its tick's).
        let with_runs = sqlx::query(
            "DELETE FROM ticks WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('planned', 'published')",
        )
        .bind(to_json(&runs)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let runs = runs.len() as u64 + with_runs;
        let ticks = sqlx::query(
            "DELETE FROM ticks WHERE id IN (SELECT id FROM ticks WHERE project_id IN (SELECT id FROM projects) \
             AND nominal_time < ?1 AND state NOT IN ('planned', 'published') AND updated_at < ?1 \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = ticks.id) LIMIT ?2)",
        )
        .bind(cutoff.as_millis())
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(runs + ticks)
    }

    async fn shard_leases(&self) -> Result<Vec<ShardLease>> {
        let rows = sqlx::query("SELECT shard, epoch, owner, claimed_at FROM shard_leases ORDER BY shard")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ShardLease {
                    shard: r.try_get::<i64, _>("shard")? as u32,
                    epoch: r.try_get("epoch")?,
                    owner: r.try_get("owner")?,
                    claimed_at: r.try_get::<Option<i64>, _>("claimed_at")?.map(Timestamp::from_millis),
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
            "UPDATE shard_leases SET epoch = ?2, owner = ?3, claimed_at = ?4 WHERE shard = ?1 AND epoch <= ?2",
        )
        .bind(i64::from(shard))
        .bind(epoch)
        .bind(owner)
        .bind(Timestamp::now().as_millis())
        .execute(&self.writer)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn due_schedules(&self, shards: &[u32], horizon: Timestamp, limit: u32) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(safe(format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE state IN ('active', 'paused') \
             AND shard IN (SELECT value FROM json_each(?1)) AND next_fire_at <= ?2 ORDER BY next_fire_at LIMIT ?3"
        )))
        .bind(shard_json(shards))
        .bind(horizon.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule_row).collect()
    }

    async fn commit_plans(&self, epochs: &[(u32, i64)], plan: &[PlannedSchedule]) -> Result<PlanOutcome> {
        let now = Timestamp::now().as_millis();
        let mut tx = self.write_tx().await?;
        // Fencing: the epochs are checked inside the write transaction, which excludes every
        // other writer (a claim included) until commit. One query for all shards, not one
        // statement per shard (a herd touches every shard in each pass).
        let shards: Vec<u32> = epochs.iter().map(|(s, _)| *s).collect();
        let current: HashMap<u32, i64> = sqlx::query_as::<_, (i64, i64)>(
            "SELECT shard, epoch FROM shard_leases WHERE shard IN (SELECT value FROM json_each(?1))",
        )
        .bind(shard_json(&shards))
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
        // Fire times in the past may have a tick an older release recorded under its legacy
        // id: those ticks are not recorded again (`recorded` holds their new ids).
        let legacy: HashMap<String, TickId> = plan
            .iter()
            .filter(|p| valid.contains_key(&p.shard))
            .flat_map(|p| p.ticks.iter().filter(|t| t.nominal_time.as_millis() <= now).map(move |t| (p, t)))
            .filter_map(|(p, t)| legacy_of(p, t).map(|l| (l.to_string(), t.id)))
            .collect();
        let mut recorded: HashSet<TickId> = HashSet::new();
        if !legacy.is_empty() {
            let found: Vec<String> =
                sqlx::query_scalar("SELECT id FROM ticks WHERE id IN (SELECT value FROM json_each(?1))")
                    .bind(to_json(&legacy.keys().collect::<Vec<_>>())?)
                    .fetch_all(&mut *tx)
                    .await?;
            recorded.extend(found.iter().filter_map(|l| legacy.get(l)));
        }
        for p in plan {
            let Some(&epoch) = valid.get(&p.shard) else { continue };
            let shard = p.shard;
            let advanced = sqlx::query(
                "UPDATE schedules SET next_fire_at = ?4, runs_left = ?5, \
                 state = CASE WHEN ?4 IS NULL THEN 'completed' ELSE state END, \
                 state_reason = CASE WHEN ?4 IS NULL THEN 'no more fire times' ELSE state_reason END \
                 WHERE project_id = ?1 AND id = ?2 AND version = ?3 AND next_fire_at = ?6 AND state IN ('active', 'paused')",
            )
            .bind(p.project_id.as_str())
            .bind(p.schedule_id.to_string())
            .bind(p.expected_version)
            .bind(i64_opt(p.new_next))
            .bind(p.runs_left.map(|n| n as i64))
            .bind(p.expected_next.as_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !advanced {
                out.stale += 1;
                continue;
            }
            out.advanced += 1;
            // 14 bound values per row, SQLite allows 32766 per statement.
            let ticks: Vec<&PlannedTick> = p.ticks.iter().filter(|t| !recorded.contains(&t.id)).collect();
            for chunk in ticks.chunks(500) {
                let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO ticks (project_id, id, schedule_id, nominal_time, fire_time, trigger, \
                     schedule_version, shard, epoch, state, reason, created_at, updated_at, published_at) ",
                );
                qb.push_values(chunk, |mut b, t| {
                    b.push_bind(p.project_id.as_str())
                        .push_bind(t.id.to_string())
                        .push_bind(p.schedule_id.to_string())
                        .push_bind(t.nominal_time.as_millis())
                        .push_bind(t.fire_time.as_millis())
                        .push_bind("scheduled")
                        .push_bind(p.expected_version)
                        .push_bind(i64::from(shard))
                        .push_bind(epoch)
                        .push_bind(t.state.as_str())
                        .push_bind(t.reason.clone())
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind((t.state == TickState::Published).then_some(now));
                });
                qb.push(" ON CONFLICT (id) DO NOTHING RETURNING id, state");
                for r in qb.build().fetch_all(&mut *tx).await? {
                    let state: String = r.try_get("state")?;
                    if state == TickState::Planned.as_str() || state == TickState::Published.as_str() {
                        out.new_ticks.push(TickId::from_uuid(uuid(&r, "id")?));
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn insert_tick(&self, t: &Tick) -> Result<bool> {
        insert_tick_in(&self.writer, t).await
    }

    async fn insert_backfill(&self, ticks: &[Tick]) -> Result<u32> {
        // The write transaction excludes every other writer, plan commits included.
        let mut tx = self.write_tx().await?;
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
             WHERE t.shard IN (SELECT value FROM json_each(?1)) AND t.state = 'planned' AND t.fire_time <= ?2 \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = t.id) ORDER BY t.fire_time LIMIT ?3"
        )))
        .bind(shard_json(shards))
        .bind(until.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tick_row).collect()
    }

    async fn ticks_without_run(&self, shards: &[u32], before: Timestamp, limit: u32) -> Result<Vec<Tick>> {
        // From each shard's cursor on: every tick published before it has a run.
        let cursor = cursor_of("c.value");
        let rows = sqlx::query(safe(format!(
            "SELECT {TICK_COLS}, t.published_at FROM json_each(?1) AS c \
             JOIN ticks t ON t.shard = c.value AND t.state = 'published' \
             AND t.published_at >= {cursor} AND t.published_at < ?2 \
             JOIN schedules s ON s.id = t.schedule_id \
             WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = t.id) ORDER BY t.fire_time LIMIT ?3"
        )))
        .bind(shard_json(shards))
        .bind(before.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let ticks: Vec<Tick> = rows.iter().map(tick_row).collect::<Result<_>>()?;
        if ticks.len() < limit as usize {
            // Every run-less tick in range was read: each shard's cursor moves to its oldest
            // one (still to be republished), or to `before` (never past the present).
            let to = before.as_millis().min(Timestamp::now().as_millis());
            let mut cursors: BTreeMap<u32, i64> = shards.iter().map(|s| (*s, to)).collect();
            for (t, r) in ticks.iter().zip(&rows) {
                let at: i64 = r.try_get("published_at")?;
                cursors.entry(t.shard).and_modify(|c| *c = (*c).min(at));
            }
            let mut tx = self.write_tx().await?;
            for chunk in cursors.iter().collect::<Vec<_>>().chunks(ROWS_PER_STATEMENT) {
                let mut qb: QueryBuilder<Sqlite> =
                    QueryBuilder::new("INSERT INTO reconcile_cursors (shard, published_before) ");
                qb.push_values(chunk, |mut b, (shard, at)| {
                    b.push_bind(i64::from(**shard)).push_bind(**at);
                });
                qb.push(
                    " ON CONFLICT (shard) DO UPDATE \
                     SET published_before = MAX(reconcile_cursors.published_before, excluded.published_before)",
                );
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(ticks)
    }

    async fn unfinished_ticks(&self, shards: &[u32], limit: u32) -> Result<Vec<Tick>> {
        // The outbox, what was published since each shard's reconciliation cursor, and the
        // ticks of unfinished runs (a published tick stays `published` once delivered).
        let cursor = cursor_of("c.value");
        let rows = sqlx::query(safe(format!(
            "WITH ids AS ( \
               SELECT t.id FROM ticks t WHERE t.shard IN (SELECT value FROM json_each(?1)) AND t.state = 'planned' \
               UNION SELECT t.id FROM json_each(?1) AS c \
                 JOIN ticks t ON t.shard = c.value AND t.state = 'published' \
                 AND t.published_at >= {cursor} \
               UNION SELECT r.id FROM runs r WHERE r.shard IN (SELECT value FROM json_each(?1)) \
                 AND r.status IN ('pending', 'running')) \
             SELECT {TICK_COLS} FROM ids JOIN ticks t ON t.id = ids.id JOIN schedules s ON s.id = t.schedule_id \
             WHERE t.state IN ('planned', 'published') \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = t.id AND r.status IN ('succeeded', 'failed', 'cancelled')) \
             ORDER BY t.fire_time, t.id LIMIT ?2"
        )))
        .bind(shard_json(shards))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tick_row).collect()
    }

    async fn mark_published(&self, ids: &[TickId], at: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE ticks SET state = 'published', published_at = ?2, updated_at = ?2 \
             WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('planned', 'published')",
        )
        .bind(id_json(ids))
        .bind(at.as_millis())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn unmark_published(&self, ids: &[TickId]) -> Result<()> {
        sqlx::query(
            "UPDATE ticks SET state = 'planned', published_at = NULL, updated_at = ?2 \
             WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'published' \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = ticks.id)",
        )
        .bind(id_json(ids))
        .bind(Timestamp::now().as_millis())
        .execute(&self.writer)
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
             WHERE r.parked AND r.status = 'running' AND r.shard IN (SELECT value FROM json_each(?1)) \
             AND r.next_attempt_at <= ?2 \
             AND (r.dispatched_for IS NOT r.next_attempt_at OR r.dispatched_at < ?3) \
             ORDER BY r.next_attempt_at LIMIT ?4"
        )))
        .bind(shard_json(shards))
        .bind(horizon.as_millis())
        .bind(redispatch_before.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tick_row).collect()
    }

    async fn stuck_runs(&self, shards: &[u32], now: Timestamp, limit: u32) -> Result<Vec<Tick>> {
        let rows = sqlx::query(safe(format!(
            "SELECT {TICK_COLS} FROM runs r JOIN ticks t ON t.id = r.id JOIN schedules s ON s.id = t.schedule_id \
             WHERE r.status IN ('pending', 'running') AND NOT r.parked AND r.shard IN (SELECT value FROM json_each(?1)) \
             AND r.lease_until < ?2 ORDER BY r.lease_until LIMIT ?3"
        )))
        .bind(shard_json(shards))
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tick_row).collect()
    }

    async fn extend_leases(&self, ids: &[TickId], until: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET lease_until = ?2, lease_owner = NULL WHERE tick_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(id_json(ids))
        .bind(until.as_millis())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn mark_dispatched(&self, ids: &[TickId], at: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET dispatched_at = ?2, dispatched_for = next_attempt_at \
             WHERE tick_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(id_json(ids))
        .bind(at.as_millis())
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

const RETRY_COLS: &str = "t.project_id, t.id, t.schedule_id, t.nominal_time, r.next_attempt_at AS fire_time, \
                          t.trigger, t.schedule_version, t.shard, t.epoch, s.definition, t.target_override, t.overlap";

fn id_json(ids: &[TickId]) -> String {
    let list: Vec<String> = ids.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", list.join(","))
}

/// Rows per multi-row statement: 20 bound values per attempt row, far below SQLite's limit.
const ROWS_PER_STATEMENT: usize = 100;

/// Writes a batch of attempts and their runs' new state, then the effects: a few
/// multi-row statements per batch instead of three to five per record (each statement is
/// a round trip to the connection's thread, docs/benchmarks.md).
async fn record_attempts_in(tx: &mut sqlx::Transaction<'_, Sqlite>, recs: &[AttemptRecord]) -> Result<()> {
    for chunk in statement_chunks(recs, ROWS_PER_STATEMENT) {
        let mut headers = Vec::with_capacity(chunk.len());
        for r in chunk {
            headers.push((to_json(&r.attempt.request_headers)?, to_json(&r.attempt.response_headers)?));
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO attempts (project_id, run_id, number, started_at, duration_ms, method, url, request_headers, \
             request_body_size, request_body_sha256, response_status, response_headers, response_body, \
             response_body_truncated, error_code, error_message, lateness_ms, dns_ms, connect_ms, ttfb_ms) \
             SELECT * FROM (",
        );
        qb.push_values(chunk.iter().zip(&headers), |mut b, (r, (h_in, h_out))| {
            let a = &r.attempt;
            b.push_bind(r.project_id.as_str())
                .push_bind(a.run_id.to_string())
                .push_bind(i64::from(a.number))
                .push_bind(a.started_at.as_millis())
                .push_bind(a.duration_ms)
                .push_bind(a.method.as_str())
                .push_bind(a.url.as_str())
                .push_bind(h_in.as_str())
                .push_bind(a.request_body_size as i64)
                .push_bind(a.request_body_sha256.as_str())
                .push_bind(a.response_status.map(i64::from))
                .push_bind(h_out.as_str())
                .push_bind(a.response_body.as_slice())
                .push_bind(a.response_body_truncated)
                .push_bind(a.error_code.as_deref())
                .push_bind(a.error_message.as_deref())
                .push_bind(a.lateness_ms)
                .push_bind(a.timing.dns_ms)
                .push_bind(a.timing.connect_ms)
                .push_bind(a.timing.ttfb_ms);
        });
        // only while the run exists, as on Postgres (which has no foreign key to fail on)
        qb.push(") AS v WHERE EXISTS (SELECT 1 FROM runs WHERE runs.id = v.column2) ON CONFLICT (run_id, number) DO NOTHING");
        qb.build().execute(&mut **tx).await?;

        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "UPDATE runs SET status = v.column2, attempt_count = MAX(runs.attempt_count, v.column3), \
             http_status = v.column4, last_error = v.column5, started_at = COALESCE(runs.started_at, v.column6), \
             finished_at = v.column7, next_attempt_at = v.column8, parked = v.column9, lease_until = v.column10, \
             lease_owner = CASE WHEN v.column10 IS NULL THEN NULL ELSE runs.lease_owner END FROM (",
        );
        qb.push_values(chunk, |mut b, r| {
            let a = &r.attempt;
            b.push_bind(a.run_id.to_string())
                .push_bind(r.status.as_str())
                .push_bind(i64::from(a.number))
                .push_bind(a.response_status.map(i64::from))
                .push_bind(last_error(a))
                .push_bind(a.started_at.as_millis())
                .push_bind(i64_opt(r.finished_at))
                .push_bind(i64_opt(r.next_attempt_at))
                .push_bind(r.park && r.next_attempt_at.is_some())
                .push_bind(i64_opt(r.lease_until));
        });
        qb.push(") AS v WHERE runs.id = v.column1 AND runs.status NOT IN ('succeeded', 'failed', 'cancelled')");
        qb.build().execute(&mut **tx).await?;

        // The tick is not written: a published tick's outcome is its run's (LEDGER_STATE).
    }
    apply_effects(tx, recs).await
}

/// Inserts the runs of a batch of ticks in multi-row statements; ticks that already have a
/// run are taken over one by one where no live delivery holds them.
async fn begin_runs_in(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    items: &[(Tick, RunLease)],
    now: Timestamp,
) -> Result<Vec<BeginRun>> {
    let mut found: HashMap<TickId, Begun> = HashMap::new();
    let inserts = first_copies(items);
    for chunk in inserts.chunks(ROWS_PER_STATEMENT) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO runs (project_id, id, tick_id, schedule_id, nominal_time, schedule_version, trigger, status, \
             created_at, shard, lease_until, lease_owner) SELECT * FROM (",
        );
        qb.push_values(chunk, |mut b, (t, lease)| {
            b.push_bind(t.project_id.as_str())
                .push_bind(RunId::of_tick(t.id).to_string())
                .push_bind(t.id.to_string())
                .push_bind(t.schedule_id.to_string())
                .push_bind(t.nominal_time.as_millis())
                .push_bind(t.schedule_version)
                .push_bind(t.trigger.as_str())
                .push_bind("pending")
                .push_bind(now.as_millis())
                .push_bind(i64::from(t.shard))
                .push_bind(lease.until.as_millis())
                .push_bind(id_text(lease.owner.as_uuid()));
        });
        // Recorded ticks only (BeginRun::Unrecorded). No conflict target: the id and the tick
        // id (a unique column too) conflict together.
        qb.push(
            ") AS v WHERE EXISTS (SELECT 1 FROM ticks WHERE ticks.id = v.column3) ON CONFLICT DO NOTHING RETURNING id",
        );
        let created: HashSet<String> =
            qb.build().fetch_all(&mut **tx).await?.iter().map(|r| r.try_get("id")).collect::<sqlx::Result<_>>()?;
        found.extend(inserted_begins(chunk, |id| created.contains(&id.to_string()), now));
    }
    for (t, lease) in items {
        if found.contains_key(&t.id) {
            continue;
        }
        // Taking over an unfinished run no live delivery holds renews its lease.
        sqlx::query(
            "UPDATE runs SET lease_until = ?2, lease_owner = ?3 WHERE id = ?1 \
             AND status NOT IN ('succeeded', 'failed', 'cancelled') AND (lease_owner IS NULL OR lease_owner = ?3 \
             OR parked OR lease_until IS NULL OR lease_until < ?4)",
        )
        .bind(RunId::of_tick(t.id).to_string())
        .bind(lease.until.as_millis())
        .bind(id_text(lease.owner.as_uuid()))
        .bind(now.as_millis())
        .execute(&mut **tx)
        .await?;
        let r = sqlx::query(safe(format!("SELECT {RUN_COLS}, lease_owner FROM runs WHERE id = ?1")))
            .bind(RunId::of_tick(t.id).to_string())
            .fetch_optional(&mut **tx)
            .await?;
        // none: the tick is not in the ledger (BeginRun::Unrecorded)
        if let Some(r) = r {
            found.insert(t.id, begun_row(&r)?);
        }
    }
    begin_results(items.iter().map(|(t, l)| (&t.id, l.owner)), found)
}

/// [`begin_runs_in`] for one tick.
async fn begin_one_in(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    tick: &Tick,
    lease: RunLease,
    now: Timestamp,
) -> Result<BeginRun> {
    let mut out = begin_runs_in(tx, &[(tick.clone(), lease)], now).await?;
    out.pop().ok_or_else(|| Error::Corrupt(format!("no begin result for tick {}", tick.id)))
}

/// An existing run read with its lease owner (`RUN_COLS, lease_owner`).
fn begun_row(r: &SqliteRow) -> Result<Begun> {
    let owner: Option<String> = r.try_get("lease_owner")?;
    let owner = match owner {
        Some(o) => Some(LeaseOwner::from_uuid(Uuid::try_parse(&o).map_err(|_| corrupt("runs.lease_owner", &o))?)),
        None => None,
    };
    Ok(Begun { run: run_row(r)?, owner, created: false })
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn begin_run(&self, tick: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun> {
        let mut tx = self.write_tx().await?;
        let out = begin_one_in(&mut tx, tick, lease, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// One write transaction for the whole batch: SQLite has one writer, so a transaction
    /// per run would queue every worker task behind the write lock.
    async fn begin_runs(&self, items: &[(Tick, RunLease)], now: Timestamp) -> Vec<Result<BeginRun>> {
        let mut tx = match self.write_tx().await {
            Ok(tx) => tx,
            Err(e) => return items.iter().map(|_| Err(Error::Corrupt(format!("batched begin_run: {e}")))).collect(),
        };
        let out = match begin_runs_in(&mut tx, items, now).await {
            Ok(out) => out,
            Err(e) => return items.iter().map(|_| Err(Error::Corrupt(format!("batched begin_run: {e}")))).collect(),
        };
        match tx.commit().await {
            Ok(()) => out.into_iter().map(Ok).collect(),
            Err(e) => items.iter().map(|_| Err(Error::Corrupt(format!("batched begin_run commit: {e}")))).collect(),
        }
    }

    async fn record_attempt(&self, rec: &AttemptRecord) -> Result<()> {
        self.record_attempts(std::slice::from_ref(rec)).await
    }

    /// All attempts in one write transaction (all or nothing).
    async fn record_attempts(&self, recs: &[AttemptRecord]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        record_attempts_in(&mut tx, recs).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn begin_run_exclusive(&self, tick: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun> {
        // The write transaction serialises every writer: one decision at a time.
        let mut tx = self.write_tx().await?;
        let (recorded, exists): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM ticks WHERE id = ?1), EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
        )
        .bind(tick.id.to_string())
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
        let busy: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, tick_id FROM runs WHERE schedule_id = ?1 AND status IN ('pending', 'running') \
             AND trigger <> 'notification' AND tick_id <> ?2",
        )
        .bind(tick.schedule_id.to_string())
        .bind(tick.id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        if let Some((busy_run, _)) = busy.first() {
            let set_state = |state: &'static str, reason: String| {
                sqlx::query("UPDATE ticks SET state = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1")
                    .bind(tick.id.to_string())
                    .bind(state)
                    .bind(reason)
                    .bind(now.as_millis())
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
                    let full: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM ticks WHERE schedule_id = ?1 AND state = 'buffered' AND id <> ?2 LIMIT 1",
                    )
                    .bind(tick.schedule_id.to_string())
                    .bind(tick.id.to_string())
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
                    for (run, old_tick) in &busy {
                        sqlx::query(
                            "UPDATE runs SET status = 'cancelled', finished_at = ?2, last_error = ?3 \
                             WHERE id = ?1 AND status NOT IN ('succeeded', 'failed', 'cancelled')",
                        )
                        .bind(run)
                        .bind(now.as_millis())
                        .bind(OVERLAP_CANCELLED)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query("UPDATE ticks SET state = 'cancelled', reason = ?2, updated_at = ?3 WHERE id = ?1")
                            .bind(old_tick)
                            .bind(format!("overlap: cancelled for tick {}", tick.id))
                            .bind(now.as_millis())
                            .execute(&mut *tx)
                            .await?;
                    }
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
        let mut tx = self.write_tx().await?;
        for (tick, owner) in held {
            sqlx::query(
                "UPDATE runs SET lease_until = ?3, lease_owner = NULL WHERE tick_id = ?1 AND lease_owner = ?2 \
                 AND status NOT IN ('succeeded', 'failed', 'cancelled')",
            )
            .bind(tick.to_string())
            .bind(id_text(owner.as_uuid()))
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn run_status(&self, project: &ProjectId, id: RunId) -> Result<RunStatus> {
        let s: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE project_id = ?1 AND id = ?2")
            .bind(project.as_str())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let s = s.ok_or_else(|| Error::NotFound(format!("run {id}")))?;
        RunStatus::parse(&s).ok_or_else(|| corrupt("runs.status", &s))
    }

    async fn pause_schedule(&self, project: &ProjectId, id: ScheduleId, reason: &str) -> Result<()> {
        sqlx::query(
            "UPDATE schedules SET state = 'paused', state_reason = ?3, version = version + 1, updated_at = ?4 \
             WHERE project_id = ?1 AND id = ?2 AND state = 'active'",
        )
        .bind(project.as_str())
        .bind(id.to_string())
        .bind(reason)
        .bind(Timestamp::now().as_millis())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_run(&self, project: &ProjectId, id: RunId) -> Result<(Run, Vec<Attempt>)> {
        let r = sqlx::query(safe(format!("SELECT {RUN_COLS} FROM runs WHERE project_id = ?1 AND id = ?2")))
            .bind(project.as_str())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("run {id}")))?;
        let attempts = sqlx::query(
            "SELECT run_id, number, started_at, duration_ms, method, url, request_headers, request_body_size, \
             request_body_sha256, response_status, response_headers, response_body, response_body_truncated, \
             error_code, error_message, lateness_ms, dns_ms, connect_ms, ttfb_ms FROM attempts WHERE run_id = ?1 ORDER BY number",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok((run_row(&r)?, attempts.iter().map(attempt_row).collect::<Result<_>>()?))
    }

    async fn list_runs(&self, project: &ProjectId, f: &RunFilter) -> Result<Vec<Run>> {
        // Through the ticks' ledger indexes, each run by its tick's id (migration 0016);
        // CROSS JOIN keeps the ticks the outer loop.
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT r.* FROM ticks t CROSS JOIN runs r ON r.id = t.id WHERE t.project_id = ");
        qb.push_bind(project.as_str());
        if let Some(s) = f.schedule_id {
            qb.push(" AND t.schedule_id = ").push_bind(s.to_string());
        }
        if !f.statuses.is_empty() {
            qb.push(" AND r.status IN (");
            let mut sep = qb.separated(", ");
            for s in &f.statuses {
                sep.push_bind(RunStatus::as_str(*s));
            }
            qb.push(")");
        }
        if let Some(t) = f.from {
            qb.push(" AND t.nominal_time >= ").push_bind(t.as_millis());
        }
        if let Some(t) = f.to {
            qb.push(" AND t.nominal_time < ").push_bind(t.as_millis());
        }
        if let Some((t, id)) = f.before {
            qb.push(" AND (t.nominal_time, t.id) < (")
                .push_bind(t.as_millis())
                .push(", ")
                .push_bind(id_text(id.as_uuid()))
                .push(")");
        }
        qb.push(" ORDER BY t.nominal_time DESC, t.id DESC LIMIT ").push_bind(i64::from(f.limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(run_row).collect()
    }
}
