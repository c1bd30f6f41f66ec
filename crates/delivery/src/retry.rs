//! Pure retry math: when the next attempt of a failed run starts, if at all.
//!
//! Properties (property-tested below):
//! - the base wait `initial * multiplier^(n-2)` never decreases from one retry to the next
//!   and never exceeds `max_backoff`;
//! - jitter only shortens a wait, by at most [`JITTER`] of it, and is deterministic in
//!   (seed, attempt): every worker computes the same schedule for a run;
//! - no retry starts later than `max_retry_duration` after the first attempt started, and
//!   none after `max_attempts` attempts;
//! - a receiver's `Retry-After` steers the wait within the policy's bounds
//!   (`[initial_backoff, max_backoff]`).

use cronhook_core::{RetryPolicy, Timestamp};

/// Largest fraction of a wait that jitter removes.
pub const JITTER: f64 = 0.2;

/// Returns the wait before attempt `next` (2 = the first retry) before jitter.
pub fn base_wait_ms(p: &RetryPolicy, next: u32) -> i64 {
    p.backoff_ms(next)
}

/// Returns the jittered wait before attempt `next`, in `[(1 - JITTER) * base, base]`.
pub fn jittered_wait_ms(p: &RetryPolicy, next: u32, seed: u64) -> i64 {
    let base = base_wait_ms(p, next);
    let u = unit(seed, next);
    base - (base as f64 * JITTER * u) as i64
}

/// Returns when attempt `next` should start, or `None` when the policy allows no more.
/// `first` is when the first attempt started; `now` when the failed attempt ended;
/// `retry_after_ms` is the receiver's `Retry-After`, if any.
pub fn next_attempt_at(
    p: &RetryPolicy,
    next: u32,
    first: Timestamp,
    now: Timestamp,
    retry_after_ms: Option<i64>,
    seed: u64,
) -> Option<Timestamp> {
    if next > p.max_attempts {
        return None;
    }
    let wait = match retry_after_ms {
        Some(ra) => ra.clamp(p.initial_backoff_ms, p.max_backoff_ms.max(p.initial_backoff_ms)),
        None => jittered_wait_ms(p, next, seed),
    };
    let at = now.add_millis(wait.max(0));
    match p.max_retry_duration_ms {
        Some(max) if at.millis_since(first) > max => None,
        _ => Some(at),
    }
}

/// A deterministic number in [0, 1) from (seed, n) (splitmix64).
fn unit(seed: u64, n: u32) -> f64 {
    let mut z = seed ^ (u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> impl Strategy<Value = RetryPolicy> {
        (1u32..=50, 0i64..10_000, 0i64..600_000, 1.0f64..10.0, proptest::option::of(0i64..3_600_000)).prop_map(
            |(max_attempts, initial, extra, multiplier, max_dur)| RetryPolicy {
                max_attempts,
                initial_backoff_ms: initial,
                max_backoff_ms: initial + extra,
                multiplier,
                max_retry_duration_ms: max_dur,
            },
        )
    }

    #[test]
    fn defaults_double_from_one_second() {
        let p = RetryPolicy::default();
        let waits: Vec<i64> = (2..=5).map(|n| base_wait_ms(&p, n)).collect();
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000]);
        assert_eq!(base_wait_ms(&p, 40), p.max_backoff_ms, "capped");
    }

    #[test]
    fn retry_after_steers_within_bounds() {
        let p = RetryPolicy::default(); // 1 s .. 60 s
        let t0 = Timestamp::from_millis(0);
        assert_eq!(next_attempt_at(&p, 2, t0, t0, Some(5_000), 1), Some(Timestamp::from_millis(5_000)));
        assert_eq!(next_attempt_at(&p, 2, t0, t0, Some(3_600_000), 1), Some(Timestamp::from_millis(60_000)), "capped");
        assert_eq!(next_attempt_at(&p, 2, t0, t0, Some(0), 1), Some(Timestamp::from_millis(1_000)), "floored");
        assert_eq!(next_attempt_at(&p, p.max_attempts + 1, t0, t0, None, 1), None);
    }

    proptest! {
        #[test]
        fn waits_grow_are_capped_and_jitter_is_bounded(p in policy(), seed in any::<u64>()) {
            let mut last = 0;
            for n in 2..=p.max_attempts.max(2) {
                let base = base_wait_ms(&p, n);
                prop_assert!(base >= last, "non-decreasing");
                prop_assert!(base <= p.max_backoff_ms);
                let j = jittered_wait_ms(&p, n, seed);
                prop_assert!(j <= base && j as f64 >= base as f64 * (1.0 - JITTER) - 1.0);
                prop_assert_eq!(j, jittered_wait_ms(&p, n, seed), "deterministic");
                last = base;
            }
        }

        #[test]
        fn never_past_the_max_retry_duration(p in policy(), seed in any::<u64>(), elapsed in proptest::collection::vec(0i64..120_000, 1..50)) {
            let first = Timestamp::from_millis(1_000_000);
            let mut now = first;
            let mut n = 1;
            for e in elapsed {
                now = now.add_millis(e); // the failed attempt took this long
                n += 1;
                match next_attempt_at(&p, n, first, now, None, seed) {
                    Some(at) => {
                        prop_assert!(n <= p.max_attempts);
                        if let Some(max) = p.max_retry_duration_ms {
                            prop_assert!(at.millis_since(first) <= max);
                        }
                        prop_assert!(at >= now);
                        now = at;
                    }
                    None => break,
                }
            }
        }
    }
}
