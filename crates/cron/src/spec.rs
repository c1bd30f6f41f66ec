use chrono::{Offset, TimeZone};
use chrono_tz::Tz;
use cronhook_core::{ScheduleSpec, SpecKind, Timestamp, ValidationError};

use crate::CronExpr;

/// Fire times further than this many years ahead count as "none" (bounded search).
pub const MAX_SEARCH_YEARS: i64 = 200;
const YEAR_MS: i64 = 366 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
enum Rule {
    Cron(CronExpr, Tz),
    Interval { every_ms: i64, offset_ms: i64 },
    At(Timestamp),
}

/// A validated spec, ready to answer "when next?".
///
/// Properties (tested): returned fire times are strictly increasing, each lies inside
/// `[start, end)`, and no fire time of the rule is skipped between two consecutive answers.
#[derive(Debug, Clone)]
pub struct CompiledSpec {
    rule: Rule,
    tz: Tz,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
}

impl CompiledSpec {
    /// Validates and compiles a spec. Field paths start at `spec.`.
    pub fn compile(spec: &ScheduleSpec) -> Result<Self, ValidationError> {
        Self::compile_seeded(spec, 0)
    }

    /// [`CompiledSpec::compile`] for a given schedule: `seed` (from its id) fixes the values
    /// of hashed (`H`) cron fields.
    pub fn compile_seeded(spec: &ScheduleSpec, seed: u64) -> Result<Self, ValidationError> {
        let tz = parse_zone(&spec.time_zone)?;
        let rule = match &spec.kind {
            SpecKind::Cron(expr) => {
                Rule::Cron(CronExpr::parse_seeded(expr, seed).map_err(|r| ValidationError::new("spec.cron", r))?, tz)
            }
            SpecKind::Interval { every_ms, offset_ms } => {
                if *every_ms < 1000 {
                    return Err(ValidationError::new("spec.interval", "must be at least 1 s"));
                }
                if *every_ms % 1000 != 0 {
                    return Err(ValidationError::new("spec.interval", "must be a whole number of seconds"));
                }
                if *every_ms > 100 * YEAR_MS {
                    return Err(ValidationError::new("spec.interval", "must be at most 100 years"));
                }
                if *offset_ms < 0 || *offset_ms >= *every_ms {
                    return Err(ValidationError::new(
                        "spec.interval_offset",
                        "must be at least 0 and less than the interval",
                    ));
                }
                Rule::Interval { every_ms: *every_ms, offset_ms: *offset_ms }
            }
            SpecKind::At(t) => Rule::At(*t),
        };
        if let (Some(s), Some(e)) = (spec.start, spec.end)
            && e <= s
        {
            return Err(ValidationError::new("spec.end_time", "must be after start_time"));
        }
        Ok(Self { rule, tz, start: spec.start, end: spec.end })
    }

    /// Returns the first fire time strictly after `t`, or `None` when the spec has no more
    /// (past its end, a one-shot already past, or nothing within [`MAX_SEARCH_YEARS`]).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let from = match self.start {
            Some(s) if s > t => s.add_millis(-1),
            _ => t,
        };
        let next = self.rule_next_after(from)?;
        if next.millis_since(t) > MAX_SEARCH_YEARS * YEAR_MS {
            return None;
        }
        match self.end {
            Some(e) if next >= e => None,
            _ => Some(next),
        }
    }

    /// Returns the rule's first fire time strictly after `t`, ignoring the spec's start and
    /// end (what would have fired; the ledger records such times as skipped).
    pub fn rule_next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let next = match &self.rule {
            Rule::Cron(c, tz) => zoned_next_after(c, *tz, t)?.0,
            Rule::Interval { every_ms, offset_ms } => {
                let k = (t.as_millis() - offset_ms).div_euclid(*every_ms) + 1;
                Timestamp::from_millis(k.checked_mul(*every_ms)?.checked_add(*offset_ms)?)
            }
            Rule::At(at) => (*at > t).then_some(*at)?,
        };
        (next.millis_since(t) <= MAX_SEARCH_YEARS * YEAR_MS).then_some(next)
    }

    /// Returns the spec's start, if it has one.
    pub fn start(&self) -> Option<Timestamp> {
        self.start
    }

    /// Returns the spec's end, if it has one.
    pub fn end(&self) -> Option<Timestamp> {
        self.end
    }

    /// Returns the first fire time at or after `t`.
    pub fn first_at_or_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.next_after(t.add_millis(-1))
    }

    /// Returns up to `limit` fire times in `[from, to)`, oldest first.
    pub fn fire_times(&self, from: Timestamp, to: Timestamp, limit: usize) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut cur = self.first_at_or_after(from);
        while let Some(t) = cur {
            if t >= to || out.len() >= limit {
                break;
            }
            out.push(t);
            cur = self.next_after(t);
        }
        out
    }

    /// Returns the next `n` fire times strictly after `t`.
    pub fn preview(&self, t: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n);
        let mut cur = t;
        while out.len() < n {
            match self.next_after(cur) {
                Some(next) => {
                    out.push(next);
                    cur = next;
                }
                None => break,
            }
        }
        out
    }

    /// Returns whether `t` is one of the spec's fire times.
    pub fn matches(&self, t: Timestamp) -> bool {
        self.first_at_or_after(t) == Some(t)
    }
}

