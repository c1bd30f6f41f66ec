//! Micro-benchmarks of the pure hot paths (docs/benchmarks.md): next-fire computation,
//! tick encoding for the queue, retry math. Run: `cargo bench -p cronhook-e2e --bench hot_paths`.

#![allow(clippy::unwrap_used)] // benchmark setup

use cronhook_core::{
    HttpMethod, HttpTarget, ProjectId, RetryPolicy, ScheduleId, ScheduleSpec, SpecKind, Tick, TickId, Timestamp,
    TriggerKind,
};
use cronhook_cron::CompiledSpec;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn spec(cron: &str, tz: &str) -> CompiledSpec {
    CompiledSpec::compile(&ScheduleSpec {
        kind: SpecKind::Cron(cron.into()),
        time_zone: tz.into(),
        start: None,
        end: None,
        remaining_runs: None,
    })
    .unwrap()
}

const NOW: Timestamp = Timestamp::from_millis(1_796_000_000_000); // 2026-11-30

#[divan::bench(args = ["* * * * * *", "*/15 * * * *", "30 2 * * *", "0 9 * * 1-5", "0 0 29 2 *", "0 12 L * *"])]
fn next_fire_utc(b: Bencher, cron: &str) {
    let s = spec(cron, "UTC");
    b.bench(|| s.next_after(black_box(NOW)));
}

#[divan::bench(args = ["America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"])]
fn next_fire_zoned(b: Bencher, tz: &str) {
    let s = spec("30 2 * * *", tz);
    b.bench(|| s.next_after(black_box(NOW)));
}

#[divan::bench]
fn compile_cron(b: Bencher) {
    let def = ScheduleSpec {
        kind: SpecKind::Cron("0 9-17/2 * * MON-FRI".into()),
        time_zone: "Europe/Berlin".into(),
        start: None,
        end: None,
        remaining_runs: None,
    };
    b.bench(|| CompiledSpec::compile(black_box(&def)));
}

fn tick() -> Tick {
    let schedule = ScheduleId::generate();
    Tick {
        id: TickId::scheduled(schedule, NOW),
        project_id: ProjectId::default_project(),
        schedule_id: schedule,
        schedule_version: 3,
        nominal_time: NOW,
        fire_time: NOW,
        trigger: TriggerKind::Scheduled,
        target: HttpTarget {
            url: "https://hooks.example.com/cron/nightly-report".into(),
            method: HttpMethod::Post,
            headers: vec![cronhook_core::Header {
                name: "content-type".into(),
                value: "application/json".into(),
                secret: false,
            }],
            body: br#"{"report":"nightly","format":"csv"}"#.to_vec(),
            timeout_ms: 10_000,
            follow_redirects: false,
        },
        retry: RetryPolicy::default(),
        shard: 7,
        epoch: 12,
        signing_secrets: Vec::new(),
        failure_notification_url: None,
        auto_pause_after_failures: 0,
        overlap: Default::default(),
    }
}

#[divan::bench]
fn tick_encode(b: Bencher) {
    let t = tick();
    b.bench(|| cronhook_proto::tick::encode_tick(black_box(&t)));
}

#[divan::bench]
fn tick_decode(b: Bencher) {
    let bytes = cronhook_proto::tick::encode_tick(&tick());
    b.bench(|| cronhook_proto::tick::decode_tick(black_box(&bytes)));
}

#[divan::bench]
fn tick_id(b: Bencher) {
    let s = ScheduleId::generate();
    b.bench(|| TickId::scheduled(black_box(s), black_box(NOW)));
}

#[divan::bench(args = [2, 5, 20])]
fn retry_next_attempt(b: Bencher, attempt: u32) {
    let p = RetryPolicy { max_attempts: 50, ..RetryPolicy::default() };
    b.bench(|| {
        cronhook_delivery::retry::next_attempt_at(
            black_box(&p),
            black_box(attempt),
            NOW,
            NOW.add_millis(5_000),
            None,
            black_box(42),
        )
    });
}
