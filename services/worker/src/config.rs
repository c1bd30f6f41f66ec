use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the worker (`[worker]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Ticks held at once (waiting for their fire time, in flight, or waiting to retry).
    pub max_in_flight: usize,
    /// On shutdown, how long attempts in flight may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Connect timeout of every attempt.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Response body bytes stored per attempt.
    pub max_response_body: usize,
    /// Most attempts in flight to one host at once (one slow host cannot take every connection).
    pub per_host_limit: usize,
    /// Retries due sooner than this wait in the worker; later ones are parked in the store
    /// and dispatched again by the planner when due, so memory does not hold them.
    #[serde(with = "humantime_serde")]
    pub max_retry_wait_in_memory: Duration,
    /// A run in progress is leased to its worker for its attempt timeout plus this margin
    /// (renewed at every attempt); when the lease runs out without progress, the planner's
    /// reconciliation hands the run to another worker.
    #[serde(with = "humantime_serde")]
    pub run_lease_margin: Duration,
    /// Most run-log writes per statement (1 turns batching off).
    pub write_batch: usize,
    /// Longest a run-log write a send waits for (the begin of a tick due now) waits for
    /// others to share its statement.
    #[serde(with = "humantime_serde")]
    pub write_linger: Duration,
    /// Longest a run-log write no send waits for (attempt records; begins of ticks due
    /// later, written in time for their fire time) waits for others to share its
    /// statement: bigger batches cost the worker and the database less per row.
    #[serde(with = "humantime_serde")]
    pub relaxed_write_linger: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            shutdown_grace: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_response_body: 64 * 1024,
            per_host_limit: 64,
            max_retry_wait_in_memory: Duration::from_secs(10),
            run_lease_margin: Duration::from_secs(60),
            write_batch: 256,
            write_linger: Duration::from_millis(2),
            relaxed_write_linger: Duration::from_millis(20),
        }
    }
}
