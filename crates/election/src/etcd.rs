//! Distributed mode: shard ownership through etcd.
//!
//! Protocol (docs/architecture.md, "Shards and epochs"):
//! - each planner holds one etcd lease (TTL `lease_ttl`) and registers
//!   `<prefix>/nodes/<node id>` under it;
//! - shard `s` is owned by whoever created `<prefix>/shards/<s>` (value = node id) under its
//!   lease. Taking a shard is a transaction "create if absent", so two planners can never
//!   both take it. The key's create revision is the shard's **epoch**: etcd revisions only
//!   grow, so a later owner always has a higher epoch;
//! - every `poll_interval` a planner reads nodes and shards and applies
//!   [`crate::assignment::decide`]: take free shards up to its quota, give back the surplus;
//! - the lease is kept alive in its own task. When the last successful keep-alive is older
//!   than two thirds of the TTL the lease is in doubt: the node publishes "no shards" at
//!   once (before the lease can expire and someone else takes over), then starts a new
//!   session. etcd's `observe()`-style calls are not used: everything here is plain KV.
//! - on resign (graceful shutdown) it deletes its shard keys and revokes the lease, so
//!   others take the shards on their next poll, well under one TTL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use crate::assignment::decide;
use crate::{Ownership, ShardLeases};

/// Settings of the etcd leases (`[etcd]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd cluster, comma-separated.
    pub endpoints: String,
    /// Key prefix of this cronhook cluster.
    pub prefix: String,
    /// Lease time-to-live: a crashed planner's shards move after about this long.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often ownership is re-read and rebalanced.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: "http://127.0.0.1:2379".into(),
            prefix: "/cronhook".into(),
            lease_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl EtcdConfig {
    /// Returns the endpoints as a list.
    pub fn endpoint_list(&self) -> Vec<String> {
        self.endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).collect()
    }
}

/// Errors of the etcd leases.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// etcd failed.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// The configuration cannot work.
    #[error("etcd config: {0}")]
    Config(String),
}

/// Shard ownership through etcd; see the module docs.
pub struct EtcdShardLeases {
    tx: Arc<watch::Sender<Arc<Ownership>>>,
    resign: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl EtcdShardLeases {
    /// Starts taking part in shard ownership as `node_id` (unique per process).
    pub fn start(cfg: EtcdConfig, node_id: String, shard_count: u32) -> Result<Self, Error> {
        if cfg.lease_ttl < Duration::from_secs(2) {
            return Err(Error::Config("etcd.lease_ttl must be at least 2s".into()));
        }
        if cfg.endpoint_list().is_empty() {
            return Err(Error::Config("etcd.endpoints must not be empty".into()));
        }
        let (tx, _) = watch::channel(Arc::new(Ownership::default()));
        let tx = Arc::new(tx);
        let resign = CancellationToken::new();
        let node = Node { cfg, id: node_id, shard_count, tx: tx.clone(), resign: resign.clone() };
        let task = tokio::spawn(node.run());
        Ok(Self { tx, resign, task: Mutex::new(Some(task)) })
    }
}

#[async_trait]
impl ShardLeases for EtcdShardLeases {
    fn subscribe(&self) -> watch::Receiver<Arc<Ownership>> {
        self.tx.subscribe()
    }

    async fn resign_all(&self) {
        self.resign.cancel();
        if let Some(task) = self.task.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.tx.send_replace(Arc::new(Ownership::default()));
    }
}

struct Node {
    cfg: EtcdConfig,
    id: String,
    shard_count: u32,
    tx: Arc<watch::Sender<Arc<Ownership>>>,
    resign: CancellationToken,
}

/// One lease's lifetime.
struct Session {
    client: Client,
    lease: i64,
    /// Milliseconds since `origin` of the last successful keep-alive.
    last_ok: Arc<AtomicI64>,
    origin: Instant,
    keeper: tokio::task::JoinHandle<()>,
}

impl Node {
    fn key_node(&self) -> String {
        format!("{}/nodes/{}", self.cfg.prefix, self.id)
    }

    fn prefix_nodes(&self) -> String {
        format!("{}/nodes/", self.cfg.prefix)
    }

    fn prefix_shards(&self) -> String {
        format!("{}/shards/", self.cfg.prefix)
    }

    fn publish(&self, owned: BTreeMap<u32, i64>) {
        let new = Ownership { shards: owned };
        if **self.tx.borrow() != new {
            tracing::info!(node = %self.id, shards = new.shards.len(), "shard ownership changed");
            self.tx.send_replace(Arc::new(new));
        }
    }

