//! Durable state of cronhook behind three traits: [`ScheduleStore`] (the API's
//! schedules), [`TickStore`] (the planner's outbox and tick ledger, fenced by shard epochs)
//! and [`RunStore`] (the worker's runs and attempts).
//!
//! Two implementations: [`PgStore`] (Postgres, the distributed mode) and [`SqliteStore`]
//! (the embedded mode). Both pass the same conformance suite (`tests/conformance.rs`).
//! This crate owns the schema and its migrations; it decides nothing about *when* things
//! fire, and never reads the clock except through [`TickStore::now`].

mod error;
mod postgres;
mod rows;
mod sqlite;
mod types;

use std::sync::Arc;

use async_trait::async_trait;
use cronhook_core::{
    Attempt, ProjectId, Run, RunId, RunStatus, Schedule, ScheduleId, ScheduleState, Tick, TickId, Timestamp,
};

pub use error::{Error, Result};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use types::{
    AttemptRecord, BeginRun, LeaseOwner, NextFire, PlanOutcome, PlannedSchedule, PlannedTick, RunEffects, RunFilter,
    RunLease, ShardLease, TickFilter,
};

/// Schedules as the API reads and writes them.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Stores a new schedule. Fails with `AlreadyExists` when the id is taken.
    async fn insert_schedule(&self, s: &Schedule) -> Result<()>;

    /// Returns one schedule of `project`, or `NotFound`.
    async fn get_schedule(&self, project: &ProjectId, id: ScheduleId) -> Result<Schedule>;

    /// Returns up to `limit` schedules with an id greater than `after`, in id order.
    async fn list_schedules(
        &self,
        project: &ProjectId,
        state: Option<ScheduleState>,
        after: Option<ScheduleId>,
        limit: u32,
    ) -> Result<Vec<Schedule>>;

    /// Replaces the user-controlled fields, state and (per `next_fire`) the next fire time
    /// of `s`, if the stored version equals `expected_version`; the version becomes
    /// `expected_version + 1`. Fails with `Conflict` on a stale version, `NotFound` if gone.
    async fn update_schedule(&self, s: &Schedule, expected_version: i64, next_fire: NextFire) -> Result<Schedule>;

    /// Deletes a schedule (when `expected_version` is set, only at that version). Its
    /// ticks not yet run are cancelled in the ledger; runs and attempts stay.
    async fn delete_schedule(&self, project: &ProjectId, id: ScheduleId, expected_version: Option<i64>) -> Result<()>;
}

