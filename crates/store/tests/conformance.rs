//! The one conformance suite of the stores: every test runs unchanged against SQLite and
//! against a real Postgres (a fresh database on the server scripts/test.sh starts).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::HashSet;

use cronhook_core::{
    Attempt, Header, HttpMethod, HttpTarget, NewSchedule, OverlapPolicy, ProjectId, RetryPolicy, RunId, RunStatus,
    Schedule, ScheduleId, ScheduleSpec, ScheduleState, SpecKind, Tick, TickId, TickState, Timestamp, TriggerKind,
};
use cronhook_store::{
    AttemptRecord, BeginRun, Error, LeaseOwner, NextFire, PlannedSchedule, PlannedTick, RunFilter, RunLease, Stores,
    TickFilter,
};

const SHARDS: u32 = 4;

async fn sqlite_stores() -> (Stores, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let s = cronhook_store::open(path.to_str().unwrap(), SHARDS).await.unwrap();
    (s, dir)
}

async fn pg_stores() -> (Stores, ()) {
    let url = cronhook_test_utils::postgres::fresh_database_url().await.unwrap();
    (cronhook_store::open(&url, SHARDS).await.unwrap(), ())
}

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (s, _dir) = super::sqlite_stores().await;
                    super::$name(s).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let (s, _) = super::pg_stores().await;
                    super::$name(s).await;
                }
            )*
        }
    };
}

store_suite!(
    schedule_crud_and_optimistic_concurrency,
    projects_are_isolated,
    update_can_keep_the_planners_next_fire_time,
    plan_commit_is_idempotent_and_fenced,
    one_commit_covers_several_shards_fenced_per_shard,
    outbox_publish_and_reconcile,
    ticks_published_at_commit_leave_the_outbox_and_return_if_unproduced,
    run_lifecycle_and_dedup,
    concurrent_begin_run_creates_one_run,
    runs_filter_and_paginate_newest_first,
    delete_cancels_open_ticks,
    parked_retries_are_dispatched_once_per_attempt,
    batched_run_writes_match_single_ones,
    batched_effects_count_failures_as_if_one_at_a_time,
    one_run_twice_in_a_batch_is_written_in_order,
    runs_whose_lease_ran_out_are_handed_out_again,
    ledger_lists_by_outcome_and_retention_purges_old_rows,
    overlap_policies_are_race_free,
    a_tick_outcome_is_its_runs_and_reconciliation_reads_from_its_cursor,
    fire_times_recorded_under_legacy_ids_are_not_recorded_again,
);

fn project() -> ProjectId {
    ProjectId::default_project()
}

fn schedule(name: &str, next: Option<Timestamp>) -> Schedule {
    let id = ScheduleId::generate();
    Schedule {
        id,
        project_id: project(),
        def: NewSchedule {
            name: name.into(),
            description: "d".into(),
            spec: ScheduleSpec {
                kind: SpecKind::Interval { every_ms: 1000, offset_ms: 0 },
                time_zone: "UTC".into(),
                start: None,
                end: None,
                remaining_runs: None,
            },
            target: HttpTarget {
                url: "http://127.0.0.1:9/hook".into(),
                method: HttpMethod::Post,
                headers: vec![Header { name: "X-A".into(), value: "b".into(), secret: false }],
                body: b"{\"a\":1}".to_vec(),
                timeout_ms: 30_000,
                follow_redirects: false,
            },
            retry: RetryPolicy::default(),
            overlap: OverlapPolicy::Skip,
            catchup_window_ms: 60_000,
            jitter_ms: 0,
            labels: [("team".to_owned(), "core".to_owned())].into(),
            failure_notification_url: None,
            auto_pause_after_failures: 0,
            signing_secrets: Vec::new(),
        },
        state: ScheduleState::Active,
        state_reason: String::new(),
        next_fire_at: next,
        version: 1,
        shard: id.shard(SHARDS),
        runs_left: None,
        created_at: Timestamp::from_millis(1_000),
        updated_at: Timestamp::from_millis(1_000),
    }
}

/// A fire-time bound past every tick of these tests.
const FAR: Timestamp = Timestamp::from_millis(4_102_444_800_000);

fn ms(v: i64) -> Timestamp {
    Timestamp::from_millis(v)
}

/// A lease until `until` for a new delivery (its own owner).
fn new_lease(until: Timestamp) -> RunLease {
    RunLease { owner: LeaseOwner::generate(), until }
}

/// `tick_of(s, at)` recorded in the ledger, as the planner or the API records every tick
/// before it is published (a run is begun for recorded ticks only).
async fn recorded_tick(st: &Stores, s: &Schedule, at: Timestamp) -> Tick {
    let t = tick_of(s, at);
    st.ticks.insert_tick(&t).await.unwrap();
    t
}

fn tick_of(s: &Schedule, at: Timestamp) -> Tick {
    Tick {
        id: TickId::scheduled(s.id, at),
        project_id: s.project_id.clone(),
        schedule_id: s.id,
        schedule_version: s.version,
        nominal_time: at,
        fire_time: at,
        trigger: TriggerKind::Scheduled,
        target: s.def.target.clone(),
        retry: s.def.retry.clone(),
        shard: s.shard,
        epoch: 1,
        signing_secrets: Vec::new(),
        failure_notification_url: None,
        auto_pause_after_failures: 0,
        overlap: Default::default(),
    }
}

fn plan(s: &Schedule, times: &[i64], next: Option<i64>) -> PlannedSchedule {
    PlannedSchedule {
        project_id: s.project_id.clone(),
        schedule_id: s.id,
        shard: s.shard,
        expected_version: s.version,
        expected_next: s.next_fire_at.unwrap(),
        new_next: next.map(ms),
        runs_left: None,
        ticks: times
            .iter()
            .map(|t| PlannedTick {
                id: TickId::scheduled(s.id, ms(*t)),
                nominal_time: ms(*t),
                fire_time: ms(*t),
                state: TickState::Planned,
                reason: None,
            })
            .collect(),
    }
}

/// The record of attempt `n` of `run` (of `tick`) that ends the run with `status` at
/// `finished`, with HTTP status `http`.
fn final_record(
    tick: TickId,
    run: RunId,
    n: u32,
    status: RunStatus,
    http: Option<u16>,
    finished: i64,
) -> AttemptRecord {
    AttemptRecord {
        project_id: project(),
        tick_id: tick,
        attempt: attempt(run, n, http),
        status,
        next_attempt_at: None,
        finished_at: Some(ms(finished)),
        park: false,
        lease_until: None,
        effects: None,
    }
}

fn attempt(run: RunId, n: u32, status: Option<u16>) -> Attempt {
    Attempt {
        run_id: run,
        number: n,
        started_at: ms(10_000 + i64::from(n)),
        duration_ms: 12,
        method: "POST".into(),
        url: "http://127.0.0.1:9/hook".into(),
        request_headers: vec![cronhook_core::RecordedHeader { name: "webhook-id".into(), value: "x".into() }],
        request_body_size: 7,
        request_body_sha256: "ab".into(),
        response_status: status,
        response_headers: vec![],
        response_body: b"ok".to_vec(),
        response_body_truncated: false,
        error_code: status.is_none().then(|| "connect".to_owned()),
        error_message: status.is_none().then(|| "connection refused".to_owned()),
        lateness_ms: 3,
        timing: cronhook_core::AttemptTiming { dns_ms: Some(1), connect_ms: Some(2), ttfb_ms: status.map(|_| 9) },
    }
}

