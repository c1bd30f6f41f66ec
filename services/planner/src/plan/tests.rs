use super::*;
use cronhook_core::{
    HttpMethod, HttpTarget, NewSchedule, OverlapPolicy, ProjectId, RetryPolicy, ScheduleSpec, ScheduleState, SpecKind,
};
use proptest::prelude::*;

fn every_second(next: i64, catchup_ms: i64) -> (Schedule, CompiledSpec) {
    let spec = ScheduleSpec {
        kind: SpecKind::Interval { every_ms: 1000, offset_ms: 0 },
        time_zone: "UTC".into(),
        start: None,
        end: None,
        remaining_runs: None,
    };
    let compiled = CompiledSpec::compile(&spec).unwrap();
    let s = Schedule {
        id: ScheduleId::generate(),
        project_id: ProjectId::default_project(),
        def: NewSchedule {
            name: "s".into(),
            description: String::new(),
            spec,
            target: HttpTarget {
                url: "http://127.0.0.1/".into(),
                method: HttpMethod::Post,
                headers: vec![],
                body: vec![],
                timeout_ms: 1000,
                follow_redirects: false,
            },
            retry: RetryPolicy::default(),
            overlap: OverlapPolicy::Skip,
            catchup_window_ms: catchup_ms,
            jitter_ms: 0,
            labels: Default::default(),
            failure_notification_url: None,
            auto_pause_after_failures: 0,
            signing_secrets: Vec::new(),
        },
        state: ScheduleState::Active,
        state_reason: String::new(),
        next_fire_at: Some(Timestamp::from_millis(next)),
        version: 4,
        shard: 0,
        runs_left: None,
        created_at: Timestamp::from_millis(0),
        updated_at: Timestamp::from_millis(0),
    };
    (s, compiled)
}

fn ms(v: i64) -> Timestamp {
    Timestamp::from_millis(v)
}

#[test]
fn plans_up_to_the_horizon_and_continues_after() {
    let (s, spec) = every_second(10_000, 60_000);
    let p = plan_schedule(&s, &spec, ms(10_500), ms(12_500), 100).unwrap();
    let times: Vec<i64> = p.ticks.iter().map(|t| t.nominal_time.as_millis()).collect();
    assert_eq!(times, vec![10_000, 11_000, 12_000]);
    assert!(p.ticks.iter().all(|t| t.state == TickState::Planned && t.fire_time == t.nominal_time));
    assert_eq!(p.new_next, Some(ms(13_000)));
    assert_eq!((p.expected_next, p.expected_version), (ms(10_000), 4));
    assert_eq!(p.ticks[0].id, TickId::scheduled(s.id, ms(10_000)));
    assert!(plan_schedule(&s, &spec, ms(0), ms(9_999), 100).is_none(), "nothing due before the horizon");
}

#[test]
fn ticks_older_than_the_catchup_window_are_missed_with_a_reason() {
    let (s, spec) = every_second(0, 5_000);
    let p = plan_schedule(&s, &spec, ms(10_000), ms(10_000), 100).unwrap();
    let missed: Vec<i64> =
        p.ticks.iter().filter(|t| t.state == TickState::Missed).map(|t| t.nominal_time.as_millis()).collect();
    let planned: Vec<i64> =
        p.ticks.iter().filter(|t| t.state == TickState::Planned).map(|t| t.nominal_time.as_millis()).collect();
    assert_eq!(missed, vec![0, 1_000, 2_000, 3_000, 4_000]);
    assert_eq!(planned, vec![5_000, 6_000, 7_000, 8_000, 9_000, 10_000]);
    assert!(p.ticks[0].reason.as_deref().unwrap().contains("catch-up window of 5 s"));
}

#[test]
fn a_long_backlog_is_bounded_per_pass() {
    let (s, spec) = every_second(0, 3_600_000);
    let p = plan_schedule(&s, &spec, ms(1_000_000), ms(1_000_000), 50).unwrap();
    assert_eq!(p.ticks.len(), 50);
    assert_eq!(p.new_next, Some(ms(50_000)));
}

#[test]
fn remaining_runs_complete_the_schedule() {
    let (mut s, spec) = every_second(10_000, 60_000);
    s.runs_left = Some(2);
    let p = plan_schedule(&s, &spec, ms(10_000), ms(20_000), 100).unwrap();
    assert_eq!(p.ticks.len(), 2);
    assert_eq!((p.runs_left, p.new_next), (Some(0), None));
}

