use std::sync::Arc;
use std::time::Duration;

use cronhook_core::{
    Attempt, Header, HttpMethod, HttpTarget, OverlapPolicy, RetryPolicy, RunId, RunStatus, Tick, TickId, Timestamp,
    TriggerKind,
};
use cronhook_delivery::seal::SealKey;
use cronhook_delivery::ssrf::SsrfPolicy;
use cronhook_delivery::{HttpSender, SendResult, SenderConfig, Verdict, retry};
use cronhook_queue::{Delivery, TickConsumer};
use cronhook_store::{AttemptRecord, BeginRun, LeaseOwner, RunEffects, RunLease, RunStore};
use cronhook_telemetry::metrics::Metrics;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::WorkerConfig;

/// Deliveries that stopped on shutdown, with the runs they may hold.
type Stopped = Arc<std::sync::Mutex<Vec<(TickId, LeaseOwner)>>>;

/// Longest a stopping worker waits to release the runs of its stopped deliveries.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Consumes ticks and delivers them.
#[derive(Clone)]
pub struct Worker {
    runs: Arc<dyn RunStore>,
    sender: HttpSender,
    cfg: WorkerConfig,
    metrics: Arc<Metrics>,
}

enum Stop {
    /// The outcome is durable: acknowledge.
    Done,
    /// Shutdown or an unrecoverable store error: leave the tick unacknowledged.
    Abandon,
}