async fn schedule_crud_and_optimistic_concurrency(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    assert!(matches!(st.schedules.insert_schedule(&s).await, Err(Error::AlreadyExists(_))));
    let got = st.schedules.get_schedule(&project(), s.id).await.unwrap();
    assert_eq!(got, s, "a schedule survives the round trip unchanged");

    // pagination in id (creation) order
    let mut ids = vec![s.id];
    for i in 0..4 {
        let x = schedule(&format!("s{i}"), Some(ms(5_000)));
        st.schedules.insert_schedule(&x).await.unwrap();
        ids.push(x.id);
    }
    let p1 = st.schedules.list_schedules(&project(), None, None, 2).await.unwrap();
    let p2 = st.schedules.list_schedules(&project(), None, Some(p1[1].id), 2).await.unwrap();
    let p3 = st.schedules.list_schedules(&project(), None, Some(p2[1].id), 2).await.unwrap();
    let listed: Vec<_> = p1.iter().chain(&p2).chain(&p3).map(|x| x.id).collect();
    assert_eq!(listed, ids);

    // update with the right version bumps it; a stale one is a conflict and changes nothing
    let mut changed = got.clone();
    changed.def.name = "renamed".into();
    changed.state = ScheduleState::Paused;
    let updated = st.schedules.update_schedule(&changed, 1, NextFire::Set(None)).await.unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.def.name, "renamed");
    assert_eq!(updated.next_fire_at, None);
    let mut stale = got.clone();
    stale.def.name = "lost update".into();
    assert!(matches!(st.schedules.update_schedule(&stale, 1, NextFire::Keep).await, Err(Error::Conflict(_))));
    assert_eq!(st.schedules.get_schedule(&project(), s.id).await.unwrap().def.name, "renamed");

    let paused = st.schedules.list_schedules(&project(), Some(ScheduleState::Paused), None, 10).await.unwrap();
    assert_eq!(paused.iter().map(|x| x.id).collect::<Vec<_>>(), vec![s.id]);

    assert!(matches!(st.schedules.delete_schedule(&project(), s.id, Some(1)).await, Err(Error::Conflict(_))));
    st.schedules.delete_schedule(&project(), s.id, Some(2)).await.unwrap();
    assert!(matches!(st.schedules.get_schedule(&project(), s.id).await, Err(Error::NotFound(_))));
    assert!(matches!(st.schedules.delete_schedule(&project(), s.id, None).await, Err(Error::NotFound(_))));
}

async fn projects_are_isolated(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let other = ProjectId::new("other").unwrap();
    assert!(matches!(st.schedules.get_schedule(&other, s.id).await, Err(Error::NotFound(_))));
    assert!(st.schedules.list_schedules(&other, None, None, 10).await.unwrap().is_empty());
    assert!(matches!(st.schedules.delete_schedule(&other, s.id, None).await, Err(Error::NotFound(_))));
}

async fn update_can_keep_the_planners_next_fire_time(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    assert!(st.ticks.claim_shard(s.shard, 1, "p").await.unwrap());
    // the planner advances next_fire_at after the API read the schedule
    st.ticks.commit_plan(s.shard, 1, &[plan(&s, &[5_000], Some(6_000))]).await.unwrap();
    let mut renamed = s.clone();
    renamed.def.name = "renamed".into();
    let u = st.schedules.update_schedule(&renamed, 1, NextFire::Keep).await.unwrap();
    assert_eq!(u.next_fire_at, Some(ms(6_000)), "a rename must not rewind the planner");
}

async fn plan_commit_is_idempotent_and_fenced(st: Stores) {
    assert_eq!(st.ticks.shard_count().await.unwrap(), SHARDS);
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let all: Vec<u32> = (0..SHARDS).collect();
    assert!(st.ticks.claim_shard(s.shard, 7, "p1").await.unwrap());
    assert_eq!(st.ticks.max_epoch().await.unwrap(), 7);

    let due = st.ticks.due_schedules(&all, ms(6_000), 100).await.unwrap();
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), vec![s.id]);
    assert!(st.ticks.due_schedules(&all, ms(4_999), 100).await.unwrap().is_empty());
    let other_shards: Vec<u32> = all.iter().copied().filter(|x| *x != s.shard).collect();
    assert!(st.ticks.due_schedules(&other_shards, ms(6_000), 100).await.unwrap().is_empty());

    let p = plan(&s, &[5_000, 6_000], Some(7_000));
    let out = st.ticks.commit_plan(s.shard, 7, std::slice::from_ref(&p)).await.unwrap();
    assert_eq!(out.advanced, 1);
    assert_eq!(out.new_ticks.len(), 2);
    // the same plan again (a retried or duplicated pass) finds the schedule moved on
    let again = st.ticks.commit_plan(s.shard, 7, &[p]).await.unwrap();
    assert_eq!((again.advanced, again.stale, again.new_ticks.len()), (0, 1, 0));
    let s2 = st.schedules.get_schedule(&project(), s.id).await.unwrap();
    assert_eq!(s2.next_fire_at, Some(ms(7_000)));

    // a newer owner claims the shard: the old epoch can no longer write
    assert!(st.ticks.claim_shard(s.shard, 8, "p2").await.unwrap());
    assert!(!st.ticks.claim_shard(s.shard, 7, "p1").await.unwrap(), "an older epoch cannot reclaim");
    let p = plan(&s2, &[7_000], Some(8_000));
    assert!(matches!(st.ticks.commit_plan(s.shard, 7, std::slice::from_ref(&p)).await, Err(Error::Fenced { .. })));
    assert_eq!(st.schedules.get_schedule(&project(), s.id).await.unwrap().next_fire_at, Some(ms(7_000)));
    // the new owner re-plans overlapping times: tick ids are deterministic, nothing doubles
    let p = plan(&s2, &[6_000, 7_000], None);
    let out = st.ticks.commit_plan(s.shard, 8, &[p]).await.unwrap();
    assert_eq!(out.new_ticks, vec![TickId::scheduled(s.id, ms(7_000))]);
    let done = st.schedules.get_schedule(&project(), s.id).await.unwrap();
    assert_eq!((done.state, done.next_fire_at), (ScheduleState::Completed, None));

    // missed ticks are recorded but never published
    let m = schedule("m", Some(ms(1_000)));
    st.schedules.insert_schedule(&m).await.unwrap();
    st.ticks.claim_shard(m.shard, 9, "p3").await.unwrap();
    let mut p = plan(&m, &[1_000], Some(2_000));
    p.ticks[0].state = TickState::Missed;
    p.ticks[0].reason = Some("outside catch-up window".into());
    let out = st.ticks.commit_plan(m.shard, 9, &[p]).await.unwrap();
    assert!(out.new_ticks.is_empty());
    assert!(st.ticks.ticks_to_publish(&all, FAR, 100).await.unwrap().iter().all(|t| t.schedule_id != m.id));
}

