//! The distributed mode's queue: a Kafka-protocol topic (Apache Kafka, Redpanda, MSK...).
//!
//! - Publisher: idempotent producer, `acks=all`, key = schedule id (per-schedule order),
//!   murmur2 partitioner (Java-compatible placement), payload = versioned `TickMessage`.
//! - Consumer: a consumer group with manual commits. Offsets are committed only up to the
//!   lowest tick whose outcome is durable ([`crate::offsets`]).
//! - Topics are created by cronhook with the configured partition count, at start-up and
//!   after "unknown topic" errors; broker-side auto-creation is turned off, so a topic
//!   never appears with the broker's default partition count.
//!
//! librdkafka's own logs are routed into `tracing` (they would vanish otherwise).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cronhook_core::Tick;
use cronhook_proto::tick::{decode_tick, encode_tick};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::offsets::OffsetTracker;
use crate::{Ack, Delivery, Error, Result, TickConsumer, TickPublisher};

/// Settings of the Kafka queue (`[kafka]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// The ticks topic.
    pub topic: String,
    /// Partitions of the topic when cronhook creates it (the upper bound on useful workers).
    pub partitions: i32,
    /// Replication factor of the topic when cronhook creates it (3 in production).
    pub replication_factor: i32,
    /// Consumer group of the workers.
    pub group_id: String,
    /// Group session timeout: a dead worker's partitions move after about this long.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Group heartbeat interval.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often committable offsets are committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a publish may wait for the broker's acknowledgement.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Extra librdkafka properties (e.g. security.protocol), applied last.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic: "cronhook.ticks".into(),
            partitions: 12,
            replication_factor: 1,
            group_id: "cronhook-workers".into(),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            commit_interval: Duration::from_millis(500),
            publish_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
        }
    }
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

/// Routes librdkafka logs into tracing.
#[derive(Clone, Default)]
pub struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{msg}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{msg}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{msg}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for TracingContext {}

fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("allow.auto.create.topics", "false")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("reconnect.backoff.max.ms", "2000");
    c
}

fn apply_properties(c: &mut ClientConfig, cfg: &KafkaConfig) {
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
}

/// Creates the topic if it does not exist (with the configured partitions).
pub async fn ensure_topic(cfg: &KafkaConfig) -> Result<()> {
    let mut c = base_config(cfg);
    apply_properties(&mut c, cfg);
    let admin: AdminClient<DefaultClientContext> = c.create().map_err(backend)?;
    let topic = NewTopic::new(&cfg.topic, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics([&topic], &opts).await.map_err(backend)?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic = %cfg.topic, partitions = cfg.partitions, "created the ticks topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(Error::Backend(format!("creating topic {t}: {code}"))),
        }
    }
    Ok(())
}

/// Publishes ticks to the topic.
pub struct KafkaTickPublisher {
    producer: std::sync::RwLock<Arc<FutureProducer<TracingContext>>>,
    cfg: KafkaConfig,
}

fn producer(cfg: &KafkaConfig) -> Result<FutureProducer<TracingContext>> {
    let mut c = base_config(cfg);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", cfg.publish_timeout.as_millis().to_string());
    apply_properties(&mut c, cfg);
    c.create_with_context(TracingContext).map_err(backend)
}

impl KafkaTickPublisher {
    /// Creates the producer (and the topic if missing).
    pub async fn new(cfg: KafkaConfig) -> Result<Self> {
        let p = producer(&cfg)?;
        if let Err(e) = ensure_topic(&cfg).await {
            tracing::warn!(error = %e, "cannot create the ticks topic yet; retrying on publish");
        }
        Ok(Self { producer: std::sync::RwLock::new(Arc::new(p)), cfg })
    }

    fn current(&self) -> Result<Arc<FutureProducer<TracingContext>>> {
        self.producer.read().map(|p| p.clone()).map_err(|_| Error::Backend("producer lock poisoned".into()))
    }

    async fn send_all(
        &self,
        p: &FutureProducer<TracingContext>,
        ticks: &[Tick],
    ) -> std::result::Result<(), KafkaError> {
        let encoded: Vec<(String, Vec<u8>)> =
            ticks.iter().map(|t| (t.schedule_id.to_string(), encode_tick(t))).collect();
        let sends = encoded.iter().map(|(key, payload)| {
            let record = FutureRecord::to(&self.cfg.topic).key(key.as_str()).payload(payload.as_slice());
            p.send(record, self.cfg.publish_timeout)
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e)?;
        }
        Ok(())
    }
}

