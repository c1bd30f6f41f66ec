//! Proto <-> domain conversions. Inbound conversions validate shapes and name the field
//! (`schedule.target.method`); semantic checks live in `cronhook_core::validate` and
//! `cronhook_cron`.

use cronhook_core::{
    Attempt, Header, HttpMethod, HttpTarget, NewSchedule, OverlapPolicy, RecordedHeader, RetryPolicy, Run, RunStatus,
    Schedule, ScheduleSpec, ScheduleState, SpecKind, Timestamp, TriggerKind,
};
use cronhook_proto::v1 as pb;
use cronhook_proto::{duration_ms, from_timestamp, timestamp, to_duration_ms};

use crate::error::{ApiError, ApiResult};

/// Shown instead of a secret header value; sending it back in an update keeps the stored value.
pub const REDACTED: &str = "[redacted]";
const DEFAULT_TIMEOUT_MS: i64 = 30_000;

fn dur(d: Option<&prost_types::Duration>, field: &str) -> ApiResult<Option<i64>> {
    match d {
        None => Ok(None),
        Some(d) => to_duration_ms(d).map(Some).ok_or_else(|| ApiError::invalid(field, "must not be negative")),
    }
}

/// Converts a proto spec; `field` is its path (`schedule.spec`).
pub fn spec(p: Option<&pb::ScheduleSpec>, field: &str) -> ApiResult<ScheduleSpec> {
    let p = p.ok_or_else(|| ApiError::invalid(field, "is required (one of cron, interval, at)"))?;
    let kind = match &p.kind {
        None => return Err(ApiError::invalid(field, "needs one of cron, interval or at")),
        Some(pb::schedule_spec::Kind::Cron(c)) => SpecKind::Cron(c.clone()),
        Some(pb::schedule_spec::Kind::Interval(d)) => SpecKind::Interval {
            every_ms: dur(Some(d), &format!("{field}.interval"))?.unwrap_or(0),
            offset_ms: dur(p.interval_offset.as_ref(), &format!("{field}.interval_offset"))?.unwrap_or(0),
        },
        Some(pb::schedule_spec::Kind::At(t)) => SpecKind::At(from_timestamp(t)),
    };
    if p.interval_offset.is_some() && !matches!(kind, SpecKind::Interval { .. }) {
        return Err(ApiError::invalid(&format!("{field}.interval_offset"), "only applies to interval specs"));
    }
    if p.remaining_runs == Some(0) {
        return Err(ApiError::invalid(&format!("{field}.remaining_runs"), "must be at least 1 when set"));
    }
    let tz = p.time_zone.trim();
    Ok(ScheduleSpec {
        kind,
        time_zone: if tz.is_empty() { "UTC".to_owned() } else { tz.to_owned() },
        start: p.start_time.as_ref().map(from_timestamp),
        end: p.end_time.as_ref().map(from_timestamp),
        remaining_runs: p.remaining_runs,
    })
}