async fn one_commit_covers_several_shards_fenced_per_shard(st: Stores) {
    let a = schedule("a", Some(ms(5_000)));
    let b = loop {
        let b = schedule("b", Some(ms(5_000)));
        if b.shard != a.shard {
            break b;
        }
    };
    st.schedules.insert_schedule(&a).await.unwrap();
    st.schedules.insert_schedule(&b).await.unwrap();
    assert!(st.ticks.claim_shard(a.shard, 3, "p1").await.unwrap());
    assert!(st.ticks.claim_shard(b.shard, 4, "p1").await.unwrap());
    assert!(st.ticks.claim_shard(b.shard, 5, "p2").await.unwrap(), "b moved to another planner");
    let plans = [plan(&a, &[5_000], Some(6_000)), plan(&b, &[5_000], Some(6_000))];
    let out = st.ticks.commit_plans(&[(a.shard, 3), (b.shard, 4)], &plans).await.unwrap();
    assert_eq!(out.fenced, vec![(b.shard, 4)]);
    assert_eq!((out.advanced, out.new_ticks), (1, vec![TickId::scheduled(a.id, ms(5_000))]));
    assert_eq!(st.schedules.get_schedule(&project(), a.id).await.unwrap().next_fire_at, Some(ms(6_000)));
    assert_eq!(
        st.schedules.get_schedule(&project(), b.id).await.unwrap().next_fire_at,
        Some(ms(5_000)),
        "the fenced shard's plan is not written"
    );
    // a plan of a shard that is not listed is not written either
    let out = st.ticks.commit_plans(&[(a.shard, 3)], &[plan(&b, &[5_000], Some(6_000))]).await.unwrap();
    assert_eq!((out.advanced, out.fenced.len()), (0, 0));
    assert_eq!(st.schedules.get_schedule(&project(), b.id).await.unwrap().next_fire_at, Some(ms(5_000)));
}

async fn outbox_publish_and_reconcile(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let all: Vec<u32> = (0..SHARDS).collect();
    st.ticks.claim_shard(s.shard, 1, "p").await.unwrap();
    st.ticks.commit_plan(s.shard, 1, &[plan(&s, &[5_000, 6_000, 7_000], Some(8_000))]).await.unwrap();

    let pending = st.ticks.ticks_to_publish(&all, FAR, 100).await.unwrap();
    assert_eq!(pending.len(), 3);
    let due: Vec<Timestamp> =
        st.ticks.ticks_to_publish(&all, ms(6_000), 100).await.unwrap().iter().map(|t| t.fire_time).collect();
    assert_eq!(due, vec![ms(5_000), ms(6_000)], "only ticks whose fire time is due by `until`");
    assert_eq!(pending[0], tick_of(&s, ms(5_000)), "a tick is rebuilt with its schedule's request");
    st.ticks.mark_published(&[pending[0].id, pending[1].id], ms(100_000)).await.unwrap();
    assert_eq!(st.ticks.ticks_to_publish(&all, FAR, 100).await.unwrap().len(), 1);

    // published with no run: reconciliation candidates once the grace period passed
    assert!(st.ticks.ticks_without_run(&all, ms(100_000), 100).await.unwrap().is_empty());
    assert_eq!(st.ticks.ticks_without_run(&all, ms(100_001), 100).await.unwrap().len(), 2);
    let BeginRun::Started(run) = st.runs.begin_run(&pending[0], ms(100_002), new_lease(ms(1_000_000))).await.unwrap()
    else {
        panic!("first begin_run must start")
    };
    let left = st.ticks.ticks_without_run(&all, ms(100_001), 100).await.unwrap();
    assert_eq!(left.iter().map(|t| t.id).collect::<Vec<_>>(), vec![pending[1].id]);

    // unfinished: everything not final, including a run in progress
    assert_eq!(st.ticks.unfinished_ticks(&all, 100).await.unwrap().len(), 3);
    st.runs
        .record_attempt(&final_record(pending[0].id, run.id, 1, RunStatus::Succeeded, Some(200), 100_010))
        .await
        .unwrap();
    let unfinished: HashSet<_> = st.ticks.unfinished_ticks(&all, 100).await.unwrap().iter().map(|t| t.id).collect();
    assert_eq!(unfinished, [pending[1].id, pending[2].id].into());
    // a delivered tick is never set back to published
    st.ticks.mark_published(&[pending[0].id], ms(100_020)).await.unwrap();
    assert_eq!(st.ticks.unfinished_ticks(&all, 100).await.unwrap().len(), 2);
}

async fn ticks_published_at_commit_leave_the_outbox_and_return_if_unproduced(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let all: Vec<u32> = (0..SHARDS).collect();
    st.ticks.claim_shard(s.shard, 1, "p").await.unwrap();
    // the planner records what it produces right away as published, the rest as planned
    let mut p = plan(&s, &[5_000, 6_000, 7_000], Some(8_000));
    p.ticks[0].state = TickState::Published;
    p.ticks[1].state = TickState::Published;
    let out = st.ticks.commit_plan(s.shard, 1, &[p]).await.unwrap();
    assert_eq!(out.new_ticks.len(), 3, "published and planned ticks are both new");
    let outbox: Vec<Timestamp> =
        st.ticks.ticks_to_publish(&all, FAR, 100).await.unwrap().iter().map(|t| t.fire_time).collect();
    assert_eq!(outbox, vec![ms(7_000)], "ticks published at commit are not in the outbox");
    // published at commit time: reconciliation finds them once the grace period passed
    let now = Timestamp::now();
    assert!(st.ticks.ticks_without_run(&all, now.add_millis(-60_000), 100).await.unwrap().is_empty());
    assert_eq!(st.ticks.ticks_without_run(&all, now.add_millis(60_000), 100).await.unwrap().len(), 2);

    // one of them reached a worker and finished; producing the other failed
    let first = tick_of(&s, ms(5_000));
    let BeginRun::Started(run) = st.runs.begin_run(&first, ms(5_001), new_lease(FAR)).await.unwrap() else {
        panic!("first begin_run must start")
    };
    st.runs.record_attempt(&final_record(first.id, run.id, 1, RunStatus::Succeeded, Some(200), 5_010)).await.unwrap();
    let second = TickId::scheduled(s.id, ms(6_000));
    st.ticks.unmark_published(&[first.id, second]).await.unwrap();
    let outbox: Vec<Timestamp> =
        st.ticks.ticks_to_publish(&all, FAR, 100).await.unwrap().iter().map(|t| t.fire_time).collect();
    assert_eq!(outbox, vec![ms(6_000), ms(7_000)], "the unproduced tick is back; the delivered one is not");
    // a published tick a worker already began is left to it
    let mut p = plan(&s, &[8_000], Some(9_000));
    p.expected_next = ms(8_000);
    p.ticks[0].state = TickState::Published;
    st.ticks.commit_plan(s.shard, 1, &[p]).await.unwrap();
    let taken = tick_of(&s, ms(8_000));
    assert!(matches!(st.runs.begin_run(&taken, ms(8_001), new_lease(FAR)).await.unwrap(), BeginRun::Started(_)));
    st.ticks.unmark_published(&[taken.id]).await.unwrap();
    assert!(st.ticks.ticks_to_publish(&all, FAR, 100).await.unwrap().iter().all(|t| t.id != taken.id));
    assert!(st.ticks.ticks_without_run(&all, now.add_millis(60_000), 100).await.unwrap().is_empty());
}

