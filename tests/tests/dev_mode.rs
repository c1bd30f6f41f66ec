//! `cronhook dev` end to end: the real binary, a real HTTP sink on loopback, SQLite and
//! Postgres stores, and a kill -9 in the middle.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use cronhook_e2e::{Cronhook, all_runs, nominal_ms, schedule};
use cronhook_proto::v1 as pb;
use cronhook_test_utils::sink::WebhookSink;
use cronhook_test_utils::wait_for;

/// Creates an every-second schedule, waits for >= 3 deliveries and checks them against the
/// run ledger: distinct webhook-ids equal to the runs' tick ids, HTTP 200, nominal times
/// exactly one second apart.
async fn fires_every_second(args: &[&str]) {
    let sink = WebhookSink::start().await.unwrap();
    let metrics_addr = format!("127.0.0.1:{}", cronhook_test_utils::servers::free_port().unwrap());
    let env = [("CRONHOOK_METRICS_LISTEN".to_owned(), metrics_addr.clone())];
    let ch = Cronhook::spawn("dev", args, &env, "listening on ").await.unwrap();
    let created = ch
        .schedules()
        .await
        .unwrap()
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(schedule("every-second", "* * * * * *", &sink.url("/hook"))),
            generate_signing_secret: false,
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.schedule.unwrap().id;
    assert_eq!(created.next_fire_times.len(), 5);

    sink.wait_for_count(3, Duration::from_secs(30)).await.unwrap();
    let runs = ch.runs().await.unwrap();
    let done = wait_for("3 succeeded runs", Duration::from_secs(30), || {
        let mut runs = runs.clone();
        let id = id.clone();
        async move {
            let list = all_runs(&mut runs, &id).await.ok()?;
            let ok: Vec<_> = list.into_iter().filter(|r| r.status == pb::RunStatus::Succeeded as i32).collect();
            (ok.len() >= 3).then_some(ok)
        }
    })
    .await
    .unwrap();
    let received = sink.received();
    let ids: Vec<&str> = received.iter().filter_map(|r| r.header("webhook-id")).collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "every delivery has its own webhook-id: {ids:?}");

    let by_tick: BTreeMap<&str, &pb::Run> = done.iter().map(|r| (r.tick_id.as_str(), r)).collect();
    for r in &received {
        let wid = r.header("webhook-id").unwrap();
        if let Some(run) = by_tick.get(wid) {
            assert_eq!(run.http_status, 200);
            let at = cronhook_proto::from_timestamp(run.nominal_time.as_ref().unwrap()).to_rfc3339();
            assert_eq!(r.header("webhook-scheduled-at"), Some(at.as_str()));
            assert_eq!(r.body, b"{\"n\":1}");
            assert_eq!(r.path, "/hook");
        }
    }
    for run in &done {
        assert!(distinct.contains(run.tick_id.as_str()), "run {} was delivered with its tick id", run.id);
    }
    let mut nominal: Vec<i64> = done.iter().map(nominal_ms).collect();
    nominal.sort_unstable();
    for w in nominal.windows(2) {
        assert_eq!(w[1] - w[0], 1000, "nominal fire times one second apart: {nominal:?}");
    }
    println!("{} deliveries checked, nominal times {:?}", done.len(), nominal);

    let text = cronhook_e2e::http_get(&metrics_addr, "/metrics").await.unwrap();
    let succeeded = cronhook_e2e::metric(&text, "cronhook_runs_total{outcome=\"succeeded\"}").unwrap();
    assert!(succeeded >= 3.0, "{text}");
    assert!(cronhook_e2e::metric(&text, "cronhook_ticks_planned_total").unwrap() >= 3.0);
    assert!(cronhook_e2e::metric(&text, "cronhook_fire_lateness_seconds_count").unwrap() >= 3.0);
    assert_eq!(cronhook_e2e::metric(&text, "cronhook_shards_owned"), Some(256.0));
    let (status, _) = ch.interrupt().await.unwrap();
    assert!(status.success(), "Ctrl-C stops cleanly: {status}");
}

