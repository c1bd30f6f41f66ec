//! A distributed cronhook on one machine for fault injection: private Postgres, etcd and
//! Tansu servers (so a test may restart them), an API, planners and workers as separate
//! OS processes, a webhook sink, and the invariant checks of DESIGN.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cronhook_proto::v1 as pb;
use cronhook_test_utils::servers::{EtcdServer, PgServer, TansuServer};
use cronhook_test_utils::sink::WebhookSink;
use sqlx::Row;

use crate::{Cronhook, schedule};

/// Shards of the test cluster (few: faster to balance, and still several per planner).
pub const SHARDS: u32 = 16;
/// Lease TTL of the test planners.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

/// Everything a fault test runs.
pub struct Cluster {
    /// Private Postgres.
    pub pg: PgServer,
    /// Private etcd.
    pub etcd: EtcdServer,
    /// Private Kafka-protocol broker.
    pub kafka: TansuServer,
    /// The cronhook database.
    pub db_url: String,
    /// The receiver of every webhook.
    pub sink: WebhookSink,
    /// The API process.
    pub api: Cronhook,
    /// Planner processes (`None` once stopped).
    pub planners: Vec<Option<Cronhook>>,
    /// Worker processes (`None` once stopped).
    pub workers: Vec<Option<Cronhook>>,
    env: Vec<(String, String)>,
}

/// What the invariant check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Ticks expected in the window (schedules x seconds).
    pub expected: usize,
    /// Scheduled runs found in the window.
    pub runs: usize,
    /// (schedule, nominal ms) without a run.
    pub missing: Vec<(String, i64)>,
    /// Runs in the window not succeeded.
    pub not_succeeded: usize,
    /// Requests the sink received for ticks in the window.
    pub sends: usize,
    /// webhook-ids received more than once (only allowed after a worker crash).
    pub repeated_sends: usize,
    /// Requests whose webhook-id belongs to no run (must be 0).
    pub unknown_sends: usize,
    /// Largest first-attempt lateness in the window.
    pub max_lateness_ms: i64,
}

impl Report {
    /// Prints the figures (the suite's output) and fails on a violated invariant.
    pub fn assert_ok(&self, test: &str, allow_repeated_sends: bool) {
        println!(
            "[{test}] ticks expected {}, runs found {}, missing {}, not succeeded {}, sends {}, repeated sends {}, \
             unknown sends {}, max lateness {} ms",
            self.expected,
            self.runs,
            self.missing.len(),
            self.not_succeeded,
            self.sends,
            self.repeated_sends,
            self.unknown_sends,
            self.max_lateness_ms
        );
        assert!(self.missing.is_empty(), "[{test}] ticks without a run: {:?}", self.missing);
        assert_eq!(self.runs, self.expected, "[{test}] exactly one run per tick");
        assert_eq!(self.not_succeeded, 0, "[{test}] every run delivered");
        assert_eq!(self.unknown_sends, 0, "[{test}] every send belongs to a run");
        if !allow_repeated_sends {
            assert_eq!(self.repeated_sends, 0, "[{test}] no send repeated without a worker crash");
        }
    }
}