/// Parses an IANA zone name (case-insensitive; empty = UTC).
pub fn parse_zone(name: &str) -> Result<Tz, ValidationError> {
    let n = name.trim();
    if n.is_empty() {
        return Ok(Tz::UTC);
    }
    Tz::from_str_insensitive(n).map_err(|_| {
        ValidationError::new(
            "spec.time_zone",
            format!("{n:?} is not an IANA time zone (e.g. Europe/Berlin, America/New_York)"),
        )
    })
}

impl CompiledSpec {
    /// Returns the spec's time zone.
    pub fn zone(&self) -> Tz {
        self.tz
    }

    /// Returns how the DST policy moved fire time `t` (found by [`CompiledSpec::next_after`]),
    /// if it did: a wall time in a gap fired at the gap's end, or one of a repeated hour.
    pub fn dst_note(&self, t: Timestamp) -> Option<String> {
        let Rule::Cron(c, tz) = &self.rule else { return None };
        zoned_next_after(c, *tz, t.add_millis(-1)).and_then(|(at, note)| (at == t).then_some(note).flatten())
    }

    /// Formats `t` as wall time in the spec's zone (RFC 3339 with the offset).
    pub fn local_time(&self, t: Timestamp) -> String {
        match t.to_chrono() {
            Some(dt) => dt.with_timezone(&self.tz).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => t.to_rfc3339(),
        }
    }
}

fn offset_s(tz: Tz, t: Timestamp) -> i64 {
    t.to_chrono().map_or(0, |dt| i64::from(tz.offset_from_utc_datetime(&dt.naive_utc()).fix().local_minus_utc()))
}

/// Returns the first instant after `from` (and at most `until`) whose UTC offset differs
/// from the offset at `from`: a DST (or zone rule) transition. Offsets are sampled every 6 h
/// (transitions are further apart than that in the tz database), then bisected to the second.
fn next_transition(tz: Tz, from: Timestamp, until: Timestamp) -> Option<Timestamp> {
    const STEP: i64 = 6 * 3600 * 1000;
    let o = offset_s(tz, from);
    let mut lo = from;
    while lo < until {
        let hi = lo.add_millis(STEP).min(until);
        if offset_s(tz, hi) != o {
            // bisect on whole seconds: transitions happen on them
            let (mut a, mut b) = (lo.as_millis().div_euclid(1000), (hi.as_millis() + 999).div_euclid(1000));
            while b - a > 1 {
                let m = a + (b - a) / 2;
                if offset_s(tz, Timestamp::from_millis(m * 1000)) == o { a = m } else { b = m }
            }
            let b = Timestamp::from_millis(b * 1000);
            return Some(b);
        }
        lo = hi;
    }
    None
}

/// Cron in a time zone. Wall times are matched by `CronExpr` (instants read as UTC wall
/// clocks); this walks segments of constant UTC offset between transitions:
/// - a wall time inside a spring-forward gap does not exist: fixed-hour expressions fire at
///   the first instant after the gap (02:30 -> 03:00 in New York), hour-wildcard ones skip it;
/// - a wall time repeated by a fall-back fires once, at its first occurrence, for fixed-hour
///   expressions; hour-wildcard ones fire on both copies (every real instant that matches).
///
/// Returns the instant and, when the DST policy applied, a note saying how.
fn zoned_next_after(c: &CronExpr, tz: Tz, t: Timestamp) -> Option<(Timestamp, Option<String>)> {
    if tz == Tz::UTC {
        return c.next_after(t).map(|n| (n, None));
    }
    let mut seg = t; // instant where the current segment starts
    let mut wall = t.add_millis(offset_s(tz, t) * 1000);
    let mut inclusive = false;
    let horizon = t.add_millis(MAX_SEARCH_YEARS * YEAR_MS);
    while seg < horizon {
        let o = offset_s(tz, seg) * 1000;
        let cand = if inclusive { c.next_after(wall.add_millis(-1)) } else { c.next_after(wall) };
        let cand_instant = cand.map(|w| w.add_millis(-o));
        let limit = cand_instant.unwrap_or(horizon).min(horizon);
        match next_transition(tz, seg, limit) {
            None => {
                let at = cand_instant?;
                let note = repeated_note(tz, at, c.hour_wildcard());
                return Some((at, note));
            }
            Some(tr) => {
                let o2 = offset_s(tz, tr) * 1000;
                let (end_wall, new_wall) = (tr.add_millis(o), tr.add_millis(o2));
                if o2 > o {
                    // spring forward: wall times [end_wall, new_wall) do not exist
                    if !c.hour_wildcard()
                        && let Some(m) = c.next_after(end_wall.add_millis(-1)).filter(|m| *m < new_wall)
                    {
                        let note =
                            format!("{} does not exist (DST gap): fired at {}", wall_text(m), wall_text(new_wall));
                        return Some((tr, Some(note)));
                    }
                    wall = new_wall;
                } else {
                    // fall back: wall times [new_wall, end_wall) happen again
                    wall = if c.hour_wildcard() { new_wall } else { end_wall };
                }
                inclusive = true;
                seg = tr;
            }
        }
    }
    None
}

