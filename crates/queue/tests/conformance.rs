//! Conformance suite of the tick queues. The Kafka implementation joins it with the
//! distributed mode; the in-memory one runs it now.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::HashMap;
use std::time::Duration;

use cronhook_core::{HttpMethod, HttpTarget, ProjectId, RetryPolicy, ScheduleId, Tick, TickId, Timestamp, TriggerKind};
use cronhook_queue::kafka::{KafkaConfig, KafkaTickConsumer, KafkaTickPublisher};
use cronhook_queue::{TickConsumer, TickPublisher, memory};

fn tick(s: ScheduleId, at: i64) -> Tick {
    Tick {
        id: TickId::scheduled(s, Timestamp::from_millis(at)),
        project_id: ProjectId::default_project(),
        schedule_id: s,
        schedule_version: 3,
        nominal_time: Timestamp::from_millis(at),
        fire_time: Timestamp::from_millis(at + 5),
        trigger: TriggerKind::Scheduled,
        target: HttpTarget {
            url: "http://127.0.0.1:1/x".into(),
            method: HttpMethod::Put,
            headers: vec![],
            body: vec![1, 2, 3],
            timeout_ms: 1000,
            follow_redirects: true,
        },
        retry: RetryPolicy::default(),
        shard: 2,
        epoch: 9,
        signing_secrets: Vec::new(),
        failure_notification_url: None,
        auto_pause_after_failures: 0,
        overlap: Default::default(),
    }
}

async fn recv_n(c: &mut impl TickConsumer, n: usize) -> Vec<Tick> {
    let mut out = Vec::new();
    while out.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(20), c.recv()).await.unwrap().unwrap().unwrap();
        out.push(d.tick.clone());
        d.ack();
    }
    out
}

/// Every published tick arrives intact, and per schedule in publication order.
async fn delivers_everything_in_order_per_schedule(p: impl TickPublisher, mut c: impl TickConsumer) {
    let schedules: Vec<ScheduleId> = (0..5).map(|_| ScheduleId::generate()).collect();
    let mut sent = Vec::new();
    for i in 0..40 {
        for s in &schedules {
            sent.push(tick(*s, 1_000 * i));
        }
    }
    // publish concurrently: with a small capacity, publish must wait for the consumer
    let to_send = sent.clone();
    let publisher = tokio::spawn(async move { p.publish(&to_send).await });
    let got = recv_n(&mut c, sent.len()).await;
    publisher.await.unwrap().unwrap();
    let mut per: HashMap<ScheduleId, Vec<i64>> = HashMap::new();
    for t in &got {
        per.entry(t.schedule_id).or_default().push(t.nominal_time.as_millis());
    }
    for s in &schedules {
        assert_eq!(per[s], (0..40).map(|i| 1_000 * i).collect::<Vec<_>>());
    }
    let first = got.iter().find(|t| t.id == sent[0].id).unwrap();
    assert_eq!(first, &sent[0], "a tick arrives intact");
}

/// At-least-once: publishing the same tick twice delivers it twice (workers dedup).
async fn duplicates_are_delivered_not_merged(p: impl TickPublisher, mut c: impl TickConsumer) {
    let t = tick(ScheduleId::generate(), 7_000);
    p.publish(std::slice::from_ref(&t)).await.unwrap();
    p.publish(std::slice::from_ref(&t)).await.unwrap();
    let got = recv_n(&mut c, 2).await;
    assert!(got.iter().all(|g| g.id == t.id));
}

#[tokio::test]
async fn memory_delivers_everything_in_order_per_schedule() {
    let (p, c) = memory::channel(16);
    delivers_everything_in_order_per_schedule(p, c).await;
}

#[tokio::test]
async fn memory_duplicates_are_delivered_not_merged() {
    let (p, c) = memory::channel(16);
    duplicates_are_delivered_not_merged(p, c).await;
}

#[tokio::test]
async fn memory_publish_fails_once_consumers_are_gone() {
    let (p, c) = memory::channel(4);
    drop(c);
    assert!(p.publish(&[tick(ScheduleId::generate(), 1)]).await.is_err());
}

fn kafka_cfg() -> KafkaConfig {
    KafkaConfig {
        brokers: cronhook_test_utils::server_env("CRONHOOK_TEST_KAFKA", "a Kafka-protocol broker"),
        topic: cronhook_test_utils::unique("ticks"),
        partitions: 3,
        group_id: cronhook_test_utils::unique("group"),
        // NOTES.md: Tansu's group join takes session.timeout / 2
        session_timeout: Duration::from_secs(6),
        heartbeat_interval: Duration::from_secs(1),
        commit_interval: Duration::from_millis(200),
        ..KafkaConfig::default()
    }
}

#[tokio::test]
async fn kafka_delivers_everything_in_order_per_schedule() {
    let cfg = kafka_cfg();
    let p = KafkaTickPublisher::new(cfg.clone()).await.unwrap();
    let c = KafkaTickConsumer::new(cfg).await.unwrap();
    delivers_everything_in_order_per_schedule(p, c).await;
}

#[tokio::test]
async fn kafka_duplicates_are_delivered_not_merged() {
    let cfg = kafka_cfg();
    let p = KafkaTickPublisher::new(cfg.clone()).await.unwrap();
    let c = KafkaTickConsumer::new(cfg).await.unwrap();
    duplicates_are_delivered_not_merged(p, c).await;
}

/// Offsets are committed only past acknowledged ticks: a new member of the group starts
/// at the first tick that was not acknowledged.
#[tokio::test]
async fn kafka_restart_resumes_at_the_first_unacknowledged_tick() {
    let mut cfg = kafka_cfg();
    cfg.partitions = 1;
    let p = KafkaTickPublisher::new(cfg.clone()).await.unwrap();
    let s = ScheduleId::generate();
    let sent: Vec<Tick> = (0..6).map(|i| tick(s, i * 1000)).collect();
    p.publish(&sent).await.unwrap();
    {
        let mut c = KafkaTickConsumer::new(cfg.clone()).await.unwrap();
        let mut held = Vec::new();
        for i in 0..6 {
            let d = tokio::time::timeout(Duration::from_secs(30), c.recv()).await.unwrap().unwrap().unwrap();
            assert_eq!(d.tick.nominal_time.as_millis(), i * 1000);
            if i < 2 || i == 3 { d.ack() } else { held.push(d) } // 2 and 4, 5 stay in flight
        }
        assert_eq!(c.in_flight(), 3);
        tokio::time::sleep(Duration::from_millis(600)).await; // > commit_interval
        drop(held);
    } // the member leaves (crash-like: ticks 2, 4, 5 never acknowledged)
    let mut c = KafkaTickConsumer::new(cfg).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(30), c.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.tick.nominal_time.as_millis(), 2000, "restart at the lowest unacknowledged tick");
    assert!(c.assignments() >= 1);
}
