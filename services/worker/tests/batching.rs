//! The run-log batcher over a real SQLite store: how long a write waits for company
//! depends on whether a send waits for it.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cronhook_core::{
    Attempt, AttemptTiming, HttpMethod, HttpTarget, ProjectId, RetryPolicy, Run, RunId, RunStatus, ScheduleId, Tick,
    TickId, Timestamp, TriggerKind,
};
use cronhook_store::{AttemptRecord, BeginRun, LeaseOwner, Result, RunFilter, RunLease, RunStore, TickStore};
use cronhook_worker::BatchingRunStore;

/// A store that remembers the size of every batched statement it was given.
struct Counting {
    inner: Arc<dyn RunStore>,
    ticks: Arc<dyn TickStore>,
    begins: Mutex<Vec<usize>>,
    records: Mutex<Vec<usize>>,
}

#[async_trait]
impl RunStore for Counting {
    async fn begin_run(&self, tick: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun> {
        self.inner.begin_run(tick, now, lease).await
    }
    async fn record_attempt(&self, rec: &AttemptRecord) -> Result<()> {
        self.inner.record_attempt(rec).await
    }
    async fn begin_run_exclusive(&self, t: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun> {
        self.inner.begin_run_exclusive(t, now, lease).await
    }
    async fn run_status(&self, project: &ProjectId, id: RunId) -> Result<RunStatus> {
        self.inner.run_status(project, id).await
    }
    async fn begin_runs(&self, items: &[(Tick, RunLease)], now: Timestamp) -> Vec<Result<BeginRun>> {
        self.begins.lock().unwrap().push(items.len());
        self.inner.begin_runs(items, now).await
    }
    async fn release_runs(&self, held: &[(TickId, LeaseOwner)], now: Timestamp) -> Result<()> {
        self.inner.release_runs(held, now).await
    }
    async fn record_attempts(&self, recs: &[AttemptRecord]) -> Result<()> {
        self.records.lock().unwrap().push(recs.len());
        self.inner.record_attempts(recs).await
    }
    async fn pause_schedule(&self, project: &ProjectId, id: ScheduleId, reason: &str) -> Result<()> {
        self.inner.pause_schedule(project, id, reason).await
    }
    async fn get_run(&self, project: &ProjectId, id: RunId) -> Result<(Run, Vec<Attempt>)> {
        self.inner.get_run(project, id).await
    }
    async fn list_runs(&self, project: &ProjectId, filter: &RunFilter) -> Result<Vec<Run>> {
        self.inner.list_runs(project, filter).await
    }
}

async fn counting() -> (Arc<Counting>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let stores = cronhook_store::open(dir.path().join("b.db").to_str().unwrap(), 4).await.unwrap();
    let c = Counting {
        inner: stores.runs.clone(),
        ticks: stores.ticks.clone(),
        begins: Mutex::default(),
        records: Mutex::default(),
    };
    (Arc::new(c), dir)
}

/// A tick of `schedule`, recorded in the ledger as the planner records every tick before
/// publishing it (runs are begun for recorded ticks only).
async fn tick(c: &Counting, schedule: ScheduleId, nominal: Timestamp, fire: Timestamp) -> Tick {
    let t = Tick {
        id: TickId::scheduled(schedule, nominal),
        project_id: ProjectId::default_project(),
        schedule_id: schedule,
        schedule_version: 1,
        nominal_time: nominal,
        fire_time: fire,
        trigger: TriggerKind::Scheduled,
        target: HttpTarget {
            url: "http://127.0.0.1:9/x".into(),
            method: HttpMethod::Post,
            headers: vec![],
            body: vec![],
            timeout_ms: 1_000,
            follow_redirects: false,
        },
        retry: RetryPolicy::default(),
        shard: 0,
        epoch: 1,
        signing_secrets: vec![],
        failure_notification_url: None,
        auto_pause_after_failures: 0,
        overlap: Default::default(),
    };
    c.ticks.insert_tick(&t).await.unwrap();
    t
}

fn succeeded(t: &Tick, run: RunId) -> AttemptRecord {
    AttemptRecord {
        project_id: t.project_id.clone(),
        tick_id: t.id,
        attempt: Attempt {
            run_id: run,
            number: 1,
            started_at: t.fire_time,
            duration_ms: 1,
            method: "POST".into(),
            url: t.target.url.clone(),
            request_headers: vec![],
            request_body_size: 0,
            request_body_sha256: String::new(),
            response_status: Some(200),
            response_headers: vec![],
            response_body: vec![],
            response_body_truncated: false,
            error_code: None,
            error_message: None,
            lateness_ms: 0,
            timing: AttemptTiming::default(),
        },
        status: RunStatus::Succeeded,
        next_attempt_at: None,
        finished_at: Some(Timestamp::now()),
        park: false,
        lease_until: None,
        effects: None,
    }
}

fn lease() -> RunLease {
    RunLease { owner: LeaseOwner::generate(), until: Timestamp::now().add_millis(60_000) }
}

/// Begins the run of `t` directly in the inner store.
async fn started(c: &Counting, t: &Tick) -> RunId {
    let BeginRun::Started(run) = c.inner.begin_run(t, Timestamp::now(), lease()).await.unwrap() else {
        panic!("a new tick starts")
    };
    run.id
}

#[tokio::test]
async fn records_no_send_waits_for_gather_into_one_statement() {
    let (c, _dir) = counting().await;
    let batcher = Arc::new(BatchingRunStore::new(c.clone(), 256, Duration::from_millis(1), Duration::from_secs(1)));
    let s = ScheduleId::generate();
    let now = Timestamp::now();
    let mut recs = Vec::new();
    for i in 0..8 {
        let t = tick(&c, s, now.add_millis(i * 1000), now).await;
        let run = started(&c, &t).await;
        recs.push(succeeded(&t, run));
    }
    // eight records arriving 25 ms apart: far more than the 1 ms linger, well within 1 s
    let writes = recs.into_iter().enumerate().map(|(i, rec)| {
        let b = batcher.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(25 * i as u64)).await;
            b.record_attempt(&rec).await
        })
    });
    for w in writes.collect::<Vec<_>>() {
        w.await.unwrap().unwrap();
    }
    assert_eq!(*c.records.lock().unwrap(), vec![8], "one statement for the records of 175 ms");
}

#[tokio::test]
async fn a_begin_due_now_writes_its_batch_at_once() {
    let (c, _dir) = counting().await;
    let relaxed = Duration::from_secs(6);
    let batcher = Arc::new(BatchingRunStore::new(c.clone(), 256, Duration::from_millis(1), relaxed));
    let s = ScheduleId::generate();
    let now = Timestamp::now();
    // a begin due a minute from now may wait: it is still pending half a second later
    let later = tick(&c, s, now.add_millis(60_000), now.add_millis(60_000)).await;
    let b = batcher.clone();
    let early = tokio::spawn(async move { b.begin_run(&later, Timestamp::now(), lease()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!early.is_finished(), "a begin due in a minute waits for company");
    // a begin due now joins it, and the batch is written without waiting out the relaxed linger
    let t0 = Instant::now();
    let due = tick(&c, s, now, now).await;
    let begun = batcher.begin_run(&due, Timestamp::now(), lease()).await.unwrap();
    assert!(matches!(begun, BeginRun::Started(_)));
    assert!(matches!(early.await.unwrap().unwrap(), BeginRun::Started(_)));
    assert!(t0.elapsed() < relaxed / 2, "written after {:?}, not after the relaxed {relaxed:?}", t0.elapsed());
    assert_eq!(*c.begins.lock().unwrap(), vec![2], "both begins in one statement");
}