#[async_trait]
impl TickPublisher for KafkaTickPublisher {
    async fn publish(&self, ticks: &[Tick]) -> Result<()> {
        let p = self.current()?;
        match self.send_all(&p, ticks).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The broker may have lost its topics (a restart of a non-durable broker, a
                // deleted topic) and with them the idempotent producer's state: create the
                // topic again and start a fresh producer (new producer id). Duplicates this
                // may cause are deduplicated by workers on the tick id.
                tracing::warn!(error = %e, "publish failed; recreating the topic if missing and the producer");
                ensure_topic(&self.cfg).await?;
                let fresh = Arc::new(producer(&self.cfg)?);
                if let Ok(mut slot) = self.producer.write() {
                    *slot = fresh.clone();
                }
                self.send_all(&fresh, ticks).await.map_err(backend)
            }
        }
    }
}

/// Consumer-group callbacks: keeps the offset tracker in step with assignments.
pub struct GroupContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    topic: String,
    assignments: Arc<std::sync::atomic::AtomicU64>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        TracingContext.log(level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        TracingContext.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            // Commit what is durable before the partitions go to someone else.
            let offsets = self.tracker.lock().map(|mut t| t.committable()).unwrap_or_default();
            if let Some(list) = offset_list(&self.topic, &offsets) {
                let _ = consumer.commit(&list, CommitMode::Sync);
            }
            if let Ok(mut t) = self.tracker.lock() {
                t.revoke(&parts);
            }
            tracing::info!(partitions = ?parts, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            self.assignments.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(partitions = ?parts, "partitions assigned");
        }
    }
}

fn offset_list(topic: &str, offsets: &[(i32, i64)]) -> Option<TopicPartitionList> {
    if offsets.is_empty() {
        return None;
    }
    let mut list = TopicPartitionList::new();
    for (p, o) in offsets {
        if list.add_partition_offset(topic, *p, Offset::Offset(*o)).is_err() {
            return None;
        }
    }
    Some(list)
}

/// Receives ticks as a member of the workers' consumer group.
pub struct KafkaTickConsumer {
    consumer: Arc<StreamConsumer<GroupContext>>,
    topic: String,
    cfg: KafkaConfig,
    last_topic_check: std::time::Instant,
    tracker: Arc<Mutex<OffsetTracker>>,
    assignments: Arc<std::sync::atomic::AtomicU64>,
    committer: tokio::task::JoinHandle<()>,
}

struct KafkaAck {
    tracker: Arc<Mutex<OffsetTracker>>,
    partition: i32,
    offset: i64,
}

impl Ack for KafkaAck {
    fn ack(self: Box<Self>) {
        if let Ok(mut t) = self.tracker.lock() {
            t.done(self.partition, self.offset);
        }
    }
}

impl KafkaTickConsumer {
    /// Joins the group and subscribes to the topic (creating it if missing).
    pub async fn new(cfg: KafkaConfig) -> Result<Self> {
        if let Err(e) = ensure_topic(&cfg).await {
            tracing::warn!(error = %e, "cannot create the ticks topic yet; the consumer waits for it");
        }
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let assignments = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ctx = GroupContext { tracker: tracker.clone(), topic: cfg.topic.clone(), assignments: assignments.clone() };
        let mut c = base_config(&cfg);
        c.set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", cfg.session_timeout.as_millis().to_string())
            .set("heartbeat.interval.ms", cfg.heartbeat_interval.as_millis().to_string())
            .set("partition.assignment.strategy", "range");
        apply_properties(&mut c, &cfg);
        let consumer: StreamConsumer<GroupContext> = c.create_with_context(ctx).map_err(backend)?;
        consumer.subscribe(&[cfg.topic.as_str()]).map_err(backend)?;
        let consumer = Arc::new(consumer);
        let (cons, trk, topic, every) = (consumer.clone(), tracker.clone(), cfg.topic.clone(), cfg.commit_interval);
        // Commits run in their own task so a busy or blocked receiver never delays them.
        let committer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let offsets = trk.lock().map(|mut t| t.committable()).unwrap_or_default();
                if let Some(list) = offset_list(&topic, &offsets)
                    && let Err(e) = cons.commit(&list, CommitMode::Async)
                {
                    tracing::warn!(error = %e, "offset commit failed; the ticks may be delivered again");
                }
            }
        });
        Ok(Self {
            consumer,
            topic: cfg.topic.clone(),
            cfg,
            last_topic_check: std::time::Instant::now(),
            tracker,
            assignments,
            committer,
        })
    }

    /// Returns how many assignments this member has received (tests wait on it).
    pub fn assignments(&self) -> u64 {
        self.assignments.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Returns the ticks received and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.tracker.lock().map(|t| t.in_flight()).unwrap_or(0)
    }
}

