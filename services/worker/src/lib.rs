//! The worker role: stateless, any number of them. For each tick it receives:
//!
//! 1. waits until the tick's fire time (planners publish a little ahead),
//! 2. creates the run, unique on the tick id: a tick whose run is final is acknowledged
//!    and not sent again; a run left unfinished by a crashed worker is resumed with its
//!    next attempt (same `webhook-id`),
//! 3. sends attempts with the schedule's retry policy, recording each one with the run's
//!    new status in one transaction,
//! 4. acknowledges the tick only once the run's outcome is durable.
//!
//! Run-log writes of concurrent deliveries are batched ([`BatchingRunStore`]).
//!
//! In-flight work is bounded ([`WorkerConfig::max_in_flight`]). On shutdown it takes no
//! new ticks, lets attempts in flight finish within the grace period, and leaves waiting
//! ticks and retries unacknowledged for the next start.

mod batch;
mod config;
mod worker;

pub use batch::BatchingRunStore;
pub use config::WorkerConfig;
pub use cronhook_delivery::SenderConfig;
pub use worker::Worker;