fn wall_text(w: Timestamp) -> String {
    w.to_chrono().map_or_else(|| w.to_rfc3339(), |d| d.format("%H:%M").to_string())
}

/// Notes a fire time whose wall time is repeated by a fall-back.
fn repeated_note(tz: Tz, at: Timestamp, wildcard: bool) -> Option<String> {
    let naive = at.to_chrono()?.with_timezone(&tz).naive_local();
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Ambiguous(first, _) => {
            let is_first = Timestamp::from_chrono(first.with_timezone(&chrono::Utc)) == at;
            Some(match (is_first, wildcard) {
                (true, false) => {
                    format!("{} occurs twice (DST fall back): fired at its first occurrence", naive.format("%H:%M"))
                }
                (true, true) => format!("{} occurs twice (DST fall back): first occurrence", naive.format("%H:%M")),
                (false, _) => format!("{} occurs twice (DST fall back): second occurrence", naive.format("%H:%M")),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(kind: SpecKind) -> ScheduleSpec {
        ScheduleSpec { kind, time_zone: "UTC".into(), start: None, end: None, remaining_runs: None }
    }

    #[test]
    fn interval_is_aligned_to_the_epoch() {
        let c = CompiledSpec::compile(&spec(SpecKind::Interval { every_ms: 30_000, offset_ms: 0 })).unwrap();
        let t = Timestamp::from_millis(1_700_000_012_345);
        assert_eq!(c.next_after(t), Some(Timestamp::from_millis(1_700_000_040_000)));
        // the same grid whatever instant we start from: restarts never drift
        assert_eq!(
            c.next_after(Timestamp::from_millis(1_700_000_039_999)),
            Some(Timestamp::from_millis(1_700_000_040_000))
        );
        let c = CompiledSpec::compile(&spec(SpecKind::Interval { every_ms: 60_000, offset_ms: 5_000 })).unwrap();
        assert_eq!(
            c.next_after(Timestamp::from_millis(1_700_000_000_000)),
            Some(Timestamp::from_millis(1_700_000_045_000))
        );
    }

    #[test]
    fn bounds_and_one_shots() {
        let at = Timestamp::from_millis(1_800_000_000_000);
        let c = CompiledSpec::compile(&spec(SpecKind::At(at))).unwrap();
        assert_eq!(c.next_after(at.add_millis(-1)), Some(at));
        assert_eq!(c.next_after(at), None);

        let mut s = spec(SpecKind::Interval { every_ms: 1000, offset_ms: 0 });
        s.start = Some(Timestamp::from_millis(10_000));
        s.end = Some(Timestamp::from_millis(13_000));
        let c = CompiledSpec::compile(&s).unwrap();
        let all = c.fire_times(Timestamp::from_millis(0), Timestamp::from_millis(100_000), 100);
        assert_eq!(all, [10_000, 11_000, 12_000].map(Timestamp::from_millis));
    }

    #[test]
    fn names_the_bad_field() {
        let e = CompiledSpec::compile(&spec(SpecKind::Cron("nope".into()))).unwrap_err();
        assert_eq!(e.field, "spec.cron");
        let e = CompiledSpec::compile(&spec(SpecKind::Interval { every_ms: 500, offset_ms: 0 })).unwrap_err();
        assert_eq!(e.field, "spec.interval");
        let mut s = spec(SpecKind::Cron("* * * * *".into()));
        s.time_zone = "Mars/Olympus".into();
        assert_eq!(CompiledSpec::compile(&s).unwrap_err().field, "spec.time_zone");
        let mut s = spec(SpecKind::Cron("* * * * *".into()));
        s.start = Some(Timestamp::from_millis(10));
        s.end = Some(Timestamp::from_millis(10));
        assert_eq!(CompiledSpec::compile(&s).unwrap_err().field, "spec.end_time");
    }

    proptest! {
        #[test]
        fn interval_fire_times_are_the_grid(every in 1u32..100_000, offset_frac in 0.0f64..1.0, start in 0i64..4_000_000_000_000) {
            let every_ms = i64::from(every) * 1000;
            let offset_ms = ((every_ms as f64 * offset_frac) as i64 / 1000 * 1000).min(every_ms - 1000);
            let c = CompiledSpec::compile(&spec(SpecKind::Interval { every_ms, offset_ms })).unwrap();
            let t0 = Timestamp::from_millis(start);
            let n = c.next_after(t0).unwrap();
            prop_assert!(n > t0 && n.millis_since(t0) <= every_ms);
            prop_assert_eq!((n.as_millis() - offset_ms).rem_euclid(every_ms), 0);
            prop_assert_eq!(c.next_after(n), Some(n.add_millis(every_ms)));
        }
    }
}