impl Drop for KafkaTickConsumer {
    fn drop(&mut self) {
        self.committer.abort();
        // Final commit of what is durable; the group then rebalances our partitions away.
        let offsets = self.tracker.lock().map(|mut t| t.committable()).unwrap_or_default();
        if let Some(list) = offset_list(&self.topic, &offsets) {
            let _ = self.consumer.commit(&list, CommitMode::Sync);
        }
    }
}

#[async_trait]
impl TickConsumer for KafkaTickConsumer {
    async fn recv(&mut self) -> Result<Option<Delivery>> {
        loop {
            let msg = match self.consumer.recv().await {
                Ok(m) => m,
                Err(e) => {
                    // Broker down, topic missing after a broker restart...: librdkafka
                    // reconnects by itself; we recreate a missing topic; keep receiving.
                    tracing::warn!(error = %e, "consumer error");
                    if matches!(e, KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))
                        && self.last_topic_check.elapsed() > Duration::from_secs(5)
                    {
                        self.last_topic_check = std::time::Instant::now();
                        if let Err(e) = ensure_topic(&self.cfg).await {
                            tracing::warn!(error = %e, "cannot recreate the ticks topic");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let (partition, offset) = (msg.partition(), msg.offset());
            if let Ok(mut t) = self.tracker.lock() {
                t.received(partition, offset);
            }
            let ack = KafkaAck { tracker: self.tracker.clone(), partition, offset };
            match decode_tick(msg.payload().unwrap_or_default()) {
                Ok(tick) => return Ok(Some(Delivery::new(tick, Box::new(ack)))),
                Err(e) => {
                    // Safe to skip: the tick stays unfinished in the ledger and the
                    // planner's reconciliation publishes it again in this release's format.
                    tracing::error!(partition, offset, error = %e, "skipping an unreadable tick message");
                    Box::new(ack).ack();
                }
            }
        }
    }
}

/// A member of the workers' consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id given by the broker.
    pub id: String,
    /// The client's id.
    pub client_id: String,
    /// The client's host.
    pub host: String,
}

/// Lag of one partition of the ticks topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Partition.
    pub partition: i32,
    /// High watermark (next offset to be written).
    pub high: i64,
    /// Committed offset of the group (`None`: nothing committed).
    pub committed: Option<i64>,
    /// Messages not yet committed.
    pub lag: i64,
}

/// What the broker knows of the workers' group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// Group state (Stable, PreparingRebalance, Empty...).
    pub state: String,
    /// Current members.
    pub members: Vec<GroupMember>,
    /// Per-partition lag.
    pub partitions: Vec<PartitionLag>,
}

/// Reads the group's members and per-partition lag (for `cronhook cluster status`).
pub async fn group_status(cfg: KafkaConfig) -> Result<GroupStatus> {
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(10);
        let mut c = base_config(&cfg);
        c.set("group.id", &cfg.group_id).set("enable.auto.commit", "false");
        apply_properties(&mut c, &cfg);
        // A consumer that never subscribes does not join the group: it only reads.
        let consumer: BaseConsumer<TracingContext> = c.create_with_context(TracingContext).map_err(backend)?;
        let groups = consumer.fetch_group_list(Some(&cfg.group_id), timeout).map_err(backend)?;
        let (state, members) = groups
            .groups()
            .first()
            .map(|g| {
                let members = g
                    .members()
                    .iter()
                    .map(|m| GroupMember {
                        id: m.id().to_owned(),
                        client_id: m.client_id().to_owned(),
                        host: m.client_host().to_owned(),
                    })
                    .collect();
                (g.state().to_owned(), members)
            })
            .unwrap_or_else(|| ("Unknown".to_owned(), Vec::new()));
        let meta = consumer.fetch_metadata(Some(&cfg.topic), timeout).map_err(backend)?;
        let parts: Vec<i32> = meta.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition(&cfg.topic, *p);
        }
        let committed = consumer.committed_offsets(tpl, timeout).map_err(backend)?;
        let mut partitions = Vec::new();
        for p in parts {
            let (_, high) = consumer.fetch_watermarks(&cfg.topic, p, timeout).map_err(backend)?;
            let off = committed.find_partition(&cfg.topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
            partitions.push(PartitionLag { partition: p, high, committed: off, lag: high - off.unwrap_or(0) });
        }
        Ok(GroupStatus { state, members, partitions })
    })
    .await
    .map_err(backend)?
}
