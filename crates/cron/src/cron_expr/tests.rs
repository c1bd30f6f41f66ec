use super::*;
use chrono::{Datelike, TimeZone, Weekday};
use proptest::prelude::*;

fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Timestamp {
    Timestamp::from_chrono(Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap())
}

fn weekdays(expr: &str) -> Vec<Weekday> {
    // 2026-11-01 is a Sunday; collect the weekdays of the first 7 daily fire times.
    let c = CronExpr::parse(expr).unwrap();
    let mut t = ts(2026, 10, 31, 23, 59, 59);
    let mut out = Vec::new();
    while out.len() < 7 {
        t = c.next_after(t).unwrap();
        if t > ts(2026, 11, 7, 23, 59, 59) {
            break;
        }
        out.push(t.to_chrono().unwrap().weekday());
    }
    out
}

#[test]
fn unix_day_of_week_numbers() {
    use Weekday::*;
    assert_eq!(weekdays("0 9 * * 1-5"), vec![Mon, Tue, Wed, Thu, Fri]);
    assert_eq!(weekdays("0 9 * * 0"), vec![Sun]);
    assert_eq!(weekdays("0 9 * * 7"), vec![Sun]);
    assert_eq!(weekdays("0 9 * * 1"), vec![Mon]);
    assert_eq!(weekdays("0 9 * * 6"), vec![Sat]);
    assert_eq!(weekdays("0 9 * * 5-7"), vec![Sun, Fri, Sat]);
    assert_eq!(weekdays("0 9 * * */2"), vec![Sun, Tue, Thu, Sat]);
    assert_eq!(weekdays("0 9 * * MON-FRI"), vec![Mon, Tue, Wed, Thu, Fri]);
    assert_eq!(weekdays("0 9 * * mon,wed"), vec![Mon, Wed]);
    assert_eq!(weekdays("0 9 * * 0,6"), vec![Sun, Sat]);
}

#[test]
fn last_and_nth_weekday_use_unix_numbers() {
    // 5L = last Friday of the month (Unix 5 = Friday): November 2026 -> the 27th.
    let c = CronExpr::parse("0 0 * * 5L").unwrap();
    assert_eq!(c.next_after(ts(2026, 11, 1, 0, 0, 0)), Some(ts(2026, 11, 27, 0, 0, 0)));
    // 1#1 = first Monday: 2 November 2026.
    let c = CronExpr::parse("0 0 * * 1#1").unwrap();
    assert_eq!(c.next_after(ts(2026, 11, 1, 0, 0, 0)), Some(ts(2026, 11, 2, 0, 0, 0)));
}

#[test]
fn seconds_field() {
    let c = CronExpr::parse("*/5 * * * * *").unwrap();
    let t = ts(2026, 1, 1, 0, 0, 0);
    assert_eq!(c.next_after(t), Some(ts(2026, 1, 1, 0, 0, 5)));
    assert_eq!(c.next_after(ts(2026, 1, 1, 0, 0, 57)), Some(ts(2026, 1, 1, 0, 1, 0)));
    // an instant with milliseconds still yields the next whole matching second
    assert_eq!(c.next_after(t.add_millis(4_999)), Some(ts(2026, 1, 1, 0, 0, 5)));
    assert_eq!(c.next_after(t.add_millis(5_000)), Some(ts(2026, 1, 1, 0, 0, 10)));

    let c = CronExpr::parse("10,20-22 30 * * * *").unwrap();
    assert_eq!(c.next_after(ts(2026, 1, 1, 0, 0, 0)), Some(ts(2026, 1, 1, 0, 30, 10)));
    assert_eq!(c.next_after(ts(2026, 1, 1, 0, 30, 10)), Some(ts(2026, 1, 1, 0, 30, 20)));
    assert_eq!(c.next_after(ts(2026, 1, 1, 0, 30, 22)), Some(ts(2026, 1, 1, 1, 30, 10)));
}

