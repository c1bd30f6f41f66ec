//! The fault-injection suite (DESIGN.md invariants 1-5) of the distributed mode: API,
//! planners and workers as separate processes on private Postgres, etcd and Tansu servers.
//! Schedules fire every second to a sink; one fault is injected; then every nominal second
//! of the window must have exactly one delivered run, and a send may repeat only after a
//! worker crash, always with the same webhook-id. Each test prints its figures.
//!
//! These tests are slow (20-40 s each) and run one at a time (nextest test group `faults`;
//! a lock under plain `cargo test`).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cronhook_e2e::cluster::{Cluster, LEASE_TTL, SHARDS, now_ms};
use cronhook_test_utils::wait_for;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SCHEDULES: usize = 4;

/// Waits until the first ticks are delivered (the cluster works) and returns the window start.
async fn warmed_up(c: &Cluster) -> i64 {
    let start = now_ms();
    c.sink.wait_for_count(2 * SCHEDULES, Duration::from_secs(60)).await.unwrap();
    start + 2000
}

async fn sleep(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Returns the index of the planner owning most of `shards` now.
async fn owner_of(c: &Cluster, shards: &BTreeSet<u32>) -> usize {
    let owners = c.etcd_owners().await.unwrap();
    let mut best = (0, 0);
    for (i, p) in c.planners.iter().enumerate() {
        let Some(p) = p else { continue };
        let n = shards.iter().filter(|s| owners.get(s) == Some(&p.name)).count();
        if n > best.1 {
            best = (i, n);
        }
    }
    best.0
}

async fn balanced(c: &Cluster, live: usize) {
    wait_for(&format!("{SHARDS} shards over {live} planners"), Duration::from_secs(30), || async {
        let owners = c.etcd_owners().await.ok()?;
        let names: BTreeSet<&String> = owners.values().collect();
        (owners.len() == SHARDS as usize && names.len() == live).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn fault_planner_sigkill_mid_run() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(2, 2).await.unwrap();
    balanced(&c, 2).await;
    let ids = c.every_second(SCHEDULES).await.unwrap();
    let from = warmed_up(&c).await;
    sleep(2000).await;
    let victim = owner_of(&c, &c.shards_of(&ids).await.unwrap()).await;
    let killed_at = Instant::now();
    c.planners[victim].take().unwrap().kill9().await.unwrap();
    balanced(&c, 1).await;
    let takeover = killed_at.elapsed();
    sleep(3000).await;
    let to = now_ms();
    let r = c.check(&ids, from, to, Duration::from_secs(60)).await.unwrap();
    println!("[planner_sigkill] survivor owns all shards {takeover:?} after the kill (lease TTL {LEASE_TTL:?})");
    r.assert_ok("planner_sigkill", false);
    assert!(takeover < LEASE_TTL + Duration::from_secs(3), "takeover {takeover:?} within one TTL + a planning window");
}

#[tokio::test]
async fn fault_planner_sigstop_longer_than_the_lease() {
    let _g = SERIAL.lock().await;
    let c = Cluster::start(2, 2).await.unwrap();
    balanced(&c, 2).await;
    let ids = c.every_second(SCHEDULES).await.unwrap();
    let from = warmed_up(&c).await;
    let victim = owner_of(&c, &c.shards_of(&ids).await.unwrap()).await;
    let p = c.planners[victim].as_ref().unwrap();
    p.pause().await.unwrap();
    // the other planner takes every shard once the frozen one's lease expires
    balanced(&c, 1).await;
    sleep(2000).await;
    p.resume().await.unwrap();
    // back: it must notice its lease is gone (or be fenced) before writing, then rejoin
    balanced(&c, 2).await;
    sleep(3000).await;
    let to = now_ms();
    let r = c.check(&ids, from, to, Duration::from_secs(60)).await.unwrap();
    let logs = p.logs().join("\n");
    let stepped_down = logs.contains("lease in doubt") || logs.contains("fenced") || logs.contains("session ended");
    println!(
        "[planner_sigstop] frozen planner stepped down: {stepped_down}; fenced writes logged: {}",
        logs.matches("write fenced").count()
    );
    r.assert_ok("planner_sigstop", false);
    assert!(stepped_down, "the frozen planner gave up its shards after SIGCONT:\n{logs}");
}

#[tokio::test]
async fn fault_planner_joins_then_leaves_gracefully() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(1, 2).await.unwrap();
    balanced(&c, 1).await;
    let ids = c.every_second(SCHEDULES).await.unwrap();
    let from = warmed_up(&c).await;
    c.add_planner().await.unwrap();
    balanced(&c, 2).await;
    let split: Vec<usize> = {
        let owners = c.etcd_owners().await.unwrap();
        c.planners.iter().flatten().map(|p| owners.values().filter(|o| **o == p.name).count()).collect()
    };
    // cluster status: shard owners with epochs (Postgres) and the workers' group (Kafka)
    let status: serde_json::Value =
        serde_json::from_str(&c.cli(&["cluster", "status", "-o", "json"]).await.unwrap()).unwrap();
    let shards = status["shards"].as_array().unwrap();
    assert_eq!(shards.len(), SHARDS as usize);
    let owners: BTreeSet<&str> = shards.iter().filter_map(|s| s["owner"].as_str()).collect();
    assert_eq!(owners, ["planner-0", "planner-1"].into_iter().collect(), "{status}");
    assert!(shards.iter().all(|s| s["epoch"].as_i64().unwrap() > 0));
    assert_eq!(status["workers"]["members"].as_array().map(Vec::len), Some(2), "{status}");
    println!(
        "[planner_join_leave] cluster status: {}",
        c.cli(&["cluster", "status"]).await.unwrap().lines().take(4).collect::<Vec<_>>().join(" | ")
    );
    sleep(3000).await;
    let left_at = Instant::now();
    let (status, _) = c.planners[1].take().unwrap().interrupt().await.unwrap();
    assert!(status.success());
    balanced(&c, 1).await;
    let handover = left_at.elapsed();
    sleep(3000).await;
    let to = now_ms();
    let r = c.check(&ids, from, to, Duration::from_secs(60)).await.unwrap();
    println!("[planner_join_leave] split after join {split:?}; graceful handover {handover:?}");
    assert!(split.iter().all(|n| *n == SHARDS as usize / 2), "balanced within 1: {split:?}");
    r.assert_ok("planner_join_leave", false);
    assert!(handover < LEASE_TTL, "graceful handover {handover:?} is well under one TTL");
}

#[tokio::test]
async fn fault_worker_sigkill_with_deliveries_in_flight() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(1, 2).await.unwrap();
    c.sink.respond_after(Duration::from_millis(1500)); // sends in flight at any moment
    let ids = c.every_second(SCHEDULES).await.unwrap();
    let from = warmed_up(&c).await;
    sleep(2500).await;
    let before = c.sink.received().len();
    c.workers[0].take().unwrap().kill9().await.unwrap();
    sleep(12_000).await; // session timeout (6 s) + rebalance: the survivor takes over
    let to = now_ms();
    let r = c.check(&ids, from, to, Duration::from_secs(90)).await.unwrap();
    println!("[worker_sigkill] {before} sends before the kill");
    r.assert_ok("worker_sigkill", true);
}

#[tokio::test]
async fn fault_kafka_broker_restarted_empty() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(1, 2).await.unwrap();
    let ids = c.every_second(SCHEDULES).await.unwrap();
    let from = warmed_up(&c).await;
    // Workers die with sends in flight (their runs begun, never finished)...
    c.sink.respond_after(Duration::from_millis(1500));
    sleep(2000).await;
    for w in c.workers.iter_mut() {
        w.take().unwrap().kill9().await.unwrap();
    }
    c.sink.respond_after(Duration::ZERO);
    // ...and with no consumer for a while, published ticks pile up in the broker...
    sleep(3000).await;
    // ...and the broker forgets them (memory storage: topics, messages, offsets gone).
    c.kafka.kill().await.unwrap();
    sleep(1000).await;
    c.kafka.start_again().await.unwrap();
    c.add_worker().await.unwrap();
    sleep(8000).await;
    let to = now_ms();
    let r = c.check(&ids, from, to, Duration::from_secs(90)).await.unwrap();
    if !r.missing.is_empty() {
        c.dump_logs(40);
    }
    let count = |needle: &str| -> usize {
        c.planners.iter().flatten().map(|p| p.logs().iter().filter(|l| l.contains(needle)).count()).sum()
    };
    let (lost, stuck) = (count("without a run after the grace period"), count("lease ran out"));
    println!("[kafka_restart] reconciliation rounds: {lost} republished lost ticks, {stuck} handed out stuck runs");
    r.assert_ok("kafka_restart", true);
    assert!(lost > 0, "the lost ticks came back through reconciliation");
    assert!(stuck > 0, "runs begun by the dead workers were handed out again");
}

#[tokio::test]
async fn fault_postgres_restarted() {
    let _g = SERIAL.lock().await;
    let c = Cluster::start(1, 2).await.unwrap();
    let ids = c.every_second(SCHEDULES).await.unwrap();
    let from = warmed_up(&c).await;
    sleep(2000).await;
    c.pg.stop().await.unwrap();
    sleep(3000).await;
    c.pg.start_again().await.unwrap();
    sleep(5000).await;
    let to = now_ms();
    let r = c.check(&ids, from, to, Duration::from_secs(60)).await.unwrap();
    r.assert_ok("postgres_restart", true);
}

#[tokio::test]
async fn fault_etcd_restarted() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::start(2, 2).await.unwrap();
    balanced(&c, 2).await;
    let ids = c.every_second(SCHEDULES).await.unwrap();
    let from = warmed_up(&c).await;
    sleep(2000).await;
    c.etcd.kill().await.unwrap();
    sleep(3000).await;
    c.etcd.start_again().await.unwrap();
    balanced(&c, 2).await;
    sleep(3000).await;
    let to = now_ms();
    let r = c.check(&ids, from, to, Duration::from_secs(60)).await.unwrap();
    r.assert_ok("etcd_restart", false);
}
