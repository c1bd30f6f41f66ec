use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the planner (`[planner]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerConfig {
    /// Ticks due within this window are planned and published ahead of time; workers hold
    /// them until their fire time.
    #[serde(with = "humantime_serde")]
    pub lookahead: Duration,
    /// Pause between planning passes when there is nothing more to do.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Catch-up pace: ticks found later than `catchup_late_after` (after an outage) are
    /// fired at most this many per second by this planner, oldest first; 0 is unpaced.
    pub catchup_rate: u32,
    /// A tick this late when planned is catch-up (below it, it is ordinary lateness).
    #[serde(with = "humantime_serde")]
    pub catchup_late_after: Duration,
    /// Schedules read per query.
    pub batch_size: u32,
    /// Most ticks one schedule gets per pass (a long backlog drains over several passes).
    pub max_ticks_per_schedule: usize,
    /// Ticks read from the outbox per publish.
    pub publish_batch: u32,
    /// How often reconciliation looks for published ticks without a run.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// A published tick with no run after this long is published again.
    #[serde(with = "humantime_serde")]
    pub reconcile_grace: Duration,
    /// Runs, attempts and final ledger rows older than this are deleted by the janitor.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the janitor runs (it deletes in small batches and never blocks planning).
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// When gaining a shard, publish every unfinished tick again (needed when the queue
    /// does not survive a restart, as in the embedded mode).
    pub republish_unfinished_on_gain: bool,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            lookahead: Duration::from_secs(2),
            poll_interval: Duration::from_millis(200),
            catchup_rate: 500,
            catchup_late_after: Duration::from_secs(30),
            batch_size: 500,
            max_ticks_per_schedule: 1000,
            publish_batch: 1000,
            reconcile_interval: Duration::from_secs(5),
            reconcile_grace: Duration::from_secs(30),
            republish_unfinished_on_gain: false,
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_interval: Duration::from_secs(300),
        }
    }
}
