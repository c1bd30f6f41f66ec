//! The planner publishes fresh ticks from memory (`plan::tick_for`) instead of reading them
//! back through the outbox query: both must give workers the same tick.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use cronhook_core::{
    Header, HttpMethod, HttpTarget, NewSchedule, OverlapPolicy, ProjectId, RetryPolicy, Schedule, ScheduleId,
    ScheduleSpec, ScheduleState, SpecKind, Timestamp,
};
use cronhook_cron::CompiledSpec;
use cronhook_planner::plan::{plan_schedule, tick_for};

#[tokio::test]
async fn a_tick_from_memory_equals_the_outbox_tick() {
    let dir = tempfile::tempdir().unwrap();
    let stores = cronhook_store::open(dir.path().join("db").to_str().unwrap(), 8).await.unwrap();
    let id = ScheduleId::generate();
    let spec = ScheduleSpec {
        kind: SpecKind::Interval { every_ms: 1000, offset_ms: 0 },
        time_zone: "UTC".into(),
        start: None,
        end: None,
        remaining_runs: None,
    };
    let s = Schedule {
        id,
        project_id: ProjectId::default_project(),
        def: NewSchedule {
            name: "direct".into(),
            description: String::new(),
            spec: spec.clone(),
            target: HttpTarget {
                url: "https://example.com/hook".into(),
                method: HttpMethod::Put,
                headers: vec![Header { name: "x-k".into(), value: "v".into(), secret: true }],
                body: b"{}".to_vec(),
                timeout_ms: 2_000,
                follow_redirects: true,
            },
            retry: RetryPolicy { max_attempts: 7, ..RetryPolicy::default() },
            overlap: OverlapPolicy::BufferOne,
            catchup_window_ms: 60_000,
            jitter_ms: 300,
            labels: Default::default(),
            failure_notification_url: Some("https://example.com/alerts".into()),
            auto_pause_after_failures: 3,
            signing_secrets: Vec::new(),
        },
        state: ScheduleState::Active,
        state_reason: String::new(),
        next_fire_at: Some(Timestamp::from_millis(10_000)),
        version: 1,
        shard: id.shard(8),
        runs_left: None,
        created_at: Timestamp::from_millis(0),
        updated_at: Timestamp::from_millis(0),
    };
    stores.schedules.insert_schedule(&s).await.unwrap();
    let s = stores.schedules.get_schedule(&s.project_id, id).await.unwrap();
    assert!(stores.ticks.claim_shard(s.shard, 5, "p").await.unwrap());
    let compiled = CompiledSpec::compile(&spec).unwrap();
    let plan =
        plan_schedule(&s, &compiled, Timestamp::from_millis(10_000), Timestamp::from_millis(12_000), 10).unwrap();
    let out = stores.ticks.commit_plan(s.shard, 5, std::slice::from_ref(&plan)).await.unwrap();
    assert_eq!(out.new_ticks.len(), 3);
    let outbox = stores.ticks.ticks_to_publish(&[s.shard], Timestamp::from_millis(20_000), 10).await.unwrap();
    assert_eq!(outbox.len(), 3);
    for t in &outbox {
        let planned = plan.ticks.iter().find(|p| p.id == t.id).unwrap();
        assert_eq!(&tick_for(&s, planned, 5), t);
    }
}
