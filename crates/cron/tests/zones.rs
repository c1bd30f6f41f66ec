//! Time zones and the DST policy (docs/schedules.md), zone by zone, plus property tests
//! over random expressions in random zones checked against a brute-force scan.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use chrono::{NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use cronhook_core::{ScheduleSpec, SpecKind, Timestamp};
use cronhook_cron::{CompiledSpec, CronExpr};
use proptest::prelude::*;

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

fn at(tz: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
    let tz: Tz = tz.parse().unwrap();
    let naive = NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, 0).unwrap();
    Timestamp::from_chrono(tz.from_local_datetime(&naive).earliest().unwrap().with_timezone(&Utc))
}

fn utc(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn next_n(c: &CompiledSpec, from: Timestamp, n: usize) -> Vec<String> {
    c.preview(from, n).into_iter().map(|t| c.local_time(t)).collect()
}

#[test]
fn new_york_spring_forward_fires_at_the_end_of_the_gap() {
    let c = spec("30 2 * * *", "America/New_York");
    let got = next_n(&c, at("America/New_York", 2026, 3, 7, 12, 0), 3);
    assert_eq!(
        got,
        ["2026-03-08T03:00:00.000-04:00", "2026-03-09T02:30:00.000-04:00", "2026-03-10T02:30:00.000-04:00"]
    );
    let gap = c.preview(at("America/New_York", 2026, 3, 7, 12, 0), 1)[0];
    assert_eq!(c.dst_note(gap).unwrap(), "02:30 does not exist (DST gap): fired at 03:00");
    // an hourly wildcard skips the hour that does not exist
    let c = spec("30 * * * *", "America/New_York");
    let got = next_n(&c, at("America/New_York", 2026, 3, 8, 0, 45), 3);
    assert_eq!(
        got,
        ["2026-03-08T01:30:00.000-05:00", "2026-03-08T03:30:00.000-04:00", "2026-03-08T04:30:00.000-04:00"]
    );
}

#[test]
fn new_york_fall_back_fires_once_or_on_both_copies() {
    // fixed hour: 01:30 happens twice on 2026-11-01; fired once, at the first (EDT)
    let c = spec("30 1 * * *", "America/New_York");
    let first = c.preview(at("America/New_York", 2026, 10, 31, 12, 0), 2);
    assert_eq!(first[0], utc("2026-11-01T05:30:00Z"));
    assert_eq!(first[1], utc("2026-11-02T06:30:00Z"));
    assert!(c.dst_note(first[0]).unwrap().contains("first occurrence"));
    // step in the hour field: every real instant, both copies of the repeated hour
    let c = spec("*/30 * * * *", "America/New_York");
    let got: Vec<Timestamp> = c.preview(utc("2026-11-01T04:45:00Z"), 6);
    let want: Vec<Timestamp> = ["05:00", "05:30", "06:00", "06:30", "07:00", "07:30"]
        .iter()
        .map(|hm| utc(&format!("2026-11-01T{hm}:00Z")))
        .collect();
    assert_eq!(got, want, "01:00, 01:30 EDT then 01:00, 01:30 EST, then 02:00, 02:30 EST");
    assert!(c.dst_note(utc("2026-11-01T06:00:00Z")).unwrap().contains("second occurrence"));
}

#[test]
fn berlin_both_transitions() {
    let c = spec("15 2 * * *", "Europe/Berlin");
    // 2026-03-29: 02:00 CET -> 03:00 CEST
    assert_eq!(
        next_n(&c, at("Europe/Berlin", 2026, 3, 28, 12, 0), 2),
        ["2026-03-29T03:00:00.000+02:00", "2026-03-30T02:15:00.000+02:00"]
    );
    // 2026-10-25: 03:00 CEST -> 02:00 CET; 02:15 fires once, at CEST
    let t = c.preview(at("Europe/Berlin", 2026, 10, 24, 12, 0), 2);
    assert_eq!(t, [utc("2026-10-25T00:15:00Z"), utc("2026-10-26T01:15:00Z")]);
}

#[test]
fn lord_howe_has_a_half_hour_shift() {
    // Australia/Lord_Howe: 2026-10-04 02:00 +10:30 -> 02:30 +11:00
    let c = spec("15 2 * * *", "Australia/Lord_Howe");
    assert_eq!(
        next_n(&c, at("Australia/Lord_Howe", 2026, 10, 3, 12, 0), 2),
        ["2026-10-04T02:30:00.000+11:00", "2026-10-05T02:15:00.000+11:00"]
    );
    let c = spec("*/10 * * * *", "Australia/Lord_Howe");
    let got = next_n(&c, at("Australia/Lord_Howe", 2026, 10, 4, 1, 50), 2);
    assert_eq!(got, ["2026-10-04T02:30:00.000+11:00", "2026-10-04T02:40:00.000+11:00"], "02:00-02:29 do not exist");
}

#[test]
fn fractional_offsets_without_dst() {
    let c = spec("0 9 * * 1-5", "Asia/Kolkata");
    assert_eq!(c.preview(utc("2026-12-04T00:00:00Z"), 2), [utc("2026-12-04T03:30:00Z"), utc("2026-12-07T03:30:00Z")]);
    let c = spec("0 9 * * *", "Asia/Kathmandu");
    assert_eq!(c.preview(utc("2026-12-04T00:00:00Z"), 1), [utc("2026-12-04T03:15:00Z")]);
}

#[test]
fn apia_skipped_a_whole_day() {
    // Pacific/Apia skipped 2011-12-30 (UTC-10 -> UTC+14 at midnight)
    let c = spec("0 12 * * *", "Pacific/Apia");
    let got = next_n(&c, at("Pacific/Apia", 2011, 12, 29, 13, 0), 2);
    assert_eq!(got, ["2011-12-31T00:00:00.000+14:00", "2011-12-31T12:00:00.000+14:00"]);
}

#[test]
fn zones_are_validated() {
    let bad = CompiledSpec::compile(&ScheduleSpec {
        kind: SpecKind::Cron("* * * * *".into()),
        time_zone: "Mars/Olympus_Mons".into(),
        start: None,
        end: None,
        remaining_runs: None,
    })
    .unwrap_err();
    assert_eq!(bad.field, "spec.time_zone");
    assert_eq!(spec("0 0 * * *", "europe/berlin").zone(), Tz::Europe__Berlin, "case-insensitive");
}

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Apia",
    "America/Santiago",
    "Pacific/Chatham",
    "Europe/London",
];

fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        (lo..=hi).prop_map(|v| v.to_string()),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (2u32..=20).prop_map(|s| format!("*/{s}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    /// Fire times strictly increase; each matches the expression in its zone (or is the
    /// end of a DST gap for a fixed-hour expression); a minute-grid scan between two
    /// consecutive fire times finds no matching real instant that the policy keeps.
    #[test]
    fn nothing_is_skipped_in_any_zone(
        min in field(0, 59), hour in field(0, 23), dow in field(0, 6), zone in 0usize..ZONES.len(),
        start in 1_700_000_000i64..1_900_000_000,
    ) {
        let expr = format!("{min} {hour} * * {dow}");
        let tz: Tz = ZONES[zone].parse().unwrap();
        let c = spec(&expr, ZONES[zone]);
        let raw = CronExpr::parse(&expr).unwrap();
        let wall = |t: Timestamp| Timestamp::from_millis(t.to_chrono().unwrap().with_timezone(&tz).naive_local().and_utc().timestamp_millis());
        let mut t = Timestamp::from_millis(start / 60 * 60 * 1000);
        for _ in 0..6 {
            let next = c.next_after(t).unwrap();
            prop_assert!(next > t);
            let is_gap_end = c.dst_note(next).is_some_and(|n| n.contains("DST gap"));
            prop_assert!(raw.matches(wall(next)) || is_gap_end, "{expr} in {}: {next} does not match", ZONES[zone]);
            if next.millis_since(t) <= 2 * 24 * 3600 * 1000 {
                let mut u = Timestamp::from_millis((t.as_millis() / 60_000 + 1) * 60_000);
                while u < next {
                    let w = wall(u);
                    if raw.matches(w) {
                        // allowed only as the second copy of a repeated wall time for a fixed hour
                        let naive = w.to_chrono().unwrap().naive_utc();
                        let second_copy = matches!(tz.from_local_datetime(&naive), chrono::LocalResult::Ambiguous(first, _)
                            if Timestamp::from_chrono(first.with_timezone(&Utc)) != u);
                        prop_assert!(second_copy && !raw.hour_wildcard(), "{expr} in {}: skipped {u} between {t} and {next}", ZONES[zone]);
                    }
                    u = u.add_millis(60_000);
                }
            }
            t = next;
        }
    }
}
