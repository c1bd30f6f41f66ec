use cronhook_core::{ScheduleSpec, SpecKind, Timestamp, ValidationError};

use crate::CronExpr;

/// Fire times further than this many years ahead count as "none" (bounded search).
pub const MAX_SEARCH_YEARS: i64 = 200;
const YEAR_MS: i64 = 366 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
enum Rule {
    Cron(CronExpr),
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
    start: Option<Timestamp>,
    end: Option<Timestamp>,
}

impl CompiledSpec {
    /// Validates and compiles a spec. Field paths start at `spec.`.
    pub fn compile(spec: &ScheduleSpec) -> Result<Self, ValidationError> {
        if !spec.time_zone.is_empty() && spec.time_zone != "UTC" && spec.time_zone != "Etc/UTC" {
            return Err(ValidationError::new(
                "spec.time_zone",
                format!(
                    "{:?}: only UTC is supported in this release (time zones with DST rules are coming)",
                    spec.time_zone
                ),
            ));
        }
        let rule = match &spec.kind {
            SpecKind::Cron(expr) => {
                Rule::Cron(CronExpr::parse(expr).map_err(|r| ValidationError::new("spec.cron", r))?)
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
        Ok(Self { rule, start: spec.start, end: spec.end })
    }

    /// Returns the first fire time strictly after `t`, or `None` when the spec has no more
    /// (past its end, a one-shot already past, or nothing within [`MAX_SEARCH_YEARS`]).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let from = match self.start {
            Some(s) if s > t => s.add_millis(-1),
            _ => t,
        };
        let next = match &self.rule {
            Rule::Cron(c) => c.next_after(from)?,
            Rule::Interval { every_ms, offset_ms } => {
                let k = (from.as_millis() - offset_ms).div_euclid(*every_ms) + 1;
                Timestamp::from_millis(k.checked_mul(*every_ms)?.checked_add(*offset_ms)?)
            }
            Rule::At(at) => (*at > from).then_some(*at)?,
        };
        if next.millis_since(t) > MAX_SEARCH_YEARS * YEAR_MS {
            return None;
        }
        match self.end {
            Some(e) if next >= e => None,
            _ => Some(next),
        }
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