/// Converts the user-controlled fields of a proto schedule. Output-only fields are ignored.
pub fn new_schedule(p: &pb::Schedule, default_catchup_ms: i64) -> ApiResult<NewSchedule> {
    let spec = spec(p.spec.as_ref(), "schedule.spec")?;
    let t = p.target.as_ref().ok_or_else(|| ApiError::invalid("schedule.target", "is required"))?;
    let method = if t.method.trim().is_empty() {
        HttpMethod::Post
    } else {
        HttpMethod::parse(t.method.trim()).ok_or_else(|| {
            ApiError::invalid(
                "schedule.target.method",
                format!("unknown method {:?}; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS", t.method),
            )
        })?
    };
    let target = HttpTarget {
        url: t.url.trim().to_owned(),
        method,
        headers: t
            .headers
            .iter()
            .map(|h| Header { name: h.name.clone(), value: h.value.clone(), secret: h.secret })
            .collect(),
        body: t.body.clone(),
        timeout_ms: dur(t.timeout.as_ref(), "schedule.target.timeout")?.unwrap_or(DEFAULT_TIMEOUT_MS),
        follow_redirects: t.follow_redirects,
    };
    let retry = match &p.retry_policy {
        None => RetryPolicy::default(),
        Some(r) => {
            let d = RetryPolicy::default();
            RetryPolicy {
                max_attempts: if r.max_attempts == 0 { d.max_attempts } else { r.max_attempts },
                initial_backoff_ms: dur(r.initial_backoff.as_ref(), "schedule.retry_policy.initial_backoff")?
                    .unwrap_or(d.initial_backoff_ms),
                max_backoff_ms: dur(r.max_backoff.as_ref(), "schedule.retry_policy.max_backoff")?
                    .unwrap_or(d.max_backoff_ms),
                multiplier: if r.multiplier == 0.0 { d.multiplier } else { r.multiplier },
                max_retry_duration_ms: dur(r.max_retry_duration.as_ref(), "schedule.retry_policy.max_retry_duration")?,
            }
        }
    };
    let overlap = match pb::OverlapPolicy::try_from(p.overlap_policy) {
        Ok(pb::OverlapPolicy::Unspecified | pb::OverlapPolicy::Skip) => OverlapPolicy::Skip,
        Ok(pb::OverlapPolicy::BufferOne) => OverlapPolicy::BufferOne,
        Ok(pb::OverlapPolicy::Allow) => OverlapPolicy::Allow,
        Ok(pb::OverlapPolicy::CancelPrevious) => OverlapPolicy::CancelPrevious,
        Err(_) => {
            return Err(ApiError::invalid("schedule.overlap_policy", format!("unknown value {}", p.overlap_policy)));
        }
    };
    if p.auto_pause_after_failures > 1000 {
        return Err(ApiError::invalid("schedule.auto_pause_after_failures", "must be at most 1000 (0 = never)"));
    }
    Ok(NewSchedule {
        name: p.name.trim().to_owned(),
        description: p.description.clone(),
        spec,
        target,
        retry,
        overlap,
        catchup_window_ms: dur(p.catchup_window.as_ref(), "schedule.catchup_window")?.unwrap_or(default_catchup_ms),
        jitter_ms: dur(p.jitter.as_ref(), "schedule.jitter")?.unwrap_or(0),
        labels: p.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        failure_notification_url: Some(p.failure_notification_url.trim().to_owned()).filter(|u| !u.is_empty()),
        auto_pause_after_failures: p.auto_pause_after_failures,
        signing_secrets: Vec::new(),
    })
}

/// Keeps the stored value of secret headers the caller sent back redacted.
pub fn restore_redacted(new: &mut NewSchedule, stored: &NewSchedule) {
    for h in new.target.headers.iter_mut().filter(|h| h.value == REDACTED) {
        if let Some(old) = stored.target.headers.iter().find(|o| o.secret && o.name.eq_ignore_ascii_case(&h.name)) {
            h.value = old.value.clone();
            h.secret = true;
        }
    }
}

fn spec_to_proto(s: &ScheduleSpec) -> pb::ScheduleSpec {
    let (kind, offset) = match &s.kind {
        SpecKind::Cron(c) => (pb::schedule_spec::Kind::Cron(c.clone()), None),
        SpecKind::Interval { every_ms, offset_ms } => (
            pb::schedule_spec::Kind::Interval(duration_ms(*every_ms)),
            (*offset_ms != 0).then(|| duration_ms(*offset_ms)),
        ),
        SpecKind::At(t) => (pb::schedule_spec::Kind::At(timestamp(*t)), None),
    };
    pb::ScheduleSpec {
        kind: Some(kind),
        time_zone: s.time_zone.clone(),
        interval_offset: offset,
        start_time: s.start.map(timestamp),
        end_time: s.end.map(timestamp),
        remaining_runs: s.remaining_runs,
    }
}

