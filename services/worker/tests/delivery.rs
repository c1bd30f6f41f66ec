//! The delivery engine end to end inside one worker: a real worker, a real SQLite store,
//! and a scripted HTTP target on loopback that answers with any status, header, delay or
//! trickle. Each test asserts what the run and its attempts recorded.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::sync::Arc;
use std::time::Duration;

use cronhook_core::{
    Attempt, Header, HttpMethod, HttpTarget, NewSchedule, OverlapPolicy, ProjectId, RetryPolicy, Run, RunStatus,
    Schedule, ScheduleId, ScheduleSpec, ScheduleState, SpecKind, Tick, TickId, Timestamp, TriggerKind,
};
use cronhook_delivery::ssrf::{Lookup, SsrfConfig, SsrfPolicy};
use cronhook_queue::{TickPublisher, memory};
use cronhook_store::{RunFilter, Stores};
use cronhook_telemetry::metrics::Metrics;
use cronhook_test_utils::target::{Reply, ReplyBody, ScriptedTarget};
use cronhook_test_utils::wait_for;
use cronhook_worker::{SenderConfig, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

struct Env {
    stores: Stores,
    schedule: Schedule,
    _dir: tempfile::TempDir,
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff_ms: 100,
        max_backoff_ms: 2_000,
        multiplier: 2.0,
        max_retry_duration_ms: None,
    }
}

fn target(url: String) -> HttpTarget {
    HttpTarget {
        url,
        method: HttpMethod::Post,
        headers: vec![Header { name: "Content-Type".into(), value: "application/json".into(), secret: false }],
        body: b"{}".to_vec(),
        timeout_ms: 2_000,
        follow_redirects: false,
    }
}

async fn env(target: HttpTarget, retry: RetryPolicy) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let stores = cronhook_store::open(dir.path().join("w.db").to_str().unwrap(), 4).await.unwrap();
    let id = ScheduleId::generate();
    let schedule = Schedule {
        id,
        project_id: ProjectId::default_project(),
        def: NewSchedule {
            name: "t".into(),
            description: String::new(),
            spec: ScheduleSpec {
                kind: SpecKind::Interval { every_ms: 3_600_000, offset_ms: 0 },
                time_zone: "UTC".into(),
                start: None,
                end: None,
                remaining_runs: None,
            },
            target,
            retry,
            overlap: OverlapPolicy::Skip,
            catchup_window_ms: 60_000,
            jitter_ms: 0,
            labels: Default::default(),
            failure_notification_url: None,
            auto_pause_after_failures: 0,
            signing_secrets: Vec::new(),
        },
        state: ScheduleState::Active,
        state_reason: String::new(),
        next_fire_at: Some(Timestamp::from_millis(4_000_000_000_000)),
        version: 1,
        shard: id.shard(4),
        runs_left: None,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    };
    stores.schedules.insert_schedule(&schedule).await.unwrap();
    Env { stores, schedule, _dir: dir }
}

/// Sender settings of the tests: the SSRF guard on, loopback allowed (the target lives there).
fn sender() -> SenderConfig {
    let policy =
        SsrfPolicy::from_config(&SsrfConfig { allow_networks: "127.0.0.1/32".into(), ..SsrfConfig::default() });
    SenderConfig { ssrf: Arc::new(policy.unwrap()), ..SenderConfig::default() }
}

/// Delivers one tick of the env's schedule through a real worker; returns its run.
async fn deliver(env: &Env, cfg: WorkerConfig) -> (Run, Vec<Attempt>) {
    deliver_with(env, cfg, sender()).await
}

async fn deliver_with(env: &Env, cfg: WorkerConfig, sender: SenderConfig) -> (Run, Vec<Attempt>) {
    deliver_many(env, cfg, sender, 1).await.remove(0)
}

