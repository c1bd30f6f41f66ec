//! Domain types of cronhook: identifiers, schedules, ticks, runs and attempts, and the
//! validation of everything a user can send that does not need a parser of its own.
//!
//! This crate does no IO, has no async code and depends on nothing else of ours. Proto
//! types never appear here: the API converts at its edge.

mod error;
mod ids;
mod run;
mod schedule;
mod tick;
mod time;
pub mod validate;

pub use error::{ErrorKind, ValidationError};
pub use ids::{ProjectId, RunId, ScheduleId, TickId};
pub use run::{Attempt, AttemptTiming, RecordedHeader, Run, RunStatus};
pub use schedule::{
    Header, HttpMethod, HttpTarget, NewSchedule, OverlapPolicy, RetryPolicy, Schedule, ScheduleSpec, ScheduleState,
    SigningSecret, SpecKind,
};
pub use tick::{LedgerEntry, Tick, TickState, TriggerKind};
pub use time::Timestamp;