async fn run_lifecycle_and_dedup(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let t = tick_of(&s, ms(5_000));
    st.ticks.insert_tick(&t).await.unwrap();
    let BeginRun::Started(run) = st.runs.begin_run(&t, ms(5_001), new_lease(ms(1_000_000))).await.unwrap() else {
        panic!("first begin_run must start")
    };
    assert_eq!((run.status, run.attempt_count, run.tick_id), (RunStatus::Pending, 0, t.id));
    assert_eq!(run.id.as_uuid(), t.id.as_uuid(), "a run's id is its tick's");
    // the begin returns the run exactly as stored
    assert_eq!(st.runs.get_run(&project(), run.id).await.unwrap().0, run);

    // attempt 1 fails and a retry is due; the worker crashes; the tick comes back
    st.runs
        .record_attempt(&AttemptRecord {
            project_id: project(),
            tick_id: t.id,
            attempt: attempt(run.id, 1, None),
            status: RunStatus::Running,
            next_attempt_at: Some(ms(6_000)),
            finished_at: None,
            park: false,
            lease_until: None,
            effects: None,
        })
        .await
        .unwrap();
    let BeginRun::Resume(resumed) = st.runs.begin_run(&t, ms(5_500), new_lease(ms(1_000_000))).await.unwrap() else {
        panic!("an unfinished run must be resumed")
    };
    assert_eq!((resumed.id, resumed.attempt_count, resumed.status), (run.id, 1, RunStatus::Running));
    assert_eq!(resumed.last_error.as_deref(), Some("connect: connection refused"));
    assert_eq!(resumed.next_attempt_at, Some(ms(6_000)));

    // attempt 2 succeeds; recording it twice (a replay) stores it once
    let rec = final_record(t.id, run.id, 2, RunStatus::Succeeded, Some(200), 6_100);
    st.runs.record_attempt(&rec).await.unwrap();
    st.runs.record_attempt(&rec).await.unwrap();
    let (done, attempts) = st.runs.get_run(&project(), run.id).await.unwrap();
    assert_eq!((done.status, done.attempt_count, done.http_status), (RunStatus::Succeeded, 2, Some(200)));
    assert_eq!(done.started_at, Some(ms(10_001)));
    assert_eq!(done.finished_at, Some(ms(6_100)));
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1], attempt(run.id, 2, Some(200)), "an attempt survives the round trip");
    assert!(matches!(st.runs.begin_run(&t, ms(7_000), new_lease(ms(1_000_000))).await.unwrap(), BeginRun::Done(_)));

    // a late failure record cannot overwrite a final status
    let late = AttemptRecord { status: RunStatus::Failed, attempt: attempt(run.id, 3, None), ..rec };
    st.runs.record_attempt(&late).await.unwrap();
    assert_eq!(st.runs.get_run(&project(), run.id).await.unwrap().0.status, RunStatus::Succeeded);
    assert!(matches!(st.runs.get_run(&ProjectId::new("other").unwrap(), run.id).await, Err(Error::NotFound(_))));
}

async fn concurrent_begin_run_creates_one_run(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    let t = recorded_tick(&st, &s, ms(5_000)).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (runs, t) = (st.runs.clone(), t.clone());
        tasks.push(tokio::spawn(async move { runs.begin_run(&t, ms(5_001), new_lease(ms(1_000_000))).await }));
    }
    let mut started = 0;
    let mut ids = HashSet::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            BeginRun::Started(r) => {
                started += 1;
                ids.insert(r.id);
            }
            BeginRun::Held(r) => {
                ids.insert(r.id);
            }
            other => panic!("another copy must find the run held, not {other:?}"),
        }
    }
    assert_eq!(started, 1, "exactly one concurrent begin_run creates the run");
    assert_eq!(ids.len(), 1, "everyone sees the same run");
}

async fn runs_filter_and_paginate_newest_first(st: Stores) {
    let a = schedule("a", Some(ms(5_000)));
    let b = schedule("b", Some(ms(5_000)));
    let mut expected_a = Vec::new();
    for i in 0..7 {
        for s in [&a, &b] {
            let t = recorded_tick(&st, s, ms(10_000 + i * 1000)).await;
            let BeginRun::Started(r) = st.runs.begin_run(&t, ms(1), new_lease(ms(1_000_000))).await.unwrap() else {
                panic!()
            };
            if i % 2 == 0 {
                st.runs.record_attempt(&final_record(t.id, r.id, 1, RunStatus::Failed, Some(500), 2)).await.unwrap();
            }
            if s.id == a.id {
                expected_a.push(r.id);
            }
        }
    }
    expected_a.reverse();
    let mut f = RunFilter { schedule_id: Some(a.id), limit: 3, ..Default::default() };
    let mut seen = Vec::new();
    loop {
        let page = st.runs.list_runs(&project(), &f).await.unwrap();
        seen.extend(page.iter().map(|r| r.id));
        if page.len() < 3 {
            break;
        }
        let last = page.last().unwrap();
        f.before = Some((last.nominal_time, last.id));
    }
    assert_eq!(seen, expected_a, "newest first, every run once across pages");

    let failed = RunFilter { statuses: vec![RunStatus::Failed], limit: 100, ..Default::default() };
    assert_eq!(st.runs.list_runs(&project(), &failed).await.unwrap().len(), 8);
    let both = RunFilter { statuses: vec![RunStatus::Failed, RunStatus::Pending], limit: 100, ..Default::default() };
    assert_eq!(st.runs.list_runs(&project(), &both).await.unwrap().len(), 14);
    let range = RunFilter { from: Some(ms(11_000)), to: Some(ms(13_000)), limit: 100, ..Default::default() };
    let in_range = st.runs.list_runs(&project(), &range).await.unwrap();
    assert_eq!(in_range.len(), 4);
    assert!(in_range.iter().all(|r| r.nominal_time >= ms(11_000) && r.nominal_time < ms(13_000)));
}

async fn delete_cancels_open_ticks(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let all: Vec<u32> = (0..SHARDS).collect();
    st.ticks.claim_shard(s.shard, 1, "p").await.unwrap();
    st.ticks.commit_plan(s.shard, 1, &[plan(&s, &[5_000, 6_000], Some(7_000))]).await.unwrap();
    assert_eq!(st.ticks.unfinished_ticks(&all, 100).await.unwrap().len(), 2);
    st.schedules.delete_schedule(&project(), s.id, None).await.unwrap();
    assert!(st.ticks.unfinished_ticks(&all, 100).await.unwrap().is_empty());
    assert!(st.ticks.ticks_to_publish(&all, FAR, 100).await.unwrap().is_empty());
}

async fn parked_retries_are_dispatched_once_per_attempt(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let all: Vec<u32> = (0..SHARDS).collect();
    let t = tick_of(&s, ms(5_000));
    st.ticks.insert_tick(&t).await.unwrap();
    let BeginRun::Started(run) = st.runs.begin_run(&t, ms(5_001), new_lease(ms(1_000_000))).await.unwrap() else {
        panic!()
    };
    let park = |n: u32, at: i64| AttemptRecord {
        project_id: project(),
        tick_id: t.id,
        attempt: attempt(run.id, n, Some(503)),
        status: RunStatus::Running,
        next_attempt_at: Some(ms(at)),
        finished_at: None,
        park: true,
        lease_until: None,
        effects: None,
    };
    st.runs.record_attempt(&park(1, 60_000)).await.unwrap();
    assert!(st.ticks.due_retries(&all, ms(59_999), ms(0), 10).await.unwrap().is_empty(), "not due yet");
    let due = st.ticks.due_retries(&all, ms(60_000), ms(0), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].id, due[0].fire_time, due[0].nominal_time), (t.id, ms(60_000), ms(5_000)));
    let other: Vec<u32> = all.iter().copied().filter(|x| *x != s.shard).collect();
    assert!(st.ticks.due_retries(&other, ms(60_000), ms(0), 10).await.unwrap().is_empty(), "scoped by shard");

    st.ticks.mark_dispatched(&[t.id], ms(59_000)).await.unwrap();
    assert!(st.ticks.due_retries(&all, ms(60_000), ms(0), 10).await.unwrap().is_empty(), "dispatched once");
    assert_eq!(
        st.ticks.due_retries(&all, ms(60_000), ms(59_001), 10).await.unwrap().len(),
        1,
        "a lost dispatch is retried"
    );
    // a late copy of the tick finds the run parked and leaves it; the dispatched copy then
    // takes it, although the late copy's lease would still run
    let copy = |at: i64| st.runs.begin_run(&t, ms(at), new_lease(ms(1_000_000)));
    assert!(matches!(copy(6_000).await.unwrap(), BeginRun::Resume(r) if r.parked));
    assert!(matches!(copy(60_000).await.unwrap(), BeginRun::Resume(_)), "nobody holds a parked run");
    // the next parked attempt is a new dispatch
    st.runs.record_attempt(&park(2, 120_000)).await.unwrap();
    assert_eq!(st.ticks.due_retries(&all, ms(120_000), ms(0), 10).await.unwrap().len(), 1);
    // a worker holding the retry in memory does not park: nothing for the planner
    let held = AttemptRecord { park: false, attempt: attempt(run.id, 3, Some(503)), ..park(3, 130_000) };
    st.runs.record_attempt(&held).await.unwrap();
    assert!(st.ticks.due_retries(&all, ms(200_000), ms(0), 10).await.unwrap().is_empty());
}

