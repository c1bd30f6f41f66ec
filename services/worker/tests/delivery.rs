//! The delivery engine end to end inside one worker: a real worker, a real SQLite store,
//! and a scripted HTTP target on loopback that answers with any status, header, delay or
//! trickle. Each test asserts what the run and its attempts recorded.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::sync::Arc;
use std::time::Duration;

use cronhook_core::{
    Attempt, Header, HttpMethod, HttpTarget, NewSchedule, OverlapPolicy, ProjectId, RetryPolicy, Run, RunStatus,
    Schedule, ScheduleId, ScheduleSpec, ScheduleState, SpecKind, Tick, TickId, Timestamp, TriggerKind,
};
use cronhook_queue::{TickPublisher, memory};
use cronhook_store::{RunFilter, Stores};
use cronhook_telemetry::metrics::Metrics;
use cronhook_test_utils::target::{Reply, ReplyBody, ScriptedTarget};
use cronhook_test_utils::wait_for;
use cronhook_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

struct Env {
    stores: Stores,
    schedule: Schedule,
    _dir: tempfile::TempDir,
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff_ms: 100,
        max_backoff_ms: 2_000,
        multiplier: 2.0,
        max_retry_duration_ms: None,
    }
}

fn target(url: String) -> HttpTarget {
    HttpTarget {
        url,
        method: HttpMethod::Post,
        headers: vec![Header { name: "Content-Type".into(), value: "application/json".into(), secret: false }],
        body: b"{}".to_vec(),
        timeout_ms: 2_000,
        follow_redirects: false,
    }
}

async fn env(target: HttpTarget, retry: RetryPolicy) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let stores = cronhook_store::open(dir.path().join("w.db").to_str().unwrap(), 4).await.unwrap();
    let id = ScheduleId::generate();
    let schedule = Schedule {
        id,
        project_id: ProjectId::default_project(),
        def: NewSchedule {
            name: "t".into(),
            description: String::new(),
            spec: ScheduleSpec {
                kind: SpecKind::Interval { every_ms: 3_600_000, offset_ms: 0 },
                time_zone: "UTC".into(),
                start: None,
                end: None,
                remaining_runs: None,
            },
            target,
            retry,
            overlap: OverlapPolicy::Skip,
            catchup_window_ms: 60_000,
            jitter_ms: 0,
            labels: Default::default(),
            failure_notification_url: None,
            auto_pause_after_failures: 0,
        },
        state: ScheduleState::Active,
        state_reason: String::new(),
        next_fire_at: Some(Timestamp::from_millis(4_000_000_000_000)),
        version: 1,
        shard: id.shard(4),
        runs_left: None,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    };
    stores.schedules.insert_schedule(&schedule).await.unwrap();
    Env { stores, schedule, _dir: dir }
}

/// Delivers one tick of the env's schedule through a real worker; returns its run.
async fn deliver(env: &Env, cfg: WorkerConfig) -> (Run, Vec<Attempt>) {
    let now = Timestamp::now();
    let s = &env.schedule;
    let tick = Tick {
        id: TickId::scheduled(s.id, now),
        project_id: s.project_id.clone(),
        schedule_id: s.id,
        schedule_version: s.version,
        nominal_time: now,
        fire_time: now,
        trigger: TriggerKind::Scheduled,
        target: s.def.target.clone(),
        retry: s.def.retry.clone(),
        shard: s.shard,
        epoch: 1,
    };
    let (publisher, consumer) = memory::channel(16);
    let cancel = CancellationToken::new();
    let worker = Worker::new(env.stores.runs.clone(), cfg, Arc::new(Metrics::default())).unwrap();
    let task = tokio::spawn(worker.run(consumer, cancel.clone()));
    publisher.publish(&[tick]).await.unwrap();
    let runs = env.stores.runs.clone();
    let project = s.project_id.clone();
    let run = wait_for("a final run", Duration::from_secs(60), || {
        let (runs, project) = (runs.clone(), project.clone());
        async move {
            let list = runs.list_runs(&project, &RunFilter { limit: 10, ..Default::default() }).await.ok()?;
            list.into_iter().find(|r| r.status.is_final())
        }
    })
    .await
    .unwrap();
    cancel.cancel();
    let _ = task.await;
    env.stores.runs.get_run(&project, run.id).await.unwrap()
}

fn cfg() -> WorkerConfig {
    WorkerConfig { write_linger: Duration::from_millis(1), ..WorkerConfig::default() }
}

fn gap_ms(a: &Attempt, b: &Attempt) -> i64 {
    b.started_at.millis_since(a.started_at) - a.duration_ms
}

#[tokio::test]
async fn retryable_statuses_are_retried_until_success() {
    let t = ScriptedTarget::start(vec![Reply::status(503), Reply::status(429), Reply::status(500)], Reply::status(200))
        .await
        .unwrap();
    let e = env(target(t.url("/x")), fast_retries(5)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count, run.http_status), (RunStatus::Succeeded, 4, Some(200)));
    let statuses: Vec<Option<u16>> = attempts.iter().map(|a| a.response_status).collect();
    assert_eq!(statuses, [Some(503), Some(429), Some(500), Some(200)]);
    assert_eq!(attempts[0].error_code.as_deref(), Some("http_status"));
    assert!(attempts[3].error_code.is_none());
    // backoff 100, 200, 400 ms with at most 20 % jitter taken off
    for (i, base) in [(0, 100), (1, 200), (2, 400)] {
        let g = gap_ms(&attempts[i], &attempts[i + 1]);
        assert!(g >= base * 8 / 10 - 5 && g < base + 300, "wait {i}: {g} ms for a base of {base} ms");
    }
    assert_eq!(t.seen().len(), 4);
    let wid: std::collections::BTreeSet<String> =
        t.seen().iter().map(|s| s.header("webhook-id").unwrap().to_owned()).collect();
    assert_eq!(wid.len(), 1, "the same webhook-id on every retry");
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let t = ScriptedTarget::start(vec![], Reply::status(502)).await.unwrap();
    let e = env(target(t.url("/x")), fast_retries(3)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 3));
    assert_eq!(attempts.len(), 3);
    assert_eq!(run.last_error.as_deref(), Some("http_status: HTTP 502"));
}

