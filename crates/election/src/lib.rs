//! Shard ownership: which shards this planner may plan, each with its fencing epoch.
//!
//! An owner learns its shards through a `watch` channel of [`Ownership`]. Holding a
//! shard here is necessary but not sufficient: every write for the shard also carries its
//! epoch, and the store rejects a write whose epoch is older than the stored one (DESIGN.md
//! invariant 4). A lease alone is not mutual exclusion.
//!
//! Implementations: [`local::LocalShardLeases`] (embedded mode: one process owns every
//! shard) and [`etcd::EtcdShardLeases`] (distributed mode: shards spread over planners,
//! epochs from etcd revisions). Which shards a node should hold is decided by the pure
//! [`assignment`] module.

pub mod assignment;
pub mod etcd;
pub mod local;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

/// The shards this node owns now, each with the epoch its writes must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// shard -> epoch
    pub shards: BTreeMap<u32, i64>,
}

/// A source of shard ownership.
#[async_trait]
pub trait ShardLeases: Send + Sync + 'static {
    /// Returns a receiver of the current ownership; it changes whenever shards are gained
    /// or lost (lost: the owner must stop writing for the shard at once).
    fn subscribe(&self) -> watch::Receiver<Arc<Ownership>>;

    /// Gives up every shard (graceful shutdown), so another node can take them at once.
    async fn resign_all(&self);
}