/// The sealing key of the test cluster (base64 of 32 fixed bytes; tests only).
const TEST_SEAL_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Cluster {
    /// Starts servers, the API, `planners` planners and `workers` workers.
    pub async fn start(planners: usize, workers: usize) -> anyhow::Result<Self> {
        Self::start_with(planners, workers, &[], "").await
    }

    /// [`Cluster::start`] with extra `CRONHOOK_*` settings for every process and extra
    /// Postgres settings (`;`-separated, see [`PgServer::start_with_conf`]).
    pub async fn start_with(
        planners: usize,
        workers: usize,
        extra: &[(&str, &str)],
        pg_conf: &str,
    ) -> anyhow::Result<Self> {
        let pg = PgServer::start_with_conf(pg_conf).await?;
        let etcd = EtcdServer::start().await?;
        let kafka = TansuServer::start().await?;
        let db_url = pg.create_database("cronhook").await?;
        let sink = WebhookSink::start().await?;
        let env: Vec<(String, String)> = [
            ("CRONHOOK_DATABASE_URL", db_url.clone()),
            ("CRONHOOK_SHARD_COUNT", SHARDS.to_string()),
            ("CRONHOOK_ETCD_ENDPOINTS", etcd.url()),
            ("CRONHOOK_ETCD_LEASE_TTL", format!("{}s", LEASE_TTL.as_secs())),
            ("CRONHOOK_ETCD_POLL_INTERVAL", "200ms".into()),
            ("CRONHOOK_KAFKA_BROKERS", kafka.brokers()),
            ("CRONHOOK_KAFKA_PARTITIONS", "6".into()),
            // NOTES.md: settings that work with Tansu's consumer groups
            ("CRONHOOK_KAFKA_SESSION_TIMEOUT", "6s".into()),
            ("CRONHOOK_KAFKA_HEARTBEAT_INTERVAL", "1s".into()),
            ("CRONHOOK_KAFKA_COMMIT_INTERVAL", "200ms".into()),
            ("CRONHOOK_KAFKA_PUBLISH_TIMEOUT", "5s".into()),
            ("CRONHOOK_PLANNER_LOOKAHEAD", "1s".into()),
            ("CRONHOOK_PLANNER_RECONCILE_INTERVAL", "1s".into()),
            ("CRONHOOK_PLANNER_RECONCILE_GRACE", "6s".into()),
            ("CRONHOOK_WORKER_SHUTDOWN_GRACE", "2s".into()),
            ("CRONHOOK_WORKER_RUN_LEASE_MARGIN", "5s".into()),
            // the sink listens on loopback, which the SSRF guard refuses by default
            ("CRONHOOK_DELIVERY_ALLOW_NETWORKS", "127.0.0.0/8".into()),
            // API and workers share the sealing key
            ("CRONHOOK_SECRETS_KEY", TEST_SEAL_KEY.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .collect();
        let api = Cronhook::spawn("api", &["api", "--listen", "127.0.0.1:0"], &env, "listening on ").await?;
        let mut c = Self { pg, etcd, kafka, db_url, sink, api, planners: Vec::new(), workers: Vec::new(), env };
        for _ in 0..planners {
            c.add_planner().await?;
        }
        for _ in 0..workers {
            c.add_worker().await?;
        }
        Ok(c)
    }

    /// Starts one more planner (`planner-<n>`).
    pub async fn add_planner(&mut self) -> anyhow::Result<()> {
        let name = format!("planner-{}", self.planners.len());
        let p = Cronhook::spawn(&name, &["planner", "--node-id", &name], &self.env, "started as ").await?;
        self.planners.push(Some(p));
        Ok(())
    }

    /// Starts one more worker (`worker-<n>`).
    pub async fn add_worker(&mut self) -> anyhow::Result<()> {
        let name = format!("worker-{}", self.workers.len());
        let w = Cronhook::spawn(&name, &["worker", "--node-id", &name], &self.env, "started as ").await?;
        self.workers.push(Some(w));
        Ok(())
    }

    /// Creates `n` schedules firing every second to the sink; returns their ids.
    pub async fn every_second(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let mut c = self.api.schedules().await?;
        let mut ids = Vec::new();
        for i in 0..n {
            let mut s = schedule(&format!("s{i}"), "* * * * * *", &self.sink.url(&format!("/s{i}")));
            if let Some(t) = s.target.as_mut() {
                t.timeout = Some(prost_types::Duration { seconds: 5, nanos: 0 });
            }
            // every tick must run, even while a slow target keeps the previous one going
            s.overlap_policy = pb::OverlapPolicy::Allow as i32;
            let r = c
                .create_schedule(pb::CreateScheduleRequest { schedule: Some(s), generate_signing_secret: false })
                .await?
                .into_inner();
            ids.push(r.schedule.context("schedule")?.id);
        }
        Ok(ids)
    }

    /// Runs `cronhook <args>` with the cluster's settings and returns its stdout.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out =
            tokio::process::Command::new(crate::cronhook_bin()?).args(args).envs(self.env.clone()).output().await?;
        anyhow::ensure!(out.status.success(), "cronhook {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Prints the last `n` log lines of every process (for failed runs).
    pub fn dump_logs(&self, n: usize) {
        let procs =
            std::iter::once(&self.api).chain(self.planners.iter().flatten()).chain(self.workers.iter().flatten());
        for p in procs {
            let logs = p.logs();
            println!("----- {} (last {n} of {} lines)", p.name, logs.len());
            for l in logs.iter().skip(logs.len().saturating_sub(n)) {
                println!("{l}");
            }
        }
    }

    /// Returns shard -> owner as recorded in Postgres (the fencing table).
    pub async fn shard_owners(&self) -> anyhow::Result<BTreeMap<u32, String>> {
        let pool = sqlx::PgPool::connect(&self.db_url).await?;
        let rows =
            sqlx::query("SELECT shard, owner FROM shard_leases WHERE owner IS NOT NULL").fetch_all(&pool).await?;
        pool.close().await;
        rows.iter().map(|r| Ok((r.try_get::<i32, _>("shard")? as u32, r.try_get("owner")?))).collect()
    }

    /// Returns the etcd owners of shards (who plans now).
    pub async fn etcd_owners(&self) -> anyhow::Result<BTreeMap<u32, String>> {
        let mut c = etcd_client::Client::connect([self.etcd.url()], None).await?;
        let resp = c.get("/cronhook/shards/", Some(etcd_client::GetOptions::new().with_prefix())).await?;
        let mut out = BTreeMap::new();
        for kv in resp.kvs() {
            let shard = kv.key_str()?.trim_start_matches("/cronhook/shards/").parse::<u32>()?;
            out.insert(shard, kv.value_str()?.to_owned());
        }
        Ok(out)
    }

    /// Returns the shards of the given schedules.
    pub async fn shards_of(&self, ids: &[String]) -> anyhow::Result<BTreeSet<u32>> {
        let pool = sqlx::PgPool::connect(&self.db_url).await?;
        let mut out = BTreeSet::new();
        for id in ids {
            let s: i32 =
                sqlx::query_scalar("SELECT shard FROM schedules WHERE id = $1::uuid").bind(id).fetch_one(&pool).await?;
            out.insert(s as u32);
        }
        pool.close().await;
        Ok(out)
    }

    /// Waits until every tick of `ids` with nominal time in `[from, to]` (whole seconds)
    /// has a succeeded run, or `timeout`; then checks the invariants.
    pub async fn check(&self, ids: &[String], from_ms: i64, to_ms: i64, timeout: Duration) -> anyhow::Result<Report> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let r = self.report(ids, from_ms, to_ms).await?;
            let done = r.missing.is_empty() && r.not_succeeded == 0;
            if done || std::time::Instant::now() >= deadline {
                if !r.missing.is_empty() {
                    self.print_ledger_of(&r.missing).await;
                }
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Prints what the ledger says of ticks that have no run (diagnostics of a failure).
    async fn print_ledger_of(&self, missing: &[(String, i64)]) {
        let Ok(pool) = sqlx::PgPool::connect(&self.db_url).await else { return };
        for (s, t) in missing.iter().take(10) {
            let row: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT state, reason FROM ticks WHERE schedule_id = $1::uuid AND nominal_time = to_timestamp($2 / 1000.0)",
            )
            .bind(s)
            .bind(*t as f64)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
            println!("ledger of missing tick {s} @ {t}: {row:?}");
        }
        pool.close().await;
    }

    async fn report(&self, ids: &[String], from_ms: i64, to_ms: i64) -> anyhow::Result<Report> {
        let pool = sqlx::PgPool::connect(&self.db_url).await?;
        let rows = sqlx::query(
            "SELECT r.schedule_id::text AS schedule_id, (EXTRACT(EPOCH FROM r.nominal_time) * 1000)::bigint AS nominal, \
             r.tick_id::text AS tick_id, r.status, \
             (SELECT a.lateness_ms FROM attempts a WHERE a.run_id = r.id ORDER BY a.number LIMIT 1) AS lateness \
             FROM runs r WHERE r.trigger = 'scheduled' AND r.schedule_id = ANY($1::uuid[]) \
             AND r.nominal_time >= to_timestamp($2 / 1000.0) AND r.nominal_time <= to_timestamp($3 / 1000.0)",
        )
        .bind(ids)
        .bind(from_ms as f64)
        .bind(to_ms as f64)
        .fetch_all(&pool)
        .await?;
        let all_ticks: Vec<String> = sqlx::query_scalar("SELECT tick_id::text FROM runs").fetch_all(&pool).await?;
        pool.close().await;
        let all_ticks: BTreeSet<String> = all_ticks.into_iter().collect();

        let mut rep = Report::default();
        let mut have: HashMap<(String, i64), usize> = HashMap::new();
        let mut window_ticks = BTreeSet::new();
        for r in &rows {
            let key = (r.try_get::<String, _>("schedule_id")?, r.try_get::<i64, _>("nominal")?);
            *have.entry(key).or_default() += 1;
            window_ticks.insert(r.try_get::<String, _>("tick_id")?);
            if r.try_get::<String, _>("status")? != "succeeded" {
                rep.not_succeeded += 1;
            }
            if let Some(l) = r.try_get::<Option<i64>, _>("lateness")? {
                rep.max_lateness_ms = rep.max_lateness_ms.max(l);
            }
        }
        rep.runs = rows.len();
        let first = (from_ms + 999) / 1000 * 1000;
        for id in ids {
            let mut t = first;
            while t <= to_ms {
                rep.expected += 1;
                if !have.contains_key(&(id.clone(), t)) {
                    rep.missing.push((id.clone(), t));
                }
                t += 1000;
            }
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in self.sink.received() {
            let Some(wid) = r.header("webhook-id") else { continue };
            if !all_ticks.contains(wid) {
                rep.unknown_sends += 1;
            }
            if window_ticks.contains(wid) {
                rep.sends += 1;
                *counts.entry(wid.to_owned()).or_default() += 1;
            }
        }
        rep.repeated_sends = counts.values().filter(|n| **n > 1).count();
        Ok(rep)
    }
}