#[test]
fn five_fields_fire_on_second_zero() {
    let c = CronExpr::parse("*/15 * * * *").unwrap();
    assert_eq!(c.next_after(ts(2026, 1, 1, 0, 0, 0)), Some(ts(2026, 1, 1, 0, 15, 0)));
    assert_eq!(c.next_after(ts(2026, 1, 1, 0, 14, 59)), Some(ts(2026, 1, 1, 0, 15, 0)));
}

#[test]
fn macros() {
    let t = ts(2026, 3, 15, 10, 20, 0);
    let next = |e: &str| CronExpr::parse(e).unwrap().next_after(t).unwrap();
    assert_eq!(next("@hourly"), ts(2026, 3, 15, 11, 0, 0));
    assert_eq!(next("@daily"), ts(2026, 3, 16, 0, 0, 0));
    assert_eq!(next("@weekly"), ts(2026, 3, 22, 0, 0, 0)); // a Sunday
    assert_eq!(next("@monthly"), ts(2026, 4, 1, 0, 0, 0));
    assert_eq!(next("@yearly"), ts(2027, 1, 1, 0, 0, 0));
    assert!(CronExpr::parse("@sometimes").unwrap_err().contains("unknown macro"));
}

#[test]
fn rejects_bad_expressions_with_reasons() {
    for (expr, needle) in [
        ("", "empty"),
        ("* * *", "3 fields"),
        ("61 * * * * *", "out of range"),
        ("*/0 * * * * *", "step"),
        ("* * * * 8", "out of range"),
        ("* * * * 5-2", "starts after"),
        ("0 0 30 2 *", "never matches"),
        ("0 0 31 11 *", "never matches"),
        ("x * * * *", "not a valid cron"),
    ] {
        let e = CronExpr::parse(expr).unwrap_err();
        assert!(e.contains(needle), "{expr:?}: {e}");
    }
}

#[test]
fn leap_day_is_found() {
    let c = CronExpr::parse("0 0 29 2 *").unwrap();
    assert_eq!(c.next_after(ts(2097, 1, 1, 0, 0, 0)), Some(ts(2104, 2, 29, 0, 0, 0)));
}

fn field(range: std::ops::RangeInclusive<u32>) -> impl Strategy<Value = String> {
    let (lo, hi) = (*range.start(), *range.end());
    prop_oneof![
        Just("*".to_owned()),
        (lo..=hi).prop_map(|v| v.to_string()),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1u32..=7).prop_map(|s| format!("*/{s}")),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// next_after is strictly increasing, every answer matches, and a brute-force scan
    /// over every second in between finds no match that was skipped.
    #[test]
    fn next_after_skips_nothing(
        sec in field(0..=59), min in field(0..=59), hour in field(0..=23),
        dow in field(0..=7), start in 1_600_000_000i64..1_900_000_000,
    ) {
        let expr = format!("{sec} {min} {hour} * * {dow}");
        let c = CronExpr::parse(&expr).unwrap();
        let mut t = Timestamp::from_millis(start * 1000);
        for _ in 0..5 {
            let next = c.next_after(t).unwrap();
            prop_assert!(next > t);
            prop_assert!(c.matches(next), "{expr}: {next} does not match");
            // brute force only over short gaps (bounded test time)
            if next.millis_since(t) <= 3 * 3600 * 1000 {
                let mut s = Timestamp::from_millis((t.as_millis() / 1000 + 1) * 1000);
                while s < next {
                    prop_assert!(!c.matches(s), "{expr}: skipped {s} between {t} and {next}");
                    s = s.add_millis(1000);
                }
            }
            t = next;
        }
    }
}

