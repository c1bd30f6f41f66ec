use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Instant;

use cronhook_core::{Schedule, Tick, TickId, TickState, Timestamp};
use cronhook_cron::CompiledSpec;
use cronhook_election::ShardLeases;
use cronhook_queue::TickPublisher;
use cronhook_store::{PlannedSchedule, TickStore};
use cronhook_telemetry::metrics::Metrics;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::plan::{CatchupPacer, SKIPPED_AFTER_END, SKIPPED_BEFORE_START, SKIPPED_PAUSED, plan_schedule, tick_for};
use crate::{Error, PlannerConfig};

/// How long a planning step in progress at shutdown may take to finish.
const FINISH_ON_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(3);

/// Plans the shards this node owns. See the crate docs for the protocol.
pub struct Planner {
    store: Arc<dyn TickStore>,
    publisher: Arc<dyn TickPublisher>,
    leases: Arc<dyn ShardLeases>,
    owner: String,
    cfg: PlannerConfig,
    metrics: Arc<Metrics>,
    /// shard -> epoch, for shards whose claim the store accepted.
    claimed: BTreeMap<u32, i64>,
    /// The shards of `claimed`, for the reconciler's task.
    owned: watch::Sender<Vec<u32>>,
    pacer: CatchupPacer,
}

impl Planner {
    /// Creates a planner identified as `owner` (shown in cluster status).
    pub fn new(
        store: Arc<dyn TickStore>,
        publisher: Arc<dyn TickPublisher>,
        leases: Arc<dyn ShardLeases>,
        owner: String,
        cfg: PlannerConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let pacer = CatchupPacer::new(cfg.catchup_rate, cfg.catchup_late_after.as_millis() as i64);
        let (owned, _) = watch::channel(Vec::new());
        Self { store, publisher, leases, owner, cfg, metrics, claimed: BTreeMap::new(), owned, pacer }
    }