/// The tick of `env`'s schedule at `nominal`, due at `fire`, recorded in the ledger as the
/// planner records every tick before publishing it (runs are begun for recorded ticks only).
async fn tick_of(env: &Env, nominal: Timestamp, fire: Timestamp) -> Tick {
    let s = &env.schedule;
    let t = Tick {
        id: TickId::scheduled(s.id, nominal),
        project_id: s.project_id.clone(),
        schedule_id: s.id,
        schedule_version: s.version,
        nominal_time: nominal,
        fire_time: fire,
        trigger: TriggerKind::Scheduled,
        target: s.def.target.clone(),
        retry: s.def.retry.clone(),
        shard: s.shard,
        epoch: 1,
        signing_secrets: s.def.signing_secrets.clone(),
        failure_notification_url: s.def.failure_notification_url.clone(),
        auto_pause_after_failures: s.def.auto_pause_after_failures,
        overlap: s.def.overlap,
    };
    env.stores.ticks.insert_tick(&t).await.unwrap();
    t
}

/// Delivers `n` ticks (one second apart in nominal time) and returns their runs.
async fn deliver_many(env: &Env, cfg: WorkerConfig, sender: SenderConfig, n: usize) -> Vec<(Run, Vec<Attempt>)> {
    let now = Timestamp::now();
    let s = &env.schedule;
    let mut ticks = Vec::new();
    for i in 0..n as i64 {
        ticks.push(tick_of(env, now.add_millis(-i * 1000), now).await);
    }
    let (publisher, consumer) = memory::channel(n.max(16));
    let cancel = CancellationToken::new();
    let worker = Worker::with_sender(env.stores.runs.clone(), sender, cfg, Arc::new(Metrics::default())).unwrap();
    let task = tokio::spawn(worker.run(consumer, cancel.clone()));
    publisher.publish(&ticks).await.unwrap();
    let runs = env.stores.runs.clone();
    let project = s.project_id.clone();
    let ours: std::collections::HashSet<TickId> = ticks.iter().map(|t| t.id).collect();
    let done = wait_for("final runs", Duration::from_secs(60), || {
        let (runs, project, ours) = (runs.clone(), project.clone(), ours.clone());
        async move {
            let list = runs.list_runs(&project, &RunFilter { limit: 1000, ..Default::default() }).await.ok()?;
            let finals: Vec<Run> =
                list.into_iter().filter(|r| r.status.is_final() && ours.contains(&r.tick_id)).collect();
            (finals.len() >= n).then_some(finals)
        }
    })
    .await
    .unwrap();
    cancel.cancel();
    let _ = task.await;
    let mut out = Vec::new();
    for r in done {
        out.push(env.stores.runs.get_run(&project, r.id).await.unwrap());
    }
    out
}

fn cfg() -> WorkerConfig {
    WorkerConfig { write_linger: Duration::from_millis(1), ..WorkerConfig::default() }
}

fn gap_ms(a: &Attempt, b: &Attempt) -> i64 {
    b.started_at.millis_since(a.started_at) - a.duration_ms
}

#[tokio::test]
async fn retryable_statuses_are_retried_until_success() {
    let t = ScriptedTarget::start(vec![Reply::status(503), Reply::status(429), Reply::status(500)], Reply::status(200))
        .await
        .unwrap();
    let e = env(target(t.url("/x")), fast_retries(5)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count, run.http_status), (RunStatus::Succeeded, 4, Some(200)));
    let statuses: Vec<Option<u16>> = attempts.iter().map(|a| a.response_status).collect();
    assert_eq!(statuses, [Some(503), Some(429), Some(500), Some(200)]);
    assert_eq!(attempts[0].error_code.as_deref(), Some("http_status"));
    assert!(attempts[3].error_code.is_none());
    // backoff 100, 200, 400 ms with at most 20 % jitter taken off
    for (i, base) in [(0, 100), (1, 200), (2, 400)] {
        let g = gap_ms(&attempts[i], &attempts[i + 1]);
        assert!(g >= base * 8 / 10 - 5 && g < base + 300, "wait {i}: {g} ms for a base of {base} ms");
    }
    assert_eq!(t.seen().len(), 4);
    let wid: std::collections::BTreeSet<String> =
        t.seen().iter().map(|s| s.header("webhook-id").unwrap().to_owned()).collect();
    assert_eq!(wid.len(), 1, "the same webhook-id on every retry");
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let t = ScriptedTarget::start(vec![], Reply::status(502)).await.unwrap();
    let e = env(target(t.url("/x")), fast_retries(3)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 3));
    assert_eq!(attempts.len(), 3);
    assert_eq!(run.last_error.as_deref(), Some("http_status: HTTP 502"));
}