#[tokio::test]
async fn other_4xx_and_redirects_fail_without_retry() {
    for status in [400, 404, 422, 302] {
        let reply = Reply::status(status).header("location", "/elsewhere");
        let t = ScriptedTarget::start(vec![reply], Reply::status(200)).await.unwrap();
        let e = env(target(t.url("/x")), fast_retries(5)).await;
        let (run, attempts) = deliver(&e, cfg()).await;
        assert_eq!((run.status, run.attempt_count, run.http_status), (RunStatus::Failed, 1, Some(status)), "{status}");
        assert_eq!(attempts[0].error_code.as_deref(), Some("http_status"));
    }
}

#[tokio::test]
async fn redirects_are_followed_when_allowed() {
    let t =
        ScriptedTarget::start(vec![Reply::status(307).header("location", "/moved")], Reply::status(200)).await.unwrap();
    let mut tg = target(t.url("/x"));
    tg.follow_redirects = true;
    let e = env(tg, fast_retries(5)).await;
    let (run, _) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count, run.http_status), (RunStatus::Succeeded, 1, Some(200)));
    let paths: Vec<String> = t.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/x", "/moved"]);
}

#[tokio::test]
async fn gone_fails_and_pauses_the_schedule() {
    let t = ScriptedTarget::start(vec![Reply::status(410)], Reply::status(200)).await.unwrap();
    let e = env(target(t.url("/x")), fast_retries(5)).await;
    let (run, _) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 1));
    let s = e.stores.schedules.get_schedule(&e.schedule.project_id, e.schedule.id).await.unwrap();
    assert_eq!(s.state, ScheduleState::Paused);
    assert!(s.state_reason.contains("410"), "{}", s.state_reason);
}

#[tokio::test]
async fn the_no_retry_header_stops_retries() {
    let t = ScriptedTarget::start(vec![Reply::status(503).header("cronhook-no-retry", "true")], Reply::status(200))
        .await
        .unwrap();
    let e = env(target(t.url("/x")), fast_retries(5)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 1));
    assert!(attempts[0].error_message.as_deref().unwrap().contains("cronhook-no-retry"));
}

#[tokio::test]
async fn retry_after_is_honoured_in_seconds_and_as_a_date() {
    let date = (chrono::Utc::now() + chrono::Duration::seconds(4)).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let t = ScriptedTarget::start(
        vec![Reply::status(429).header("retry-after", "1"), Reply::status(503).header("retry-after", &date)],
        Reply::status(200),
    )
    .await
    .unwrap();
    let mut retry = fast_retries(5);
    retry.max_backoff_ms = 10_000;
    let e = env(target(t.url("/x")), retry).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Succeeded, 3));
    let g1 = gap_ms(&attempts[0], &attempts[1]);
    let g2 = gap_ms(&attempts[1], &attempts[2]);
    assert!((950..2_000).contains(&g1), "Retry-After: 1 waited {g1} ms");
    // the date is 4 s after the test started (whole seconds) and ~1 s has passed
    assert!((1_500..4_000).contains(&g2), "Retry-After as a date waited {g2} ms");
}

#[tokio::test]
async fn a_huge_response_is_capped_and_memory_stays_flat() {
    let t = ScriptedTarget::start(vec![], Reply::status(200).body(ReplyBody::Huge(100 * 1024 * 1024))).await.unwrap();
    let mut tg = target(t.url("/x"));
    tg.timeout_ms = 60_000;
    let e = env(tg, fast_retries(1)).await;
    let before = rss_kib();
    let (run, attempts) = deliver(&e, cfg()).await;
    let grew = rss_kib().saturating_sub(before);
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(attempts[0].response_body.len(), 64 * 1024);
    assert!(attempts[0].response_body_truncated);
    println!("RSS grew by {grew} KiB while a 100 MiB response was received");
    assert!(grew < 40 * 1024, "RSS grew by {grew} KiB: the body was buffered");
}

#[tokio::test]
async fn never_ending_and_trickling_responses_hit_the_total_timeout() {
    for body in [ReplyBody::Endless, ReplyBody::Trickle(Duration::from_millis(200), 50)] {
        let t = ScriptedTarget::start(vec![], Reply::status(200).body(body.clone())).await.unwrap();
        let mut tg = target(t.url("/x"));
        tg.timeout_ms = 1_000;
        let e = env(tg, fast_retries(2)).await;
        let (run, attempts) = deliver(&e, cfg()).await;
        assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 2), "{body:?}");
        for a in &attempts {
            assert_eq!(a.error_code.as_deref(), Some("timeout"), "{body:?}: {:?}", a.error_message);
            assert!((900..2_500).contains(&a.duration_ms), "{body:?}: cut after {} ms", a.duration_ms);
        }
    }
}

#[tokio::test]
async fn connection_errors_are_retried_with_their_code() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = env(target(format!("http://127.0.0.1:{port}/x")), fast_retries(2)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count, run.http_status), (RunStatus::Failed, 2, None));
    assert!(attempts.iter().all(|a| a.error_code.as_deref() == Some("connect")));
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
