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