#[test]
fn jitter_is_deterministic_bounded_and_before_the_next_tick() {
    let id = ScheduleId::generate();
    for t in 0..200 {
        let nominal = ms(t * 1000);
        let j = jitter_ms(id, nominal, 5_000, Some(nominal.add_millis(1000)));
        assert!((0..1000).contains(&j));
        assert_eq!(j, jitter_ms(id, nominal, 5_000, Some(nominal.add_millis(1000))));
    }
    assert_eq!(jitter_ms(id, ms(0), 0, None), 0);
}

proptest! {
    /// Consecutive passes (each resuming from the previous new_next) cover every fire time
    /// exactly once, whatever the pass timing.
    #[test]
    fn passes_neither_skip_nor_repeat(steps in proptest::collection::vec(1i64..5_000, 1..30), max in 1usize..10) {
        let (mut s, spec) = every_second(0, 1_000_000);
        let mut now = 0i64;
        let mut seen = Vec::new();
        for step in steps {
            now += step;
            if let Some(p) = plan_schedule(&s, &spec, ms(now), ms(now + 500), max) {
                seen.extend(p.ticks.iter().map(|t| t.nominal_time.as_millis()));
                s.next_fire_at = p.new_next;
            }
        }
        let expected: Vec<i64> = (0..seen.len() as i64).map(|i| i * 1000).collect();
        prop_assert_eq!(seen, expected);
    }
}

#[test]
fn a_paused_schedule_records_skips_and_keeps_its_runs() {
    let (mut s, spec) = every_second(10_000, 60_000);
    s.state = ScheduleState::Paused;
    s.runs_left = Some(5);
    let p = plan_schedule(&s, &spec, ms(12_000), ms(12_000), 100).unwrap();
    assert_eq!(p.ticks.len(), 3);
    assert!(p.ticks.iter().all(|t| t.state == TickState::Skipped && t.reason.as_deref() == Some("paused")));
    assert_eq!((p.runs_left, p.new_next), (Some(5), Some(ms(13_000))), "skips do not use up runs");
}

fn bounded(next: i64, start: Option<i64>, end: Option<i64>, updated: i64) -> (Schedule, CompiledSpec) {
    let (mut s, _) = every_second(next, 60_000);
    s.def.spec.start = start.map(ms);
    s.def.spec.end = end.map(ms);
    s.updated_at = ms(updated);
    let spec = CompiledSpec::compile(&s.def.spec).unwrap();
    (s, spec)
}

fn skipped(p: &PlannedSchedule, reason: &str) -> Vec<i64> {
    p.ticks
        .iter()
        .filter(|t| t.state == TickState::Skipped && t.reason.as_deref() == Some(reason))
        .map(|t| t.nominal_time.as_millis())
        .collect()
}

#[test]
fn fire_times_before_the_start_are_recorded_once_with_the_first_tick() {
    // changed at 2.5 s, starts at 6 s: the rule's 3, 4, 5 s are before the start
    let (s, spec) = bounded(6_000, Some(6_000), None, 2_500);
    let p = plan_schedule(&s, &spec, ms(6_000), ms(7_000), 100).unwrap();
    assert_eq!(skipped(&p, "before_start"), vec![3_000, 4_000, 5_000]);
    let planned: Vec<i64> =
        p.ticks.iter().filter(|t| t.state == TickState::Planned).map(|t| t.nominal_time.as_millis()).collect();
    assert_eq!(planned, vec![6_000, 7_000]);
    assert!(p.ticks.windows(2).all(|w| w[0].nominal_time < w[1].nominal_time), "oldest first");
    let b = p.ticks.iter().find(|t| t.nominal_time == ms(3_000)).unwrap();
    assert_eq!(b.id, TickId::outside_bounds(s.id, ms(3_000)), "never a real tick's id");
    assert_ne!(b.id, TickId::scheduled(s.id, ms(3_000)));

    // the next pass (next fire time 8 s) does not write them again
    let (s2, spec2) = bounded(8_000, Some(6_000), None, 2_500);
    let p2 = plan_schedule(&s2, &spec2, ms(8_000), ms(8_000), 100).unwrap();
    assert!(skipped(&p2, "before_start").is_empty());
    // a start before the last change records nothing
    let (s3, spec3) = bounded(6_000, Some(6_000), None, 7_000);
    assert!(skipped(&plan_schedule(&s3, &spec3, ms(6_000), ms(6_000), 100).unwrap(), "before_start").is_empty());
}

