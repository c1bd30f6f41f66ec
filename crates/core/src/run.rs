use serde::{Deserialize, Serialize};

use crate::{ProjectId, RunId, ScheduleId, TickId, Timestamp, TriggerKind};

/// Status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Recorded, no attempt started.
    Pending,
    /// An attempt is in flight or a retry is waiting.
    Running,
    /// Delivered with a 2xx.
    Succeeded,
    /// Retries exhausted or a non-retryable outcome.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Returns whether the run has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// One execution of a tick (at most one per tick id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// Owning project.
    pub project_id: ProjectId,
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// The tick it executes (unique).
    pub tick_id: TickId,
    /// The tick's nominal fire time.
    pub nominal_time: Timestamp,
    /// Schedule version of the tick.
    pub schedule_version: i64,
    /// Why the tick exists.
    pub trigger: TriggerKind,
    /// Current status.
    pub status: RunStatus,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// HTTP status of the last attempt, if a response came.
    pub http_status: Option<u16>,
    /// Last failure, if any.
    pub last_error: Option<String>,
    /// When the row was created.
    pub created_at: Timestamp,
    /// When the first attempt started.
    pub started_at: Option<Timestamp>,
    /// When the run ended.
    pub finished_at: Option<Timestamp>,
    /// When the next retry is due, while one is waiting.
    pub next_attempt_at: Option<Timestamp>,
    /// The waiting retry is parked in the store (the planner dispatches it when due)
    /// rather than held by a worker.
    pub parked: bool,
}

/// A header as recorded in a run log (secret values already redacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedHeader {
    /// Name.
    pub name: String,
    /// Value, or `[redacted]`.
    pub value: String,
}

/// One HTTP attempt of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The run.
    pub run_id: RunId,
    /// 1-based number.
    pub number: u32,
    /// When the request started.
    pub started_at: Timestamp,
    /// Wall time of the attempt in milliseconds.
    pub duration_ms: i64,
    /// Request method.
    pub method: String,
    /// Request URL.
    pub url: String,
    /// Request headers as sent (redacted).
    pub request_headers: Vec<RecordedHeader>,
    /// Request body size.
    pub request_body_size: u64,
    /// Hex SHA-256 of the request body.
    pub request_body_sha256: String,
    /// Response status, if a response came.
    pub response_status: Option<u16>,
    /// Response headers.
    pub response_headers: Vec<RecordedHeader>,
    /// Response body, capped.
    pub response_body: Vec<u8>,
    /// Whether the body was cut at the cap.
    pub response_body_truncated: bool,
    /// Stable failure code (e.g. `timeout`), if it failed.
    pub error_code: Option<String>,
    /// Failure details.
    pub error_message: Option<String>,
    /// Send start minus nominal time.
    pub lateness_ms: i64,
    /// Phases of the attempt, where measured.
    #[serde(default)]
    pub timing: AttemptTiming,
}

/// Phases of one attempt (milliseconds; `None` where not measured, e.g. DNS and connect on
/// a reused connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptTiming {
    /// DNS lookup.
    pub dns_ms: Option<i64>,
    /// TCP connect and TLS handshake, after DNS.
    pub connect_ms: Option<i64>,
    /// From the attempt's start to the response headers.
    pub ttfb_ms: Option<i64>,
}