    async fn run(self) {
        let mut backoff = Duration::from_millis(200);
        while !self.resign.is_cancelled() {
            match self.session().await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(node = %self.id, error = %e, "etcd session ended; owning no shards until a new one starts");
                    self.publish(BTreeMap::new());
                    tokio::select! {
                        _ = self.resign.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn connect(&self) -> Result<Session, Error> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(self.cfg.lease_ttl / 3)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let mut client = Client::connect(self.cfg.endpoint_list(), Some(opts)).await?;
        let ttl = self.cfg.lease_ttl.as_secs().max(2) as i64;
        let lease = client.lease_grant(ttl, None).await?.id();
        let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
        let origin = Instant::now();
        let last_ok = Arc::new(AtomicI64::new(0));
        let ok = last_ok.clone();
        let every = self.cfg.lease_ttl / 3;
        let node = self.id.clone();
        // The keep-alive runs in its own task; if it dies, `last_ok` stops moving and the
        // session loop steps down (NOTES.md: a silent keep-alive death must not leave the
        // process believing it still leads).
        let keeper_task = tokio::spawn(async move {
            loop {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match tokio::time::timeout(every, stream.message()).await {
                    Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                        ok.store(origin.elapsed().as_millis() as i64, Ordering::Relaxed);
                    }
                    other => {
                        tracing::warn!(node = %node, result = ?other.map(|r| r.map(|m| m.map(|m| m.ttl()))), "lease keep-alive failed");
                        break;
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        client.put(self.key_node(), self.id.clone(), Some(PutOptions::new().with_lease(lease))).await?;
        Ok(Session { client, lease, last_ok, origin, keeper: keeper_task })
    }

    async fn session(&self) -> Result<(), Error> {
        let mut s = self.connect().await?;
        tracing::info!(node = %self.id, lease = s.lease, "etcd session started");
        let doubt_after = self.cfg.lease_ttl.as_millis() as i64 * 2 / 3;
        let result = loop {
            let age = s.origin.elapsed().as_millis() as i64 - s.last_ok.load(Ordering::Relaxed);
            if age > doubt_after || s.keeper.is_finished() {
                // Lease in doubt: stop planning now, before it can expire under us.
                self.publish(BTreeMap::new());
                break Err(Error::Config(format!("lease in doubt: last keep-alive {age} ms ago")));
            }
            if let Err(e) = self.balance(&mut s).await {
                self.publish(BTreeMap::new());
                break Err(e);
            }
            tokio::select! {
                _ = self.resign.cancelled() => break Ok(()),
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
            }
        };
        s.keeper.abort();
        self.publish(BTreeMap::new());
        if self.resign.is_cancelled() {
            self.release_all(&mut s).await;
        }
        // Best effort: a revoked lease frees our keys at once instead of after the TTL.
        let _ = tokio::time::timeout(Duration::from_secs(2), s.client.lease_revoke(s.lease)).await;
        result
    }

    async fn release_all(&self, s: &mut Session) {
        let Ok(resp) = s.client.get(self.prefix_shards(), Some(GetOptions::new().with_prefix())).await else { return };
        for kv in resp.kvs() {
            if kv.value() == self.id.as_bytes() {
                let txn = Txn::new()
                    .when(vec![Compare::value(kv.key().to_vec(), CompareOp::Equal, self.id.clone())])
                    .and_then(vec![TxnOp::delete(kv.key().to_vec(), None)]);
                let _ = s.client.txn(txn).await;
            }
        }
        tracing::info!(node = %self.id, "resigned every shard");
    }

    async fn balance(&self, s: &mut Session) -> Result<(), Error> {
        let nodes = s.client.get(self.prefix_nodes(), Some(GetOptions::new().with_prefix())).await?;
        let live: BTreeSet<String> =
            nodes.kvs().iter().filter_map(|kv| kv.value_str().ok().map(str::to_owned)).collect();
        let shards = s.client.get(self.prefix_shards(), Some(GetOptions::new().with_prefix())).await?;
        let prefix = self.prefix_shards();
        let mut owners = BTreeMap::new();
        let mut mine = BTreeMap::new();
        let mut stale = Vec::new();
        for kv in shards.kvs() {
            let Some(shard) =
                kv.key_str().ok().and_then(|k| k.strip_prefix(&prefix)).and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let owner = kv.value_str().unwrap_or_default().to_owned();
            if owner == self.id {
                if kv.lease() == s.lease {
                    mine.insert(shard, kv.create_revision());
                } else {
                    stale.push(kv.key().to_vec()); // ours from an earlier session
                }
            }
            owners.insert(shard, owner);
        }
        for key in stale {
            let txn = Txn::new()
                .when(vec![Compare::value(key.clone(), CompareOp::Equal, self.id.clone())])
                .and_then(vec![TxnOp::delete(key, None)]);
            s.client.txn(txn).await?;
        }
        let moves = decide(&self.id, self.shard_count, &live, &owners);
        for shard in moves.release {
            mine.remove(&shard);
            self.publish(mine.clone()); // stop planning it before giving it away
            let key = format!("{prefix}{shard}");
            let txn = Txn::new()
                .when(vec![Compare::value(key.clone(), CompareOp::Equal, self.id.clone())])
                .and_then(vec![TxnOp::delete(key, None)]);
            s.client.txn(txn).await?;
        }
        for shard in moves.acquire {
            let key = format!("{prefix}{shard}");
            let txn = Txn::new()
                .when(vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then(vec![TxnOp::put(key, self.id.clone(), Some(PutOptions::new().with_lease(s.lease)))]);
            let resp = s.client.txn(txn).await?;
            if resp.succeeded() {
                // The put is the key's creation: its revision is the create revision.
                if let Some(h) = resp.header() {
                    mine.insert(shard, h.revision());
                }
            }
        }
        self.publish(mine);
        Ok(())
    }
}