#[tokio::test]
async fn other_4xx_and_redirects_fail_without_retry() {
    for status in [400, 404, 422, 302] {
        let reply = Reply::status(status).header("location", "/elsewhere");
        let t = ScriptedTarget::start(vec![reply], Reply::status(200)).await.unwrap();
        let e = env(target(t.url("/x")), fast_retries(5)).await;
        let (run, attempts) = deliver(&e, cfg()).await;
        assert_eq!((run.status, run.attempt_count, run.http_status), (RunStatus::Failed, 1, Some(status)), "{status}");
        assert_eq!(attempts[0].error_code.as_deref(), Some("http_status"));
    }
}

#[tokio::test]
async fn redirects_are_followed_when_allowed() {
    let t =
        ScriptedTarget::start(vec![Reply::status(307).header("location", "/moved")], Reply::status(200)).await.unwrap();
    let mut tg = target(t.url("/x"));
    tg.follow_redirects = true;
    let e = env(tg, fast_retries(5)).await;
    let (run, _) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count, run.http_status), (RunStatus::Succeeded, 1, Some(200)));
    let paths: Vec<String> = t.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/x", "/moved"]);
}

#[tokio::test]
async fn gone_fails_and_pauses_the_schedule() {
    let t = ScriptedTarget::start(vec![Reply::status(410)], Reply::status(200)).await.unwrap();
    let e = env(target(t.url("/x")), fast_retries(5)).await;
    let (run, _) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 1));
    let s = e.stores.schedules.get_schedule(&e.schedule.project_id, e.schedule.id).await.unwrap();
    assert_eq!(s.state, ScheduleState::Paused);
    assert!(s.state_reason.contains("410"), "{}", s.state_reason);
}

#[tokio::test]
async fn the_no_retry_header_stops_retries() {
    let t = ScriptedTarget::start(vec![Reply::status(503).header("cronhook-no-retry", "true")], Reply::status(200))
        .await
        .unwrap();
    let e = env(target(t.url("/x")), fast_retries(5)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 1));
    assert!(attempts[0].error_message.as_deref().unwrap().contains("cronhook-no-retry"));
}

#[tokio::test]
async fn retry_after_is_honoured_in_seconds_and_as_a_date() {
    let date = (chrono::Utc::now() + chrono::Duration::seconds(4)).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let t = ScriptedTarget::start(
        vec![Reply::status(429).header("retry-after", "1"), Reply::status(503).header("retry-after", &date)],
        Reply::status(200),
    )
    .await
    .unwrap();
    let mut retry = fast_retries(5);
    retry.max_backoff_ms = 10_000;
    let e = env(target(t.url("/x")), retry).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Succeeded, 3));
    let g1 = gap_ms(&attempts[0], &attempts[1]);
    let g2 = gap_ms(&attempts[1], &attempts[2]);
    assert!((950..2_000).contains(&g1), "Retry-After: 1 waited {g1} ms");
    // the date is 4 s after the test started (whole seconds) and ~1 s has passed
    assert!((1_500..4_000).contains(&g2), "Retry-After as a date waited {g2} ms");
}

