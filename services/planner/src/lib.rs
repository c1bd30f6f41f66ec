//! The planner role. For every shard it owns (crates/election), it repeatedly:
//!
//! 1. finds schedules due within the look-ahead window (by the database's clock),
//! 2. decides their ticks ([`plan::plan_schedule`], pure): planned, or missed when older
//!    than the catch-up window,
//! 3. records the ticks and advances the schedules in ONE transaction fenced by the
//!    shard's epoch (the outbox: a crash after this loses nothing); ticks due within the
//!    look-ahead are recorded as published,
//! 4. produces those to the queue (putting them back in the outbox if that fails), and
//!    publishes what waits in the outbox (paced catch-up, earlier failures), marking it,
//! 5. now and then, on its own task beside steps 1-4 so that it never delays a due
//!    tick, republishes published ticks that still have no run after a grace period
//!    (reconciliation: even a queue that loses messages cannot lose a tick).
//!
//! A shard whose write is rejected as fenced is dropped at once: another planner owns it.

mod config;
mod janitor;
pub mod plan;
mod planner;

pub use config::PlannerConfig;
pub use janitor::run_janitor;
pub use planner::Planner;

/// Errors that stop the planner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed in a way retrying will not fix.
    #[error("store: {0}")]
    Store(#[from] cronhook_store::Error),
    /// The queue is gone.
    #[error("queue: {0}")]
    Queue(#[from] cronhook_queue::Error),
}
