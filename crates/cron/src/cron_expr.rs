//! Cron expressions: 5 fields (minute hour day-of-month month day-of-week) or 6 with a
//! leading seconds field, and macros.
//!
//! saffron's surprises (see docs/dependencies.md): its day-of-week numbers are Quartz style
//! (1 = Sunday ... 7 = Saturday, 0 rejected), while users write Unix cron (0 or 7 = Sunday,
//! 1 = Monday). We therefore rewrite the day-of-week field into day NAMES before saffron
//! sees it, so no number ever reaches saffron's day-of-week parser. saffron has no seconds
//! field and no macros; both are handled here.

use chrono::{DateTime, Datelike, Timelike, Utc};
use cronhook_core::Timestamp;

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A parsed cron expression with second resolution, matched in UTC.
#[derive(Debug, Clone)]
pub struct CronExpr {
    /// Bit `s` set when second `s` (0-59) matches.
    seconds: u64,
    minutes: saffron::Cron,
    /// The hour field is `*` or a step: such expressions fire on every real instant that
    /// matches, both copies of a repeated (DST) hour included, and skip wall times that
    /// do not exist; fixed-hour expressions fire once (see `spec.rs`).
    hour_wildcard: bool,
    /// Vixie cron's day rule: day-of-month and day-of-week are OR-ed only when neither
    /// field starts with `*`; otherwise both must match. saffron always ORs two restricted
    /// fields, so for `*/2` style fields `minutes` carries day-of-month only and this mask
    /// (bit 0 = Sunday) filters the days of the week.
    weekdays_and: Option<u8>,
}

impl CronExpr {
    /// Parses an expression; the error is a lowercase reason suitable for an API message.
    pub fn parse(input: &str) -> Result<Self, String> {
        Self::parse_seeded(input, 0)
    }

    /// Parses an expression whose `H` fields (Jenkins-style hashed values: `H`, `H/15`,
    /// `H(0-29)`, `H(0-29)/10`) take a stable value derived from `seed` (the schedule id),
    /// so schedules written `H * * * *` spread over the hour instead of all firing at :00.
    pub fn parse_seeded(input: &str, seed: u64) -> Result<Self, String> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        let expanded = expand_hashes(&expand_macro(trimmed)?, seed)?;
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => (1u64, &fields[..]),
            6 => (parse_seconds(fields[0])?, &fields[1..]),
            n => {
                return Err(format!(
                    "has {n} fields; expected 5 (minute hour day-of-month month day-of-week) \
                     or 6 (with leading seconds)"
                ));
            }
        };
        let dow = translate_day_of_week(rest[4])?;
        let star = |f: &str| f.starts_with('*') || f == "?";
        let restricted = |f: &str| f != "*" && f != "?";
        let weekdays_and = (restricted(rest[2]) && restricted(rest[4]) && (star(rest[2]) || star(rest[4])))
            .then(|| weekday_mask(&dow));
        let dow_for_saffron = if weekdays_and.is_some() { "*".to_owned() } else { dow };
        let minute_part = format!("{} {} {} {} {}", rest[0], rest[1], rest[2], rest[3], dow_for_saffron);
        let minutes: saffron::Cron =
            minute_part.parse().map_err(|e| format!("is not a valid cron expression ({e})"))?;
        if !minutes.any() {
            return Err("never matches any date (e.g. 30 February)".into());
        }
        let hour_wildcard = rest[1].contains('*') || rest[1].contains('/');
        if weekdays_and == Some(0) {
            return Err("never matches any day".into());
        }
        Ok(Self { seconds, minutes, hour_wildcard, weekdays_and })
    }

    /// Returns whether the hour field is `*` or a step.
    pub fn hour_wildcard(&self) -> bool {
        self.hour_wildcard
    }

    /// Returns the first matching instant strictly after `t`, or `None` if there is none
    /// before chrono's last representable year. Instants here are wall times read as UTC;
    /// time zones are applied by `CompiledSpec`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let Some(mask) = self.weekdays_and else { return self.next_after_or(t) };
        // AND of the day fields: skip whole days whose weekday is not in the mask (at
        // most a few years of days for the sparsest combinations, e.g. Friday the 13th).
        let mut from = t;
        for _ in 0..20_000 {
            let c = self.next_after_or(from)?;
            let dt = c.to_chrono()?;
            if mask & (1 << dt.weekday().num_days_from_sunday()) != 0 {
                return Some(c);
            }
            let end_of_day = dt.date_naive().and_hms_opt(23, 59, 59)?.and_utc();
            from = Timestamp::from_chrono(end_of_day);
        }
        None
    }

    fn next_after_or(&self, t: Timestamp) -> Option<Timestamp> {
        let dt = t.to_chrono()?;
        let minute = dt.with_nanosecond(0)?.with_second(0)?;
        let sec = dt.second();
        if self.minutes.contains(minute) {
            // seconds strictly greater than the current one (t itself may carry millis,
            // but base + sec <= t, so sec itself is never "after").
            let later = if sec >= 59 { 0 } else { self.seconds >> (sec + 1) << (sec + 1) };
            if later != 0 {
                return Some(from_dt(minute).add_millis(i64::from(later.trailing_zeros()) * 1000));
            }
        }
        let next_minute = self.minutes.next_after(minute)?;
        Some(from_dt(next_minute).add_millis(i64::from(self.seconds.trailing_zeros()) * 1000))
    }

    /// Returns whether `t` (a whole second) matches.
    pub fn matches(&self, t: Timestamp) -> bool {
        let Some(dt) = t.to_chrono() else { return false };
        if dt.timestamp_subsec_millis() != 0 {
            return false;
        }
        let minute = dt.with_second(0).and_then(|d| d.with_nanosecond(0));
        let weekday_ok = self.weekdays_and.is_none_or(|m| m & (1 << dt.weekday().num_days_from_sunday()) != 0);
        weekday_ok && minute.is_some_and(|m| self.minutes.contains(m)) && self.seconds & (1 << dt.second()) != 0
    }
}

