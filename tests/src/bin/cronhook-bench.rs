//! `cronhook-bench`: loads N every-second schedules into a real cronhook (embedded, or
//! distributed with N planners and M workers as processes on private Postgres, etcd and
//! Tansu), points them at a built-in sink that records each request's lateness
//! (receive time minus `webhook-scheduled-at`), runs for a while, and reports deliveries/s,
//! lateness percentiles, missing and duplicated ticks, CPU and peak RSS per process and
//! rows written. Human table on stdout, JSON to `--json`. See docs/benchmarks.md.
//!
//! Run it through scripts/bench.sh (installs and locates the servers).

#![allow(clippy::unwrap_used)] // a benchmark tool: a panic is a failed run

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cronhook_e2e::Cronhook;
use cronhook_e2e::cluster::Cluster;
use cronhook_proto::v1 as pb;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Default)]
struct Sink {
    received: AtomicU64,
    /// (webhook-id hash, lateness ms, receive offset ms since start)
    samples: Mutex<Vec<(u64, i32, u32)>>,
}

/// The distributed mode's Postgres, sized for the write rate (`--pg-conf` replaces it; the
/// rest is the tests' server: fsync and synchronous commit off). At 10,000 deliveries/s
/// (about 4 KB of WAL each) the default `max_wal_size` of 1 GB forced a checkpoint every
/// 18 s, Postgres logging "checkpoints are occurring too frequently ... Consider increasing
/// the configuration parameter max_wal_size". A checkpoint still starts every minute, so
/// a 60 s window always has one in progress (production would use 5-15 minutes).
const BENCH_PG_CONF: &str = "max_wal_size = 8GB;checkpoint_timeout = 1min";

fn parse_args() -> anyhow::Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let k = k.strip_prefix("--").context("arguments are --key value")?.to_owned();
        let v = it.next().with_context(|| format!("--{k} needs a value"))?;
        m.insert(k, v);
    }
    Ok(m)
}

async fn start_sink(sink: Arc<Sink>, t0: Instant) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let now = cronhook_core::Timestamp::now();
                        let wid =
                            req.headers().get("webhook-id").and_then(|v| v.to_str().ok()).map(fxhash).unwrap_or(0);
                        let nominal = req
                            .headers()
                            .get("webhook-scheduled-at")
                            .and_then(|v| v.to_str().ok())
                            .and_then(cronhook_core::Timestamp::parse_rfc3339);
                        let _ = req.into_body().collect().await;
                        if let Some(n) = nominal {
                            let late = now.millis_since(n).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
                            if let Ok(mut s) = sink.samples.lock() {
                                s.push((wid, late, t0.elapsed().as_millis() as u32));
                            }
                        }
                        sink.received.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(format!("http://{addr}/bench"))
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// (CPU seconds, peak RSS MiB) of a process, from /proc.
fn proc_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0; // utime + stime, in clock ticks (USER_HZ = 100)
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

fn percentile(sorted: &[i32], p: f64) -> i32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `--phase`: `aligned` (every schedule fires at the start of each second: a herd of N per
/// second, the worst case) or `spread` (schedule i fires every second at offset i/N of it,
/// so lateness shows the scheduler's precision rather than the burst).
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Aligned,
    Spread,
}

