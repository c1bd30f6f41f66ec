use cronhook_core::{Attempt, ProjectId, Run, RunId, RunStatus, ScheduleId, TickId, TickState, Timestamp};
use uuid::Uuid;

/// What an update does to the stored next fire time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextFire {
    /// Leave it (the planner may have advanced it since the caller read it).
    Keep,
    /// Set it (the spec changed, or the schedule resumed).
    Set(Option<Timestamp>),
}

/// One tick decided by the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTick {
    /// Deterministic id.
    pub id: TickId,
    /// Nominal fire time.
    pub nominal_time: Timestamp,
    /// Nominal time plus jitter.
    pub fire_time: Timestamp,
    /// `Planned` (left in the outbox), `Published` (recorded as published at commit: the
    /// planner produces it right after; see [`crate::TickStore::unmark_published`]), or a
    /// final decision such as `Missed` or `Skipped`.
    pub state: TickState,
    /// Why, for final decisions.
    pub reason: Option<String>,
}

/// The planner's decision for one schedule in one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSchedule {
    /// Owning project.
    pub project_id: ProjectId,
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// Its shard (the plan is written only while that shard's epoch is current).
    pub shard: u32,
    /// Version the plan was computed from (the advance is skipped if it changed).
    pub expected_version: i64,
    /// Next fire time the plan started from (the advance is skipped if it changed).
    pub expected_next: Timestamp,
    /// The new next fire time (`None`: no more fire times).
    pub new_next: Option<Timestamp>,
    /// The new count of runs left.
    pub runs_left: Option<u64>,
    /// Ticks to record.
    pub ticks: Vec<PlannedTick>,
}

/// What [`crate::TickStore::commit_plan`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOutcome {
    /// Schedules advanced.
    pub advanced: usize,
    /// Schedules skipped because they changed since they were read.
    pub stale: usize,
    /// Ids of newly recorded ticks in state `planned` or `published` (to publish now).
    pub new_ticks: Vec<TickId>,
    /// (shard, epoch) pairs no longer current: their plans were not written.
    pub fenced: Vec<(u32, i64)>,
}

/// What [`crate::RunStore::begin_run`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum BeginRun {
    /// The run was created now: deliver it.
    Started(Run),
    /// A run exists and is not final (its worker crashed): resume with the next attempt.
    Resume(Run),
    /// A run exists and is final: acknowledge the tick, send nothing.
    Done(Run),
    /// The overlap policy skipped the tick (recorded in the ledger): acknowledge it.
    Skipped(String),
    /// The overlap policy buffered the tick; it is published again when the previous run
    /// ends: acknowledge this delivery.
    Buffered,
    /// A run exists, is not final, and another delivery of the tick holds its lease: send
    /// nothing and acknowledge. The holder finishes the run; if it dies, the lease runs out
    /// and reconciliation ([`crate::TickStore::stuck_runs`]) hands the run out again.
    Held(Run),
    /// The tick is not in the ledger, so no run is begun: every tick is recorded before it
    /// is published, so only a copy delivered after retention purged the tick (and its run)
    /// can be, and its delivery was done long ago. Acknowledge it, send nothing. (Runs are
    /// listed and purged through their ticks: a run without its tick would be neither.)
    Unrecorded,
}

/// One delivery of a tick: drawn by the worker for each copy of a tick it handles, so two
/// copies of one tick (a redelivery, a republish) never hold the same run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseOwner(Uuid);

impl LeaseOwner {
    /// A new random owner token.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// A token read back from the store.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The token.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

/// Who holds a run, and until when. A run is taken by a delivery when it has no owner, the
/// owner is the same delivery, it is parked (waiting for the planner to dispatch its next
/// attempt), or the lease has run out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLease {
    /// The delivery holding the run.
    pub owner: LeaseOwner,
    /// Until when (the fire time, or the next attempt's start, plus the attempt timeout and
    /// the lease margin).
    pub until: Timestamp,
}

/// One attempt and the run's state after it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// Owning project.
    pub project_id: ProjectId,
    /// The run's tick.
    pub tick_id: TickId,
    /// The attempt.
    pub attempt: Attempt,
    /// The run's status after it.
    pub status: RunStatus,
    /// When the next attempt is due, if one will follow.
    pub next_attempt_at: Option<Timestamp>,
    /// When the run ended, if it did.
    pub finished_at: Option<Timestamp>,
    /// The next attempt is too far away to wait in a worker: the run is parked and the
    /// shard's planner dispatches it again when due.
    pub park: bool,
    /// While the run goes on in this worker: until when it is leased to it (see
    /// [`crate::RunStore::begin_run`]; the owner stays). `None` (final or parked) also
    /// clears the owner.
    pub lease_until: Option<Timestamp>,
    /// What a final status does to the schedule, in the same transaction.
    pub effects: Option<RunEffects>,
}

/// Consequences of a run's end for its schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEffects {
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// Pause it after this many consecutive failed runs (0 = never). A success resets the count.
    pub auto_pause_after: u32,
    /// A `run.failed` notification tick to put in the outbox (its request is its own).
    pub notification: Option<Box<cronhook_core::Tick>>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Only this schedule's runs.
    pub schedule_id: Option<ScheduleId>,
    /// Only these statuses (empty: all).
    pub statuses: Vec<RunStatus>,
    /// Nominal time at or after.
    pub from: Option<Timestamp>,
    /// Nominal time before.
    pub to: Option<Timestamp>,
    /// Page cursor: only runs strictly older than this (nominal time, run id).
    pub before: Option<(Timestamp, RunId)>,
    /// Page size.
    pub limit: u32,
}

/// A shard's recorded owner (for cluster status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLease {
    /// The shard.
    pub shard: u32,
    /// Its current epoch.
    pub epoch: i64,
    /// Who claimed it last.
    pub owner: Option<String>,
    /// When.
    pub claimed_at: Option<Timestamp>,
}

/// Which ledger rows to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickFilter {
    /// Only this schedule's ticks.
    pub schedule_id: Option<ScheduleId>,
    /// Only these states (empty: all).
    pub states: Vec<cronhook_core::TickState>,
    /// Nominal time at or after.
    pub from: Option<Timestamp>,
    /// Nominal time before.
    pub to: Option<Timestamp>,
    /// Page cursor: only ticks strictly older than this (nominal time, tick id).
    pub before: Option<(Timestamp, TickId)>,
    /// Page size.
    pub limit: u32,
}