#[tokio::test]
async fn a_huge_response_is_capped_and_memory_stays_flat() {
    let t = ScriptedTarget::start(vec![], Reply::status(200).body(ReplyBody::Huge(100 * 1024 * 1024))).await.unwrap();
    let mut tg = target(t.url("/x"));
    tg.timeout_ms = 60_000;
    let e = env(tg, fast_retries(1)).await;
    let before = rss_kib();
    let (run, attempts) = deliver(&e, cfg()).await;
    let grew = rss_kib().saturating_sub(before);
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(attempts[0].response_body.len(), 64 * 1024);
    assert!(attempts[0].response_body_truncated);
    println!("RSS grew by {grew} KiB while a 100 MiB response was received");
    assert!(grew < 40 * 1024, "RSS grew by {grew} KiB: the body was buffered");
}

#[tokio::test]
async fn never_ending_and_trickling_responses_hit_the_total_timeout() {
    for body in [ReplyBody::Endless, ReplyBody::Trickle(Duration::from_millis(200), 50)] {
        let t = ScriptedTarget::start(vec![], Reply::status(200).body(body.clone())).await.unwrap();
        let mut tg = target(t.url("/x"));
        tg.timeout_ms = 1_000;
        let e = env(tg, fast_retries(2)).await;
        let (run, attempts) = deliver(&e, cfg()).await;
        assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 2), "{body:?}");
        for a in &attempts {
            assert_eq!(a.error_code.as_deref(), Some("timeout"), "{body:?}: {:?}", a.error_message);
            assert!((900..2_500).contains(&a.duration_ms), "{body:?}: cut after {} ms", a.duration_ms);
        }
    }
}

#[tokio::test]
async fn connection_errors_are_retried_with_their_code() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = env(target(format!("http://127.0.0.1:{port}/x")), fast_retries(2)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count, run.http_status), (RunStatus::Failed, 2, None));
    assert!(attempts.iter().all(|a| a.error_code.as_deref() == Some("connect")));
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A resolver that answers from a script and counts its lookups.
struct ScriptedLookup {
    answers: std::sync::Mutex<std::collections::VecDeque<Vec<std::net::IpAddr>>>,
    port: u16,
    calls: std::sync::atomic::AtomicUsize,
}

impl Lookup for ScriptedLookup {
    fn lookup(&self, _host: String) -> reqwest::dns::Resolving {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ips = self.answers.lock().unwrap().pop_front().unwrap_or_default();
        let port = self.port;
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                ips.into_iter().map(|ip| std::net::SocketAddr::new(ip, port)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn scripted(port: u16, answers: &[&[&str]]) -> Arc<ScriptedLookup> {
    Arc::new(ScriptedLookup {
        answers: std::sync::Mutex::new(
            answers.iter().map(|a| a.iter().map(|s| s.parse().unwrap()).collect()).collect(),
        ),
        port,
        calls: Default::default(),
    })
}

#[tokio::test]
async fn blocked_destinations_are_refused_and_not_retried() {
    let t = ScriptedTarget::start(vec![], Reply::status(200)).await.unwrap();
    // the guard with no allow-list: loopback is blocked, literal or not
    let strict = SenderConfig { ssrf: Arc::new(SsrfPolicy::from_config(&SsrfConfig::default()).unwrap()), ..sender() };
    let e = env(target(t.url("/x")), fast_retries(5)).await;
    let (run, attempts) = deliver_with(&e, cfg(), strict).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 1));
    assert_eq!(attempts[0].error_code.as_deref(), Some("blocked_address"));
    assert!(attempts[0].error_message.as_deref().unwrap().contains("loopback"), "{:?}", attempts[0].error_message);
    assert!(t.seen().is_empty(), "nothing reached the target");
}

#[tokio::test]
async fn a_name_resolving_to_any_blocked_address_is_refused() {
    let t = ScriptedTarget::start(vec![], Reply::status(200)).await.unwrap();
    let lookup = scripted(t.port(), &[&["127.0.0.1", "10.0.0.7"]]);
    let e = env(target(format!("http://hooks.example.test:{}/x", t.port())), fast_retries(3)).await;
    let (run, attempts) = deliver_with(&e, cfg(), SenderConfig { lookup: lookup.clone(), ..sender() }).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 1));
    assert_eq!(attempts[0].error_code.as_deref(), Some("blocked_address"));
    assert!(attempts[0].error_message.as_deref().unwrap().contains("10.0.0.7"));
    assert!(t.seen().is_empty());
}

