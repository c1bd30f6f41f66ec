//! Embedded mode: this process owns every shard at one epoch.
//!
//! The epoch must be higher than any epoch stored before (the caller passes the store's
//! maximum plus one), so a second process started on the same database fences the first
//! one out instead of planning beside it.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Ownership, ShardLeases};

/// Owns shards `0..shard_count` at a fixed epoch until resigned.
pub struct LocalShardLeases {
    tx: watch::Sender<Arc<Ownership>>,
}

impl LocalShardLeases {
    /// Owns every shard at `epoch`.
    pub fn new(shard_count: u32, epoch: i64) -> Self {
        let shards = (0..shard_count).map(|s| (s, epoch)).collect();
        let (tx, _) = watch::channel(Arc::new(Ownership { shards }));
        Self { tx }
    }
}

#[async_trait]
impl ShardLeases for LocalShardLeases {
    fn subscribe(&self) -> watch::Receiver<Arc<Ownership>> {
        self.tx.subscribe()
    }

    async fn resign_all(&self) {
        self.tx.send_replace(Arc::new(Ownership::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn owns_all_then_resigns() {
        let l = LocalShardLeases::new(3, 5);
        let mut rx = l.subscribe();
        assert_eq!(rx.borrow().shards.iter().map(|(s, e)| (*s, *e)).collect::<Vec<_>>(), vec![(0, 5), (1, 5), (2, 5)]);
        l.resign_all().await;
        rx.changed().await.unwrap();
        assert!(rx.borrow().shards.is_empty());
    }
}
