//! How the planner publishes: fresh ticks from memory (`plan::tick_for`) instead of read
//! back through the outbox query (both must give workers the same tick), recorded as
//! published by the plan commit itself, and returned to the outbox when producing fails;
//! and reconciliation's republishing, which runs beside planning and never holds it up.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cronhook_core::{
    Header, HttpMethod, HttpTarget, NewSchedule, OverlapPolicy, ProjectId, RetryPolicy, Schedule, ScheduleId,
    ScheduleSpec, ScheduleState, SpecKind, Tick, Timestamp,
};
use cronhook_cron::CompiledSpec;
use cronhook_election::local::LocalShardLeases;
use cronhook_planner::plan::{plan_schedule, tick_for};
use cronhook_planner::{Planner, PlannerConfig};
use cronhook_queue::TickPublisher;
use tokio_util::sync::CancellationToken;

const SHARDS: u32 = 8;

fn every_second() -> ScheduleSpec {
    ScheduleSpec {
        kind: SpecKind::Interval { every_ms: 1000, offset_ms: 0 },
        time_zone: "UTC".into(),
        start: None,
        end: None,
        remaining_runs: None,
    }
}

/// A schedule firing every second from `first`, with a request using every field.
fn schedule(first: Timestamp) -> Schedule {
    let id = ScheduleId::generate();
    Schedule {
        id,
        project_id: ProjectId::default_project(),
        def: NewSchedule {
            name: "direct".into(),
            description: String::new(),
            spec: every_second(),
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
        next_fire_at: Some(first),
        version: 1,
        shard: id.shard(SHARDS),
        runs_left: None,
        created_at: Timestamp::from_millis(0),
        updated_at: Timestamp::from_millis(0),
    }
}

#[tokio::test]
async fn a_tick_from_memory_equals_the_outbox_tick() {
    let dir = tempfile::tempdir().unwrap();
    let stores = cronhook_store::open(dir.path().join("db").to_str().unwrap(), SHARDS).await.unwrap();
    let s = schedule(Timestamp::from_millis(10_000));
    stores.schedules.insert_schedule(&s).await.unwrap();
    let s = stores.schedules.get_schedule(&s.project_id, s.id).await.unwrap();
    assert!(stores.ticks.claim_shard(s.shard, 5, "p").await.unwrap());
    let compiled = CompiledSpec::compile(&every_second()).unwrap();
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

/// A SQLite store in `dir` with one every-second schedule whose first fire time (returned)
/// is the next whole second.
async fn store_with_a_schedule(dir: &tempfile::TempDir) -> (cronhook_store::Stores, Timestamp) {
    let stores = cronhook_store::open(dir.path().join("db").to_str().unwrap(), SHARDS).await.unwrap();
    let first = Timestamp::from_millis(Timestamp::now().as_millis() / 1000 * 1000 + 1000);
    stores.schedules.insert_schedule(&schedule(first)).await.unwrap();
    (stores, first)
}

/// Runs a planner owning every shard until the returned token is cancelled.
fn start_planner(
    stores: &cronhook_store::Stores,
    queue: Arc<dyn TickPublisher>,
    cfg: PlannerConfig,
) -> (CancellationToken, tokio::task::JoinHandle<Result<(), cronhook_planner::Error>>) {
    let leases = Arc::new(LocalShardLeases::new(SHARDS, 1));
    let planner = Planner::new(stores.ticks.clone(), queue, leases, "p".into(), cfg, Default::default());
    let cancel = CancellationToken::new();
    (cancel.clone(), tokio::spawn(planner.run(cancel)))
}

/// Waits up to 10 s until a queue has accepted `n` ticks.
async fn wait_for_accepted(
    accepted: &std::sync::Mutex<Vec<Tick>>,
    n: usize,
) -> Result<(), tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while accepted.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// The first `n` nominal times (ms) of an every-second schedule starting at `first`.
fn seconds_from(first: Timestamp, n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| first.as_millis() + i * 1000).collect()
}

/// A queue that refuses every publish while `broken`, and records what it accepted.
#[derive(Default)]
struct FlakyQueue {
    broken: AtomicBool,
    accepted: std::sync::Mutex<Vec<Tick>>,
}

#[async_trait]
impl TickPublisher for FlakyQueue {
    async fn publish(&self, ticks: &[Tick]) -> cronhook_queue::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(cronhook_queue::Error::Backend("broker unreachable".into()));
        }
        self.accepted.lock().unwrap().extend_from_slice(ticks);
        Ok(())
    }
}