    /// Plans until `cancel` fires, then resigns every shard. Store errors are logged and
    /// retried on the next pass; only a closed queue ends the loop with an error.
    ///
    /// Reconciliation runs beside planning, on the shards planning owns: a slow
    /// reconciliation pass (a large backlog without runs, a broker slow to take the
    /// republished ticks) must not delay a due tick (docs/benchmarks.md).
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), Error> {
        tracing::info!(owner = %self.owner, "planner started");
        let reconciler = Reconciler {
            store: self.store.clone(),
            publisher: self.publisher.clone(),
            metrics: self.metrics.clone(),
            cfg: self.cfg.clone(),
        };
        let stop_reconciling = cancel.child_token();
        let reconciling = reconciler.run(self.owned.subscribe(), stop_reconciling.clone());
        let planning = async {
            let result = self.plan_until(&cancel).await;
            stop_reconciling.cancel();
            result
        };
        let (result, ()) = tokio::join!(planning, reconciling);
        self.leases.resign_all().await;
        tracing::info!(owner = %self.owner, "planner stopped; shards resigned");
        result
    }

    /// The planning loop of [`Planner::run`].
    async fn plan_until(&mut self, cancel: &CancellationToken) -> Result<(), Error> {
        let mut leases = self.leases.subscribe();
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let wanted = leases.borrow_and_update().shards.clone();
            let stepped = {
                let step = async {
                    self.sync_ownership(&wanted).await?;
                    self.pass(cancel).await
                };
                tokio::pin!(step);
                // A full queue or a slow database must not delay shutdown for long: on shutdown
                // the step gets a short grace, so a plan just committed is produced now rather
                // than found by reconciliation a grace period later (its ticks are recorded as
                // published); then it is dropped.
                tokio::select! {
                    r = &mut step => r,
                    _ = cancel.cancelled() => match tokio::time::timeout(FINISH_ON_SHUTDOWN, &mut step).await {
                        Ok(r) => r,
                        Err(_) => return Ok(()),
                    },
                }
            };
            self.share_ownership();
            let more = match stepped {
                Ok(more) => more,
                // A closed queue will not come back: stop. A broker error (down, lost topic)
                // is retried: the ticks stay in the outbox until a publish succeeds.
                Err(Error::Queue(cronhook_queue::Error::Closed)) if !cancel.is_cancelled() => {
                    return Err(Error::Queue(cronhook_queue::Error::Closed));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "planning pass failed; retrying");
                    false
                }
            };
            if more {
                continue; // a full batch: there is more due work right now
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = leases.changed() => {}
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
            }
        }
    }

    /// Tells the reconciler which shards are owned now (after gains, losses and fenced
    /// writes); allocates only when that changed.
    fn share_ownership(&self) {
        self.owned.send_if_modified(|owned| {
            let same = owned.iter().eq(self.claimed.keys());
            if !same {
                *owned = self.claimed.keys().copied().collect();
            }
            !same
        });
    }

    /// Records newly gained shards at their epoch in the store (the fencing token) and
    /// forgets lost ones.
    async fn sync_ownership(&mut self, wanted: &BTreeMap<u32, i64>) -> Result<(), Error> {
        self.claimed.retain(|s, e| wanted.get(s) == Some(e));
        let mut gained = Vec::new();
        for (&shard, &epoch) in wanted {
            if self.claimed.contains_key(&shard) {
                continue;
            }
            if self.store.claim_shard(shard, epoch, &self.owner).await? {
                self.claimed.insert(shard, epoch);
                gained.push(shard);
            } else {
                tracing::warn!(shard, epoch, "shard has a newer epoch in the store; not planning it");
            }
        }
        self.metrics.shards_owned.set(self.claimed.len() as i64);
        if !gained.is_empty() {
            tracing::info!(count = gained.len(), "shards gained");
            if self.cfg.republish_unfinished_on_gain {
                let ticks = self.store.unfinished_ticks(&gained, 10_000).await?;
                if !ticks.is_empty() {
                    tracing::info!(count = ticks.len(), "publishing unfinished ticks again");
                    self.publish(&ticks).await?;
                }
            }
        }
        Ok(())
    }

    /// One planning pass; returns whether a full batch was seen (more may be due).
    async fn pass(&mut self, cancel: &CancellationToken) -> Result<bool, Error> {
        if self.claimed.is_empty() {
            return Ok(false);
        }
        let shards: Vec<u32> = self.claimed.keys().copied().collect();
        let started = Instant::now();
        let now = self.store.now().await?;
        let horizon = now.add_millis(self.cfg.lookahead.as_millis() as i64);
        let due = self.store.due_schedules(&shards, horizon, self.cfg.batch_size).await?;
        let t_due = started.elapsed();
        let full = due.len() as u32 >= self.cfg.batch_size;

        let mut plans: Vec<PlannedSchedule> = Vec::with_capacity(due.len());
        let mut sources: Vec<&Schedule> = Vec::with_capacity(due.len());
        for s in &due {
            if let Some(mut p) = self.plan_one(s, now, horizon) {
                let paced = self.pacer.pace(now, &mut p.ticks);
                self.metrics.ticks_paced.add(paced as u64);
                // What is due within the lookahead is recorded as published by the commit and
                // produced right after it. Marking it in a second statement raced the workers:
                // they had often finished the tick already, and the two row-lock orders
                // deadlocked (docs/benchmarks.md, herd).
                for t in p.ticks.iter_mut().filter(|t| t.state == TickState::Planned && t.fire_time <= horizon) {
                    t.state = TickState::Published;
                }
                plans.push(p);
                sources.push(s);
            }
        }
        if !plans.is_empty() {
            // One transaction for the whole pass, fenced per shard (not one per shard: with
            // 256 shards that was the planner's bottleneck, docs/benchmarks.md).
            let epochs: Vec<(u32, i64)> = {
                let involved: BTreeSet<u32> = plans.iter().map(|p| p.shard).collect();
                involved.into_iter().filter_map(|s| self.claimed.get(&s).map(|e| (s, *e))).collect()
            };
            let out = self.store.commit_plans(&epochs, &plans).await?;
            let t_commit = started.elapsed();
            for &(shard, epoch) in &out.fenced {
                self.fenced(shard, epoch);
            }
            let written = plans.iter().filter(|p| self.claimed.contains_key(&p.shard));
            let mut missed = 0usize;
            for t in written.flat_map(|p| &p.ticks) {
                match t.state {
                    TickState::Skipped => match t.reason.as_deref() {
                        Some(SKIPPED_PAUSED) => self.metrics.ticks_skipped_paused.inc(),
                        Some(SKIPPED_BEFORE_START) => self.metrics.ticks_skipped_before_start.inc(),
                        Some(SKIPPED_AFTER_END) => self.metrics.ticks_skipped_after_end.inc(),
                        _ => {}
                    },
                    TickState::Missed => missed += 1,
                    _ => {}
                }
            }
            self.metrics.ticks_planned.add(out.new_ticks.len() as u64);
            self.metrics.ticks_missed.add(missed as u64);
            if missed > 0 {
                tracing::warn!(missed, "ticks outside the catch-up window recorded as missed");
            }
            // Produce what was just recorded from memory (reading it back through the outbox
            // query cost a join per tick, docs/benchmarks.md); paced ticks and anything a
            // failure leaves behind go through the outbox below.
            let fresh: HashSet<TickId> = out.new_ticks.into_iter().collect();
            let mut direct = Vec::with_capacity(fresh.len());
            for (p, s) in plans.iter().zip(&sources) {
                let Some(&epoch) = self.claimed.get(&p.shard) else { continue };
                for t in p.ticks.iter().filter(|t| t.state == TickState::Published && fresh.contains(&t.id)) {
                    direct.push(tick_for(s, t, epoch));
                }
            }
            self.produce_committed(&direct).await?;
            tracing::debug!(
                schedules = due.len(),
                ticks = direct.len(),
                due_ms = t_due.as_millis() as u64,
                commit_ms = (t_commit - t_due).as_millis() as u64,
                publish_ms = (started.elapsed() - t_commit).as_millis() as u64,
                "planned"
            );
        }
        self.publish_outbox(&shards, horizon, cancel).await?;
        self.dispatch_retries(&shards, now, horizon).await?;
        Ok(full)
    }

    fn plan_one(&self, s: &Schedule, now: Timestamp, horizon: Timestamp) -> Option<PlannedSchedule> {
        match CompiledSpec::compile_seeded(&s.def.spec, s.id.seed()) {
            Ok(spec) => plan_schedule(s, &spec, now, horizon, self.cfg.max_ticks_per_schedule),
            Err(e) => {
                tracing::error!(schedule_id = %s.id, error = %e, "stored spec no longer compiles; not planning it");
                None
            }
        }
    }

    fn fenced(&mut self, shard: u32, epoch: i64) {
        tracing::warn!(shard, epoch, "write fenced: another planner owns the shard now; stepping down");
        self.metrics.fenced_writes.inc();
        self.claimed.remove(&shard);
    }

    /// Publishes planned ticks due within the lookahead (paced catch-up ticks wait here).
    async fn publish_outbox(
        &mut self,
        shards: &[u32],
        horizon: Timestamp,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        loop {
            let ticks = self.store.ticks_to_publish(shards, horizon, self.cfg.publish_batch).await?;
            if ticks.is_empty() || cancel.is_cancelled() {
                return Ok(());
            }
            let n = ticks.len();
            self.publish(&ticks).await?;
            if (n as u32) < self.cfg.publish_batch {
                return Ok(());
            }
        }
    }

    /// Publishes parked retries that fall due within the window (the same path as ticks).
    async fn dispatch_retries(&self, shards: &[u32], now: Timestamp, horizon: Timestamp) -> Result<(), Error> {
        let lost_before = now.add_millis(-(self.cfg.reconcile_grace.as_millis() as i64));
        let due = self.store.due_retries(shards, horizon, lost_before, self.cfg.publish_batch).await?;
        if due.is_empty() {
            return Ok(());
        }
        self.publisher.publish(&due).await?;
        let ids: Vec<TickId> = due.iter().map(|t| t.id).collect();
        self.store.mark_dispatched(&ids, now).await?;
        self.metrics.retries_dispatched.add(due.len() as u64);
        Ok(())
    }

    /// Produces ticks the plan commit recorded as published. When producing fails, what was
    /// not produced goes back to the outbox (the next pass publishes it); if even that write
    /// fails, reconciliation republishes them after its grace period.
    async fn produce_committed(&self, ticks: &[Tick]) -> Result<(), Error> {
        let size = self.cfg.publish_batch.max(1) as usize;
        for (i, chunk) in ticks.chunks(size).enumerate() {
            if let Err(e) = self.publisher.publish(chunk).await {
                let left: Vec<TickId> = ticks[i * size..].iter().map(|t| t.id).collect();
                if let Err(undo) = self.store.unmark_published(&left).await {
                    tracing::warn!(error = %undo, count = left.len(), "could not return unproduced ticks to the outbox; reconciliation will republish them");
                }
                return Err(e.into());
            }
            self.metrics.ticks_published.add(chunk.len() as u64);
        }
        Ok(())
    }

    async fn publish(&self, ticks: &[Tick]) -> Result<(), Error> {
        publish_marked(&*self.store, &*self.publisher, &self.metrics, ticks).await
    }
}