/// The planner's side: due schedules, the tick outbox and the fencing of shards.
#[async_trait]
pub trait TickStore: Send + Sync + 'static {
    /// Returns the database's clock (DESIGN.md invariant 7: planners never trust only their own).
    async fn now(&self) -> Result<Timestamp>;

    /// Returns the cluster's fixed shard count (stored, so every node agrees).
    async fn shard_count(&self) -> Result<u32>;

    /// Returns ledger rows of `project` matching `filter`, newest nominal time first.
    async fn list_ticks(&self, project: &ProjectId, filter: &TickFilter) -> Result<Vec<cronhook_core::LedgerEntry>>;

    /// Deletes, in one batch of at most `limit` rows per table, final ledger rows, ended
    /// runs and their attempts older than `cutoff`; returns how many rows went.
    async fn purge_before(&self, cutoff: Timestamp, limit: u32) -> Result<u64>;

    /// Returns every shard's recorded owner and epoch, in shard order.
    async fn shard_leases(&self) -> Result<Vec<ShardLease>>;

    /// Returns the highest epoch recorded for any shard (0 when none).
    async fn max_epoch(&self) -> Result<i64>;

    /// Records that `owner` holds `shard` at `epoch`. Succeeds only if the stored epoch is
    /// lower or equal; returns `false` (and changes nothing) when a newer epoch is stored.
    async fn claim_shard(&self, shard: u32, epoch: i64, owner: &str) -> Result<bool>;

    /// Returns up to `limit` active schedules of `shards` whose next fire time is at or
    /// before `horizon`, oldest first.
    async fn due_schedules(&self, shards: &[u32], horizon: Timestamp, limit: u32) -> Result<Vec<Schedule>>;

    /// In one transaction: checks which of the (shard, epoch) pairs are still current
    /// (locking them until commit, so a newer claim waits for it), then for each planned
    /// schedule of a current shard whose next fire time and version are still the expected
    /// ones, records its ticks (ignoring ids already recorded, and fire times in the past
    /// that have a tick under their legacy id) and advances it. Schedules
    /// that changed meanwhile are left alone (they are re-planned from their new state);
    /// plans of fenced shards are not written and the pairs are returned in
    /// [`PlanOutcome::fenced`]; plans of shards not listed are not written either.
    async fn commit_plans(&self, epochs: &[(u32, i64)], plan: &[PlannedSchedule]) -> Result<PlanOutcome>;

    /// [`TickStore::commit_plans`] for one shard: `Fenced` when its epoch is not current.
    async fn commit_plan(&self, shard: u32, epoch: i64, plan: &[PlannedSchedule]) -> Result<PlanOutcome> {
        let out = self.commit_plans(&[(shard, epoch)], plan).await?;
        if out.fenced.is_empty() { Ok(out) } else { Err(Error::Fenced { shard, epoch }) }
    }

    /// Records a tick outside any plan (a manual trigger) in state `planned`; returns
    /// `false` when a tick with its id exists already (nothing changes).
    async fn insert_tick(&self, tick: &Tick) -> Result<bool>;

    /// Records backfill ticks (scheduled tick ids of past fire times) in state `planned`,
    /// in one transaction that holds their schedules' rows, so that no plan commit of the
    /// same schedules runs beside it. Skips each tick whose id is a tick already, or whose
    /// fire time has a tick under the id an older release gave it
    /// ([`cronhook_core::TickId::scheduled_legacy`]). Returns how many it recorded.
    async fn insert_backfill(&self, ticks: &[Tick]) -> Result<u32>;

    /// Returns up to `limit` ticks of `shards` in state `planned` (the outbox) whose fire
    /// time is at or before `until`, oldest first, rebuilt with their schedule's current
    /// request.
    async fn ticks_to_publish(&self, shards: &[u32], until: Timestamp, limit: u32) -> Result<Vec<Tick>>;

    /// Returns up to `limit` ticks of `shards` in state `published` since before `before`
    /// with no run row: candidates for republication (reconciliation).
    ///
    /// A published tick stays `published` once its run exists (its outcome is its run's),
    /// so each shard keeps a cursor: every tick of the shard published before it has a
    /// run. A call reads from the cursor only, and when it returned fewer than `limit`
    /// ticks it moves each shard's cursor up to the oldest tick it returned of that shard,
    /// or else to `before` (at most the store's present). Each tick is thus read about
    /// once after its grace period, whatever the size of the ledger; a tick it returned is
    /// read again until it is republished (which moves its publication time up) or has a run.
    async fn ticks_without_run(&self, shards: &[u32], before: Timestamp, limit: u32) -> Result<Vec<Tick>>;

    /// Returns up to `limit` ticks of `shards` that are not final and whose run is absent or
    /// not final: everything a fresh in-memory queue must receive again after a restart.
    /// Those without a run are the outbox and what was published since each shard's
    /// reconciliation cursor ([`TickStore::ticks_without_run`]).
    async fn unfinished_ticks(&self, shards: &[u32], limit: u32) -> Result<Vec<Tick>>;

    /// Marks ticks as published at `at` (only those still `planned`; a later state wins).
    async fn mark_published(&self, ids: &[TickId], at: Timestamp) -> Result<()>;

    /// Puts ticks recorded as published at commit back into the outbox (state `planned`)
    /// after producing them failed; ticks already further along, or with a run (a worker
    /// has them: publishing them again would only invite a second send), are left alone.
    async fn unmark_published(&self, ids: &[TickId]) -> Result<()>;

    /// Returns up to `limit` parked runs of `shards` whose next attempt is due by `horizon`
    /// and not yet dispatched for that attempt (or dispatched before `redispatch_before`,
    /// in case that dispatch was lost), as ticks whose fire time is the attempt's time.
    async fn due_retries(
        &self,
        shards: &[u32],
        horizon: Timestamp,
        redispatch_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Tick>>;

    /// Records that the parked runs of these ticks were dispatched at `at`.
    async fn mark_dispatched(&self, ids: &[TickId], at: Timestamp) -> Result<()>;

    /// Returns up to `limit` ticks of `shards` whose run is unfinished, not parked, and
    /// leased until before `now`: its worker died, and its tick may be gone from the queue.
    async fn stuck_runs(&self, shards: &[u32], now: Timestamp, limit: u32) -> Result<Vec<Tick>>;

    /// Extends the leases of the runs of these ticks to `until` (after handing them out)
    /// and clears their owners, so the delivery of the copy handed out can take them.
    async fn extend_leases(&self, ids: &[TickId], until: Timestamp) -> Result<()>;
}

