use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An instant with millisecond precision, as milliseconds since the Unix epoch (UTC).
///
/// Milliseconds are the resolution of every stored time in cronhook: tick identity uses
/// them, so a fire time must survive a round trip through any store unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Returns the instant `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Returns milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Returns the current wall-clock time of this machine.
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    /// Returns this instant plus `ms` milliseconds (saturating).
    #[must_use]
    pub const fn add_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Returns `self - other` in milliseconds.
    pub const fn millis_since(self, other: Timestamp) -> i64 {
        self.0.saturating_sub(other.0)
    }

    /// Returns the instant as a chrono UTC date-time (`None` outside chrono's range).
    pub fn to_chrono(self) -> Option<DateTime<Utc>> {
        DateTime::<Utc>::from_timestamp_millis(self.0)
    }

    /// Returns the instant of a chrono date-time, truncated to milliseconds.
    pub fn from_chrono(dt: DateTime<Utc>) -> Self {
        Self(dt.timestamp_millis())
    }

    /// Formats as RFC 3339 in UTC with milliseconds (`2026-01-02T03:04:05.000Z`).
    pub fn to_rfc3339(self) -> String {
        match self.to_chrono() {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => format!("@{}ms", self.0),
        }
    }

    /// Parses an RFC 3339 instant with any offset.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s).ok().map(|dt| Self::from_chrono(dt.with_timezone(&Utc)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}