/// Produces `ticks`, then records them as published now (by the store's clock).
async fn publish_marked(
    store: &dyn TickStore,
    publisher: &dyn TickPublisher,
    metrics: &Metrics,
    ticks: &[Tick],
) -> Result<(), Error> {
    publisher.publish(ticks).await?;
    let ids: Vec<TickId> = ticks.iter().map(|t| t.id).collect();
    let at = store.now().await?;
    store.mark_published(&ids, at).await?;
    metrics.ticks_published.add(ticks.len() as u64);
    Ok(())
}

/// Republishes, now and then, what a lost message or a dead worker left behind: published
/// ticks without a run after the grace period, and unfinished runs whose lease ran out.
/// On its own task beside planning. Errors are logged and the next pass retries; a pass
/// cut short by shutdown leaves nothing half-done that the next one (here or on the
/// shard's next owner) does not redo: a tick produced but not marked is still published
/// without a run, a run handed out but not re-leased is still stuck.
struct Reconciler {
    store: Arc<dyn TickStore>,
    publisher: Arc<dyn TickPublisher>,
    metrics: Arc<Metrics>,
    cfg: PlannerConfig,
}

impl Reconciler {
    /// Runs a pass every `reconcile_interval` on the shards `owned` names, until `cancel`.
    async fn run(self, owned: watch::Receiver<Vec<u32>>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.reconcile_interval) => {}
            }
            let shards = owned.borrow().clone();
            if shards.is_empty() {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.pass(&shards) => if let Err(e) = r {
                    tracing::warn!(error = %e, "reconciliation pass failed; retrying at the next interval");
                },
            }
        }
    }

    async fn pass(&self, shards: &[u32]) -> Result<(), Error> {
        let now = self.store.now().await?;
        let before = now.add_millis(-(self.cfg.reconcile_grace.as_millis() as i64));
        let ticks = self.store.ticks_without_run(shards, before, self.cfg.publish_batch).await?;
        if !ticks.is_empty() {
            tracing::warn!(count = ticks.len(), "published ticks without a run after the grace period; republishing");
            publish_marked(&*self.store, &*self.publisher, &self.metrics, &ticks).await?;
            self.metrics.ticks_republished.add(ticks.len() as u64);
        }
        // Runs whose worker died and whose tick the queue may no longer hold (a broker
        // that lost messages): hand them out again; the next worker resumes them.
        let stuck = self.store.stuck_runs(shards, now, self.cfg.publish_batch).await?;
        if !stuck.is_empty() {
            tracing::warn!(count = stuck.len(), "unfinished runs whose lease ran out; handing them out again");
            self.publisher.publish(&stuck).await?;
            let ids: Vec<TickId> = stuck.iter().map(|t| t.id).collect();
            let until = now.add_millis(self.cfg.reconcile_grace.as_millis() as i64);
            self.store.extend_leases(&ids, until).await?;
            self.metrics.ticks_republished.add(stuck.len() as u64);
        }
        Ok(())
    }
}