/// Converts a stored schedule for output, secret header values redacted.
pub fn schedule_to_proto(s: &Schedule) -> pb::Schedule {
    let d = &s.def;
    pb::Schedule {
        id: s.id.to_string(),
        project_id: s.project_id.to_string(),
        name: d.name.clone(),
        description: d.description.clone(),
        spec: Some(spec_to_proto(&d.spec)),
        target: Some(pb::HttpTarget {
            url: d.target.url.clone(),
            method: d.target.method.as_str().to_owned(),
            headers: d
                .target
                .headers
                .iter()
                .map(|h| pb::Header {
                    name: h.name.clone(),
                    value: if h.secret { REDACTED.to_owned() } else { h.value.clone() },
                    secret: h.secret,
                })
                .collect(),
            body: d.target.body.clone(),
            timeout: Some(duration_ms(d.target.timeout_ms)),
            follow_redirects: d.target.follow_redirects,
        }),
        retry_policy: Some(pb::RetryPolicy {
            max_attempts: d.retry.max_attempts,
            initial_backoff: Some(duration_ms(d.retry.initial_backoff_ms)),
            max_backoff: Some(duration_ms(d.retry.max_backoff_ms)),
            multiplier: d.retry.multiplier,
            max_retry_duration: d.retry.max_retry_duration_ms.map(duration_ms),
        }),
        overlap_policy: match d.overlap {
            OverlapPolicy::Skip => pb::OverlapPolicy::Skip,
            OverlapPolicy::BufferOne => pb::OverlapPolicy::BufferOne,
            OverlapPolicy::Allow => pb::OverlapPolicy::Allow,
            OverlapPolicy::CancelPrevious => pb::OverlapPolicy::CancelPrevious,
        } as i32,
        catchup_window: Some(duration_ms(d.catchup_window_ms)),
        jitter: (d.jitter_ms > 0).then(|| duration_ms(d.jitter_ms)),
        state: state_to_proto(s.state) as i32,
        state_reason: s.state_reason.clone(),
        next_fire_time: s.next_fire_at.map(timestamp),
        etag: s.etag(),
        create_time: Some(timestamp(s.created_at)),
        update_time: Some(timestamp(s.updated_at)),
        labels: d.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        failure_notification_url: d.failure_notification_url.clone().unwrap_or_default(),
        auto_pause_after_failures: d.auto_pause_after_failures,
        signing_secrets: d
            .signing_secrets
            .iter()
            .map(|s| pb::SigningSecretInfo {
                id: s.id.clone(),
                create_time: Some(timestamp(s.created_at)),
                expire_time: s.expires_at.map(timestamp),
            })
            .collect(),
    }
}

/// Converts a schedule state.
pub fn state_to_proto(s: ScheduleState) -> pb::ScheduleState {
    match s {
        ScheduleState::Active => pb::ScheduleState::Active,
        ScheduleState::Paused => pb::ScheduleState::Paused,
        ScheduleState::Completed => pb::ScheduleState::Completed,
    }
}

/// Converts a proto state filter (`UNSPECIFIED` = all).
pub fn state_filter(v: i32) -> ApiResult<Option<ScheduleState>> {
    match pb::ScheduleState::try_from(v) {
        Ok(pb::ScheduleState::Unspecified) => Ok(None),
        Ok(pb::ScheduleState::Active) => Ok(Some(ScheduleState::Active)),
        Ok(pb::ScheduleState::Paused) => Ok(Some(ScheduleState::Paused)),
        Ok(pb::ScheduleState::Completed) => Ok(Some(ScheduleState::Completed)),
        Err(_) => Err(ApiError::invalid("state", format!("unknown value {v}"))),
    }
}