#[tokio::test]
async fn dns_rebinding_cannot_switch_the_checked_address() {
    // First answer: an allowed address (the target). Any later lookup would answer a
    // private one: it must never happen within the attempt, and the request must go to
    // the address that was checked.
    let t = ScriptedTarget::start(vec![], Reply::status(200)).await.unwrap();
    let lookup = scripted(t.port(), &[&["127.0.0.1"], &["10.0.0.7"], &["10.0.0.7"]]);
    let e = env(target(format!("http://rebind.example.test:{}/x", t.port())), fast_retries(1)).await;
    let (run, _) = deliver_with(&e, cfg(), SenderConfig { lookup: lookup.clone(), ..sender() }).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(t.seen().len(), 1, "the request reached the checked address");
    assert_eq!(
        lookup.calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one lookup per connection, none after the check"
    );
}

#[tokio::test]
async fn a_redirect_to_a_blocked_address_is_refused() {
    let t = ScriptedTarget::start(
        vec![Reply::status(302).header("location", "http://169.254.169.254/latest/meta-data/")],
        Reply::status(200),
    )
    .await
    .unwrap();
    let mut tg = target(t.url("/x"));
    tg.follow_redirects = true;
    let e = env(tg, fast_retries(3)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 1));
    assert_eq!(attempts[0].error_code.as_deref(), Some("blocked_address"), "{:?}", attempts[0].error_message);
}

#[tokio::test]
async fn one_host_gets_at_most_the_per_host_limit_at_once() {
    let t = ScriptedTarget::start(vec![], Reply::status(200).delay(Duration::from_millis(300))).await.unwrap();
    let mut e = env(target(t.url("/x")), fast_retries(1)).await;
    e.schedule.def.overlap = OverlapPolicy::Allow; // the ticks run side by side
    let runs = deliver_many(&e, cfg(), SenderConfig { per_host_limit: 3, ..sender() }, 12).await;
    assert!(runs.iter().all(|(r, _)| r.status == RunStatus::Succeeded));
    println!("most requests in flight at the target: {}", t.max_in_flight());
    assert!(t.max_in_flight() <= 3, "limit 3, saw {}", t.max_in_flight());
    assert!(t.max_in_flight() >= 2, "deliveries still run concurrently");
}

/// Verifies a Standard Webhooks signature with an independent implementation (Python's
/// standard library), as a receiver would.
fn python_verifies(secret: &str, msg_id: &str, ts: &str, body: &[u8], signature: &str) -> bool {
    use base64::Engine as _;
    let script = r#"
import base64, hashlib, hmac, sys
secret, msg_id, ts, body, header = sys.argv[1:6]
key = base64.b64decode(secret.split("_", 1)[1])
expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + base64.b64decode(body), hashlib.sha256).digest()).decode()
ok = any(hmac.compare_digest(part.split(",", 1)[1], expected) for part in header.split(" ") if part.startswith("v1,"))
print("ok" if ok else "bad")
"#;
    let body64 = base64::engine::general_purpose::STANDARD.encode(body);
    let out = std::process::Command::new("python3")
        .args(["-c", script, secret, msg_id, ts, &body64, signature])
        .output()
        .expect("python3 (the test machine has it)");
    String::from_utf8_lossy(&out.stdout).trim() == "ok"
}

fn seal_key() -> cronhook_delivery::seal::SealKey {
    cronhook_delivery::seal::SealKey::from_base64(&cronhook_delivery::seal::SealKey::generate_base64()).unwrap()
}