#[tokio::test]
async fn dev_fires_every_second_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    fires_every_second(&["dev", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).await;
    assert!(dir.path().join("cronhook.db").exists(), "state lives in <data-dir>/cronhook.db");
}

#[tokio::test]
async fn dev_fires_every_second_on_postgres() {
    let url = cronhook_test_utils::postgres::fresh_database_url().await.unwrap();
    let dir = tempfile::tempdir().unwrap(); // only the sealing key lives there
    let data = dir.path().to_str().unwrap();
    fires_every_second(&["dev", "--database-url", &url, "--data-dir", data, "--listen", "127.0.0.1:0"]).await;
}

/// kill -9 while a schedule fires every second, start again on the same data dir: every
/// nominal second from the first run to the last has exactly one run (the ticks of the
/// downtime are inside the catch-up window), and any repeated send carries the same
/// webhook-id.
#[tokio::test]
async fn dev_survives_kill9_without_losing_or_doubling_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let sink = WebhookSink::start().await.unwrap();
    let args = ["dev", "--data-dir", data, "--listen", "127.0.0.1:0"];

    let first = Cronhook::start(&args).await.unwrap();
    let created = first
        .schedules()
        .await
        .unwrap()
        .create_schedule(pb::CreateScheduleRequest {
            // every tick of the downtime must run, even several at once during catch-up
            schedule: Some(pb::Schedule {
                overlap_policy: pb::OverlapPolicy::Allow as i32,
                ..schedule("kill9", "* * * * * *", &sink.url("/k"))
            }),
            generate_signing_secret: false,
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.schedule.unwrap().id;
    sink.wait_for_count(3, Duration::from_secs(30)).await.unwrap();
    let before_kill = sink.received().len();
    first.kill9().await.unwrap();
    let killed_at = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await; // downtime: ~3 ticks fall due

    let second = Cronhook::start(&args).await.unwrap();
    // wait until the restarted process has delivered ticks well past the downtime
    let target = before_kill + 3 + killed_at.elapsed().as_secs() as usize + 2;
    sink.wait_for_count(target, Duration::from_secs(60)).await.unwrap();
    let (status, _) = second.interrupt().await.unwrap();
    assert!(status.success());

    // The ledger, read from the same database by a third process.
    let third = Cronhook::start(&args).await.unwrap();
    let mut runs3 = third.runs().await.unwrap();
    let list = all_runs(&mut runs3, &id).await.unwrap();
    let ticks: Vec<&str> = list.iter().map(|r| r.tick_id.as_str()).collect();
    let unique: HashSet<&str> = ticks.iter().copied().collect();
    assert_eq!(unique.len(), ticks.len(), "at most one run per tick");
    let nominal: BTreeSet<i64> = list.iter().map(nominal_ms).collect();
    assert_eq!(nominal.len(), list.len(), "one run per nominal time");
    let (lo, hi) = (*nominal.first().unwrap(), *nominal.last().unwrap());
    let missing: Vec<i64> = (lo / 1000..=hi / 1000).map(|s| s * 1000).filter(|t| !nominal.contains(t)).collect();
    assert!(missing.is_empty(), "no tick lost across kill -9: missing {missing:?} in {lo}..={hi}");

    // Sends repeated only after the crash, always with a webhook-id of the ledger.
    let received = sink.received();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &received {
        let wid = r.header("webhook-id").unwrap();
        assert!(unique.contains(wid), "every send belongs to a recorded run");
        *counts.entry(wid).or_default() += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.len() <= 2, "only sends in flight at the kill may repeat: {repeated:?}");
    println!(
        "runs {} over {} s, sends {}, repeated sends {}, missing 0",
        list.len(),
        (hi - lo) / 1000 + 1,
        received.len(),
        repeated.len()
    );
    drop(third);
}
