//! EtcdShardLeases against a real etcd (the one scripts/test.sh starts).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cronhook_election::etcd::{EtcdConfig, EtcdShardLeases};
use cronhook_election::{Ownership, ShardLeases};
use cronhook_test_utils::{server_env, unique, wait_for};
use tokio::sync::watch;

fn cfg(prefix: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: server_env("CRONHOOK_TEST_ETCD", "an etcd server"),
        prefix: prefix.to_owned(),
        lease_ttl: Duration::from_secs(3),
        poll_interval: Duration::from_millis(200),
    }
}

fn shards(rx: &watch::Receiver<Arc<Ownership>>) -> BTreeSet<u32> {
    rx.borrow().shards.keys().copied().collect()
}

#[tokio::test]
async fn shards_spread_move_on_resign_and_epochs_grow() {
    let prefix = format!("/{}", unique("t"));
    let a = EtcdShardLeases::start(cfg(&prefix), "node-a".into(), 16).unwrap();
    let ra = a.subscribe();
    wait_for("node a owns all 16 shards", Duration::from_secs(10), || async {
        (shards(&ra).len() == 16).then_some(())
    })
    .await
    .unwrap();
    let first_epochs = ra.borrow().shards.clone();

    let b = EtcdShardLeases::start(cfg(&prefix), "node-b".into(), 16).unwrap();
    let rb = b.subscribe();
    wait_for("an 8/8 split", Duration::from_secs(10), || async {
        let (sa, sb) = (shards(&ra), shards(&rb));
        (sa.len() == 8 && sb.len() == 8 && sa.is_disjoint(&sb)).then_some(())
    })
    .await
    .unwrap();
    // b's shards were released by a and created again by b: higher epochs
    for (s, e) in rb.borrow().shards.iter() {
        assert!(*e > first_epochs[s], "shard {s}: epoch {e} not above {}", first_epochs[s]);
    }

    // graceful resign: a takes everything back well under one TTL (3 s)
    let t = std::time::Instant::now();
    b.resign_all().await;
    assert!(shards(&rb).is_empty());
    wait_for("node a owns all 16 again", Duration::from_secs(10), || async { (shards(&ra).len() == 16).then_some(()) })
        .await
        .unwrap();
    println!("handover after resign took {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(3), "resign handover {:?} should be under one TTL", t.elapsed());
    a.resign_all().await;
}

#[tokio::test]
async fn unreachable_etcd_means_no_shards() {
    let mut c = cfg(&format!("/{}", unique("t")));
    c.endpoints = "http://127.0.0.1:1".into();
    let a = EtcdShardLeases::start(c, "node-x".into(), 4).unwrap();
    let ra = a.subscribe();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(shards(&ra).is_empty());
    a.resign_all().await;
}