#[tokio::test]
async fn requests_are_signed_and_secret_headers_opened_only_to_send() {
    use cronhook_core::SigningSecret;
    use cronhook_delivery::signing::generate_secret;
    let t = ScriptedTarget::start(vec![], Reply::status(200)).await.unwrap();
    let key = seal_key();
    let (old, new, gone) = (generate_secret(), generate_secret(), generate_secret());
    let secret = |id: &str, plain: &str, expires: Option<i64>| SigningSecret {
        id: id.into(),
        sealed: key.seal(plain),
        created_at: Timestamp::now(),
        expires_at: expires.map(|d| Timestamp::now().add_millis(d)),
    };
    let mut tg = target(t.url("/signed"));
    tg.headers.push(Header { name: "Authorization".into(), value: key.seal("Bearer s3cret"), secret: true });
    let mut e = env(tg, fast_retries(1)).await;
    // during a rotation: the old secret still valid for an hour, the new one current,
    // and one that expired already
    e.schedule.def.signing_secrets = vec![
        secret("ss_gone", &gone, Some(-1_000)),
        secret("ss_old", &old, Some(3_600_000)),
        secret("ss_new", &new, None),
    ];
    let sender = SenderConfig { seal: Some(key.clone()), ..sender() };
    let (run, attempts) = deliver_with(&e, cfg(), sender).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", attempts[0].error_message);
    let seen = &t.seen()[0];
    assert_eq!(seen.header("authorization"), Some("Bearer s3cret"), "opened just before sending");
    let (id, ts, sig) = (
        seen.header("webhook-id").unwrap(),
        seen.header("webhook-timestamp").unwrap(),
        seen.header("webhook-signature").unwrap(),
    );
    assert_eq!(sig.split(' ').count(), 2, "one signature per valid secret: {sig}");
    assert!(python_verifies(&new, id, ts, &seen.body, sig), "the new secret verifies");
    assert!(python_verifies(&old, id, ts, &seen.body, sig), "the old secret still verifies during the overlap");
    assert!(!python_verifies(&gone, id, ts, &seen.body, sig), "an expired secret is not used");
    assert!(!python_verifies(&new, id, ts, b"tampered", sig), "a changed body fails");
    let rec = attempts[0].request_headers.iter().find(|h| h.name == "Authorization").unwrap();
    assert_eq!(rec.value, "[redacted]", "never stored in clear");
}

#[tokio::test]
async fn a_worker_without_the_key_fails_clearly() {
    let t = ScriptedTarget::start(vec![], Reply::status(200)).await.unwrap();
    let mut tg = target(t.url("/x"));
    tg.headers.push(Header { name: "X-Token".into(), value: seal_key().seal("t"), secret: true });
    let e = env(tg, fast_retries(3)).await;
    let (run, attempts) = deliver(&e, cfg()).await;
    assert_eq!((run.status, run.attempt_count), (RunStatus::Failed, 1));
    assert_eq!(attempts[0].error_code.as_deref(), Some("secret_unavailable"));
    assert!(t.seen().is_empty());
}