async fn batched_run_writes_match_single_ones(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let mut ticks = Vec::new();
    for i in 0..4 {
        ticks.push(recorded_tick(&st, &s, ms(5_000 + i * 1000)).await);
    }
    // tick 0 already has a final run, tick 1 an unfinished one
    let BeginRun::Started(done) = st.runs.begin_run(&ticks[0], ms(1), new_lease(ms(1_000_000))).await.unwrap() else {
        panic!()
    };
    let finish = |t: &Tick, run: RunId, n: u32| AttemptRecord {
        project_id: project(),
        tick_id: t.id,
        attempt: attempt(run, n, Some(200)),
        status: RunStatus::Succeeded,
        next_attempt_at: None,
        finished_at: Some(ms(9_000)),
        park: false,
        lease_until: None,
        effects: None,
    };
    st.runs.record_attempt(&finish(&ticks[0], done.id, 1)).await.unwrap();
    let holder = new_lease(ms(1_000_000));
    let BeginRun::Started(open) = st.runs.begin_run(&ticks[1], ms(1), holder).await.unwrap() else { panic!() };

    // a batch with every case: tick 1 by its holder (a retried write) and by another copy
    // (in either order), and the same new tick twice
    let items: Vec<(Tick, RunLease)> = [(1, None), (0, None), (1, Some(holder)), (2, None), (3, None), (3, None)]
        .iter()
        .map(|(i, l)| (ticks[*i].clone(), l.unwrap_or_else(|| new_lease(ms(1_000_000)))))
        .collect();
    let res: Vec<BeginRun> = st.runs.begin_runs(&items, ms(2)).await.into_iter().map(|r| r.unwrap()).collect();
    assert!(matches!(&res[0], BeginRun::Held(r) if r.id == open.id), "another copy finds it held: {:?}", res[0]);
    assert!(matches!(&res[1], BeginRun::Done(r) if r.id == done.id));
    assert!(matches!(&res[2], BeginRun::Resume(r) if r.id == open.id), "its holder resumes it: {:?}", res[2]);
    let BeginRun::Started(r2) = &res[3] else { panic!("{:?}", res[3]) };
    let BeginRun::Started(r3) = &res[4] else { panic!("{:?}", res[4]) };
    assert!(matches!(&res[5], BeginRun::Held(r) if r.id == r3.id), "a second copy in one batch finds it held");
    assert_eq!((r2.tick_id, r2.status, r2.nominal_time), (ticks[2].id, RunStatus::Pending, ms(7_000)));

    // one transaction records them all, with the ledger following final states
    let recs = vec![
        finish(&ticks[1], open.id, 1),
        finish(&ticks[2], r2.id, 1),
        AttemptRecord {
            status: RunStatus::Running,
            next_attempt_at: Some(ms(20_000)),
            finished_at: None,
            park: true,
            lease_until: None,
            attempt: attempt(r3.id, 1, None),
            ..finish(&ticks[3], r3.id, 1)
        },
    ];
    st.runs.record_attempts(&recs).await.unwrap();
    st.runs.record_attempts(&recs).await.unwrap(); // a replay changes nothing
    for (id, status, n) in
        [(open.id, RunStatus::Succeeded, 1), (r2.id, RunStatus::Succeeded, 1), (r3.id, RunStatus::Running, 1)]
    {
        let (run, attempts) = st.runs.get_run(&project(), id).await.unwrap();
        assert_eq!((run.status, run.attempt_count, attempts.len() as u32), (status, n, n));
    }
    let (r3_run, a3) = st.runs.get_run(&project(), r3.id).await.unwrap();
    assert!(r3_run.parked && r3_run.next_attempt_at == Some(ms(20_000)));
    assert_eq!(a3[0], attempt(r3.id, 1, None));
    assert_eq!(r3_run.last_error.as_deref(), Some("connect: connection refused"));
    let all: Vec<u32> = (0..SHARDS).collect();
    let unfinished: Vec<TickId> = st.ticks.unfinished_ticks(&all, 100).await.unwrap().iter().map(|t| t.id).collect();
    assert!(unfinished.is_empty() || unfinished == vec![ticks[3].id], "{unfinished:?}");
}

async fn batched_effects_count_failures_as_if_one_at_a_time(st: Stores) {
    // a pauses after 3 consecutive failures, b after 2
    let (a, b) = (schedule("a", Some(ms(5_000))), schedule("b", Some(ms(5_000))));
    st.schedules.insert_schedule(&a).await.unwrap();
    st.schedules.insert_schedule(&b).await.unwrap();
    let end = |s: &Schedule, i: i64, ok: bool, pause_after: u32| {
        let t = tick_of(s, ms(5_000 + i * 1000));
        (t, ok, pause_after)
    };
    // interleaved in one batch: a: ok, fail, fail, fail (-> 3, paused); b: fail, ok, fail (-> 1)
    let plan = [
        end(&a, 0, true, 3),
        end(&b, 0, false, 2),
        end(&a, 1, false, 3),
        end(&b, 1, true, 2),
        end(&a, 2, false, 3),
        end(&b, 2, false, 2),
        end(&a, 3, false, 3),
    ];
    let mut recs = Vec::new();
    for (t, ok, pause_after) in &plan {
        st.ticks.insert_tick(t).await.unwrap();
        let BeginRun::Started(run) = st.runs.begin_run(t, ms(1), new_lease(FAR)).await.unwrap() else {
            panic!("new tick")
        };
        recs.push(AttemptRecord {
            project_id: project(),
            tick_id: t.id,
            attempt: attempt(run.id, 1, Some(if *ok { 200 } else { 500 })),
            status: if *ok { RunStatus::Succeeded } else { RunStatus::Failed },
            next_attempt_at: None,
            finished_at: Some(ms(9_000)),
            park: false,
            lease_until: None,
            effects: Some(cronhook_store::RunEffects {
                schedule_id: t.schedule_id,
                auto_pause_after: *pause_after,
                notification: None,
            }),
        });
    }
    st.runs.record_attempts(&recs).await.unwrap();
    let a2 = st.schedules.get_schedule(&project(), a.id).await.unwrap();
    assert_eq!(a2.state, ScheduleState::Paused, "a: the success came first, then three failures");
    let b2 = st.schedules.get_schedule(&project(), b.id).await.unwrap();
    assert_eq!(
        b2.state,
        ScheduleState::Active,
        "b: the success between its failures reset the count (applied last or first, it would pause)"
    );
    // one more failure of b makes two in a row
    let t = recorded_tick(&st, &b, ms(9_000)).await;
    let BeginRun::Started(run) = st.runs.begin_run(&t, ms(1), new_lease(FAR)).await.unwrap() else {
        panic!("new tick")
    };
    let fail = AttemptRecord { tick_id: t.id, attempt: attempt(run.id, 1, Some(500)), ..recs[1].clone() };
    st.runs.record_attempt(&fail).await.unwrap();
    assert_eq!(st.schedules.get_schedule(&project(), b.id).await.unwrap().state, ScheduleState::Paused);
}