fn from_dt(dt: DateTime<Utc>) -> Timestamp {
    Timestamp::from_chrono(dt)
}

/// Replaces `H` items by their hashed values (see [`CronExpr::parse_seeded`]).
fn expand_hashes(expr: &str, seed: u64) -> Result<String, String> {
    if !expr.contains('H') {
        return Ok(expr.to_owned());
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    // (lo, hi) of each field, 5 or 6 fields (with leading seconds)
    let ranges: &[(u32, u32)] = if fields.len() == 6 {
        &[(0, 59), (0, 59), (0, 23), (1, 28), (1, 12), (0, 6)]
    } else {
        &[(0, 59), (0, 23), (1, 28), (1, 12), (0, 6)]
    };
    if fields.len() != ranges.len() {
        return Ok(expr.to_owned()); // the field count error comes next
    }
    let mut out = Vec::with_capacity(fields.len());
    for (i, (f, (lo, hi))) in fields.iter().zip(ranges).enumerate() {
        let items: Result<Vec<String>, String> = f.split(',').map(|item| hash_item(item, *lo, *hi, seed, i)).collect();
        out.push(items?.join(","));
    }
    Ok(out.join(" "))
}

fn hash_item(item: &str, lo: u32, hi: u32, seed: u64, field: usize) -> Result<String, String> {
    let Some(rest) = item.strip_prefix('H') else { return Ok(item.to_owned()) };
    let bad = || format!("bad hashed item {item:?} (use H, H/n, H(a-b) or H(a-b)/n)");
    let (range, step) = match rest.split_once('/') {
        Some((r, s)) => (r, Some(s.parse::<u32>().map_err(|_| bad())?.max(1))),
        None => (rest, None),
    };
    let (a, b) = if range.is_empty() {
        (lo, hi)
    } else {
        let inner = range.strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(bad)?;
        let (a, b) = inner.split_once('-').ok_or_else(bad)?;
        let (a, b) = (a.parse::<u32>().map_err(|_| bad())?, b.parse::<u32>().map_err(|_| bad())?);
        if a > b || a < lo || b > hi {
            return Err(format!("hashed range {a}-{b} outside {lo}-{hi}"));
        }
        (a, b)
    };
    let mut h = seed ^ (field as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    Ok(match step {
        None => (a + (h % u64::from(b - a + 1)) as u32).to_string(),
        Some(s) => format!("{}-{b}/{s}", a + (h % u64::from(s.min(b - a + 1))) as u32),
    })
}

fn expand_macro(s: &str) -> Result<String, String> {
    if !s.starts_with('@') {
        return Ok(s.to_owned());
    }
    Ok(match s.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => {
            return Err(format!(
                "unknown macro {other}; known: @yearly @annually @monthly @weekly @daily @midnight @hourly"
            ));
        }
    }
    .to_owned())
}

/// Parses a seconds field (`*`, `*/n`, `a`, `a-b`, `a-b/n`, `a/n`, comma lists) into a bitmask.
fn parse_seconds(field: &str) -> Result<u64, String> {
    let mut mask = 0u64;
    for item in field.split(',') {
        for v in expand_item(item, 0, 59, &|s| s.parse::<u32>().ok()).map_err(|e| format!("seconds field: {e}"))? {
            mask |= 1 << v;
        }
    }
    Ok(mask)
}

/// Expands one list item of a numeric field into its values.
fn expand_item(item: &str, min: u32, max: u32, value: &dyn Fn(&str) -> Option<u32>) -> Result<Vec<u32>, String> {
    let (base, step) = match item.split_once('/') {
        Some((b, s)) => {
            let step: u32 = s.parse().map_err(|_| format!("bad step {s:?}"))?;
            if step == 0 {
                return Err("step must be at least 1".into());
            }
            (b, step)
        }
        None => (item, 1),
    };
    let has_step = item.contains('/');
    let parse = |s: &str| -> Result<u32, String> {
        let v = value(s).ok_or_else(|| format!("bad value {s:?}"))?;
        if v < min || v > max {
            return Err(format!("value {v} out of range {min}-{max}"));
        }
        Ok(v)
    };
    let (lo, hi) = if base == "*" {
        (min, max)
    } else if let Some((a, b)) = base.split_once('-') {
        let (a, b) = (parse(a)?, parse(b)?);
        if a > b {
            return Err(format!("range {a}-{b} starts after it ends"));
        }
        (a, b)
    } else {
        let a = parse(base)?;
        (a, if has_step { max } else { a })
    };
    Ok((lo..=hi).step_by(step as usize).collect())
}

/// Returns the weekday bits (bit 0 = Sunday) of a translated day-of-week list.
fn weekday_mask(names: &str) -> u8 {
    if names == "*" {
        return 0x7f;
    }
    names.split(',').filter_map(|n| DAY_NAMES.iter().position(|d| *d == n)).fold(0u8, |m, d| m | (1 << d))
}

fn day_value(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(s)).map(|p| p as u32)
}

