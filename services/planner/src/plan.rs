//! The pure decision: which ticks a due schedule gets in this pass.
//!
//! Properties (tested): ticks are the spec's fire times from the stored next fire time
//! on, strictly increasing, none after the horizon; those older than the catch-up window
//! are recorded as missed, never fired; the new next fire time is the first fire time not
//! covered, so consecutive passes neither skip nor repeat a fire time.
//!
//! The ledger also gets the rule's fire times the spec's bounds cut off: those between the
//! last change of the schedule and its start (at most [`MAX_BOUND_RECORDS`], written with
//! the first real tick), and the first one at or after its end (written when the schedule
//! completes), each `skipped` with reason `before_start` / `after_end`.

use cronhook_core::{Schedule, ScheduleId, ScheduleState, Tick, TickId, TickState, Timestamp, TriggerKind};

/// Ledger reasons of the ticks the planner records as skipped (also the `reason` label of
/// `cronhook_ticks_skipped_total`).
pub const SKIPPED_PAUSED: &str = "paused";
/// See [`SKIPPED_PAUSED`].
pub const SKIPPED_BEFORE_START: &str = "before_start";
/// See [`SKIPPED_PAUSED`].
pub const SKIPPED_AFTER_END: &str = "after_end";

/// Most `before_start` records one schedule gets (a far start must not flood the ledger).
pub const MAX_BOUND_RECORDS: usize = 10;
use cronhook_cron::CompiledSpec;
use cronhook_store::{PlannedSchedule, PlannedTick};

/// Returns the plan for `s` at `now` covering fire times up to `horizon`, or `None` when
/// it has nothing due. Fire times come from the spec, never from "now".
pub fn plan_schedule(
    s: &Schedule,
    spec: &CompiledSpec,
    now: Timestamp,
    horizon: Timestamp,
    max_ticks: usize,
) -> Option<PlannedSchedule> {
    let start = s.next_fire_at?;
    if start > horizon {
        return None;
    }
    let oldest_allowed = now.add_millis(-s.def.catchup_window_ms);
    let mut ticks = before_start(s, spec, start);
    let bound_records = ticks.len();
    let mut runs_left = s.runs_left;
    let mut cur = Some(start);
    while let Some(t) = cur {
        if t > horizon || ticks.len() - bound_records >= max_ticks || runs_left == Some(0) {
            break;
        }
        let next = spec.next_after(t);
        let id = TickId::scheduled(s.id, t);
        if s.state == ScheduleState::Paused {
            // paused: every tick that would have fired is in the ledger as skipped
            ticks.push(PlannedTick {
                id,
                nominal_time: t,
                fire_time: t,
                state: TickState::Skipped,
                reason: Some(SKIPPED_PAUSED.into()),
            });
        } else if t < oldest_allowed {
            let late_s = now.millis_since(t) / 1000;
            ticks.push(PlannedTick {
                id,
                nominal_time: t,
                fire_time: t,
                state: TickState::Missed,
                reason: Some(format!(
                    "outside the catch-up window of {} s (late by {late_s} s)",
                    s.def.catchup_window_ms / 1000
                )),
            });
        } else {
            ticks.push(PlannedTick {
                id,
                nominal_time: t,
                fire_time: t.add_millis(jitter_ms(s.id, t, s.def.jitter_ms, next)),
                state: TickState::Planned,
                reason: None,
            });
            runs_left = runs_left.map(|n| n.saturating_sub(1));
        }
        if next.is_none() {
            ticks.extend(after_end(s, spec, t));
        }
        cur = next;
    }
    let new_next = if runs_left == Some(0) { None } else { cur };
    Some(PlannedSchedule {
        project_id: s.project_id.clone(),
        schedule_id: s.id,
        shard: s.shard,
        expected_version: s.version,
        expected_next: start,
        new_next,
        runs_left,
        ticks,
    })
}

/// The tick a worker gets for planned tick `t` of `s` (what the outbox query rebuilds from
/// the stored rows; the planner publishes fresh ticks from memory instead of reading them
/// back).
pub fn tick_for(s: &Schedule, t: &PlannedTick, epoch: i64) -> Tick {
    Tick {
        id: t.id,
        project_id: s.project_id.clone(),
        schedule_id: s.id,
        schedule_version: s.version,
        nominal_time: t.nominal_time,
        fire_time: t.fire_time,
        trigger: TriggerKind::Scheduled,
        target: s.def.target.clone(),
        retry: s.def.retry.clone(),
        shard: s.shard,
        epoch,
        signing_secrets: s.def.signing_secrets.clone(),
        failure_notification_url: s.def.failure_notification_url.clone(),
        auto_pause_after_failures: s.def.auto_pause_after_failures,
        overlap: s.def.overlap,
    }
}

