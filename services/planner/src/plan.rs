//! The pure decision: which ticks a due schedule gets in this pass.
//!
//! Properties (tested): ticks are the spec's fire times from the stored next fire time
//! on, strictly increasing, none after the horizon; those older than the catch-up window
//! are recorded as missed, never fired; the new next fire time is the first fire time not
//! covered, so consecutive passes neither skip nor repeat a fire time.

use cronhook_core::{Schedule, ScheduleId, ScheduleState, TickId, TickState, Timestamp};
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
    let mut ticks = Vec::new();
    let mut runs_left = s.runs_left;
    let mut cur = Some(start);
    while let Some(t) = cur {
        if t > horizon || ticks.len() >= max_ticks || runs_left == Some(0) {
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
                reason: Some("paused".into()),
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
        cur = next;
    }
    let new_next = if runs_left == Some(0) { None } else { cur };
    Some(PlannedSchedule {
        project_id: s.project_id.clone(),
        schedule_id: s.id,
        expected_version: s.version,
        expected_next: start,
        new_next,
        runs_left,
        ticks,
    })
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
