//! Backend-neutral row shapes and their conversion to domain types, shared by both
//! backends so a row means the same thing whichever database it came from.

use cronhook_core::{
    Attempt, NewSchedule, ProjectId, RecordedHeader, Run, RunId, RunStatus, Schedule, ScheduleId, ScheduleState, Tick,
    TickId, Timestamp, TriggerKind,
};
use uuid::Uuid;

use crate::{Error, Result};

pub(crate) fn corrupt(what: &str, value: &str) -> Error {
    Error::Corrupt(format!("{what}: {value:?}"))
}

/// The conflict of an update or delete made with an etag that is no longer current.
pub(crate) fn stale_etag(id: ScheduleId, current: i64, expected: i64) -> Error {
    Error::Conflict(format!("schedule {id} changed: etag is {current}, not {expected}; read it again"))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(format!("cannot encode: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

fn project(s: String) -> Result<ProjectId> {
    ProjectId::new(&s).map_err(|_| corrupt("project_id", &s))
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn u32_of(what: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt(what, &v.to_string()))
}

/// A schedules row.
pub(crate) struct ScheduleRow {
    pub project_id: String,
    pub id: Uuid,
    pub definition: String,
    pub state: String,
    pub state_reason: String,
    pub next_fire_at: Option<i64>,
    pub runs_left: Option<i64>,
    pub version: i64,
    pub shard: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ScheduleRow {
    pub(crate) fn into_domain(self) -> Result<Schedule> {
        Ok(Schedule {
            id: ScheduleId::from_uuid(self.id),
            project_id: project(self.project_id)?,
            def: from_json::<NewSchedule>("schedules.definition", &self.definition)?,
            state: ScheduleState::parse(&self.state).ok_or_else(|| corrupt("schedules.state", &self.state))?,
            state_reason: self.state_reason,
            next_fire_at: self.next_fire_at.map(ts),
            version: self.version,
            shard: u32_of("schedules.shard", self.shard)?,
            runs_left: self.runs_left.map(|n| n.max(0) as u64),
            created_at: ts(self.created_at),
            updated_at: ts(self.updated_at),
        })
    }
}

/// A ticks row joined with its schedule's definition.
pub(crate) struct TickRow {
    pub project_id: String,
    pub id: Uuid,
    pub schedule_id: Uuid,
    pub nominal_time: i64,
    pub fire_time: i64,
    pub trigger: String,
    pub schedule_version: i64,
    pub shard: i64,
    pub epoch: i64,
    pub definition: String,
    /// JSON of the request when it is not the schedule's (failure notifications).
    pub target_override: Option<String>,
    /// The tick's own overlap policy, when it is not the schedule's (backfills).
    pub overlap: Option<String>,
}

impl TickRow {
    pub(crate) fn into_domain(self) -> Result<Tick> {
        let def = from_json::<NewSchedule>("schedules.definition", &self.definition)?;
        let notification = self.target_override.is_some();
        let target = match &self.target_override {
            Some(t) => from_json::<cronhook_core::HttpTarget>("ticks.target_override", t)?,
            None => def.target,
        };
        Ok(Tick {
            id: TickId::from_uuid(self.id),
            project_id: project(self.project_id)?,
            schedule_id: ScheduleId::from_uuid(self.schedule_id),
            schedule_version: self.schedule_version,
            nominal_time: ts(self.nominal_time),
            fire_time: ts(self.fire_time),
            trigger: TriggerKind::parse(&self.trigger).ok_or_else(|| corrupt("ticks.trigger", &self.trigger))?,
            target,
            retry: if notification { cronhook_core::RetryPolicy::default() } else { def.retry },
            shard: u32_of("ticks.shard", self.shard)?,
            epoch: self.epoch,
            signing_secrets: def.signing_secrets,
            // a notification never notifies or counts toward auto-pause
            failure_notification_url: if notification { None } else { def.failure_notification_url },
            auto_pause_after_failures: if notification { 0 } else { def.auto_pause_after_failures },
            overlap: match (notification, self.overlap.as_deref().and_then(cronhook_core::OverlapPolicy::parse)) {
                (true, _) => cronhook_core::OverlapPolicy::Allow,
                (false, Some(own)) => own,
                (false, None) => def.overlap,
            },
        })
    }
}

/// A runs row.
pub(crate) struct RunRow {
    pub project_id: String,
    pub id: Uuid,
    pub tick_id: Uuid,
    pub schedule_id: Uuid,
    pub nominal_time: i64,
    pub schedule_version: i64,
    pub trigger: String,
    pub status: String,
    pub attempt_count: i64,
    pub http_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub parked: bool,
}

impl RunRow {
    pub(crate) fn into_domain(self) -> Result<Run> {
        Ok(Run {
            id: RunId::from_uuid(self.id),
            project_id: project(self.project_id)?,
            schedule_id: ScheduleId::from_uuid(self.schedule_id),
            tick_id: TickId::from_uuid(self.tick_id),
            nominal_time: ts(self.nominal_time),
            schedule_version: self.schedule_version,
            trigger: TriggerKind::parse(&self.trigger).ok_or_else(|| corrupt("runs.trigger", &self.trigger))?,
            status: RunStatus::parse(&self.status).ok_or_else(|| corrupt("runs.status", &self.status))?,
            attempt_count: u32_of("runs.attempt_count", self.attempt_count)?,
            http_status: self.http_status.and_then(|s| u16::try_from(s).ok()),
            last_error: self.last_error,
            created_at: ts(self.created_at),
            started_at: self.started_at.map(ts),
            finished_at: self.finished_at.map(ts),
            next_attempt_at: self.next_attempt_at.map(ts),
            parked: self.parked,
        })
    }
}

/// An attempts row.
pub(crate) struct AttemptRow {
    pub run_id: Uuid,
    pub number: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub method: String,
    pub url: String,
    pub request_headers: String,
    pub request_body_size: i64,
    pub request_body_sha256: String,
    pub response_status: Option<i64>,
    pub response_headers: String,
    pub response_body: Vec<u8>,
    pub response_body_truncated: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub lateness_ms: i64,
    pub dns_ms: Option<i64>,
    pub connect_ms: Option<i64>,
    pub ttfb_ms: Option<i64>,
}

impl AttemptRow {
    pub(crate) fn into_domain(self) -> Result<Attempt> {
        Ok(Attempt {
            run_id: RunId::from_uuid(self.run_id),
            number: u32_of("attempts.number", self.number)?,
            started_at: ts(self.started_at),
            duration_ms: self.duration_ms,
            method: self.method,
            url: self.url,
            request_headers: from_json::<Vec<RecordedHeader>>("attempts.request_headers", &self.request_headers)?,
            request_body_size: self.request_body_size.max(0) as u64,
            request_body_sha256: self.request_body_sha256,
            response_status: self.response_status.and_then(|s| u16::try_from(s).ok()),
            response_headers: from_json::<Vec<RecordedHeader>>("attempts.response_headers", &self.response_headers)?,
            response_body: self.response_body,
            response_body_truncated: self.response_body_truncated,
            error_code: self.error_code,
            error_message: self.error_message,
            lateness_ms: self.lateness_ms,
            timing: cronhook_core::AttemptTiming {
                dns_ms: self.dns_ms,
                connect_ms: self.connect_ms,
                ttfb_ms: self.ttfb_ms,
            },
        })
    }
}

/// The state the ledger shows of a tick `t` joined to its run `r` ([`LEDGER_RUN`]), in SQL
/// both stores speak: the outcome of a tick handed to the queue is its run's once the run
/// is final (a run's end writes the run only, migration 0014: succeeded is `delivered`,
/// failed `failed`, cancelled `cancelled`); every other state is the tick's own. A tick
/// may still be `planned` with a run: produced, and delivered before it was marked.
pub(crate) const LEDGER_STATE: &str = "CASE WHEN t.state IN ('planned', 'published') THEN COALESCE(CASE r.status \
     WHEN 'succeeded' THEN 'delivered' WHEN 'failed' THEN 'failed' WHEN 'cancelled' THEN 'cancelled' END, t.state) \
     ELSE t.state END";

/// When the ledger row reached [`LEDGER_STATE`]: the run's end for an outcome read from it.
pub(crate) const LEDGER_UPDATED_AT: &str = "CASE WHEN t.state IN ('planned', 'published') \
     AND r.status IN ('succeeded', 'failed', 'cancelled') THEN COALESCE(r.finished_at, t.updated_at) ELSE t.updated_at END";

/// The join of the ledger's ticks `t` to the runs `r` their outcome may come from.
pub(crate) const LEDGER_RUN: &str = "LEFT JOIN runs r ON r.id = t.id AND t.state IN ('planned', 'published')";

/// Returns the legacy id ([`TickId::scheduled_legacy`]) of planned tick `t` of `p` when it
/// is a scheduled tick (not a ledger-only bound record): a plan commit records a fire time
/// in the past only if no tick has that id, which an older release may have given it.
pub(crate) fn legacy_of(p: &crate::PlannedSchedule, t: &crate::PlannedTick) -> Option<TickId> {
    t.id.legacy_of(p.schedule_id, t.nominal_time)
}

/// Returns the first attempt's start for a run row update (kept once set).
pub(crate) fn i64_opt(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_millis)
}

/// Marks a statement built from our own constant column lists (never from input: every
/// value is bound) as safe for sqlx 0.9's injection check.
pub(crate) fn safe(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// The run's `last_error` text for an attempt (`code: message`), if it failed.
pub(crate) fn last_error(a: &Attempt) -> Option<String> {
    a.error_message.as_ref().map(|m| format!("{}: {m}", a.error_code.as_deref().unwrap_or("error")))
}

/// The state reason of a schedule auto-paused after `n` consecutive failed runs.
pub(crate) fn auto_pause_reason(n: u32) -> String {
    format!("auto-paused after {n} consecutive failed runs; resume to try again")
}

/// A ticks row as a ledger entry.
pub(crate) struct LedgerRow {
    pub id: Uuid,
    pub schedule_id: Uuid,
    pub nominal_time: i64,
    pub fire_time: i64,
    pub state: String,
    pub reason: Option<String>,
    pub trigger: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl LedgerRow {
    pub(crate) fn into_domain(self) -> Result<cronhook_core::LedgerEntry> {
        Ok(cronhook_core::LedgerEntry {
            id: TickId::from_uuid(self.id),
            schedule_id: ScheduleId::from_uuid(self.schedule_id),
            nominal_time: ts(self.nominal_time),
            fire_time: ts(self.fire_time),
            state: cronhook_core::TickState::parse(&self.state).ok_or_else(|| corrupt("ticks.state", &self.state))?,
            reason: self.reason,
            trigger: TriggerKind::parse(&self.trigger).ok_or_else(|| corrupt("ticks.trigger", &self.trigger))?,
            created_at: ts(self.created_at),
            updated_at: ts(self.updated_at),
        })
    }
}

/// Reason of a tick skipped because the schedule's previous run is still going.
pub(crate) fn overlap_reason_running(run: impl std::fmt::Display) -> String {
    format!("overlap: run {run} still in progress")
}

/// Reason of a tick skipped because a tick is buffered already (`buffer_one`).
pub(crate) const OVERLAP_BUFFER_FULL: &str = "overlap: a tick is already buffered";

/// `last_error` of a run cancelled by `cancel_previous`.
pub(crate) const OVERLAP_CANCELLED: &str = "cancelled: a newer tick is due (overlap policy cancel_previous)";

/// One step of applying a batch's run-end effects (see [`plan_effects`]).
pub(crate) enum EffectStep<'a> {
    /// Successes: reset these schedules' consecutive-failure counts, in one statement.
    Reset(Vec<(&'a ProjectId, ScheduleId)>),
    /// Anything else, alone: a failure counts and may pause; a notification is recorded.
    One(&'a crate::AttemptRecord, &'a crate::RunEffects),
}

/// A batch's run-end effects in the order to apply them, and the schedules whose run ended
/// (each releases its buffered tick, if it has one: `buffer_one` keeps at most one).
pub(crate) struct EffectPlan<'a> {
    pub(crate) steps: Vec<EffectStep<'a>>,
    pub(crate) ended: Vec<ScheduleId>,
}

/// Plans the effects of the final records among `recs`. Consecutive successes collapse into
/// one reset, flushed before every other record, so the failure counts come out exactly as
/// if each record were applied alone, in order; the two statements per success this
/// replaces were most of a batch's round trips (docs/benchmarks.md).
pub(crate) fn plan_effects(recs: &[crate::AttemptRecord]) -> EffectPlan<'_> {
    let mut steps = Vec::new();
    let mut resets = Vec::new();
    let mut ended = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in recs {
        let Some(fx) = &r.effects else { continue };
        if !r.status.is_final() {
            continue;
        }
        if seen.insert(fx.schedule_id) {
            ended.push(fx.schedule_id);
        }
        if r.status == RunStatus::Succeeded {
            resets.push((&r.project_id, fx.schedule_id));
        }
        if r.status != RunStatus::Succeeded || fx.notification.is_some() {
            if !resets.is_empty() {
                steps.push(EffectStep::Reset(std::mem::take(&mut resets)));
            }
            steps.push(EffectStep::One(r, fx));
        }
    }
    if !resets.is_empty() {
        steps.push(EffectStep::Reset(resets));
    }
    EffectPlan { steps, ended }
}

/// Splits a batch of attempt records into consecutive chunks for multi-row statements: at
/// most `max_rows` records, and a run at most once per chunk (two workers on a redelivered
/// tick), because one `UPDATE ... FROM` applies only one of several source rows for the
/// same target row; chunk by chunk, a run's later attempt is written after its earlier one.
pub(crate) fn statement_chunks(recs: &[crate::AttemptRecord], max_rows: usize) -> Vec<&[crate::AttemptRecord]> {
    let mut chunks = Vec::new();
    let (mut start, mut runs) = (0, std::collections::HashSet::new());
    for (i, r) in recs.iter().enumerate() {
        if i - start == max_rows || !runs.insert(r.attempt.run_id) {
            chunks.push(&recs[start..i]);
            start = i;
            runs.clear();
            runs.insert(r.attempt.run_id);
        }
    }
    if start < recs.len() {
        chunks.push(&recs[start..]);
    }
    chunks
}

/// A tick's run as a batch of begins left it: its holder now, and whether this batch's
/// insert created it.
pub(crate) struct Begun {
    pub run: Run,
    pub owner: Option<crate::LeaseOwner>,
    pub created: bool,
}

impl Begun {
    /// The run a begin's insert just created, as the row holds it: built from what was
    /// inserted, so the insert returns only the ids of the runs it created rather than
    /// every column of every row.
    fn inserted(tick: &cronhook_core::Tick, now: Timestamp, lease: crate::RunLease) -> Self {
        let run = Run {
            id: RunId::of_tick(tick.id),
            project_id: tick.project_id.clone(),
            schedule_id: tick.schedule_id,
            tick_id: tick.id,
            nominal_time: tick.nominal_time,
            schedule_version: tick.schedule_version,
            trigger: tick.trigger,
            status: RunStatus::Pending,
            attempt_count: 0,
            http_status: None,
            last_error: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            next_attempt_at: None,
            parked: false,
        };
        Self { run, owner: Some(lease.owner), created: true }
    }
}

/// The begins of a batch that its insert may create: the first copy of each tick. Two
/// copies of one tick name the same run, so only one of them goes into the insert, and
/// which one created the run (with its lease owner) is then known.
pub(crate) fn first_copies(
    items: &[(cronhook_core::Tick, crate::RunLease)],
) -> Vec<&(cronhook_core::Tick, crate::RunLease)> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    items.iter().filter(|(t, _)| seen.insert(t.id)).collect()
}

/// The begins among `inserts` (see [`first_copies`]) whose runs the insert created
/// (`created`: whether a run id is among those it returned), keyed by tick.
pub(crate) fn inserted_begins<'a>(
    inserts: &'a [&'a (cronhook_core::Tick, crate::RunLease)],
    created: impl Fn(&RunId) -> bool + 'a,
    now: Timestamp,
) -> impl Iterator<Item = (TickId, Begun)> + 'a {
    inserts
        .iter()
        .filter(move |(t, _)| created(&RunId::of_tick(t.id)))
        .map(move |(t, lease)| (t.id, Begun::inserted(t, now, *lease)))
}

/// What each begin of a batch found, in input order. The first begin whose owner created
/// the run started it; a begin whose owner holds the run resumes it (a retried write, or a
/// run taken over); a final run is done; any other copy finds it held.
pub(crate) fn begin_results<'a>(
    items: impl Iterator<Item = (&'a TickId, crate::LeaseOwner)>,
    mut found: std::collections::HashMap<TickId, Begun>,
) -> Result<Vec<crate::BeginRun>> {
    use crate::BeginRun;
    let mut out = Vec::new();
    for (tick, owner) in items {
        // Neither inserted nor found: the insert begins runs of recorded ticks only.
        let Some(b) = found.get_mut(tick) else {
            out.push(BeginRun::Unrecorded);
            continue;
        };
        out.push(if b.run.status.is_final() {
            BeginRun::Done(b.run.clone())
        } else if b.owner != Some(owner) {
            BeginRun::Held(b.run.clone())
        } else if std::mem::take(&mut b.created) {
            BeginRun::Started(b.run.clone())
        } else {
            BeginRun::Resume(b.run.clone())
        });
    }
    Ok(out)
}