#[test]
fn before_start_records_are_bounded() {
    let (s, spec) = bounded(1_000_000, Some(1_000_000), None, 0);
    let p = plan_schedule(&s, &spec, ms(1_000_000), ms(1_000_000), 100).unwrap();
    let b = skipped(&p, "before_start");
    assert_eq!(b.len(), MAX_BOUND_RECORDS);
    assert_eq!(b[0], 0, "the earliest ones are kept");
    assert_eq!(p.ticks.iter().filter(|t| t.state == TickState::Planned).count(), 1, "max_ticks counts real ticks only");
}

#[test]
fn the_first_fire_time_at_the_end_is_recorded_when_the_schedule_completes() {
    let (s, spec) = bounded(8_000, None, Some(10_000), 0);
    let p = plan_schedule(&s, &spec, ms(8_000), ms(20_000), 100).unwrap();
    let planned: Vec<i64> =
        p.ticks.iter().filter(|t| t.state == TickState::Planned).map(|t| t.nominal_time.as_millis()).collect();
    assert_eq!(planned, vec![8_000, 9_000], "end is exclusive");
    assert_eq!(skipped(&p, "after_end"), vec![10_000]);
    assert_eq!(p.new_next, None, "completed");
    // not reached yet: nothing recorded
    let p = plan_schedule(&s, &spec, ms(8_000), ms(8_500), 100).unwrap();
    assert!(skipped(&p, "after_end").is_empty());
    assert_eq!(p.new_next, Some(ms(9_000)));
}

fn planned_at(fire: i64) -> PlannedTick {
    PlannedTick {
        id: TickId::scheduled(ScheduleId::generate(), ms(fire)),
        nominal_time: ms(fire),
        fire_time: ms(fire),
        state: TickState::Planned,
        reason: None,
    }
}

#[test]
fn catchup_is_paced_oldest_first_and_on_time_ticks_are_untouched() {
    let mut pacer = CatchupPacer::new(4, 5_000); // 250 ms apart
    let now = 100_000;
    let mut ticks: Vec<PlannedTick> = (0..6).map(|i| planned_at(80_000 + i * 1000)).collect();
    ticks.push(planned_at(96_000)); // 4 s late: ordinary lateness
    ticks.push(planned_at(101_000)); // ahead of time
    ticks[1].state = TickState::Missed;
    let moved = pacer.pace(ms(now), &mut ticks);
    let fires: Vec<i64> = ticks.iter().map(|t| t.fire_time.as_millis()).collect();
    // the oldest late tick goes at once; the missed one and the on-time ones are untouched
    assert_eq!(fires, vec![80_000, 81_000, 100_000, 100_250, 100_500, 100_750, 96_000, 101_000]);
    assert_eq!(moved, 4);
    assert!(ticks.iter().all(|t| t.nominal_time.as_millis() <= t.fire_time.as_millis()), "nominal times kept");
    // the pace carries over to the next plan (another schedule's backlog)
    let mut more = vec![planned_at(84_000), planned_at(85_000)];
    pacer.pace(ms(now + 10), &mut more);
    assert_eq!((more[0].fire_time, more[1].fire_time), (ms(84_000), ms(101_000)));
    // and restarts from now once it is behind
    let mut later = vec![planned_at(84_000), planned_at(85_000)];
    pacer.pace(ms(200_000), &mut later);
    assert_eq!(later[1].fire_time, ms(200_000));
    // one late tick per schedule (a cluster merely behind) is never paced
    let mut behind = vec![planned_at(90_000), planned_at(101_000)];
    assert_eq!(pacer.pace(ms(now), &mut behind), 0);
    // rate 0: unpaced
    let mut off = vec![planned_at(0)];
    assert_eq!(CatchupPacer::new(0, 0).pace(ms(now), &mut off), 0);
    assert_eq!(off[0].fire_time, ms(0));
}
