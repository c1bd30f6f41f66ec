//! Wiring of the distributed roles: `planner` (Postgres + etcd + Kafka) and `worker`
//! (Kafka + Postgres), and `cluster status`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use cronhook_election::etcd::EtcdShardLeases;
use cronhook_planner::Planner;
use cronhook_queue::kafka::{KafkaTickConsumer, KafkaTickPublisher, group_status};
use cronhook_runtime::shutdown;
use cronhook_worker::Worker;
use serde_json::json;

use crate::cli::{Output, redact_url};
use crate::config::Config;
use crate::dev::start_metrics;
use cronhook_telemetry::metrics::Metrics;

async fn stores(cfg: &Config) -> anyhow::Result<cronhook_store::Stores> {
    let url = &cfg.database.url;
    cronhook_store::open(url, cfg.shard_count)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(url)))
}

/// Runs a planner until SIGINT/SIGTERM, then resigns its shards.
pub async fn run_planner(mut cfg: Config) -> anyhow::Result<()> {
    let stores = stores(&cfg).await?;
    let shard_count = stores.ticks.shard_count().await?;
    let node = cfg.node_id();
    let leases = Arc::new(EtcdShardLeases::start(cfg.etcd.clone(), node.clone(), shard_count)?);
    let publisher = KafkaTickPublisher::new(cfg.kafka.clone()).await?;
    // Kafka keeps published ticks across our restarts: no replay needed on gaining shards
    // (reconciliation still covers a broker that lost messages).
    cfg.planner.republish_unfinished_on_gain = false;
    let cancel = shutdown::on_signals();
    let metrics = Arc::new(Metrics::default());
    start_metrics(&cfg, &metrics, &cancel).await?;
    let planner =
        Planner::new(stores.ticks.clone(), Arc::new(publisher), leases, node.clone(), cfg.planner.clone(), metrics);
    tokio::spawn(cronhook_planner::run_janitor(
        stores.ticks.clone(),
        cfg.planner.retention,
        cfg.planner.retention_interval,
        cancel.clone(),
    ));
    println!("cronhook planner: started as {node} ({shard_count} shards, etcd {})", cfg.etcd.endpoints);
    planner.run(cancel).await?;
    println!("cronhook planner: stopped");
    Ok(())
}

/// Runs a worker until SIGINT/SIGTERM, then drains.
pub async fn run_worker(mut cfg: Config) -> anyhow::Result<()> {
    let stores = stores(&cfg).await?;
    let node = cfg.node_id();
    cfg.kafka.properties.entry("client.id".into()).or_insert_with(|| node.clone());
    let consumer = KafkaTickConsumer::new(cfg.kafka.clone()).await?;
    let cancel = shutdown::on_signals();
    let metrics = Arc::new(Metrics::default());
    start_metrics(&cfg, &metrics, &cancel).await?;
    let worker = Worker::new(stores.runs.clone(), cfg.worker.clone(), cfg.ssrf()?, cfg.seal_key(None)?, metrics)?;
    println!("cronhook worker: started as {node} (group {}, topic {})", cfg.kafka.group_id, cfg.kafka.topic);
    worker.run(consumer, cancel).await?;
    println!("cronhook worker: stopped");
    Ok(())
}

/// Prints shard ownership (from Postgres) and the workers' group (from Kafka).
pub async fn cluster_status(cfg: Config, output: Output) -> anyhow::Result<()> {
    let stores = stores(&cfg).await?;
    let leases = stores.ticks.shard_leases().await?;
    let group = group_status(cfg.kafka.clone()).await;
    let mut by_owner: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
    for l in &leases {
        by_owner.entry(l.owner.clone().unwrap_or_else(|| "-".into())).or_default().push((l.shard, l.epoch));
    }
    match output {
        Output::Json => {
            let shards: Vec<_> = leases
                .iter()
                .map(|l| json!({"shard": l.shard, "epoch": l.epoch, "owner": l.owner, "claimed_at": l.claimed_at.map(|t| t.to_rfc3339())}))
                .collect();
            let workers = match &group {
                Ok(g) => json!({
                    "state": g.state,
                    "members": g.members.iter().map(|m| json!({"id": m.id, "client_id": m.client_id, "host": m.host})).collect::<Vec<_>>(),
                    "partitions": g.partitions.iter().map(|p| json!({"partition": p.partition, "high": p.high, "committed": p.committed, "lag": p.lag})).collect::<Vec<_>>(),
                }),
                Err(e) => json!({"error": e.to_string()}),
            };
            println!("{}", serde_json::to_string_pretty(&json!({"shards": shards, "workers": workers}))?);
        }
        Output::Table => {
            println!("PLANNER{:33}SHARDS  EPOCHS", "");
            for (owner, shards) in &by_owner {
                let lo = shards.iter().map(|s| s.1).min().unwrap_or(0);
                let hi = shards.iter().map(|s| s.1).max().unwrap_or(0);
                println!("{owner:<40}{:<8}{lo}..{hi}", shards.len());
            }
            match group {
                Ok(g) => {
                    let lag: i64 = g.partitions.iter().map(|p| p.lag).sum();
                    println!();
                    println!(
                        "workers: group {} ({}), {} members, lag {lag}",
                        cfg.kafka.group_id,
                        g.state,
                        g.members.len()
                    );
                    for m in &g.members {
                        println!("  {} ({}, {})", m.client_id, m.host, m.id);
                    }
                    for p in &g.partitions {
                        println!(
                            "  partition {:>3}: high {:>8}  committed {:>8}  lag {}",
                            p.partition,
                            p.high,
                            p.committed.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                            p.lag
                        );
                    }
                }
                Err(e) => println!("\nworkers: cannot read the group from Kafka: {e}"),
            }
        }
    }
    Ok(())
}