fn bound_record(s: &Schedule, t: Timestamp, reason: &str) -> PlannedTick {
    PlannedTick {
        id: TickId::outside_bounds(s.id, t),
        nominal_time: t,
        fire_time: t,
        state: TickState::Skipped,
        reason: Some(reason.into()),
    }
}

/// The rule's fire times from the schedule's last change up to its start, when `first` is
/// the first fire time of the spec (so they are written once).
fn before_start(s: &Schedule, spec: &CompiledSpec, first: Timestamp) -> Vec<PlannedTick> {
    let Some(start) = spec.start() else { return Vec::new() };
    if s.updated_at >= start || spec.first_at_or_after(start) != Some(first) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = spec.rule_next_after(s.updated_at.add_millis(-1));
    while let Some(t) = cur {
        if t >= start || out.len() >= MAX_BOUND_RECORDS {
            break;
        }
        out.push(bound_record(s, t, SKIPPED_BEFORE_START));
        cur = spec.rule_next_after(t);
    }
    out
}

/// The rule's first fire time at or after the end, when `last` was the spec's last one.
fn after_end(s: &Schedule, spec: &CompiledSpec, last: Timestamp) -> Option<PlannedTick> {
    let end = spec.end()?;
    let t = spec.rule_next_after(last)?;
    (t >= end).then(|| bound_record(s, t, SKIPPED_AFTER_END))
}

/// Paces catch-up: ticks planned later than `late_after` behind their fire time are given
/// fire times at most `rate` per second apart, oldest first, starting now, so a long outage
/// does not become a stampede on the targets. On-time ticks are never touched, nor is the
/// oldest late tick of each schedule.
/// The pace is per planner node; the outbox publishes a tick only once its (paced) fire
/// time is within the lookahead, so paced ticks wait in the database, not in memory.
#[derive(Debug, Clone)]
pub struct CatchupPacer {
    interval_us: i64,
    late_after_ms: i64,
    next_slot_us: i64,
}

impl CatchupPacer {
    /// `rate` ticks per second; 0 disables pacing.
    pub fn new(rate: u32, late_after_ms: i64) -> Self {
        let interval_us = if rate == 0 { 0 } else { (1_000_000 / i64::from(rate)).max(1) };
        Self { interval_us, late_after_ms, next_slot_us: 0 }
    }

    /// Gives the late ticks of one schedule's plan their paced fire times (all but the
    /// oldest: one late tick per schedule and pass goes at once, so a cluster that is
    /// merely behind is not throttled; a backlog of many ticks of one schedule is what
    /// would hit its target as a burst). Returns how many moved.
    pub fn pace(&mut self, now: Timestamp, ticks: &mut [PlannedTick]) -> usize {
        if self.interval_us == 0 {
            return 0;
        }
        let now_us = now.as_millis() * 1000;
        let mut moved = 0;
        let mut first = true;
        for t in ticks.iter_mut() {
            if t.state != TickState::Planned || now.millis_since(t.fire_time) <= self.late_after_ms {
                continue;
            }
            if std::mem::take(&mut first) {
                continue;
            }
            let slot_us = self.next_slot_us.max(now_us);
            self.next_slot_us = slot_us + self.interval_us;
            let slot = Timestamp::from_millis(slot_us / 1000);
            if slot > t.fire_time {
                t.fire_time = slot;
                moved += 1;
            }
        }
        moved
    }
}

/// Deterministic jitter: a hash of (schedule id, nominal time) below `max_ms + 1`, never
/// reaching the next nominal time. Every planner computes the same value.
pub fn jitter_ms(id: ScheduleId, nominal: Timestamp, max_ms: i64, next: Option<Timestamp>) -> i64 {
    if max_ms <= 0 {
        return 0;
    }
    let cap = match next {
        Some(n) => max_ms.min(n.millis_since(nominal) - 1),
        None => max_ms,
    };
    if cap <= 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_uuid().as_bytes().iter().chain(nominal.as_millis().to_be_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % (cap as u64 + 1)) as i64
}

#[cfg(test)]
mod tests;
