//! Batches the worker's run-log writes: concurrent `begin_run` and `record_attempt` calls
//! are collected (up to `max_batch` items) and written with one statement per kind, so
//! Postgres round trips do not bound deliveries per second.
//!
//! How long a batch waits for company depends on who waits for it. A begin whose tick is
//! due soon (or late) holds up a send: `linger`. Attempt records, and begins of ticks due
//! later than that (a worker usually gets a tick ahead of its fire time), hold up no send:
//! they wait up to `relaxed_linger`, still in time for their fire time. Bigger batches cost
//! less per row, in the worker and in the database (docs/benchmarks.md).
//!
//! Each caller still waits for its own write to be durable before it acknowledges its
//! tick: batching changes the cost, not the guarantees. A failed batch fails every call
//! in it (the callers retry).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cronhook_core::{Attempt, ProjectId, Run, RunId, Tick, TickId, Timestamp};
use cronhook_store::{AttemptRecord, BeginRun, Error, LeaseOwner, Result, RunFilter, RunLease, RunStore};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

enum Op {
    Begin(Box<Tick>, Timestamp, RunLease, oneshot::Sender<Result<BeginRun>>),
    Record(Box<AttemptRecord>, oneshot::Sender<Result<()>>),
}

/// A write and when its batch must be written at the latest.
struct Queued {
    op: Op,
    flush_by: Instant,
}

/// A begin is written at least this long before its tick's fire time (the write's own
/// duration under load, docs/benchmarks.md).
const BEGIN_AHEAD: Duration = Duration::from_millis(50);

/// A [`RunStore`] that batches writes to an inner one; reads pass through.
pub struct BatchingRunStore {
    inner: Arc<dyn RunStore>,
    tx: mpsc::Sender<Queued>,
    linger: Duration,
    relaxed_linger: Duration,
}

impl BatchingRunStore {
    /// Starts the batching task. At most `max_batch` writes go in one statement; a batch
    /// waits for company at most `linger` when a send waits for one of its writes, and at
    /// most `relaxed_linger` otherwise. The queue holds at most `4 * max_batch` writes
    /// (callers wait beyond that).
    pub fn new(inner: Arc<dyn RunStore>, max_batch: usize, linger: Duration, relaxed_linger: Duration) -> Self {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(run(inner.clone(), rx, max_batch));
        Self { inner, tx, linger, relaxed_linger: relaxed_linger.max(linger) }
    }

    /// How long the begin of `tick` may wait: until `BEGIN_AHEAD` before its fire time,
    /// between `linger` and `relaxed_linger`.
    fn begin_wait(&self, tick: &Tick) -> Duration {
        let spare = tick.fire_time.millis_since(Timestamp::now()) - BEGIN_AHEAD.as_millis() as i64;
        Duration::from_millis(spare.max(0) as u64).clamp(self.linger, self.relaxed_linger)
    }

    async fn queue(&self, op: Op, wait: Duration) -> Result<()> {
        self.tx.send(Queued { op, flush_by: Instant::now() + wait }).await.map_err(|_| closed())
    }
}

fn closed() -> Error {
    Error::Corrupt("run-log batcher stopped".into())
}

/// Batches written at the same time. Their rows never overlap (a record follows its own
/// begin, which the caller awaited), so they can go in parallel; more than one hides the
/// round trip (measured in docs/benchmarks.md).
const BATCHES_IN_FLIGHT: usize = 4;

async fn run(inner: Arc<dyn RunStore>, mut rx: mpsc::Receiver<Queued>, max_batch: usize) {
    let slots = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let mut deadline = first.flush_by;
        let mut ops = vec![first.op];
        while ops.len() < max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(q)) => {
                    deadline = deadline.min(q.flush_by);
                    ops.push(q.op);
                }
                _ => break,
            }
        }
        let mut begins = Vec::new();
        let mut begin_replies = Vec::new();
        let mut records = Vec::new();
        let mut record_replies = Vec::new();
        let mut now = Timestamp::from_millis(0);
        for op in ops {
            match op {
                Op::Begin(t, at, lease, reply) => {
                    now = now.max(at);
                    begins.push((*t, lease));
                    begin_replies.push(reply);
                }
                Op::Record(r, reply) => {
                    records.push(*r);
                    record_replies.push(reply);
                }
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let inner = inner.clone();
        tokio::spawn(async move {
            let begin = async {
                if !begins.is_empty() {
                    let results = inner.begin_runs(&begins, now).await;
                    for (reply, r) in begin_replies.into_iter().zip(results) {
                        let _ = reply.send(r);
                    }
                }
            };
            let record = async {
                if !records.is_empty() {
                    let result = inner.record_attempts(&records).await;
                    for reply in record_replies {
                        let _ = reply.send(match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(Error::Corrupt(format!("batched write failed: {e}"))),
                        });
                    }
                }
            };
            tokio::join!(begin, record);
            drop(slot);
        });
    }
}

#[async_trait]
impl RunStore for BatchingRunStore {
    async fn begin_run(&self, tick: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun> {
        let (tx, rx) = oneshot::channel();
        self.queue(Op::Begin(Box::new(tick.clone()), now, lease, tx), self.begin_wait(tick)).await?;
        rx.await.map_err(|_| closed())?
    }

    async fn record_attempt(&self, rec: &AttemptRecord) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.queue(Op::Record(Box::new(rec.clone()), tx), self.relaxed_linger).await?;
        rx.await.map_err(|_| closed())?
    }

    async fn begin_run_exclusive(&self, tick: &Tick, now: Timestamp, lease: RunLease) -> Result<BeginRun> {
        self.inner.begin_run_exclusive(tick, now, lease).await
    }

    async fn release_runs(&self, held: &[(TickId, LeaseOwner)], now: Timestamp) -> Result<()> {
        self.inner.release_runs(held, now).await
    }

    async fn run_status(&self, project: &ProjectId, id: RunId) -> Result<cronhook_core::RunStatus> {
        self.inner.run_status(project, id).await
    }

    async fn pause_schedule(&self, project: &ProjectId, id: cronhook_core::ScheduleId, reason: &str) -> Result<()> {
        self.inner.pause_schedule(project, id, reason).await
    }

    async fn get_run(&self, project: &ProjectId, id: RunId) -> Result<(Run, Vec<Attempt>)> {
        self.inner.get_run(project, id).await
    }

    async fn list_runs(&self, project: &ProjectId, filter: &RunFilter) -> Result<Vec<Run>> {
        self.inner.list_runs(project, filter).await
    }
}
