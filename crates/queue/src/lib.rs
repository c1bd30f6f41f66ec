//! How ticks travel from planners to workers: [`TickPublisher`] and [`TickConsumer`].
//!
//! Delivery through a queue is at-least-once: a tick may arrive twice (a planner
//! re-publishing after a crash, reconciliation, a consumer rebalance), and workers
//! deduplicate on the run's unique tick id. A queue never decides anything about a tick.
//!
//! Implementations: [`memory`] (embedded mode: a bounded channel; durability comes from the
//! store's outbox, which is replayed into a fresh queue at start-up) and [`kafka`]
//! (distributed mode: a Kafka-protocol topic and a consumer group).

pub mod kafka;
pub mod memory;
pub mod offsets;

use async_trait::async_trait;
use cronhook_core::Tick;

/// Errors of a queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The queue is shut down.
    #[error("queue closed")]
    Closed,
    /// The broker rejected or lost the operation.
    #[error("queue backend: {0}")]
    Backend(String),
}

/// Result of queue operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Publishes ticks.
#[async_trait]
pub trait TickPublisher: Send + Sync + 'static {
    /// Publishes `ticks`, returning once the queue has durably accepted every one of them
    /// (for a broker: acknowledged by all in-sync replicas). Waits while the queue is full.
    async fn publish(&self, ticks: &[Tick]) -> Result<()>;
}

/// Receives ticks.
#[async_trait]
pub trait TickConsumer: Send + 'static {
    /// Waits for the next tick; `None` once the queue is closed.
    async fn recv(&mut self) -> Result<Option<Delivery>>;
}

/// Lets the queue forget a tick once its outcome is durably recorded.
pub trait Ack: Send + 'static {
    /// Acknowledges the delivery.
    fn ack(self: Box<Self>);
}

/// A received tick. Acknowledge it only after the run's outcome (or the decision to drop
/// the tick) is durably recorded; an unacknowledged tick may be delivered again.
pub struct Delivery {
    /// The tick.
    pub tick: Tick,
    ack: Box<dyn Ack>,
}

impl Delivery {
    /// Wraps a tick with its acknowledgement.
    pub fn new(tick: Tick, ack: Box<dyn Ack>) -> Self {
        Self { tick, ack }
    }

    /// Acknowledges the delivery.
    pub fn ack(self) {
        self.ack.ack();
    }
}