#[tokio::test]
async fn a_failed_run_notifies_once_through_the_outbox() {
    let failing = ScriptedTarget::start(vec![], Reply::status(404)).await.unwrap();
    let notified = ScriptedTarget::start(vec![], Reply::status(500)).await.unwrap();
    let mut e = env(target(failing.url("/job")), fast_retries(1)).await;
    e.schedule.def.failure_notification_url = Some(notified.url("/alerts"));
    let (run, _) = deliver(&e, cfg()).await;
    assert_eq!(run.status, RunStatus::Failed);

    // the run.failed event waits in the outbox, with its own request, for the planner
    let all: Vec<u32> = (0..4).collect();
    let outbox = e.stores.ticks.ticks_to_publish(&all, Timestamp::from_millis(4_102_444_800_000), 10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    let n = &outbox[0];
    assert_eq!(n.trigger, TriggerKind::Notification);
    assert_eq!(n.target.url, notified.url("/alerts"));
    assert_eq!(n.failure_notification_url, None, "a notification never notifies");
    let event: serde_json::Value = serde_json::from_slice(&n.target.body).unwrap();
    assert_eq!(event["type"], "run.failed");
    assert_eq!(event["run_id"], run.id.to_string());
    assert_eq!(event["http_status"], 404);

    // delivered through the same engine; its own failure notifies nobody
    let (publisher, consumer) = memory::channel(4);
    let cancel = CancellationToken::new();
    let worker = Worker::with_sender(e.stores.runs.clone(), sender(), cfg(), Arc::new(Metrics::default())).unwrap();
    let task = tokio::spawn(worker.run(consumer, cancel.clone()));
    publisher.publish(&outbox).await.unwrap();
    let runs = e.stores.runs.clone();
    let project = e.schedule.project_id.clone();
    wait_for("the notification run", Duration::from_secs(30), || {
        let (runs, project) = (runs.clone(), project.clone());
        async move {
            let list = runs.list_runs(&project, &RunFilter { limit: 10, ..Default::default() }).await.ok()?;
            list.iter().any(|r| r.trigger == TriggerKind::Notification && r.status.is_final()).then_some(())
        }
    })
    .await
    .unwrap();
    cancel.cancel();
    let _ = task.await;
    assert_eq!(notified.seen().len(), 5, "retried like any delivery (default 5 attempts)");
    assert_eq!(notified.seen()[0].path, "/alerts");
    assert!(
        e.stores.ticks.ticks_to_publish(&all, Timestamp::from_millis(4_102_444_800_000), 10).await.unwrap().is_empty(),
        "no notification of a notification"
    );
}

#[tokio::test]
async fn consecutive_failures_auto_pause_and_a_success_resets_the_count() {
    let t = ScriptedTarget::start(vec![Reply::status(500), Reply::status(200)], Reply::status(500)).await.unwrap();
    let mut e = env(target(t.url("/x")), fast_retries(1)).await;
    e.schedule.def.auto_pause_after_failures = 2;
    let state = |e: &Env| {
        let (st, p, id) = (e.stores.clone(), e.schedule.project_id.clone(), e.schedule.id);
        async move { st.schedules.get_schedule(&p, id).await.unwrap() }
    };
    // fail, succeed (resets), fail: still active
    for _ in 0..3 {
        deliver(&e, cfg()).await;
        tokio::time::sleep(Duration::from_millis(5)).await; // distinct nominal times
    }
    assert_eq!(state(&e).await.state, ScheduleState::Active, "a success in between resets the count");
    // a second failure in a row: paused, with the reason
    deliver(&e, cfg()).await;
    let s = state(&e).await;
    assert_eq!(s.state, ScheduleState::Paused);
    assert!(s.state_reason.contains("2 consecutive failed runs"), "{}", s.state_reason);
}

#[tokio::test]
async fn attempts_record_their_phases() {
    let t = ScriptedTarget::start(vec![], Reply::status(200).delay(Duration::from_millis(150))).await.unwrap();
    let lookup = scripted(t.port(), &[&["127.0.0.1"]]);
    let e = env(target(format!("http://timed.example.test:{}/x", t.port())), fast_retries(1)).await;
    let (run, attempts) = deliver_with(&e, cfg(), SenderConfig { lookup, ..sender() }).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    let tm = attempts[0].timing;
    println!("phases: {tm:?}, total {} ms", attempts[0].duration_ms);
    assert!(tm.dns_ms.is_some(), "a lookup happened: {tm:?}");
    assert!(tm.connect_ms.is_some(), "a new connection: {tm:?}");
    let ttfb = tm.ttfb_ms.unwrap();
    assert!(ttfb >= 150 && ttfb <= attempts[0].duration_ms, "headers after the 150 ms delay, before the end: {tm:?}");
}

/// A worker on its own queue over the env's store; cancel the token to stop it.
fn start_worker(env: &Env) -> (memory::MemoryTickPublisher, CancellationToken, tokio::task::JoinHandle<()>) {
    let (publisher, consumer) = memory::channel(16);
    let cancel = CancellationToken::new();
    let worker = Worker::with_sender(env.stores.runs.clone(), sender(), cfg(), Arc::new(Metrics::default())).unwrap();
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        let _ = worker.run(consumer, c).await;
    });
    (publisher, cancel, task)
}