#[test]
fn vixie_day_rule() {
    use Weekday::*;
    // both restricted, neither starting with `*`: either matches (OR)
    let c = CronExpr::parse("0 0 13 * 5").unwrap();
    let days: Vec<(u32, Weekday)> = (0..10)
        .scan(ts(2026, 11, 1, 0, 0, 0), |t, _| {
            *t = c.next_after(*t)?;
            let d = t.to_chrono()?;
            Some((d.day(), d.weekday()))
        })
        .collect();
    assert!(days.iter().all(|(d, w)| *d == 13 || *w == Fri), "{days:?}");
    assert!(days.iter().any(|(d, w)| *d == 13 && *w != Fri), "the 13th on any weekday: {days:?}");
    // a day field starting with `*` (a step): both must match (AND), as in cronie
    let c = CronExpr::parse("0 0 */5 * 1").unwrap(); // days 1,6,11,16,21,26,31 that are Mondays
    let mut t = ts(2026, 1, 1, 0, 0, 0);
    for _ in 0..6 {
        t = c.next_after(t).unwrap();
        let d = t.to_chrono().unwrap();
        assert_eq!(d.weekday(), Mon, "{d}");
        assert_eq!((d.day() - 1) % 5, 0, "{d}");
        assert!(c.matches(t));
    }
    assert!(!c.matches(ts(2026, 1, 5, 0, 0, 0)), "a Monday that is not in */5");
    assert!(!c.matches(ts(2026, 1, 6, 0, 0, 0)), "day 6, not a Monday");
    // `*/1` covers every day: the day-of-month field alone decides
    let c = CronExpr::parse("0 12 1,15 * */1").unwrap();
    assert_eq!(c.next_after(ts(2026, 3, 2, 0, 0, 0)), Some(ts(2026, 3, 15, 12, 0, 0)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Arbitrary input never panics the parser, and whatever parses answers next_after
    /// (a bounded search: never a hang).
    #[test]
    fn the_parser_survives_anything(s in "\\PC{0,40}") {
        if let Ok(c) = CronExpr::parse(&s) {
            let _ = c.next_after(ts(2026, 1, 1, 0, 0, 0));
        }
    }

    /// Cron-shaped garbage (fields from a cron alphabet) is the more interesting input.
    #[test]
    fn cron_shaped_input_never_panics(fields in proptest::collection::vec("[0-9*/,\\-LW#?A-Za-z]{1,6}", 1..8)) {
        let s = fields.join(" ");
        if let Ok(c) = CronExpr::parse(&s) {
            let t = ts(2026, 1, 1, 0, 0, 0);
            if let Some(n) = c.next_after(t) {
                prop_assert!(n > t);
            }
        }
    }
}

#[test]
fn hashed_fields_are_stable_per_schedule_and_spread() {
    let minute = |seed: u64| {
        let c = CronExpr::parse_seeded("H * * * *", seed).unwrap();
        c.next_after(ts(2026, 1, 1, 0, 0, 0)).unwrap().to_chrono().unwrap().minute()
    };
    assert_eq!(minute(42), minute(42), "the same schedule always gets the same minute");
    let spread: std::collections::BTreeSet<u32> = (0..200u64).map(|s| minute(s.wrapping_mul(0x9e37_79b9))).collect();
    assert!(spread.len() > 40, "200 schedules spread over the hour: {} distinct minutes", spread.len());
    // H/15: every 15 minutes from a hashed offset below 15
    let c = CronExpr::parse_seeded("H/15 * * * *", 7).unwrap();
    let t = c.next_after(ts(2026, 1, 1, 0, 0, 0)).unwrap().to_chrono().unwrap().minute();
    assert!(t < 15);
    assert_eq!(c.next_after(ts(2026, 1, 1, 0, t, 0)).unwrap().to_chrono().unwrap().minute(), t + 15);
    // H(0-5) in the hour field stays inside the range
    for seed in 0..50 {
        let c = CronExpr::parse_seeded("0 H(0-5) * * *", seed).unwrap();
        assert!(c.next_after(ts(2026, 1, 1, 12, 0, 0)).unwrap().to_chrono().unwrap().hour() <= 5);
    }
    assert!(CronExpr::parse_seeded("H(50-70) * * * *", 1).unwrap_err().contains("outside"));
    assert!(CronExpr::parse_seeded("Hx * * * *", 1).is_err());
}
