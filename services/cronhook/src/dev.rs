//! Wiring of the server roles: `dev` (everything in one process) and `api`.

use std::sync::Arc;

use anyhow::Context;
use cronhook_api::ApiState;
use cronhook_election::local::LocalShardLeases;
use cronhook_planner::Planner;
use cronhook_queue::memory;
use cronhook_runtime::{CancellationToken, OnError, TaskTracker, serve_metrics, shutdown, spawn_task};
use cronhook_telemetry::metrics::Metrics;
use cronhook_worker::Worker;
use tokio::net::TcpListener;

use crate::cli::redact_url;
use crate::config::Config;

/// Serves `/metrics` when `metrics_listen` is set.
pub async fn start_metrics(cfg: &Config, metrics: &Arc<Metrics>, cancel: &CancellationToken) -> anyhow::Result<()> {
    if cfg.metrics_listen.is_empty() {
        return Ok(());
    }
    let listener = TcpListener::bind(&cfg.metrics_listen)
        .await
        .with_context(|| format!("metrics_listen: cannot listen on {}", cfg.metrics_listen))?;
    println!("cronhook: metrics on http://{}/metrics", listener.local_addr()?);
    let m = metrics.clone();
    let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || m.render());
    let cancel = cancel.clone();
    tokio::spawn(async move {
        if let Err(e) = serve_metrics(listener, render, cancel).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(())
}

/// Runs API, planner and worker in this process until Ctrl-C.
pub async fn run(mut cfg: Config) -> anyhow::Result<()> {
    let url = cfg.dev_database_url()?;
    let stores = cronhook_store::open(&url, cfg.shard_count)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&url)))?;
    let shard_count = stores.ticks.shard_count().await?;
    // Above every epoch ever stored: a second `dev` on the same database fences this one out.
    let epoch = stores.ticks.max_epoch().await? + 1;
    let leases = Arc::new(LocalShardLeases::new(shard_count, epoch));
    let (publisher, consumer) = memory::channel(cfg.queue.capacity);
    // The in-memory queue starts empty: every unfinished tick of the store goes in again.
    cfg.planner.republish_unfinished_on_gain = true;
    // On one's own machine, webhooks to local services are the point: loopback is allowed
    // unless the operator set an allow-list.
    if cfg.delivery.ssrf_guard && cfg.delivery.allow_networks.is_empty() {
        cfg.delivery.allow_networks = "127.0.0.0/8,::1/128".into();
    }
    let ssrf = cfg.ssrf()?;
    let seal = cfg.seal_key(Some(&cfg.dev.data_dir))?;

    let listener = TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("api.listen: cannot listen on {}", cfg.api.listen))?;
    let addr = listener.local_addr()?;
    let cancel = shutdown::on_signals();
    let tasks = TaskTracker::new();
    let metrics = Arc::new(Metrics::default());
    start_metrics(&cfg, &metrics, &cancel).await?;

    let api = ApiState::new(stores.clone(), &cfg.api, shard_count, ssrf.clone(), seal.clone());
    spawn_task(&tasks, &cancel, "api", OnError::Shutdown, cronhook_api::serve(listener, api, cancel.clone()));
    let planner = Planner::new(
        stores.ticks.clone(),
        Arc::new(publisher),
        leases,
        format!("dev-{}", std::process::id()),
        cfg.planner.clone(),
        metrics.clone(),
    );
    spawn_task(&tasks, &cancel, "planner", OnError::Shutdown, planner.run(cancel.clone()));
    tasks.spawn(cronhook_planner::run_janitor(
        stores.ticks.clone(),
        cfg.planner.retention,
        cfg.planner.retention_interval,
        cancel.clone(),
    ));
    let worker = Worker::new(stores.runs.clone(), cfg.worker.clone(), ssrf, seal, metrics)?;
    spawn_task(&tasks, &cancel, "worker", OnError::Shutdown, worker.run(consumer, cancel.clone()));
    tasks.close();

    println!("cronhook dev: gRPC API listening on http://{addr}");
    println!("cronhook dev: database {} (epoch {epoch}, {shard_count} shards)", redact_url(&url));
    if cfg.delivery.ssrf_guard {
        println!(
            "cronhook dev: SSRF guard on; allowed anyway: {} (delivery.allow_networks)",
            cfg.delivery.allow_networks
        );
    }
    println!("cronhook dev: try `cronhook schedules create --help`; Ctrl-C stops");
    tracing::info!(%addr, "cronhook dev started");

    cancel.cancelled().await;
    let deadline = cfg.worker.shutdown_grace + std::time::Duration::from_secs(5);
    if tokio::time::timeout(deadline, tasks.wait()).await.is_err() {
        tracing::warn!("some tasks did not stop in time; unfinished work resumes at the next start");
    }
    println!("cronhook dev: stopped");
    Ok(())
}

/// Runs the API role only.
pub async fn run_api(cfg: Config) -> anyhow::Result<()> {
    let url = &cfg.database.url;
    let stores = cronhook_store::open(url, cfg.shard_count)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(url)))?;
    let shard_count = stores.ticks.shard_count().await?;
    let listener = TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("api.listen: cannot listen on {}", cfg.api.listen))?;
    let addr = listener.local_addr()?;
    let cancel = shutdown::on_signals();
    println!("cronhook api: gRPC API listening on http://{addr}");
    let state = ApiState::new(stores, &cfg.api, shard_count, cfg.ssrf()?, cfg.seal_key(None)?);
    cronhook_api::serve(listener, state, cancel).await?;
    Ok(())
}