impl Worker {
    /// Creates a worker.
    pub fn new(
        runs: Arc<dyn RunStore>,
        cfg: WorkerConfig,
        ssrf: Arc<SsrfPolicy>,
        seal: Option<SealKey>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, cronhook_delivery::Error> {
        Self::with_sender(
            runs,
            SenderConfig {
                ssrf,
                seal,
                connect_timeout: cfg.connect_timeout,
                max_response_body: cfg.max_response_body,
                per_host_limit: cfg.per_host_limit,
                ..SenderConfig::default()
            },
            cfg,
            metrics,
        )
    }

    /// Creates a worker with a custom sender configuration (e.g. a test resolver).
    pub fn with_sender(
        runs: Arc<dyn RunStore>,
        sender: SenderConfig,
        cfg: WorkerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, cronhook_delivery::Error> {
        let sender = HttpSender::new(sender)?;
        let runs: Arc<dyn RunStore> = if cfg.write_batch > 1 {
            Arc::new(crate::BatchingRunStore::new(runs, cfg.write_batch, cfg.write_linger, cfg.relaxed_write_linger))
        } else {
            runs
        };
        Ok(Self { runs, sender, cfg, metrics })
    }

    /// Consumes until `cancel` fires or the queue closes, then drains (see crate docs).
    pub async fn run(
        self,
        mut consumer: impl TickConsumer,
        cancel: CancellationToken,
    ) -> Result<(), cronhook_queue::Error> {
        let slots = Arc::new(Semaphore::new(self.cfg.max_in_flight.max(1)));
        let tasks = TaskTracker::new();
        // Waits (fire time, backoff) stop at once on shutdown; attempts in flight do not.
        let waits = cancel.child_token();
        // Runs held by deliveries that stopped on shutdown: released at the end, so the next
        // copy of their ticks need not wait for the leases to run out. At most one entry per
        // slot: only a stopping delivery adds one.
        let stopped: Stopped = Arc::default();
        let result = loop {
            let permit = tokio::select! {
                _ = cancel.cancelled() => break Ok(()),
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break Ok(()),
                },
            };
            let delivery = tokio::select! {
                _ = cancel.cancelled() => break Ok(()),
                d = consumer.recv() => d,
            };
            match delivery {
                Ok(Some(d)) => {
                    let (worker, waits, stopped) = (self.clone(), waits.clone(), stopped.clone());
                    worker.metrics.worker_in_flight.add(1);
                    tasks.spawn(async move {
                        worker.handle(d, &waits, &stopped).await;
                        worker.metrics.worker_in_flight.add(-1);
                        drop(permit);
                    });
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        tasks.close();
        if tokio::time::timeout(self.cfg.shutdown_grace, tasks.wait()).await.is_err() {
            tracing::warn!(grace = ?self.cfg.shutdown_grace, "attempts still in flight after the grace period; they will be resumed");
        }
        self.release(&stopped).await;
        result
    }

    /// Gives up the runs of the deliveries that stopped (best effort: if it fails, their
    /// leases run out and reconciliation hands them out).
    async fn release(&self, stopped: &Stopped) {
        let held = std::mem::take(&mut *stopped.lock().unwrap_or_else(|e| e.into_inner()));
        if held.is_empty() {
            return;
        }
        match tokio::time::timeout(RELEASE_TIMEOUT, self.runs.release_runs(&held, Timestamp::now())).await {
            Ok(Ok(())) => tracing::info!(runs = held.len(), "released the runs of stopped deliveries"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release runs; their leases will run out"),
            Err(_) => tracing::warn!("releasing runs timed out; their leases will run out"),
        }
    }

    async fn handle(&self, d: Delivery, waits: &CancellationToken, stopped: &Stopped) {
        let owner = LeaseOwner::generate();
        match self.deliver(&d.tick, owner, waits).await {
            Stop::Done => d.ack(),
            Stop::Abandon => {
                let id = d.tick.id;
                stopped.lock().unwrap_or_else(|e| e.into_inner()).push((id, owner));
                tracing::debug!(tick_id = %id, "tick left for redelivery");
            }
        }
    }

    async fn deliver(&self, tick: &Tick, owner: LeaseOwner, waits: &CancellationToken) -> Stop {
        // The overlap policy needs the schedule's other runs as they are at the fire time:
        // decided then, in a transaction serialised per schedule. `allow` (and notifications)
        // create the run at once, batched, while the tick waits for its fire time, so the send
        // at the fire time waits for no write; the lease's owner keeps any other copy of the
        // tick from sending it too (docs/architecture.md, Workers).
        let exclusive = tick.overlap != OverlapPolicy::Allow && tick.trigger != TriggerKind::Notification;
        if exclusive && !sleep_until(tick.fire_time, waits).await {
            return Stop::Abandon;
        }
        let begun = self
            .store_retry("begin run", waits, || {
                let now = Timestamp::now();
                let lease = RunLease { owner, until: self.lease_from(tick, now.max(tick.fire_time)) };
                async move {
                    if exclusive {
                        self.runs.begin_run_exclusive(tick, now, lease).await
                    } else {
                        self.runs.begin_run(tick, now, lease).await
                    }
                }
            })
            .await;
        let (run, mut number) = match begun {
            None => return Stop::Abandon,
            Some(BeginRun::Done(run)) => {
                self.metrics.ticks_deduplicated.inc();
                tracing::debug!(tick_id = %tick.id, run_id = %run.id, "duplicate tick: run already final");
                return Stop::Done;
            }
            Some(BeginRun::Held(run)) => {
                self.metrics.ticks_deduplicated.inc();
                tracing::debug!(tick_id = %tick.id, run_id = %run.id, "duplicate tick: another delivery holds its run");
                return Stop::Done;
            }
            Some(BeginRun::Skipped(reason)) => {
                self.metrics.ticks_skipped_overlap.inc();
                tracing::info!(tick_id = %tick.id, schedule_id = %tick.schedule_id, "tick skipped: {reason}");
                return Stop::Done;
            }
            Some(BeginRun::Unrecorded) => {
                self.metrics.ticks_deduplicated.inc();
                tracing::warn!(tick_id = %tick.id, schedule_id = %tick.schedule_id, "tick not in the ledger (purged by retention): not sent again");
                return Stop::Done;
            }
            Some(BeginRun::Buffered) => {
                tracing::info!(tick_id = %tick.id, schedule_id = %tick.schedule_id, "tick buffered until the running one ends");
                return Stop::Done;
            }
            Some(BeginRun::Started(run)) => (run, 1),
            Some(BeginRun::Resume(run)) => {
                tracing::info!(tick_id = %tick.id, run_id = %run.id, attempts = run.attempt_count, "resuming an unfinished run");
                if let Some(at) = run.next_attempt_at
                    && run.parked
                    && at.millis_since(Timestamp::now()) > self.max_wait_ms()
                {
                    // Parked and not due yet: the planner dispatches it when it is.
                    return Stop::Done;
                }
                let n = run.attempt_count + 1;
                (run, n)
            }
        };
        // The first attempt waits for the fire time, a resumed one for its due time.
        let due = run.next_attempt_at.map_or(tick.fire_time, |at| at.max(tick.fire_time));
        if !sleep_until(due, waits).await {
            return Stop::Abandon;
        }
        let first_start = run.started_at;
        loop {
            let sent = self.sender.send(tick, run.id, number).await;
            let first = first_start.unwrap_or(sent.attempt.started_at);
            let (status, next_at) = self.decide(tick, &sent, number, first);
            let now = Timestamp::now();
            let park = next_at.is_some_and(|at| at.millis_since(now) > self.max_wait_ms());
            let effects = effects(tick, run.id, status, &sent, now);
            let SendResult { attempt, verdict } = sent;
            let rec = AttemptRecord {
                project_id: tick.project_id.clone(),
                tick_id: tick.id,
                attempt,
                status,
                next_attempt_at: next_at,
                finished_at: status.is_final().then_some(now),
                park,
                lease_until: next_at.filter(|_| !park).map(|at| self.lease_from(tick, at)),
                effects,
            };
            if self.store_retry("record attempt", waits, || self.runs.record_attempt(&rec)).await.is_none() {
                return Stop::Abandon;
            }
            log_attempt(tick, &rec.attempt, status);
            if let Verdict::FailAndPause { reason } = &verdict {
                let pause = || self.runs.pause_schedule(&tick.project_id, tick.schedule_id, reason);
                if self.store_retry("pause schedule", waits, pause).await.is_some() {
                    tracing::warn!(schedule_id = %tick.schedule_id, "{reason}");
                }
            }
            self.observe(&rec.attempt, &verdict, status, number);
            if status.is_final() || park {
                return Stop::Done; // final, or parked: durable either way
            }
            match next_at {
                Some(at) if sleep_until(at, waits).await => {
                    // cancelled meanwhile (overlap policy cancel_previous)? then stop here
                    if let Ok(RunStatus::Cancelled) = self.runs.run_status(&tick.project_id, run.id).await {
                        tracing::info!(tick_id = %tick.id, run_id = %run.id, "run cancelled; no more attempts");
                        return Stop::Done;
                    }
                    number += 1;
                }
                _ => return Stop::Abandon,
            }
        }
    }

    fn observe(&self, attempt: &Attempt, verdict: &Verdict, status: RunStatus, number: u32) {
        let m = &self.metrics;
        if number == 1 {
            m.fire_lateness.observe_ms(attempt.lateness_ms);
        }
        match verdict {
            Verdict::Success => m.attempts_ok.inc(),
            _ => m.attempts_failed.inc(),
        }
        match status {
            RunStatus::Succeeded => m.runs_succeeded.inc(),
            RunStatus::Failed => m.runs_failed.inc(),
            _ => {}
        }
    }

    /// Returns until when a run whose next step starts at `from` is leased to this worker.
    fn lease_from(&self, tick: &Tick, from: Timestamp) -> Timestamp {
        from.add_millis(tick.target.timeout_ms + self.cfg.run_lease_margin.as_millis() as i64)
    }

    fn max_wait_ms(&self) -> i64 {
        self.cfg.max_retry_wait_in_memory.as_millis() as i64
    }

    /// Returns the run's status after attempt `number` and, when another attempt follows,
    /// when it is due.
    fn decide(&self, tick: &Tick, sent: &SendResult, number: u32, first: Timestamp) -> (RunStatus, Option<Timestamp>) {
        match &sent.verdict {
            Verdict::Success => (RunStatus::Succeeded, None),
            Verdict::Fail { .. } | Verdict::FailAndPause { .. } => (RunStatus::Failed, None),
            Verdict::Retry { retry_after_ms } => {
                let seed = tick_seed(tick);
                match retry::next_attempt_at(&tick.retry, number + 1, first, Timestamp::now(), *retry_after_ms, seed) {
                    Some(at) => (RunStatus::Running, Some(at)),
                    None => (RunStatus::Failed, None),
                }
            }
        }
    }

    /// Retries a store operation until it succeeds or shutdown begins (`None`). Giving up
    /// earlier would strand a run the database half knows about; holding the slot instead
    /// applies back-pressure until the database is back.
    async fn store_retry<T, F, Fut>(&self, what: &str, waits: &CancellationToken, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = cronhook_store::Result<T>>,
    {
        let mut wait = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            match op().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    failures += 1;
                    if failures <= 3 || failures.is_multiple_of(20) {
                        tracing::warn!(error = %e, failures, "store write failed: {what}; retrying");
                    }
                    tokio::select! {
                        _ = waits.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

fn log_attempt(tick: &Tick, a: &Attempt, status: RunStatus) {
    match status {
        RunStatus::Succeeded => tracing::debug!(
            tick_id = %tick.id, schedule_id = %tick.schedule_id, attempt = a.number,
            http_status = a.response_status, lateness_ms = a.lateness_ms, "delivered"
        ),
        _ => tracing::info!(
            tick_id = %tick.id, schedule_id = %tick.schedule_id, attempt = a.number,
            http_status = a.response_status, error = a.error_message.as_deref().unwrap_or(""),
            status = status.as_str(), "attempt failed"
        ),
    }
}

/// What a final status does to the schedule: the auto-pause count and, for a failure, a
/// `run.failed` notification. Notifications themselves have no effects (no recursion).
fn effects(tick: &Tick, run: RunId, status: RunStatus, sent: &SendResult, now: Timestamp) -> Option<RunEffects> {
    if !status.is_final() || tick.trigger == TriggerKind::Notification {
        return None;
    }
    let notification = match (&tick.failure_notification_url, status) {
        (Some(url), RunStatus::Failed) => Some(Box::new(notification_tick(tick, run, sent, url, now))),
        _ => None,
    };
    Some(RunEffects { schedule_id: tick.schedule_id, auto_pause_after: tick.auto_pause_after_failures, notification })
}

/// The `run.failed` event of a failed run, as a tick of its own (id derived from the run,
/// so a retried write records it once).
fn notification_tick(tick: &Tick, run: RunId, sent: &SendResult, url: &str, now: Timestamp) -> Tick {
    let a = &sent.attempt;
    let body = serde_json::json!({
        "type": "run.failed",
        "schedule_id": tick.schedule_id.to_string(),
        "run_id": run.to_string(),
        "tick_id": tick.id.to_string(),
        "nominal_time": tick.nominal_time.to_rfc3339(),
        "attempts": a.number,
        "http_status": a.response_status,
        "error_code": a.error_code,
        "error": a.error_message,
    });
    Tick {
        id: TickId::manual(tick.schedule_id, *run.as_uuid()),
        project_id: tick.project_id.clone(),
        schedule_id: tick.schedule_id,
        schedule_version: tick.schedule_version,
        nominal_time: now,
        fire_time: now,
        trigger: TriggerKind::Notification,
        target: HttpTarget {
            url: url.to_owned(),
            method: HttpMethod::Post,
            headers: vec![Header { name: "Content-Type".into(), value: "application/json".into(), secret: false }],
            body: body.to_string().into_bytes(),
            timeout_ms: 10_000,
            follow_redirects: false,
        },
        retry: RetryPolicy::default(),
        shard: tick.shard,
        epoch: 0,
        signing_secrets: tick.signing_secrets.clone(),
        failure_notification_url: None,
        auto_pause_after_failures: 0,
        overlap: Default::default(),
    }
}

/// The jitter seed of a run: its tick id, so every worker computes the same waits.
fn tick_seed(tick: &Tick) -> u64 {
    let b = tick.id.as_uuid().as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Sleeps until wall-clock instant `at`; `false` when cancelled first.
async fn sleep_until(at: Timestamp, cancel: &CancellationToken) -> bool {
    let wait = at.millis_since(Timestamp::now());
    if wait <= 0 {
        return !cancel.is_cancelled();
    }
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => true,
    }
}