/// Rewrites a Unix day-of-week field (0-7, 0 and 7 = Sunday, names) into the names saffron
/// reads unambiguously. Lists, ranges and steps are expanded here, so saffron only sees
/// `*`, a list of names, or one `<name>L` / `<name>#n` item.
fn translate_day_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let err = |e: String| format!("day-of-week field: {e}");
    // Quartz-style "last <day> of month" and "<day>#<n>": one item only (saffron's rule).
    for marker in ['L', '#'] {
        if let Some(pos) = field.to_ascii_uppercase().find(marker) {
            if field == "L" {
                return Ok("SAT".into()); // Quartz: L alone in day-of-week is the last day, Saturday
            }
            let (day, rest) = field.split_at(pos);
            let d = day_value(day).filter(|d| *d <= 7).ok_or_else(|| err(format!("bad value {day:?}")))?;
            return Ok(format!("{}{}", DAY_NAMES[(d % 7) as usize], rest.to_ascii_uppercase()));
        }
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        for d in expand_item(item, 0, 7, &day_value).map_err(err)? {
            days[(d % 7) as usize] = true;
        }
    }
    let names: Vec<&str> = (0..7).filter(|d| days[*d]).map(|d| DAY_NAMES[d]).collect();
    Ok(names.join(","))
}

#[cfg(test)]
mod tests;