async fn one_run_twice_in_a_batch_is_written_in_order(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let t = recorded_tick(&st, &s, ms(5_000)).await;
    let BeginRun::Started(run) = st.runs.begin_run(&t, ms(1), new_lease(FAR)).await.unwrap() else {
        panic!("new tick")
    };
    // two workers on one run (a redelivered tick): the record of attempt 2 (succeeded) and a
    // late one of attempt 1 (retry due) land in one batch; applied in order, success stands
    let retry = AttemptRecord {
        project_id: project(),
        tick_id: t.id,
        attempt: attempt(run.id, 1, Some(503)),
        status: RunStatus::Running,
        next_attempt_at: Some(ms(20_000)),
        finished_at: None,
        park: false,
        lease_until: Some(FAR),
        effects: None,
    };
    let done = AttemptRecord {
        attempt: attempt(run.id, 2, Some(200)),
        status: RunStatus::Succeeded,
        next_attempt_at: None,
        finished_at: Some(ms(21_000)),
        lease_until: None,
        ..retry.clone()
    };
    st.runs.record_attempts(&[done, retry]).await.unwrap();
    let (r, attempts) = st.runs.get_run(&project(), run.id).await.unwrap();
    assert_eq!((r.status, r.attempt_count, attempts.len()), (RunStatus::Succeeded, 2, 2));
}

async fn runs_whose_lease_ran_out_are_handed_out_again(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let all: Vec<u32> = (0..SHARDS).collect();
    let t = tick_of(&s, ms(5_000));
    st.ticks.insert_tick(&t).await.unwrap();
    let BeginRun::Started(run) = st.runs.begin_run(&t, ms(5_000), new_lease(ms(10_000))).await.unwrap() else {
        panic!()
    };
    assert!(
        matches!(st.runs.begin_run(&t, ms(9_999), new_lease(ms(15_000))).await.unwrap(), BeginRun::Held(_)),
        "another copy leaves a run its holder still has"
    );
    assert!(st.ticks.stuck_runs(&all, ms(10_000), 10).await.unwrap().is_empty(), "leased until 10 s, not by the copy");
    let stuck = st.ticks.stuck_runs(&all, ms(10_001), 10).await.unwrap();
    assert_eq!(stuck.iter().map(|x| x.id).collect::<Vec<_>>(), vec![t.id], "its worker died: hand it out again");
    st.ticks.extend_leases(&[t.id], ms(20_000)).await.unwrap();
    assert!(st.ticks.stuck_runs(&all, ms(19_999), 10).await.unwrap().is_empty(), "handed out once per lease");
    // the copy handed out takes it over at once (the handing out cleared the owner); a
    // second copy finds it held; once that lease runs out, the next copy takes it
    assert!(matches!(st.runs.begin_run(&t, ms(12_000), new_lease(ms(20_500))).await.unwrap(), BeginRun::Resume(_)));
    assert!(matches!(st.runs.begin_run(&t, ms(13_000), new_lease(ms(30_000))).await.unwrap(), BeginRun::Held(_)));
    let taker = new_lease(ms(30_000));
    assert!(matches!(st.runs.begin_run(&t, ms(21_000), taker).await.unwrap(), BeginRun::Resume(_)));
    assert!(st.ticks.stuck_runs(&all, ms(29_999), 10).await.unwrap().is_empty());
    // a recorded attempt with an in-memory retry carries the lease on
    let rec = AttemptRecord {
        project_id: project(),
        tick_id: t.id,
        attempt: attempt(run.id, 1, Some(503)),
        status: RunStatus::Running,
        next_attempt_at: Some(ms(31_000)),
        finished_at: None,
        park: false,
        lease_until: Some(ms(40_000)),
        effects: None,
    };
    st.runs.record_attempt(&rec).await.unwrap();
    assert!(st.ticks.stuck_runs(&all, ms(39_999), 10).await.unwrap().is_empty());
    let copy = || st.runs.begin_run(&t, ms(35_000), new_lease(ms(50_000)));
    assert!(matches!(copy().await.unwrap(), BeginRun::Held(_)), "the attempt record keeps the holder");
    // a stopping worker releases what it holds, and only that: the next copy takes it at once
    st.runs.release_runs(&[(t.id, LeaseOwner::generate())], ms(35_000)).await.unwrap();
    assert!(matches!(copy().await.unwrap(), BeginRun::Held(_)), "released by someone else: still held");
    st.runs.release_runs(&[(t.id, taker.owner)], ms(35_000)).await.unwrap();
    let stuck = st.ticks.stuck_runs(&all, ms(35_001), 10).await.unwrap();
    assert_eq!(stuck.iter().map(|x| x.id).collect::<Vec<_>>(), vec![t.id], "a released run is handed out");
    assert!(matches!(copy().await.unwrap(), BeginRun::Resume(_)), "the next copy takes a released run");
    // final runs are never handed out
    let done = AttemptRecord {
        status: RunStatus::Succeeded,
        next_attempt_at: None,
        finished_at: Some(ms(41_000)),
        lease_until: None,
        attempt: attempt(run.id, 2, Some(200)),
        ..rec
    };
    st.runs.record_attempt(&done).await.unwrap();
    assert!(st.ticks.stuck_runs(&all, ms(99_000), 10).await.unwrap().is_empty());
}