/// The worker's side: runs and attempts.
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Creates the run of `tick` or returns the existing one; its id is the tick's
    /// ([`RunId::of_tick`]), which makes it unique per tick. A run that is not final is
    /// leased to the caller (`lease`) unless another delivery holds it
    /// (an owner other than `lease.owner`, leased until after `now`): then
    /// [`BeginRun::Held`], and nothing changes. A run whose lease runs out without progress
    /// is handed out again by reconciliation ([`TickStore::stuck_runs`]).
    async fn begin_run(&self, tick: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun>;

    /// Stores one attempt and the run's new status in one transaction; when the status is
    /// final, the tick's ledger state follows (delivered / failed / cancelled).
    async fn record_attempt(&self, rec: &AttemptRecord) -> Result<()>;

    /// [`RunStore::begin_run`] that first applies the tick's overlap policy, serialised per
    /// schedule (Postgres: a transaction-scoped advisory lock on the schedule id; SQLite:
    /// the write lock), so workers racing on two ticks of one schedule cannot both start:
    /// `skip` records the tick skipped, `buffer_one` parks one tick as `buffered` (released
    /// to the outbox when the running one ends), `cancel_previous` cancels the running runs.
    async fn begin_run_exclusive(&self, tick: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun>;

    /// Returns the status of a run (`NotFound` if it is gone).
    async fn run_status(&self, project: &ProjectId, id: RunId) -> Result<RunStatus>;

    /// [`RunStore::begin_run`] for many ticks at once (one round trip where the backend
    /// can); results are in input order.
    async fn begin_runs(&self, items: &[(Tick, RunLease)], now: Timestamp) -> Vec<Result<BeginRun>> {
        let mut out = Vec::with_capacity(items.len());
        for (t, lease) in items {
            out.push(self.begin_run(t, now, *lease).await);
        }
        out
    }

    /// Gives up the runs these deliveries hold and have not finished (a worker shutting
    /// down): their leases end at `now`, so the next copy of each tick takes its run at
    /// once instead of waiting for the lease to run out. Runs held by others are left alone.
    async fn release_runs(&self, held: &[(TickId, LeaseOwner)], now: Timestamp) -> Result<()>;

    /// [`RunStore::record_attempt`] for many attempts in one transaction (all or nothing).
    async fn record_attempts(&self, recs: &[AttemptRecord]) -> Result<()> {
        for r in recs {
            self.record_attempt(r).await?;
        }
        Ok(())
    }

    /// Pauses an active schedule on behalf of its target (e.g. it answered 410 Gone), with
    /// `reason` as its state reason. A schedule not active is left alone.
    async fn pause_schedule(&self, project: &ProjectId, id: ScheduleId, reason: &str) -> Result<()>;

    /// Returns a run and its attempts (oldest first), or `NotFound`.
    async fn get_run(&self, project: &ProjectId, id: RunId) -> Result<(Run, Vec<Attempt>)>;

    /// Returns runs matching `filter`, newest nominal time first.
    async fn list_runs(&self, project: &ProjectId, filter: &RunFilter) -> Result<Vec<Run>>;
}

/// The three stores of one backend, shared by the roles of a process.
#[derive(Clone)]
pub struct Stores {
    /// Schedules.
    pub schedules: Arc<dyn ScheduleStore>,
    /// Ticks and shards.
    pub ticks: Arc<dyn TickStore>,
    /// Runs and attempts.
    pub runs: Arc<dyn RunStore>,
}

impl Stores {
    fn from_backend<S: ScheduleStore + TickStore + RunStore>(s: S) -> Self {
        let s = Arc::new(s);
        Self { schedules: s.clone(), ticks: s.clone(), runs: s }
    }
}

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`
    Postgres,
    /// `sqlite:` or a file path
    Sqlite,
}

impl Backend {
    /// Returns the backend of a database URL.
    pub fn of(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") { Self::Postgres } else { Self::Sqlite }
    }
}

/// Opens (and migrates) the store at `url`: a Postgres URL, or a SQLite URL / file path.
pub async fn open(url: &str, shard_count: u32) -> Result<Stores> {
    Ok(match Backend::of(url) {
        Backend::Postgres => Stores::from_backend(PgStore::connect(url, shard_count).await?),
        Backend::Sqlite => Stores::from_backend(SqliteStore::open(url, shard_count).await?),
    })
}