/// Creates `n` every-second schedules that all start at `start` (loading does not compete
/// with firing: the measurement sees the steady state, not a backlog of the load phase).
async fn create_schedules(
    api: &str,
    n: usize,
    url: &str,
    overlap: pb::OverlapPolicy,
    start: cronhook_core::Timestamp,
    phase: Phase,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Channel::from_shared(api.to_owned())?.connect().await?;
    let mut tasks = Vec::new();
    let per = n.div_ceil(8);
    for w in 0..8 {
        let mut c = pb::schedule_service_client::ScheduleServiceClient::new(channel.clone());
        let (url, lo, hi) = (url.to_owned(), w * per, ((w + 1) * per).min(n));
        tasks.push(tokio::spawn(async move {
            for i in lo..hi {
                let mut s = cronhook_e2e::schedule(&format!("bench-{i}"), "* * * * * *", &url);
                s.overlap_policy = overlap as i32;
                if let Some(spec) = s.spec.as_mut() {
                    spec.start_time = Some(cronhook_proto::timestamp(start));
                    if phase == Phase::Spread {
                        let offset_ms = (i * 1000 / n) as i32;
                        spec.kind =
                            Some(pb::schedule_spec::Kind::Interval(prost_types::Duration { seconds: 1, nanos: 0 }));
                        spec.interval_offset = Some(prost_types::Duration { seconds: 0, nanos: offset_ms * 1_000_000 });
                    }
                }
                c.create_schedule(pb::CreateScheduleRequest { schedule: Some(s), generate_signing_secret: false })
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Herd: `n` one-shot schedules due at the same instant. One is created through the API
/// (validated, sealed, sharded as usual); the others are bulk copies of its row with ids
/// and shards of their own (the API takes ~0.4 ms each with 8 clients). Reports how long the herd took
/// to drain and its lateness.
#[allow(clippy::too_many_arguments)]
async fn run_herd(
    n: usize,
    idle: usize,
    analyze: bool,
    api: &str,
    db: &str,
    url: &str,
    sink: &Sink,
    procs: &[(String, u32)],
) -> anyhow::Result<serde_json::Value> {
    let at = cronhook_core::Timestamp::from_millis(
        (cronhook_core::Timestamp::now().as_millis() + 20_000 + n as i64 / 10) / 1000 * 1000,
    );
    let channel = tonic::transport::Channel::from_shared(api.to_owned())?.connect().await?;
    let mut c = pb::schedule_service_client::ScheduleServiceClient::new(channel);
    let mut s = cronhook_e2e::schedule("herd-template", "* * * * *", url);
    s.spec = Some(pb::ScheduleSpec {
        kind: Some(pb::schedule_spec::Kind::At(cronhook_proto::timestamp(at))),
        ..Default::default()
    });
    s.overlap_policy = pb::OverlapPolicy::Allow as i32;
    let template = c
        .create_schedule(pb::CreateScheduleRequest { schedule: Some(s), generate_signing_secret: false })
        .await?
        .into_inner()
        .schedule
        .context("created schedule")?
        .id;
    let pool = sqlx::PgPool::connect(db).await?;
    let (shards,): (String,) =
        sqlx::query_as("SELECT value FROM cluster_settings WHERE key = 'shard_count'").fetch_one(&pool).await?;
    let shards: u32 = shards.parse()?;
    let loaded = Instant::now();
    bulk_copy(&pool, &template, shards, "herd", 1..n, None).await?;
    eprintln!("[bench] herd of {n} loaded in {:?}; due at {}", loaded.elapsed(), at.to_rfc3339());
    // Schedules that exist but are not due during the run (next fire time in 2100).
    let loaded = Instant::now();
    bulk_copy(&pool, &template, shards, "idle", 0..idle, Some("2100-01-01T00:00:00Z")).await?;
    // Created through the API these rows would take minutes, and autovacuum would likely
    // have analyzed them before they fire; `--analyze false` keeps the statistics stale, as
    // for rows inserted just before they fire (docs/benchmarks.md).
    if analyze {
        sqlx::query("ANALYZE schedules").execute(&pool).await?;
    }
    let mut list_ms = Vec::new();
    if idle > 0 {
        eprintln!("[bench] {idle} idle schedules loaded in {:?}", loaded.elapsed());
        // ListSchedules: 20 consecutive pages of 100, each timed
        let mut token = String::new();
        for _ in 0..20 {
            let t = Instant::now();
            let page = c
                .list_schedules(pb::ListSchedulesRequest {
                    page_size: 100,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            list_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            token = page.next_page_token;
        }
        list_ms.sort_by(f64::total_cmp);
        println!(
            "  ListSchedules (page of 100, {} rows): median {:.1} ms, max {:.1} ms over 20 pages",
            idle + n,
            list_ms[list_ms.len() / 2],
            list_ms[list_ms.len() - 1]
        );
    }
    let cpu0: Vec<f64> = procs.iter().map(|(_, pid)| proc_usage(*pid).0).collect();
    let due_in = at.millis_since(cronhook_core::Timestamp::now());
    if due_in > 0 {
        tokio::time::sleep(Duration::from_millis(due_in as u64)).await;
    } else {
        eprintln!("[bench] loading ran {} ms past the herd's time", -due_in);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while (sink.received.load(Ordering::Relaxed) as usize) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // anything sent twice shows up now
    let samples = sink.samples.lock().map(|s| s.clone()).unwrap_or_default();
    let mut late: Vec<i32> = samples.iter().map(|s| s.1).collect();
    late.sort_unstable();
    let mut per_id: HashMap<u64, u32> = HashMap::new();
    for s in &samples {
        *per_id.entry(s.0).or_default() += 1;
    }
    let duplicates = per_id.values().filter(|c| **c > 1).count();
    let missing = n.saturating_sub(per_id.len());
    let drained_ms = late.last().copied().unwrap_or(0);
    let usage = usage_since(procs, &cpu0);
    println!("cronhook bench: herd of {n} one-shot schedules due at the same second (distributed)");
    println!("  drained in          {drained_ms} ms after the due time (last delivery)");
    println!(
        "  lateness ms         p50 {}  p90 {}  p99 {}  max {drained_ms}",
        percentile(&late, 0.5),
        percentile(&late, 0.9),
        percentile(&late, 0.99)
    );
    println!("  delivered {}, missing {missing}, duplicate sends {duplicates}", per_id.len());
    for (name, cpu, rss) in &usage {
        println!("  {name:<12} cpu {cpu:>6.1} s during the herd, peak RSS {rss:>6.0} MiB");
    }
    pool.close().await;
    Ok(json!({
        "mode": "herd", "schedules": n, "drained_ms": drained_ms,
        "lateness_ms": {"p50": percentile(&late, 0.5), "p90": percentile(&late, 0.9), "p99": percentile(&late, 0.99)},
        "delivered": per_id.len(), "missing": missing, "duplicate_sends": duplicates, "idle_schedules": idle,
        "list_page_ms": list_ms,
        "processes": processes_json(&usage),
    }))
}

/// Inserts copies of schedule `template` named `{prefix}-{i}` for `range`, each with an id
/// and shard of its own, and the template's next fire time unless `next_fire` is given.
async fn bulk_copy(
    pool: &sqlx::PgPool,
    template: &str,
    shards: u32,
    prefix: &str,
    range: std::ops::Range<usize>,
    next_fire: Option<&str>,
) -> anyhow::Result<()> {
    let template = sqlx::types::Uuid::parse_str(template)?;
    for chunk in range.collect::<Vec<_>>().chunks(10_000) {
        let ids: Vec<cronhook_core::ScheduleId> = chunk.iter().map(|_| cronhook_core::ScheduleId::generate()).collect();
        sqlx::query(
            "INSERT INTO schedules (project_id, id, name, definition, state, state_reason, next_fire_at, runs_left, \
             version, shard, created_at, updated_at) SELECT t.project_id, v.id, v.name, t.definition, t.state, \
             t.state_reason, COALESCE($5::timestamptz, t.next_fire_at), t.runs_left, t.version, v.shard, now(), now() \
             FROM schedules t, UNNEST($1::uuid[], $2::text[], $3::int[]) AS v(id, name, shard) WHERE t.id = $4",
        )
        .bind(ids.iter().map(|i| *i.as_uuid()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|i| format!("{prefix}-{i}")).collect::<Vec<_>>())
        .bind(ids.iter().map(|i| i.shard(shards) as i32).collect::<Vec<_>>())
        .bind(template)
        .bind(next_fire)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// CPU seconds since `cpu0` and peak RSS of each process.
fn usage_since(procs: &[(String, u32)], cpu0: &[f64]) -> Vec<(String, f64, f64)> {
    procs
        .iter()
        .zip(cpu0)
        .map(|((name, pid), c0)| {
            let (c, rss) = proc_usage(*pid);
            (name.clone(), c - c0, rss)
        })
        .collect()
}

fn processes_json(usage: &[(String, f64, f64)]) -> Vec<serde_json::Value> {
    usage
        .iter()
        .map(|(n, c, r)| json!({"name": n, "cpu_s": (c * 10.0).round() / 10.0, "peak_rss_mib": r.round()}))
        .collect()
}

/// Counts runs of the bench window in Postgres or SQLite.
async fn count_runs(db: &str, from_ms: i64, to_ms: i64) -> anyhow::Result<(i64, i64)> {
    if db.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(db).await?;
        let (runs,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM runs WHERE trigger = 'scheduled' AND status = 'succeeded' \
             AND nominal_time >= to_timestamp($1 / 1000.0) AND nominal_time < to_timestamp($2 / 1000.0 + 1)",
        )
        .bind(from_ms as f64)
        .bind(to_ms as f64)
        .fetch_one(&pool)
        .await?;
        let (rows,): (i64,) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM attempts) + (SELECT count(*) FROM ticks)",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok((runs, rows))
    } else {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{db}")).await?;
        let (runs,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM runs WHERE trigger = 'scheduled' AND status = 'succeeded' \
             AND nominal_time >= ?1 AND nominal_time < ?2 + 1000",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(&pool)
        .await?;
        let (rows,): (i64,) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM attempts) + (SELECT count(*) FROM ticks)",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok((runs, rows))
    }
}

/// Per second of the window (`from`..`to`, ms since the sink started): requests received
/// and the largest lateness among them.
fn per_second(samples: &[(u64, i32, u32)], from: u32, to: u32) -> Vec<(u32, i32)> {
    let mut out = vec![(0u32, 0i32); (to.saturating_sub(from) / 1000) as usize];
    for &(_, late, at) in samples {
        if let Some(slot) = at.checked_sub(from).and_then(|d| out.get_mut((d / 1000) as usize)) {
            slot.0 += 1;
            slot.1 = slot.1.max(late);
        }
    }
    out
}

/// `--log-dir DIR`: writes each cronhook process's log (stderr) to `DIR/<name>.log`, for
/// profiling runs (e.g. with `CRONHOOK_TEST_CHILD_LOG=info,cronhook_planner=debug` for pass timings).
fn save_logs(dir: Option<&String>, cluster: Option<&Cluster>, dev: Option<&Cronhook>) -> anyhow::Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    std::fs::create_dir_all(dir)?;
    let mut procs: Vec<&Cronhook> = dev.into_iter().collect();
    if let Some(c) = cluster {
        procs.push(&c.api);
        procs.extend(c.planners.iter().flatten());
        procs.extend(c.workers.iter().flatten());
    }
    for p in procs {
        std::fs::write(format!("{dir}/{}.log", p.name), p.logs().join("\n"))?;
    }
    eprintln!("[bench] logs written to {dir}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let get = |k: &str, d: &str| a.get(k).cloned().unwrap_or_else(|| d.to_owned());
    let mode = get("mode", "embedded");
    let n: usize = get("schedules", "1000").parse()?;
    let duration = humantime::parse_duration(&get("duration", "30s"))?;
    let warmup = humantime::parse_duration(&get("warmup", "10s"))?;
    let planners: usize = get("planners", "1").parse()?;
    // One worker process: on two cores a second one only split the batches (and doubled the
    // consumers and connection pools); docs/benchmarks.md has both.
    let workers: usize = get("workers", "1").parse()?;
    let pg_conf = if mode == "distributed" { get("pg-conf", BENCH_PG_CONF) } else { String::new() };
    let phase = match get("phase", "aligned").as_str() {
        "aligned" => Phase::Aligned,
        "spread" => Phase::Spread,
        p => bail!("--phase {p}: aligned or spread"),
    };
    let overlap = match get("overlap", "allow").as_str() {
        "allow" => pb::OverlapPolicy::Allow,
        "skip" => pb::OverlapPolicy::Skip,
        o => bail!("--overlap {o}: allow or skip"),
    };
    let t0 = Instant::now();
    let sink = Arc::new(Sink::default());
    let url = start_sink(sink.clone(), t0).await?;

    // keep the servers and processes alive for the whole run
    let dir = tempfile::tempdir()?;
    let mut cluster = None;
    let mut dev = None;
    let (api, db, procs): (String, String, Vec<(String, u32)>) = match mode.as_str() {
        "embedded" => {
            let data = dir.path().to_str().context("temp dir")?.to_owned();
            let env = [
                ("CRONHOOK_WORKER_MAX_IN_FLIGHT".to_owned(), "20000".to_owned()),
                ("CRONHOOK_QUEUE_CAPACITY".to_owned(), "50000".to_owned()),
            ];
            let ch =
                Cronhook::spawn("dev", &["dev", "--data-dir", &data, "--listen", "127.0.0.1:0"], &env, "listening on ")
                    .await?;
            let api = ch.api.clone();
            let pid = ch.pid().context("pid")?;
            dev = Some(ch);
            (api, format!("{data}/cronhook.db"), vec![("dev".into(), pid)])
        }
        "distributed" => {
            let extra = [
                ("CRONHOOK_WORKER_MAX_IN_FLIGHT", "20000"),
                ("CRONHOOK_KAFKA_PARTITIONS", "12"),
                ("CRONHOOK_PLANNER_LOOKAHEAD", "2s"),
                ("CRONHOOK_PLANNER_RECONCILE_GRACE", "30s"),
                ("CRONHOOK_WORKER_RUN_LEASE_MARGIN", "60s"),
            ];
            let c = Cluster::start_with(planners, workers, &extra, &pg_conf).await?;
            let mut procs = vec![("api".to_owned(), c.api.pid().context("pid")?)];
            for p in c.planners.iter().flatten() {
                procs.push((p.name.clone(), p.pid().context("pid")?));
            }
            for w in c.workers.iter().flatten() {
                procs.push((w.name.clone(), w.pid().context("pid")?));
            }
            let (api, db) = (c.api.api.clone(), c.db_url.clone());
            cluster = Some(c);
            (api, db, procs)
        }
        m => bail!("--mode {m}: embedded or distributed"),
    };
    if let Some(herd) = a.get("herd") {
        let c = cluster.as_ref().context("--herd needs --mode distributed")?;
        let idle: usize = a.get("idle").map(|v| v.parse()).transpose()?.unwrap_or(0);
        let analyze = a.get("analyze").is_none_or(|v| v != "false");
        let report = run_herd(herd.parse()?, idle, analyze, &api, &c.db_url, &url, &sink, &procs).await?;
        if let Some(path) = a.get("json") {
            std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        }
        save_logs(a.get("log-dir"), cluster.as_ref(), None)?;
        drop(cluster);
        return Ok(());
    }
    let created = Instant::now();
    // 8 ms per create: creates took ~6 ms before the API set TCP_NODELAY, ~0.4 ms now (a wide
    // margin: the first fire time must come after the load); whole seconds
    let first_fire = cronhook_core::Timestamp::from_millis(
        (cronhook_core::Timestamp::now().as_millis() + 3_000 + n as i64 * 8) / 1000 * 1000,
    );
    create_schedules(&api, n, &url, overlap, first_fire, phase).await?;
    eprintln!("[bench] {n} schedules created in {:?}", created.elapsed());
    let wait = first_fire.millis_since(cronhook_core::Timestamp::now());
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    } else {
        eprintln!("[bench] loading ran {} ms past the first fire time", -wait);
    }

    let start_ms = cronhook_core::Timestamp::now().as_millis() + warmup.as_millis() as i64;
    let cpu0: Vec<f64> = {
        tokio::time::sleep(warmup).await;
        procs.iter().map(|(_, pid)| proc_usage(*pid).0).collect()
    };
    let recv0 = sink.received.load(Ordering::Relaxed);
    let measure_from = t0.elapsed().as_millis() as u32;
    tokio::time::sleep(duration).await;
    let measure_to = t0.elapsed().as_millis() as u32;
    let recv1 = sink.received.load(Ordering::Relaxed);
    let end_ms = cronhook_core::Timestamp::now().as_millis() - 3_000; // ticks of the last seconds may be in flight
    let usage = usage_since(&procs, &cpu0);
    tokio::time::sleep(Duration::from_secs(5)).await; // let the window's deliveries land

    let samples = sink.samples.lock().map(|s| s.clone()).unwrap_or_default();
    let mut late: Vec<i32> = samples.iter().filter(|s| s.2 >= measure_from && s.2 < measure_to).map(|s| s.1).collect();
    late.sort_unstable();
    let timeline = per_second(&samples, measure_from, measure_to);
    let mut per_id: HashMap<u64, u32> = HashMap::new();
    for s in &samples {
        *per_id.entry(s.0).or_default() += 1;
    }
    let duplicates = per_id.values().filter(|c| **c > 1).count();
    let seconds = ((end_ms / 1000) - ((start_ms + 999) / 1000) + 1).max(0);
    let expected = seconds * n as i64;
    // An overloaded run finishes its backlog late: count until every expected run is there
    // or the count stops moving for 15 s (what is still missing then is really missing).
    let (from, to) = ((start_ms + 999) / 1000 * 1000, end_ms / 1000 * 1000);
    let (mut runs, mut rows) = count_runs(&db, from, to).await?;
    let mut last_progress = Instant::now();
    while runs < expected && last_progress.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (r, w) = count_runs(&db, from, to).await?;
        if r > runs {
            last_progress = Instant::now();
        }
        (runs, rows) = (r, w);
    }
    let rate = (recv1 - recv0) as f64 / duration.as_secs_f64();
    let report = json!({
        "mode": mode, "schedules": n, "duration_s": duration.as_secs(), "window_start_unix_ms": start_ms, "planners": planners, "workers": workers,
        "pg_conf": pg_conf,
        "overlap": get("overlap", "allow"), "phase": get("phase", "aligned"),
        "deliveries_per_s": rate.round(),
        "lateness_ms": {
            "p50": percentile(&late, 0.50), "p90": percentile(&late, 0.90), "p99": percentile(&late, 0.99),
            "p999": percentile(&late, 0.999), "max": late.last().copied().unwrap_or(0), "samples": late.len(),
        },
        "ticks_expected": expected, "runs_found": runs, "missing": (expected - runs).max(0),
        "duplicate_sends": duplicates, "rows_in_database": rows,
        "per_second": timeline.iter().map(|(n, late)| json!({"received": n, "lateness_max_ms": late})).collect::<Vec<_>>(),
        "processes": processes_json(&usage),
    });
    println!(
        "cronhook bench: {mode}, {n} every-second schedules ({} phases), {}s measured after {}s warm-up",
        get("phase", "aligned"),
        duration.as_secs(),
        warmup.as_secs()
    );
    println!("  deliveries/s        {rate:.0}");
    println!(
        "  lateness ms         p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        report["lateness_ms"]["p50"],
        report["lateness_ms"]["p90"],
        report["lateness_ms"]["p99"],
        report["lateness_ms"]["p999"],
        report["lateness_ms"]["max"]
    );
    println!(
        "  ticks expected      {expected}, runs found {runs}, missing {}, duplicate sends {duplicates}",
        (expected - runs).max(0)
    );
    println!("  rows in database    {rows}");
    if let (Some(slow), Some(late)) = (timeline.iter().map(|t| t.0).min(), timeline.iter().map(|t| t.1).max()) {
        // a stall shows as a second with few receptions, then seconds of late ones
        println!("  per second          fewest received {slow}, worst lateness max {late} ms (JSON: per_second)");
    }
    for (name, cpu, rss) in &usage {
        println!("  {name:<12} cpu {cpu:>6.1} s over the window, peak RSS {rss:>6.0} MiB");
    }
    if let Some(path) = a.get("json") {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    save_logs(a.get("log-dir"), cluster.as_ref(), dev.as_ref())?;
    drop(dev);
    drop(cluster);
    if a.get("check").is_some_and(|v| v == "true") && ((expected - runs) > 0 || duplicates > 0) {
        bail!("missing or duplicated ticks");
    }
    Ok(())
}
