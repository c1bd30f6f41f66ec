use std::fmt;

/// Kinds of failure that cross the API boundary. `cronhook-proto` maps each one to a
/// gRPC code; nothing else decides status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed; the message names the field.
    InvalidArgument,
    /// The named resource does not exist (in this project).
    NotFound,
    /// A resource with that identity exists already.
    AlreadyExists,
    /// An optimistic-concurrency check failed (stale etag): re-read and retry.
    Conflict,
    /// The resource is not in a state that allows the operation.
    FailedPrecondition,
    /// The request uses a feature this release does not implement yet.
    Unimplemented,
    /// A dependency is down; retrying later may work.
    Unavailable,
    /// A bug or an unexpected fault; details are logged, not returned.
    Internal,
}

/// A rejected input: which field, and why. Displayed as `field: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// Dotted path of the field, as the API names it (e.g. `schedule.target.url`).
    pub field: String,
    /// Lowercase, human-readable reason.
    pub reason: String,
}

impl ValidationError {
    /// Returns a validation error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }

    /// Returns the same error with `prefix.` put in front of the field path.
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}
