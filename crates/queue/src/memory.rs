//! The embedded mode's queue: a bounded in-process channel.
//!
//! Nothing here is durable, by design: the store's outbox is. Every tick is recorded in
//! the store before it is published, and at start-up the planner re-publishes every tick
//! whose run has not finished, so a crash loses nothing that was in this channel.

use std::sync::Arc;

use async_trait::async_trait;
use cronhook_core::Tick;
use tokio::sync::{Mutex, mpsc};

use crate::{Ack, Delivery, Error, Result, TickConsumer, TickPublisher};

/// Returns a connected publisher and consumer holding at most `capacity` ticks.
pub fn channel(capacity: usize) -> (MemoryTickPublisher, MemoryTickConsumer) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (MemoryTickPublisher { tx }, MemoryTickConsumer { rx: Arc::new(Mutex::new(rx)) })
}

/// Publishing end of the in-memory queue.
#[derive(Clone)]
pub struct MemoryTickPublisher {
    tx: mpsc::Sender<Tick>,
}

/// Consuming end of the in-memory queue; clones share the queue (competing consumers).
#[derive(Clone)]
pub struct MemoryTickConsumer {
    rx: Arc<Mutex<mpsc::Receiver<Tick>>>,
}

struct NoopAck;

impl Ack for NoopAck {
    fn ack(self: Box<Self>) {}
}

#[async_trait]
impl TickPublisher for MemoryTickPublisher {
    async fn publish(&self, ticks: &[Tick]) -> Result<()> {
        for t in ticks {
            self.tx.send(t.clone()).await.map_err(|_| Error::Closed)?;
        }
        Ok(())
    }
}

#[async_trait]
impl TickConsumer for MemoryTickConsumer {
    async fn recv(&mut self) -> Result<Option<Delivery>> {
        let tick = self.rx.lock().await.recv().await;
        Ok(tick.map(|t| Delivery::new(t, Box::new(NoopAck))))
    }
}
