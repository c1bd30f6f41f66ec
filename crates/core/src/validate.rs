//! Validation of the parts of a schedule that need no parser of their own (the spec is
//! checked by `cronhook-cron`). Every error names the field with its API path.

use crate::{HttpTarget, NewSchedule, RetryPolicy, ValidationError};

/// Limits applied at creation and update; configurable by the operator.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body a target may carry.
    pub max_body_bytes: usize,
    /// Longest per-attempt timeout.
    pub max_timeout_ms: i64,
    /// Longest catch-up window.
    pub max_catchup_window_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_timeout_ms: 5 * 60 * 1000,
            max_catchup_window_ms: 366 * 24 * 3600 * 1000,
        }
    }
}

/// Headers cronhook sets itself; a user header may not use these names.
pub const RESERVED_HEADER_PREFIX: &str = "webhook-";
const MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];
const MAX_HEADERS: usize = 64;
const MAX_HEADER_VALUE: usize = 8 * 1024;
const MAX_URL: usize = 2048;
const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 2000;
const MAX_LABELS: usize = 64;

/// Checks everything in `s` except `s.spec` (see `cronhook-cron`). Field paths start at
/// `schedule.`.
pub fn schedule(s: &NewSchedule, limits: &Limits) -> Result<(), ValidationError> {
    let name = s.name.trim();
    if name.is_empty() {
        return Err(ValidationError::new("schedule.name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(ValidationError::new("schedule.name", format!("must be at most {MAX_NAME} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ValidationError::new("schedule.name", "must not contain control characters"));
    }
    if s.description.chars().count() > MAX_DESCRIPTION {
        return Err(ValidationError::new(
            "schedule.description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    target(&s.target, limits).map_err(|e| e.within("schedule"))?;
    retry(&s.retry).map_err(|e| e.within("schedule"))?;
    if s.catchup_window_ms < 0 || s.catchup_window_ms > limits.max_catchup_window_ms {
        return Err(ValidationError::new(
            "schedule.catchup_window",
            format!("must be between 0 and {} s", limits.max_catchup_window_ms / 1000),
        ));
    }
    if s.jitter_ms < 0 || s.jitter_ms > 24 * 3600 * 1000 {
        return Err(ValidationError::new("schedule.jitter", "must be between 0 and 24 h"));
    }
    if s.labels.len() > MAX_LABELS {
        return Err(ValidationError::new("schedule.labels", format!("at most {MAX_LABELS} labels")));
    }
    for (k, v) in &s.labels {
        let ok = !k.is_empty() && k.len() <= 63 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !ok {
            return Err(ValidationError::new(
                format!("schedule.labels[{k}]"),
                "key must be 1-63 characters of a-z, A-Z, 0-9, -, _, . and /",
            ));
        }
        if v.len() > 256 || v.chars().any(char::is_control) {
            return Err(ValidationError::new(
                format!("schedule.labels[{k}]"),
                "value must be at most 256 characters without control characters",
            ));
        }
    }
    if let Some(u) = &s.failure_notification_url {
        url(u).map_err(|r| ValidationError::new("schedule.failure_notification_url", r))?;
    }
    Ok(())
}

/// Checks a target. Field paths start at `target.`.
pub fn target(t: &HttpTarget, limits: &Limits) -> Result<(), ValidationError> {
    url(&t.url).map_err(|r| ValidationError::new("target.url", r))?;
    if t.headers.len() > MAX_HEADERS {
        return Err(ValidationError::new("target.headers", format!("at most {MAX_HEADERS} headers")));
    }
    for (i, h) in t.headers.iter().enumerate() {
        let field = format!("target.headers[{i}]");
        header_name(&h.name).map_err(|r| ValidationError::new(format!("{field}.name"), r))?;
        header_value(&h.value).map_err(|r| ValidationError::new(format!("{field}.value"), r))?;
    }
    if t.body.len() > limits.max_body_bytes {
        return Err(ValidationError::new(
            "target.body",
            format!("is {} bytes, the limit is {} bytes", t.body.len(), limits.max_body_bytes),
        ));
    }
    if t.timeout_ms < 1000 || t.timeout_ms > limits.max_timeout_ms {
        return Err(ValidationError::new(
            "target.timeout",
            format!("must be between 1 s and {} s", limits.max_timeout_ms / 1000),
        ));
    }
    Ok(())
}

/// Checks a retry policy. Field paths start at `retry_policy.`.
pub fn retry(r: &RetryPolicy) -> Result<(), ValidationError> {
    if !(1..=50).contains(&r.max_attempts) {
        return Err(ValidationError::new("retry_policy.max_attempts", "must be between 1 and 50"));
    }
    if r.initial_backoff_ms < 0 || r.initial_backoff_ms > 3600 * 1000 {
        return Err(ValidationError::new("retry_policy.initial_backoff", "must be between 0 and 1 h"));
    }
    if r.max_backoff_ms < r.initial_backoff_ms || r.max_backoff_ms > 24 * 3600 * 1000 {
        return Err(ValidationError::new(
            "retry_policy.max_backoff",
            "must be at least initial_backoff and at most 24 h",
        ));
    }
    if !r.multiplier.is_finite() || r.multiplier < 1.0 || r.multiplier > 10.0 {
        return Err(ValidationError::new("retry_policy.multiplier", "must be between 1.0 and 10.0"));
    }
    if r.max_retry_duration_ms.is_some_and(|d| d < 0) {
        return Err(ValidationError::new("retry_policy.max_retry_duration", "must not be negative"));
    }
    Ok(())
}

/// Returns why `s` is not an acceptable target URL.
pub fn url(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let u = url::Url::parse(s).map_err(|e| format!("is not a valid URL ({e})"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("scheme must be http or https, not {}", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials; use a secret Authorization header".into());
    }
    if u.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    Ok(())
}

/// Returns why `name` is not an acceptable user header name.
pub fn header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("must not contain CR, LF or NUL".into());
    }
    // RFC 9110 token characters.
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(tchar) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with(RESERVED_HEADER_PREFIX) {
        return Err(format!("{name:?} is reserved: cronhook sets webhook-* headers itself"));
    }
    if MANAGED_HEADERS.contains(&lower.as_str()) {
        return Err(format!("{name:?} is managed by the HTTP client and cannot be set"));
    }
    Ok(())
}

/// Returns why `value` is not an acceptable header value.
pub fn header_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("must not contain CR, LF or NUL".into());
    }
    if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err("must not contain control characters".into());
    }
    if value.len() > MAX_HEADER_VALUE {
        return Err(format!("must be at most {MAX_HEADER_VALUE} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, HttpMethod, OverlapPolicy, ScheduleSpec, SpecKind};

    fn sample() -> NewSchedule {
        NewSchedule {
            name: "ping".into(),
            description: String::new(),
            spec: ScheduleSpec {
                kind: SpecKind::Cron("* * * * *".into()),
                time_zone: "UTC".into(),
                start: None,
                end: None,
                remaining_runs: None,
            },
            target: HttpTarget {
                url: "https://example.com/hook".into(),
                method: HttpMethod::Post,
                headers: vec![Header { name: "X-A".into(), value: "1".into(), secret: false }],
                body: b"{}".to_vec(),
                timeout_ms: 30_000,
                follow_redirects: false,
            },
            retry: RetryPolicy::default(),
            overlap: OverlapPolicy::Skip,
            catchup_window_ms: 60_000,
            jitter_ms: 0,
            labels: Default::default(),
            failure_notification_url: None,
            auto_pause_after_failures: 0,
            signing_secrets: Vec::new(),
        }
    }

    fn field_of(s: &NewSchedule) -> String {
        schedule(s, &Limits::default()).unwrap_err().field
    }

    #[test]
    fn accepts_sample() {
        schedule(&sample(), &Limits::default()).unwrap();
    }

    #[test]
    fn names_the_bad_field() {
        let mut s = sample();
        s.name = "  ".into();
        assert_eq!(field_of(&s), "schedule.name");

        let mut s = sample();
        s.target.url = "ftp://example.com".into();
        let e = schedule(&s, &Limits::default()).unwrap_err();
        assert_eq!(e.field, "schedule.target.url");
        assert!(e.reason.contains("http or https"), "{e}");

        let mut s = sample();
        s.target.headers[0].value = "a\r\nInjected: 1".into();
        assert_eq!(field_of(&s), "schedule.target.headers[0].value");

        let mut s = sample();
        s.target.headers[0].name = "Bad\nName".into();
        assert_eq!(field_of(&s), "schedule.target.headers[0].name");

        let mut s = sample();
        s.target.headers[0].name = "Webhook-Id".into();
        assert_eq!(field_of(&s), "schedule.target.headers[0].name");

        let mut s = sample();
        s.target.body = vec![b'x'; 256 * 1024 + 1];
        assert_eq!(field_of(&s), "schedule.target.body");

        let mut s = sample();
        s.retry.max_attempts = 0;
        assert_eq!(field_of(&s), "schedule.retry_policy.max_attempts");

        let mut s = sample();
        s.target.timeout_ms = 10 * 60 * 1000;
        assert_eq!(field_of(&s), "schedule.target.timeout");
    }

    #[test]
    fn body_at_the_limit_is_accepted() {
        let mut s = sample();
        s.target.body = vec![b'x'; 256 * 1024];
        schedule(&s, &Limits::default()).unwrap();
    }

    #[test]
    fn url_rules() {
        assert!(url("http://127.0.0.1:9000/hook").is_ok());
        assert!(url("https://user:pw@example.com").is_err());
        assert!(url("example.com").is_err());
        assert!(url("http://").is_err());
    }
}