/// Converts a proto run status filter value.
pub fn run_status(v: i32, field: &str) -> ApiResult<RunStatus> {
    match pb::RunStatus::try_from(v) {
        Ok(pb::RunStatus::Pending) => Ok(RunStatus::Pending),
        Ok(pb::RunStatus::Running) => Ok(RunStatus::Running),
        Ok(pb::RunStatus::Succeeded) => Ok(RunStatus::Succeeded),
        Ok(pb::RunStatus::Failed) => Ok(RunStatus::Failed),
        Ok(pb::RunStatus::Cancelled) => Ok(RunStatus::Cancelled),
        Ok(pb::RunStatus::Unspecified) | Err(_) => Err(ApiError::invalid(field, format!("unknown run status {v}"))),
    }
}

fn run_status_to_proto(s: RunStatus) -> pb::RunStatus {
    match s {
        RunStatus::Pending => pb::RunStatus::Pending,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::Succeeded => pb::RunStatus::Succeeded,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Cancelled => pb::RunStatus::Cancelled,
    }
}

/// Converts a trigger kind.
pub fn trigger_to_proto(t: TriggerKind) -> pb::TriggerKind {
    match t {
        TriggerKind::Scheduled => pb::TriggerKind::Scheduled,
        TriggerKind::Manual => pb::TriggerKind::Manual,
        TriggerKind::Backfill => pb::TriggerKind::Backfill,
        TriggerKind::Notification => pb::TriggerKind::Notification,
    }
}

fn headers(h: &[RecordedHeader]) -> Vec<pb::Header> {
    h.iter().map(|h| pb::Header { name: h.name.clone(), value: h.value.clone(), secret: h.value == REDACTED }).collect()
}

fn attempt_to_proto(a: &Attempt) -> pb::Attempt {
    pb::Attempt {
        number: a.number,
        start_time: Some(timestamp(a.started_at)),
        duration: Some(duration_ms(a.duration_ms)),
        request: Some(pb::RequestRecord {
            method: a.method.clone(),
            url: a.url.clone(),
            headers: headers(&a.request_headers),
            body_size: a.request_body_size,
            body_sha256: a.request_body_sha256.clone(),
        }),
        response: a.response_status.map(|status| pb::ResponseRecord {
            status: u32::from(status),
            headers: headers(&a.response_headers),
            body: a.response_body.clone(),
            body_truncated: a.response_body_truncated,
        }),
        error_code: a.error_code.clone().unwrap_or_default(),
        error_message: a.error_message.clone().unwrap_or_default(),
        timing: Some(pb::AttemptTiming {
            dns: a.timing.dns_ms.map(duration_ms),
            connect: a.timing.connect_ms.map(duration_ms),
            tls: None, // measured together with connect
            time_to_first_byte: a.timing.ttfb_ms.map(duration_ms),
            total: Some(duration_ms(a.duration_ms)),
        }),
        lateness: Some(duration_ms(a.lateness_ms)),
    }
}

/// Converts a run (and, for GetRun, its attempts).
pub fn run_to_proto(r: &Run, attempts: &[Attempt]) -> pb::Run {
    pb::Run {
        id: r.id.to_string(),
        project_id: r.project_id.to_string(),
        schedule_id: r.schedule_id.to_string(),
        tick_id: r.tick_id.to_string(),
        nominal_time: Some(timestamp(r.nominal_time)),
        status: run_status_to_proto(r.status) as i32,
        trigger: trigger_to_proto(r.trigger) as i32,
        attempt_count: r.attempt_count,
        http_status: r.http_status.map(u32::from).unwrap_or(0),
        create_time: Some(timestamp(r.created_at)),
        start_time: r.started_at.map(timestamp),
        end_time: r.finished_at.map(timestamp),
        duration: match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => Some(duration_ms(f.millis_since(s).max(0))),
            _ => None,
        },
        last_error: r.last_error.clone().unwrap_or_default(),
        next_attempt_time: r.next_attempt_at.map(timestamp),
        attempts: attempts.iter().map(attempt_to_proto).collect(),
        schedule_version: r.schedule_version,
    }
}

/// Converts an optional proto timestamp.
pub fn instant(t: Option<&prost_types::Timestamp>) -> Option<Timestamp> {
    t.map(from_timestamp)
}