#[tokio::test]
async fn ticks_whose_produce_failed_go_back_to_the_outbox_and_are_published_later() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, first) = store_with_a_schedule(&dir).await;
    let queue = Arc::new(FlakyQueue::default());
    queue.broken.store(true, Ordering::SeqCst);
    let cfg = PlannerConfig { poll_interval: Duration::from_millis(50), ..PlannerConfig::default() };
    let (cancel, task) = start_planner(&stores, queue.clone(), cfg);

    // While the broker refuses: ticks get planned (the schedule advances) but none is left
    // recorded as published, which only reconciliation would find, a grace period later.
    let all: Vec<u32> = (0..SHARDS).collect();
    let waiting = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let until = Timestamp::now().add_millis(10_000);
            let outbox = stores.ticks.ticks_to_publish(&all, until, 100).await.unwrap();
            if outbox.len() >= 2 {
                break outbox;
            }
        }
    })
    .await
    .unwrap();
    assert!(queue.accepted.lock().unwrap().is_empty());
    let far = Timestamp::now().add_millis(3_600_000);
    assert!(stores.ticks.ticks_without_run(&all, far, 100).await.unwrap().is_empty(), "no tick stuck as published");

    // The broker is back: the outbox is published, each tick once, none skipped.
    queue.broken.store(false, Ordering::SeqCst);
    wait_for_accepted(&queue.accepted, waiting.len() + 2).await.unwrap();
    cancel.cancel();
    task.await.unwrap().unwrap();
    let mut nominal: Vec<i64> = queue.accepted.lock().unwrap().iter().map(|t| t.nominal_time.as_millis()).collect();
    let produced = nominal.len();
    nominal.sort_unstable();
    nominal.dedup();
    assert_eq!(nominal.len(), produced, "each tick produced once");
    assert_eq!(nominal, seconds_from(first, produced), "every second from the first, none lost");
    assert!(waiting.iter().all(|t| nominal.contains(&t.nominal_time.as_millis())));
}

/// A queue whose publishes take a while, announcing when one starts.
#[derive(Default)]
struct SlowQueue {
    started: tokio::sync::Notify,
    accepted: std::sync::Mutex<Vec<Tick>>,
}

#[async_trait]
impl TickPublisher for SlowQueue {
    async fn publish(&self, ticks: &[Tick]) -> cronhook_queue::Result<()> {
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.accepted.lock().unwrap().extend_from_slice(ticks);
        Ok(())
    }
}

#[tokio::test]
async fn a_shutdown_during_a_produce_lets_it_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, _) = store_with_a_schedule(&dir).await;
    let queue = Arc::new(SlowQueue::default());
    let (cancel, task) = start_planner(&stores, queue.clone(), PlannerConfig::default());
    tokio::time::timeout(Duration::from_secs(10), queue.started.notified()).await.unwrap();
    cancel.cancel(); // while the committed ticks are being produced
    task.await.unwrap().unwrap();

    // every tick the commit recorded as published reached the queue before the planner stopped
    let all: Vec<u32> = (0..SHARDS).collect();
    let far = Timestamp::now().add_millis(3_600_000);
    let published = stores.ticks.ticks_without_run(&all, far, 100).await.unwrap();
    assert!(!published.is_empty());
    let accepted = queue.accepted.lock().unwrap();
    assert!(published.iter().all(|t| accepted.iter().any(|a| a.id == t.id)), "none left for reconciliation");
}

/// A queue that takes fresh ticks at once and never returns from a republish (a tick it
/// has already taken), announcing when one starts.
#[derive(Default)]
struct StallingRepublish {
    republishing: tokio::sync::Notify,
    accepted: std::sync::Mutex<Vec<Tick>>,
}

#[async_trait]
impl TickPublisher for StallingRepublish {
    async fn publish(&self, ticks: &[Tick]) -> cronhook_queue::Result<()> {
        let again = {
            let mut accepted = self.accepted.lock().unwrap();
            let again = ticks.iter().any(|t| accepted.iter().any(|a| a.id == t.id));
            if !again {
                accepted.extend_from_slice(ticks);
            }
            again
        };
        if again {
            self.republishing.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_stalled_reconciliation_does_not_hold_up_planning_or_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (stores, first) = store_with_a_schedule(&dir).await;
    let queue = Arc::new(StallingRepublish::default());
    // No worker runs, so every published tick is without a run once the grace is over.
    let cfg = PlannerConfig {
        poll_interval: Duration::from_millis(50),
        reconcile_interval: Duration::from_millis(100),
        reconcile_grace: Duration::from_millis(300),
        ..PlannerConfig::default()
    };
    let (cancel, task) = start_planner(&stores, queue.clone(), cfg);
    tokio::time::timeout(Duration::from_secs(10), queue.republishing.notified()).await.unwrap();

    // Reconciliation is stuck in its produce; the schedule's next seconds still go out.
    let taken = queue.accepted.lock().unwrap().len();
    wait_for_accepted(&queue.accepted, taken + 3).await.expect("planning went on while reconciliation was stalled");
    let nominal: Vec<i64> = queue.accepted.lock().unwrap().iter().map(|t| t.nominal_time.as_millis()).collect();
    assert_eq!(nominal, seconds_from(first, nominal.len()), "every second from the first, in order, each once");

    // Shutdown does not wait for the stalled republish either.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("the planner stopped").unwrap().unwrap();
}
