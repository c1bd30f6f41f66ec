use serde::{Deserialize, Serialize};

use crate::{HttpTarget, ProjectId, RetryPolicy, ScheduleId, TickId, Timestamp};

/// Why a tick exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// Produced by the schedule's spec.
    Scheduled,
    /// Produced by a Trigger call.
    Manual,
    /// Produced by a backfill.
    Backfill,
    /// A `run.failed` event for the schedule's failure notification URL.
    Notification,
}

impl TriggerKind {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
            Self::Backfill => "backfill",
            Self::Notification => "notification",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => Self::Scheduled,
            "manual" => Self::Manual,
            "backfill" => Self::Backfill,
            "notification" => Self::Notification,
            _ => return None,
        })
    }
}

/// Where a tick stands in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickState {
    /// Recorded by the planner (outbox), not yet handed to the queue.
    Planned,
    /// Handed to the queue.
    Published,
    /// Its run succeeded.
    Delivered,
    /// Its run failed.
    Failed,
    /// Outside the catch-up window after downtime: not fired.
    Missed,
    /// Not fired because of a policy (paused, overlap, bounds).
    Skipped,
    /// Cancelled before or during its run.
    Cancelled,
    /// Waiting for the schedule's previous run to end (overlap policy `buffer_one`).
    Buffered,
}

impl TickState {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Published => "published",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Missed => "missed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Buffered => "buffered",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => Self::Planned,
            "published" => Self::Published,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            "missed" => Self::Missed,
            "skipped" => Self::Skipped,
            "cancelled" => Self::Cancelled,
            "buffered" => Self::Buffered,
            _ => return None,
        })
    }

    /// Returns whether no further work will happen for the tick.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Planned | Self::Published | Self::Buffered)
    }
}

/// A decision to fire a schedule once: everything a worker needs to deliver it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Deterministic id (see [`TickId`]).
    pub id: TickId,
    /// Owning project.
    pub project_id: ProjectId,
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// Schedule version the tick was planned with.
    pub schedule_version: i64,
    /// The fire time the spec produced.
    pub nominal_time: Timestamp,
    /// Nominal time plus jitter: not sent before this.
    pub fire_time: Timestamp,
    /// Why it exists.
    pub trigger: TriggerKind,
    /// The request to send.
    pub target: HttpTarget,
    /// How to retry it.
    pub retry: RetryPolicy,
    /// Shard that planned it.
    pub shard: u32,
    /// Fencing epoch of that shard at planning time.
    pub epoch: i64,
    /// Signing secrets of the schedule (sealed), to sign the request with.
    #[serde(default)]
    pub signing_secrets: Vec<crate::SigningSecret>,
    /// Where a `run.failed` event goes when this tick's run fails (never for notifications).
    #[serde(default)]
    pub failure_notification_url: Option<String>,
    /// Pause the schedule after this many consecutive failed runs (0 = never).
    #[serde(default)]
    pub auto_pause_after_failures: u32,
    /// What to do when the schedule's previous run is still in progress.
    #[serde(default)]
    pub overlap: crate::OverlapPolicy,
}

/// One row of the tick ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The tick.
    pub id: TickId,
    /// Its schedule.
    pub schedule_id: ScheduleId,
    /// Nominal fire time.
    pub nominal_time: Timestamp,
    /// Nominal time plus jitter.
    pub fire_time: Timestamp,
    /// Where it stands.
    pub state: TickState,
    /// Why, for skipped / missed / cancelled ticks.
    pub reason: Option<String>,
    /// Why it exists.
    pub trigger: TriggerKind,
    /// When it was recorded.
    pub created_at: Timestamp,
    /// When its state last changed.
    pub updated_at: Timestamp,
}