/// The runs of the env's schedule.
async fn runs_of(env: &Env) -> Vec<Run> {
    let filter = RunFilter { schedule_id: Some(env.schedule.id), limit: 100, ..Default::default() };
    env.stores.runs.list_runs(&env.schedule.project_id, &filter).await.unwrap()
}

#[tokio::test]
async fn an_allow_tick_has_its_run_before_the_fire_time_and_two_copies_send_once() {
    let t = ScriptedTarget::start(vec![], Reply::status(200)).await.unwrap();
    let mut e = env(target(t.url("/x")), fast_retries(3)).await;
    e.schedule.def.overlap = OverlapPolicy::Allow;
    let fire = Timestamp::now().add_millis(2_000);
    let tick = tick_of(&e, fire, fire).await;
    // two workers get a copy each (a redelivery, a republish) while the tick waits
    let (pub_a, stop_a, task_a) = start_worker(&e);
    let (pub_b, stop_b, task_b) = start_worker(&e);
    pub_a.publish(std::slice::from_ref(&tick)).await.unwrap();
    pub_b.publish(std::slice::from_ref(&tick)).await.unwrap();

    let pending = wait_for("the run, before the fire time", Duration::from_secs(5), || async {
        runs_of(&e).await.into_iter().find(|r| r.tick_id == tick.id)
    })
    .await
    .unwrap();
    let created_early = Timestamp::now() < fire;
    assert!(created_early, "the run exists {} ms before the fire time", fire.millis_since(Timestamp::now()));
    assert_eq!((pending.status, pending.attempt_count), (RunStatus::Pending, 0));
    assert!(t.seen().is_empty(), "nothing is sent before the fire time");

    let done = wait_for("the final run", Duration::from_secs(10), || async {
        runs_of(&e).await.into_iter().find(|r| r.tick_id == tick.id && r.status.is_final())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // a second send would have happened by now
    let (run, attempts) = e.stores.runs.get_run(&e.schedule.project_id, done.id).await.unwrap();
    assert_eq!((run.status, run.attempt_count), (RunStatus::Succeeded, 1));
    assert_eq!(t.seen().len(), 1, "two copies, one send: the second finds the run held");
    assert!(attempts[0].started_at >= fire, "sent at the fire time, not when the run was created");
    for stop in [stop_a, stop_b] {
        stop.cancel();
    }
    let _ = tokio::join!(task_a, task_b);
}

#[tokio::test]
async fn a_worker_stopping_before_the_fire_time_releases_the_run_to_the_next_copy() {
    let t = ScriptedTarget::start(vec![], Reply::status(200)).await.unwrap();
    let mut e = env(target(t.url("/x")), fast_retries(3)).await;
    e.schedule.def.overlap = OverlapPolicy::Allow;
    let fire = Timestamp::now().add_millis(2_500);
    let tick = tick_of(&e, fire, fire).await;
    let (pub_a, stop_a, task_a) = start_worker(&e);
    pub_a.publish(std::slice::from_ref(&tick)).await.unwrap();
    wait_for("the run", Duration::from_secs(5), || async { runs_of(&e).await.into_iter().next() }).await.unwrap();
    // the worker stops while the tick waits (its lease runs a minute past the fire time)
    stop_a.cancel();
    task_a.await.unwrap();
    // the redelivered copy takes the run at once, and sends at the fire time
    let (pub_b, stop_b, task_b) = start_worker(&e);
    pub_b.publish(std::slice::from_ref(&tick)).await.unwrap();
    let done = wait_for("the final run", Duration::from_secs(10), || async {
        runs_of(&e).await.into_iter().find(|r| r.status.is_final())
    })
    .await
    .unwrap();
    assert_eq!((done.status, done.attempt_count), (RunStatus::Succeeded, 1));
    assert_eq!(t.seen().len(), 1);
    assert_eq!(runs_of(&e).await.len(), 1, "one run per tick");
    stop_b.cancel();
    task_b.await.unwrap();
}