async fn ledger_lists_by_outcome_and_retention_purges_old_rows(st: Stores) {
    let s = schedule("a", Some(ms(1_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    st.ticks.claim_shard(s.shard, 1, "p").await.unwrap();
    let mut p = plan(&s, &[1_000, 2_000, 3_000, 4_000], Some(5_000));
    p.ticks[0].state = TickState::Missed;
    p.ticks[0].reason = Some("outside the catch-up window".into());
    p.ticks[1].state = TickState::Skipped;
    p.ticks[1].reason = Some("paused".into());
    st.ticks.commit_plan(s.shard, 1, &[p]).await.unwrap();
    let all = |states: Vec<TickState>| TickFilter { schedule_id: Some(s.id), states, limit: 100, ..Default::default() };
    let listed = st.ticks.list_ticks(&project(), &all(vec![])).await.unwrap();
    let nominal: Vec<i64> = listed.iter().map(|t| t.nominal_time.as_millis()).collect();
    assert_eq!(nominal, [4_000, 3_000, 2_000, 1_000], "newest first");
    let skipped = st.ticks.list_ticks(&project(), &all(vec![TickState::Skipped])).await.unwrap();
    assert_eq!((skipped.len(), skipped[0].reason.as_deref()), (1, Some("paused")));
    let two = st.ticks.list_ticks(&project(), &all(vec![TickState::Skipped, TickState::Missed])).await.unwrap();
    assert_eq!(two.len(), 2);
    let page = TickFilter { before: Some((listed[1].nominal_time, listed[1].id)), ..all(vec![]) };
    assert_eq!(st.ticks.list_ticks(&project(), &page).await.unwrap().len(), 2, "a page after the second");
    assert!(st.ticks.list_ticks(&ProjectId::new("other").unwrap(), &all(vec![])).await.unwrap().is_empty());

    // a delivered tick with its run; then retention with a cutoff in the future of it all
    let t3 = tick_of(&s, ms(3_000));
    let BeginRun::Started(run) = st.runs.begin_run(&t3, ms(3_001), new_lease(ms(1_000_000))).await.unwrap() else {
        panic!()
    };
    let done = final_record(t3.id, run.id, 1, RunStatus::Succeeded, Some(200), 3_100);
    st.runs.record_attempt(&done).await.unwrap();
    // nothing is old yet
    assert_eq!(st.ticks.purge_before(ms(0), 1000).await.unwrap(), 0);
    let far = Timestamp::now().add_millis(86_400_000);
    let mut deleted = 0;
    loop {
        let n = st.ticks.purge_before(far, 1).await.unwrap(); // tiny batches
        if n == 0 {
            break;
        }
        deleted += n;
    }
    assert_eq!(deleted, 4, "the run (with its attempt) and the missed, skipped and delivered ticks");
    assert!(matches!(st.runs.get_run(&project(), run.id).await, Err(Error::NotFound(_))));
    let left = st.ticks.list_ticks(&project(), &all(vec![])).await.unwrap();
    assert_eq!(left.iter().map(|t| t.state).collect::<Vec<_>>(), [TickState::Planned], "open ticks are kept");

    // A copy of the purged tick (a redelivery after retention) begins nothing: its delivery
    // was done, and a run without its tick would be neither listed nor purged.
    let lease = new_lease(ms(1_000_000));
    assert!(matches!(st.runs.begin_run(&t3, ms(4_001), lease).await.unwrap(), BeginRun::Unrecorded));
    assert!(matches!(st.runs.begin_run_exclusive(&t3, ms(4_001), lease).await.unwrap(), BeginRun::Unrecorded));
    assert!(matches!(st.runs.get_run(&project(), run.id).await, Err(Error::NotFound(_))));
    // The purged run's attempt went with it: the same fire time recorded again (a backfill)
    // gets a new run under the same id, with none. An attempt recorded for a run that does
    // not exist is not stored either.
    let t3 = recorded_tick(&st, &s, ms(3_000)).await;
    let BeginRun::Started(again) = st.runs.begin_run(&t3, ms(4_001), lease).await.unwrap() else { panic!() };
    assert_eq!(again.id, run.id, "a run's id is its tick's");
    assert!(st.runs.get_run(&project(), run.id).await.unwrap().1.is_empty(), "no attempt outlives its run");
    let t5 = recorded_tick(&st, &s, ms(5_000)).await;
    let ghost = RunId::of_tick(t5.id);
    let orphan = AttemptRecord { attempt: attempt(ghost, 1, Some(200)), ..done };
    st.runs.record_attempt(&orphan).await.unwrap();
    assert!(matches!(st.runs.begin_run(&t5, ms(5_001), lease).await.unwrap(), BeginRun::Started(_)));
    assert!(st.runs.get_run(&project(), ghost).await.unwrap().1.is_empty(), "no attempt without its run");
}

async fn overlap_policies_are_race_free(st: Stores) {
    let s = schedule("a", Some(ms(5_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let state = |id: TickId| {
        let t = st.ticks.clone();
        async move {
            let all = t.list_ticks(&project(), &TickFilter { limit: 1000, ..Default::default() }).await.unwrap();
            all.into_iter().find(|x| x.id == id).map(|x| (x.state, x.reason))
        }
    };
    let tick = |at: i64, policy: OverlapPolicy| Tick { overlap: policy, ..tick_of(&s, ms(at)) };
    let lease = new_lease(ms(1_000_000));

    // skip: 8 workers race on 8 ticks of one schedule: exactly one run starts
    let ticks: Vec<Tick> = (0..8).map(|i| tick(10_000 + i * 1000, OverlapPolicy::Skip)).collect();
    for t in &ticks {
        st.ticks.insert_tick(t).await.unwrap();
    }
    let mut tasks = Vec::new();
    for t in ticks.clone() {
        let runs = st.runs.clone();
        tasks.push(tokio::spawn(async move { runs.begin_run_exclusive(&t, ms(1), lease).await }));
    }
    let mut started = Vec::new();
    let mut skipped = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            BeginRun::Started(r) => started.push(r),
            BeginRun::Skipped(reason) => {
                assert!(reason.starts_with("overlap: run "), "{reason}");
                skipped += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((started.len(), skipped), (1, 7), "one run, seven skipped in the ledger");
    let running = started.remove(0);
    let skipped_ticks: Vec<&Tick> = ticks.iter().filter(|t| t.id != running.tick_id).collect();
    assert_eq!(state(skipped_ticks[0].id).await.unwrap().0, TickState::Skipped);

    // buffer_one: one tick waits, the next is skipped; finishing the run releases it
    let b1 = tick(30_000, OverlapPolicy::BufferOne);
    let b2 = tick(31_000, OverlapPolicy::BufferOne);
    for t in [&b1, &b2] {
        st.ticks.insert_tick(t).await.unwrap();
    }
    assert!(matches!(st.runs.begin_run_exclusive(&b1, ms(2), lease).await.unwrap(), BeginRun::Buffered));
    assert!(matches!(st.runs.begin_run_exclusive(&b2, ms(2), lease).await.unwrap(), BeginRun::Skipped(_)));
    assert_eq!(state(b1.id).await.unwrap().0, TickState::Buffered);
    let done = AttemptRecord {
        effects: Some(cronhook_store::RunEffects { schedule_id: s.id, auto_pause_after: 0, notification: None }),
        ..final_record(running.tick_id, running.id, 1, RunStatus::Succeeded, Some(200), 3)
    };
    st.runs.record_attempt(&done).await.unwrap();
    assert_eq!(state(b1.id).await.unwrap().0, TickState::Planned, "released to the outbox");
    let all: Vec<u32> = (0..SHARDS).collect();
    assert!(st.ticks.ticks_to_publish(&all, FAR, 100).await.unwrap().iter().any(|t| t.id == b1.id));
    let BeginRun::Started(r1) = st.runs.begin_run_exclusive(&b1, ms(4), lease).await.unwrap() else {
        panic!("the released tick runs")
    };

    // cancel_previous: the running run is cancelled, the new one starts
    let c = tick(40_000, OverlapPolicy::CancelPrevious);
    st.ticks.insert_tick(&c).await.unwrap();
    assert!(matches!(st.runs.begin_run_exclusive(&c, ms(5), lease).await.unwrap(), BeginRun::Started(_)));
    assert_eq!(st.runs.run_status(&project(), r1.id).await.unwrap(), RunStatus::Cancelled);
    let (cancelled, _) = st.runs.get_run(&project(), r1.id).await.unwrap();
    assert!(cancelled.last_error.unwrap().contains("cancel_previous"));
    assert_eq!(state(b1.id).await.unwrap().0, TickState::Cancelled);

    // allow: runs side by side; a redelivered tick finds its own run
    let a = tick(50_000, OverlapPolicy::Allow);
    st.ticks.insert_tick(&a).await.unwrap();
    assert!(matches!(st.runs.begin_run_exclusive(&a, ms(6), lease).await.unwrap(), BeginRun::Started(_)));
    assert!(matches!(st.runs.begin_run_exclusive(&a, ms(7), lease).await.unwrap(), BeginRun::Resume(_)));
    // another copy of it finds it held by the first
    assert!(matches!(
        st.runs.begin_run_exclusive(&a, ms(8), new_lease(ms(1_000_000))).await.unwrap(),
        BeginRun::Held(_)
    ));
}

/// A run's end writes the run only: the tick stays as it was handed to the queue, and the
/// ledger reads its outcome from its run. Reconciliation reads each shard from its cursor
/// (every tick published before it has a run), which never passes a tick without one.
async fn a_tick_outcome_is_its_runs_and_reconciliation_reads_from_its_cursor(st: Stores) {
    let s = schedule("a", Some(ms(1_000)));
    st.schedules.insert_schedule(&s).await.unwrap();
    let all: Vec<u32> = (0..SHARDS).collect();
    st.ticks.claim_shard(s.shard, 1, "p").await.unwrap();
    st.ticks.commit_plan(s.shard, 1, &[plan(&s, &[1_000, 2_000, 3_000, 4_000], Some(5_000))]).await.unwrap();
    let t: Vec<Tick> = [1_000, 2_000, 3_000, 4_000].iter().map(|at| tick_of(&s, ms(*at))).collect();
    st.ticks.mark_published(&[t[0].id, t[1].id, t[2].id], ms(10_000)).await.unwrap();
    // tick 0 is delivered; tick 3 was produced and delivered before it was marked published
    for (tick, status) in [(&t[0], RunStatus::Succeeded), (&t[3], RunStatus::Failed)] {
        let BeginRun::Started(run) = st.runs.begin_run(tick, ms(10_001), new_lease(FAR)).await.unwrap() else {
            panic!()
        };
        let http = if status == RunStatus::Succeeded { 200 } else { 404 };
        st.runs.record_attempt(&final_record(tick.id, run.id, 1, status, Some(http), 10_100)).await.unwrap();
    }
    let ledger = |states: Vec<TickState>| {
        let f = TickFilter { schedule_id: Some(s.id), states, limit: 100, ..Default::default() };
        let ticks = st.ticks.clone();
        async move { ticks.list_ticks(&project(), &f).await.unwrap() }
    };
    let shown: Vec<(i64, TickState)> =
        ledger(vec![]).await.iter().map(|e| (e.nominal_time.as_millis(), e.state)).collect();
    assert_eq!(
        shown,
        [
            (4_000, TickState::Failed),
            (3_000, TickState::Published),
            (2_000, TickState::Published),
            (1_000, TickState::Delivered)
        ]
    );
    let delivered = ledger(vec![TickState::Delivered]).await;
    assert_eq!(
        (delivered.len(), delivered[0].updated_at),
        (1, ms(10_100)),
        "filtered on the outcome, at the run's end"
    );
    assert!(st.ticks.ticks_to_publish(&all, FAR, 100).await.unwrap().is_empty(), "a tick with a run leaves the outbox");

    // ticks 1 and 2 have no run: returned on every call until republished
    let ids = |v: Vec<Tick>| v.iter().map(|t| t.id).collect::<Vec<_>>();
    for _ in 0..2 {
        assert_eq!(ids(st.ticks.ticks_without_run(&all, ms(20_000), 100).await.unwrap()), [t[1].id, t[2].id]);
    }
    // a call that stops at its limit leaves the cursor where it was
    assert_eq!(ids(st.ticks.ticks_without_run(&all, ms(20_000), 1).await.unwrap()), [t[1].id]);
    assert_eq!(ids(st.ticks.ticks_without_run(&all, ms(20_000), 100).await.unwrap()), [t[1].id, t[2].id]);
    // republishing moves them past `before`; the cursor then moves to `before`
    st.ticks.mark_published(&[t[1].id, t[2].id], ms(30_000)).await.unwrap();
    assert!(st.ticks.ticks_without_run(&all, ms(20_000), 100).await.unwrap().is_empty());
    assert_eq!(ids(st.ticks.ticks_without_run(&all, ms(40_000), 100).await.unwrap()), [t[1].id, t[2].id]);
    let unfinished: HashSet<TickId> =
        st.ticks.unfinished_ticks(&all, 100).await.unwrap().iter().map(|t| t.id).collect();
    assert_eq!(unfinished, [t[1].id, t[2].id].into(), "ticks with a final run are finished");

    // a tick published since the cursor, without a run, is cancelled with its schedule;
    // the delivered one keeps its outcome
    st.schedules.delete_schedule(&project(), s.id, None).await.unwrap();
    let shown: Vec<TickState> = ledger(vec![]).await.iter().map(|e| e.state).collect();
    assert_eq!(shown, [TickState::Failed, TickState::Cancelled, TickState::Cancelled, TickState::Delivered]);
    assert!(st.ticks.unfinished_ticks(&all, 100).await.unwrap().is_empty());
}

/// A release before time-ordered tick ids recorded ticks under UUIDv5 ids: a backfill, or a
/// planner catching up over past fire times, does not record them a second time under the
/// new ids; future fire times (which no backfill reaches) are not looked up.
async fn fire_times_recorded_under_legacy_ids_are_not_recorded_again(st: Stores) {
    let now = Timestamp::now().as_millis();
    let (old_a, old_b, fresh, later, future) =
        (now - 50_000, now - 40_000, now - 30_000, now - 20_000, now + 3_600_000);
    let s = schedule("legacy", Some(ms(old_a)));
    st.schedules.insert_schedule(&s).await.unwrap();
    for at in [old_a, old_b, future] {
        let old =
            Tick { id: TickId::scheduled_legacy(s.id, ms(at)), trigger: TriggerKind::Backfill, ..tick_of(&s, ms(at)) };
        assert!(st.ticks.insert_tick(&old).await.unwrap());
    }
    // a backfill over them records the one fire time without a tick, once
    let backfill: Vec<Tick> =
        [old_a, fresh].iter().map(|at| Tick { trigger: TriggerKind::Backfill, ..tick_of(&s, ms(*at)) }).collect();
    assert_eq!(st.ticks.insert_backfill(&backfill).await.unwrap(), 1);
    assert_eq!(st.ticks.insert_backfill(&backfill).await.unwrap(), 0);

    // a planner catching up from old_a, with a ledger-only record at old_a besides
    st.ticks.claim_shard(s.shard, 1, "p").await.unwrap();
    let mut p = plan(&s, &[old_a, old_b, fresh, later, future], Some(future + 1_000));
    p.ticks.push(PlannedTick {
        id: TickId::outside_bounds(s.id, ms(old_a)),
        nominal_time: ms(old_a),
        fire_time: ms(old_a),
        state: TickState::Skipped,
        reason: Some("before_start".into()),
    });
    let out = st.ticks.commit_plan(s.shard, 1, &[p]).await.unwrap();
    assert_eq!(out.advanced, 1);
    assert_eq!(
        out.new_ticks.into_iter().collect::<HashSet<_>>(),
        HashSet::from([TickId::scheduled(s.id, ms(later)), TickId::scheduled(s.id, ms(future))])
    );

    let filter = TickFilter { schedule_id: Some(s.id), limit: 100, ..Default::default() };
    let mut ledger: Vec<(i64, TickId)> = st
        .ticks
        .list_ticks(&project(), &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.nominal_time.as_millis(), e.id))
        .collect();
    ledger.sort();
    let legacy = |at: i64| TickId::scheduled_legacy(s.id, ms(at));
    let mut expected = vec![
        (old_a, legacy(old_a)),
        (old_a, TickId::outside_bounds(s.id, ms(old_a))),
        (old_b, legacy(old_b)),
        (fresh, TickId::scheduled(s.id, ms(fresh))),
        (later, TickId::scheduled(s.id, ms(later))),
        (future, legacy(future)),
        (future, TickId::scheduled(s.id, ms(future))),
    ];
    expected.sort();
    assert_eq!(ledger, expected);
}
