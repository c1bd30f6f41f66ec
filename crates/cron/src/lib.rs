//! Pure schedule math: how a spec (cron, interval or one-shot) becomes fire times.
//!
//! Owns parsing (saffron underneath for the 5-field minute part; cronhook adds the
//! leading seconds field, the `@hourly`-style macros and Unix day-of-week numbering) and
//! the answer to "which fire times fall in `[a, b)`". No IO, no clock: callers pass every
//! instant in. Fire times are always computed from the spec, never from "last run plus
//! interval", so nothing drifts.

mod cron_expr;
mod spec;

pub use cron_expr::CronExpr;
pub use spec::{CompiledSpec, MAX_SEARCH_YEARS};
