//! The tick ledger end to end (`cronhook dev`): pause records skipped ticks, resume goes on
//! from now, backfill fills a past range once.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::time::Duration;

use cronhook_e2e::{Cronhook, all_runs, schedule};
use cronhook_proto::v1 as pb;
use cronhook_proto::v1::tick_service_client::TickServiceClient;
use cronhook_test_utils::sink::WebhookSink;
use cronhook_test_utils::wait_for;
use tonic::transport::Channel;

async fn ticks(api: &str, schedule_id: &str, outcome: Option<pb::TickOutcome>) -> Vec<pb::LedgerTick> {
    let mut c = TickServiceClient::new(Channel::from_shared(api.to_owned()).unwrap().connect().await.unwrap());
    c.list_ticks(pb::ListTicksRequest {
        schedule_id: schedule_id.into(),
        outcomes: outcome.map(|o| vec![o as i32]).unwrap_or_default(),
        page_size: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .ticks
}

/// Creates `def` and returns its id.
async fn create(ch: &Cronhook, def: pb::Schedule) -> String {
    ch.schedules()
        .await
        .unwrap()
        .create_schedule(pb::CreateScheduleRequest { schedule: Some(def), generate_signing_secret: false })
        .await
        .unwrap()
        .into_inner()
        .schedule
        .unwrap()
        .id
}

#[tokio::test]
async fn pause_skips_resume_goes_on_and_backfill_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start().await.unwrap();
    let ch =
        Cronhook::start(&["dev", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).await.unwrap();
    let mut s = ch.schedules().await.unwrap();
    let created = s
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(schedule("ledger", "* * * * * *", &sink.url("/l"))),
            generate_signing_secret: false,
        })
        .await
        .unwrap()
        .into_inner();
    let sched = created.schedule.unwrap();
    let created_at = cronhook_proto::from_timestamp(sched.create_time.as_ref().unwrap());
    sink.wait_for_count(2, Duration::from_secs(30)).await.unwrap();

    s.pause_schedule(pb::PauseScheduleRequest { id: sched.id.clone(), reason: "maintenance".into() }).await.unwrap();
    let skipped = wait_for("3 skipped ticks", Duration::from_secs(30), || {
        let (api, id) = (ch.api.clone(), sched.id.clone());
        async move {
            let t = ticks(&api, &id, Some(pb::TickOutcome::Skipped)).await;
            (t.len() >= 3).then_some(t)
        }
    })
    .await
    .unwrap();
    assert!(skipped.iter().all(|t| t.reason == "paused"));
    let sent_while_paused = sink.received().len();
    s.resume_schedule(pb::ResumeScheduleRequest { id: sched.id.clone() }).await.unwrap();
    sink.wait_for_count(sent_while_paused + 2, Duration::from_secs(30)).await.unwrap();
    let delivered = ticks(&ch.api, &sched.id, Some(pb::TickOutcome::Delivered)).await;
    let skipped_times: Vec<i64> = skipped.iter().map(|t| t.nominal_time.as_ref().unwrap().seconds).collect();
    assert!(
        delivered.iter().all(|d| !skipped_times.contains(&d.nominal_time.as_ref().unwrap().seconds)),
        "no burst: the skipped ticks are not fired on resume"
    );

    // backfill the 5 seconds before the schedule existed: created once, then all existing
    let start = created_at.add_millis(-10_000);
    let (bs, be) = (cronhook_proto::timestamp(start), cronhook_proto::timestamp(start.add_millis(5_000)));
    let req = || pb::BackfillScheduleRequest {
        id: sched.id.clone(),
        start_time: Some(bs),
        end_time: Some(be),
        overlap_policy: pb::OverlapPolicy::Unspecified as i32, // backfills default to ALLOW
    };
    let first = s.backfill_schedule(req()).await.unwrap().into_inner();
    let again = s.backfill_schedule(req()).await.unwrap().into_inner();
    assert_eq!((first.created, first.existing), (5, 0));
    assert_eq!((again.created, again.existing), (0, 5), "backfill twice creates nothing more");
    let runs = ch.runs().await.unwrap();
    let backfilled = wait_for("5 delivered backfill runs", Duration::from_secs(30), || {
        let (mut runs, id) = (runs.clone(), sched.id.clone());
        async move {
            let all = all_runs(&mut runs, &id).await.ok()?;
            let b: Vec<pb::Run> = all
                .into_iter()
                .filter(|r| {
                    r.trigger == pb::TriggerKind::Backfill as i32 && r.status == pb::RunStatus::Succeeded as i32
                })
                .collect();
            (b.len() == 5).then_some(b)
        }
    })
    .await
    .unwrap();
    assert!(backfilled.iter().all(|r| cronhook_proto::from_timestamp(r.nominal_time.as_ref().unwrap()) < created_at));
    let e = s
        .backfill_schedule(pb::BackfillScheduleRequest {
            id: sched.id.clone(),
            start_time: Some(bs),
            end_time: Some(cronhook_proto::timestamp(created_at.add_millis(3_600_000))),
            overlap_policy: 0,
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("end_time:"), "{}", e.message());
    ch.interrupt().await.unwrap();
}

#[tokio::test]
async fn overlap_skip_keeps_runs_of_a_slow_target_apart() {
    let dir = tempfile::tempdir().unwrap();
    let slow = WebhookSink::start().await.unwrap();
    slow.respond_after(Duration::from_millis(2500));
    let ch =
        Cronhook::start(&["dev", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).await.unwrap();
    let mut def = schedule("slow", "* * * * * *", &slow.url("/slow"));
    def.overlap_policy = pb::OverlapPolicy::Skip as i32;
    let id = create(&ch, def).await;
    let skipped = wait_for("ticks skipped by the overlap policy", Duration::from_secs(30), || {
        let (api, id) = (ch.api.clone(), id.clone());
        async move {
            let t = ticks(&api, &id, Some(pb::TickOutcome::Skipped)).await;
            (t.len() >= 3).then_some(t)
        }
    })
    .await
    .unwrap();
    assert!(skipped.iter().all(|t| t.reason.starts_with("overlap: run ")), "{:?}", skipped[0].reason);
    let mut runs = ch.runs().await.unwrap();
    let mut list = all_runs(&mut runs, &id).await.unwrap();
    list.sort_by_key(|r| r.start_time.as_ref().map(|t| (t.seconds, t.nanos)));
    for w in list.windows(2) {
        if let (Some(end), Some(start)) = (w[0].end_time.as_ref(), w[1].start_time.as_ref()) {
            assert!(
                (start.seconds, start.nanos) >= (end.seconds, end.nanos),
                "runs overlap: {:?} and {:?}",
                w[0].id,
                w[1].id
            );
        }
    }
    println!("{} runs, {} ticks skipped for overlap", list.len(), skipped.len());
    ch.interrupt().await.unwrap();
}

fn at(t: &Option<prost_types::Timestamp>) -> i64 {
    cronhook_proto::from_timestamp(t.as_ref().unwrap()).as_millis()
}

/// After an outage the ticks of the downtime fire oldest first, paced by the planner
/// (here 2 per second), with their nominal times kept; none is missed or doubled.
#[tokio::test]
async fn catchup_after_downtime_is_paced() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start().await.unwrap();
    let args = ["dev", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"];
    let env = [
        ("CRONHOOK_PLANNER_CATCHUP_RATE".to_owned(), "2".to_owned()),
        ("CRONHOOK_PLANNER_CATCHUP_LATE_AFTER".to_owned(), "2s".to_owned()),
    ];
    let first = Cronhook::spawn("cronhook", &args, &env, "listening on ").await.unwrap();
    let mut def = schedule("catchup", "* * * * * *", &sink.url("/c"));
    def.overlap_policy = pb::OverlapPolicy::Allow as i32;
    let id = create(&first, def).await;
    sink.wait_for_count(2, Duration::from_secs(30)).await.unwrap();
    first.kill9().await.unwrap();
    let killed_at = cronhook_core::Timestamp::now().as_millis();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let second = Cronhook::spawn("cronhook", &args, &env, "listening on ").await.unwrap();
    let restarted_at = cronhook_core::Timestamp::now().as_millis();

    // every tick of the downtime more than 2 s late at restart is catch-up, except those
    // the first process had planned ahead (its lookahead) before the kill
    let late: Vec<i64> = ((killed_at + 3_000) / 1000 + 1..(restarted_at - 2_000) / 1000).map(|s| s * 1000).collect();
    assert!(late.len() >= 3, "downtime long enough: {late:?}");
    let caught_up = wait_for("the downtime's ticks delivered", Duration::from_secs(60), || {
        let (api, id, late) = (second.api.clone(), id.clone(), late.clone());
        async move {
            let t = ticks(&api, &id, Some(pb::TickOutcome::Delivered)).await;
            let c: Vec<pb::LedgerTick> = t.into_iter().filter(|t| late.contains(&at(&t.nominal_time))).collect();
            (c.len() == late.len()).then_some(c)
        }
    })
    .await
    .unwrap();
    let mut fires: Vec<(i64, i64)> = caught_up.iter().map(|t| (at(&t.nominal_time), at(&t.fire_time))).collect();
    fires.sort();
    // the oldest goes at once, the others are paced
    assert!(fires[1..].iter().all(|(n, f)| f > n), "paced later than nominal: {fires:?}");
    for w in fires[1..].windows(2) {
        assert!(w[1].1 - w[0].1 >= 500, "at most 2 per second, oldest first: {fires:?}");
    }
    let missed = ticks(&second.api, &id, Some(pb::TickOutcome::Missed)).await;
    assert!(missed.is_empty(), "inside the catch-up window nothing is missed");
    let received = sink.received();
    let mut ids: Vec<&str> = received.iter().filter_map(|r| r.header("webhook-id")).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert!(n - ids.len() <= 1, "at most the send in flight at the kill repeats");
    println!("{} catch-up ticks paced over {} ms", fires.len(), fires[fires.len() - 1].1 - fires[0].1);
    second.interrupt().await.unwrap();
}

/// start and end bound the fire times; the rule's times before the start and the first at
/// the end are in the ledger as skipped, and the schedule completes.
#[tokio::test]
async fn start_and_end_bound_the_runs_and_the_ledger_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start().await.unwrap();
    let ch =
        Cronhook::start(&["dev", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]).await.unwrap();
    let now = cronhook_core::Timestamp::now().as_millis() / 1000 * 1000;
    let (start, end) = (now + 4_000, now + 7_000);
    let mut def = schedule("bounded", "* * * * * *", &sink.url("/b"));
    let spec = def.spec.as_mut().unwrap();
    spec.start_time = Some(cronhook_proto::timestamp(cronhook_core::Timestamp::from_millis(start)));
    spec.end_time = Some(cronhook_proto::timestamp(cronhook_core::Timestamp::from_millis(end)));
    def.overlap_policy = pb::OverlapPolicy::Allow as i32;
    let s = ch.schedules().await.unwrap();
    let id = create(&ch, def).await;
    let done = wait_for("the schedule completes", Duration::from_secs(30), || {
        let (mut s, id) = (s.clone(), id.clone());
        async move {
            let got = s.get_schedule(pb::GetScheduleRequest { id }).await.ok()?.into_inner();
            (got.state == pb::ScheduleState::Completed as i32).then_some(got)
        }
    })
    .await
    .unwrap();
    assert_eq!(done.state, pb::ScheduleState::Completed as i32);
    let delivered = wait_for("3 runs delivered", Duration::from_secs(30), || {
        let (api, id) = (ch.api.clone(), id.clone());
        async move {
            let t = ticks(&api, &id, Some(pb::TickOutcome::Delivered)).await;
            (t.len() == 3).then_some(t)
        }
    })
    .await
    .unwrap();
    let mut times: Vec<i64> = delivered.iter().map(|t| at(&t.nominal_time)).collect();
    times.sort();
    assert_eq!(times, vec![start, start + 1000, start + 2000], "from start, end exclusive");
    let skipped = ticks(&ch.api, &id, Some(pb::TickOutcome::Skipped)).await;
    let mut before: Vec<i64> =
        skipped.iter().filter(|t| t.reason == "before_start").map(|t| at(&t.nominal_time)).collect();
    before.sort();
    assert!(!before.is_empty() && before.iter().all(|t| *t < start), "{before:?}");
    assert_eq!(*before.last().unwrap(), start - 1000, "up to the start");
    let after: Vec<i64> = skipped.iter().filter(|t| t.reason == "after_end").map(|t| at(&t.nominal_time)).collect();
    assert_eq!(after, vec![end], "the first fire time at the end");
    assert_eq!(sink.received().len(), 3);
    ch.interrupt().await.unwrap();
}
