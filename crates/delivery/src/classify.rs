//! What a response means for the run. One table, documented in docs/delivery.md:
//!
//! | response | verdict |
//! |---|---|
//! | 2xx | success |
//! | any non-2xx with `cronhook-no-retry: true` | failure, no retry |
//! | 410 Gone | failure, no retry, and the schedule is paused |
//! | 408, 425, 429, 5xx | retry (honouring `Retry-After`, seconds or HTTP date) |
//! | 3xx not followed (redirects off, or more than 3 hops) | failure, no retry |
//! | other 4xx | failure, no retry |

use std::time::SystemTime;

use reqwest::header::HeaderMap;

/// Response header with which a receiver stops retries of the run.
pub const NO_RETRY_HEADER: &str = "cronhook-no-retry";

/// The verdict on one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Success,
    /// Retry, after the receiver's `Retry-After` if it gave one (milliseconds).
    Retry {
        /// Parsed `Retry-After`.
        retry_after_ms: Option<i64>,
    },
    /// Failed; no retry.
    Fail {
        /// Why, for the attempt record.
        reason: String,
    },
    /// Failed; no retry; pause the schedule.
    FailAndPause {
        /// Why, for the attempt record and the schedule's state reason.
        reason: String,
    },
}

/// Classifies a response status and its headers at `now` (for HTTP-date `Retry-After`).
pub fn classify(status: u16, headers: &HeaderMap, now: SystemTime) -> Verdict {
    if (200..300).contains(&status) {
        return Verdict::Success;
    }
    let no_retry = headers
        .get(NO_RETRY_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if status == 410 {
        return Verdict::FailAndPause { reason: "the target answered 410 Gone: schedule paused".into() };
    }
    if no_retry {
        return Verdict::Fail { reason: format!("HTTP {status} with {NO_RETRY_HEADER}: true") };
    }
    match status {
        408 | 425 | 429 | 500..=599 => Verdict::Retry { retry_after_ms: retry_after(headers, now) },
        300..=399 => Verdict::Fail { reason: format!("HTTP {status}: redirect not followed") },
        _ => Verdict::Fail { reason: format!("HTTP {status}") },
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (RFC 9110).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<i64> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return Some(secs.max(0).saturating_mul(1000));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    Some((at.timestamp_millis() - now.timestamp_millis()).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::{Duration, UNIX_EPOCH};

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn the_table() {
        let now = SystemTime::now();
        let none = HeaderMap::new();
        assert_eq!(classify(200, &none, now), Verdict::Success);
        assert_eq!(classify(204, &none, now), Verdict::Success);
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(s, &none, now), Verdict::Retry { retry_after_ms: None }, "{s}");
        }
        for s in [301, 302, 307, 400, 401, 403, 404, 422] {
            assert!(matches!(classify(s, &none, now), Verdict::Fail { .. }), "{s}");
        }
        assert!(matches!(classify(410, &none, now), Verdict::FailAndPause { .. }));
        assert!(matches!(classify(503, &h(&[("cronhook-no-retry", "true")]), now), Verdict::Fail { .. }));
        assert!(matches!(classify(503, &h(&[("cronhook-no-retry", "false")]), now), Verdict::Retry { .. }));
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after(&h(&[("retry-after", "120")]), now), Some(120_000));
        assert_eq!(retry_after(&h(&[("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")]), now), Some(30_000));
        assert_eq!(retry_after(&h(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]), now), Some(0), "past");
        assert_eq!(retry_after(&h(&[("retry-after", "soon")]), now), None);
        assert_eq!(classify(429, &h(&[("retry-after", "7")]), now), Verdict::Retry { retry_after_ms: Some(7_000) });
    }
}
