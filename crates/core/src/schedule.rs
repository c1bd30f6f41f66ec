use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{ProjectId, ScheduleId, Timestamp};

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecKind {
    /// A cron expression (5 or 6 fields, or a macro), matched in the spec's time zone.
    Cron(String),
    /// Every `every_ms` milliseconds since the epoch, shifted by `offset_ms`.
    Interval {
        /// Period, at least 1000 ms.
        every_ms: i64,
        /// Shift of the grid, `0 <= offset_ms < every_ms`.
        offset_ms: i64,
    },
    /// Once, at this instant.
    At(Timestamp),
}

/// A schedule's timing: the kind plus the bounds every kind shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// The rule that produces fire times.
    pub kind: SpecKind,
    /// IANA time zone name; `UTC` by default.
    pub time_zone: String,
    /// No tick fires before this instant.
    pub start: Option<Timestamp>,
    /// No tick fires at or after this instant.
    pub end: Option<Timestamp>,
    /// Runs left before the schedule completes; `None` is unlimited.
    pub remaining_runs: Option<u64>,
}

/// HTTP methods a target may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST (the default)
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
}

impl HttpMethod {
    /// Parses a method name (case-insensitive); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            _ => return None,
        })
    }

    /// Returns the method's name in upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
        }
    }
}

/// One request header of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Header name as given (validated as an HTTP token).
    pub name: String,
    /// Header value (no CR, LF or NUL).
    pub value: String,
    /// Shown redacted in reads and run logs.
    #[serde(default)]
    pub secret: bool,
}

/// The HTTP request a tick sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpTarget {
    /// http(s) URL.
    pub url: String,
    /// Request method.
    pub method: HttpMethod,
    /// User headers; names starting with `webhook-` are reserved.
    pub headers: Vec<Header>,
    /// Request body.
    pub body: Vec<u8>,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: i64,
    /// Whether 3xx responses are followed.
    pub follow_redirects: bool,
}

/// How failed attempts are retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first (1-50).
    pub max_attempts: u32,
    /// Wait before the first retry.
    pub initial_backoff_ms: i64,
    /// Longest wait between attempts.
    pub max_backoff_ms: i64,
    /// Growth factor of the wait.
    pub multiplier: f64,
    /// No retry starts later than this after the first attempt.
    pub max_retry_duration_ms: Option<i64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            multiplier: 2.0,
            max_retry_duration_ms: None,
        }
    }
}

impl RetryPolicy {
    /// Returns the wait before attempt `next_attempt` (2 = first retry), before jitter.
    pub fn backoff_ms(&self, next_attempt: u32) -> i64 {
        let exp = next_attempt.saturating_sub(2).min(64) as i32;
        let wait = self.initial_backoff_ms as f64 * self.multiplier.max(1.0).powi(exp);
        if wait.is_finite() { (wait as i64).clamp(0, self.max_backoff_ms.max(0)) } else { self.max_backoff_ms.max(0) }
    }
}

/// What a due tick does while the previous run is still in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Record the new tick as skipped.
    #[default]
    Skip,
    /// Keep one tick waiting.
    BufferOne,
    /// Run concurrently.
    Allow,
    /// Cancel the running one.
    CancelPrevious,
}

impl OverlapPolicy {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::BufferOne => "buffer_one",
            Self::Allow => "allow",
            Self::CancelPrevious => "cancel_previous",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "skip" => Self::Skip,
            "buffer_one" => Self::BufferOne,
            "allow" => Self::Allow,
            "cancel_previous" => Self::CancelPrevious,
            _ => return None,
        })
    }
}

/// Lifecycle state of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleState {
    /// Fires on its spec.
    Active,
    /// Does not fire; ticks are recorded as skipped.
    Paused,
    /// Its spec has no more fire times.
    Completed,
}

impl ScheduleState {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Completed => "completed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "paused" => Self::Paused,
            "completed" => Self::Completed,
            _ => return None,
        })
    }
}

/// A Standard Webhooks signing secret, sealed (never stored or queued in clear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    /// Its id (shown in the API).
    pub id: String,
    /// `enc:v1:...`: the sealed `whsec_...` text.
    pub sealed: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When a rotated-out secret stops being used (`None`: current).
    pub expires_at: Option<Timestamp>,
}

/// The user-controlled part of a schedule: what Create takes and Update replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSchedule {
    /// Display name, 1-200 characters.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When it fires.
    pub spec: ScheduleSpec,
    /// What it sends.
    pub target: HttpTarget,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// Behaviour when a run is still in progress.
    pub overlap: OverlapPolicy,
    /// Ticks late by at most this much after downtime still fire.
    pub catchup_window_ms: i64,
    /// Maximum deterministic delay per tick.
    pub jitter_ms: i64,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Where `run.failed` events go.
    pub failure_notification_url: Option<String>,
    /// Pause after this many consecutive failed runs (0 = never).
    pub auto_pause_after_failures: u32,
    /// Signing secrets (managed by the API, never set by users directly).
    #[serde(default)]
    pub signing_secrets: Vec<SigningSecret>,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its id.
    pub id: ScheduleId,
    /// Owning project.
    pub project_id: ProjectId,
    /// The user's definition.
    pub def: NewSchedule,
    /// Lifecycle state.
    pub state: ScheduleState,
    /// Why it is in that state.
    pub state_reason: String,
    /// Next nominal fire time the planner has not yet planned, if any.
    pub next_fire_at: Option<Timestamp>,
    /// Incremented by every user change; the etag is its text form.
    pub version: i64,
    /// Shard the schedule belongs to.
    pub shard: u32,
    /// Runs left before completion (from `spec.remaining_runs`, counted down by the
    /// planner); `None` is unlimited.
    pub runs_left: Option<u64>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Time of the last user change.
    pub updated_at: Timestamp,
}

impl Schedule {
    /// Returns the etag clients send back to update (the version as text).
    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}
