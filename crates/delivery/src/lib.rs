//! Sends one attempt of one tick over HTTP and describes what happened.
//!
//! Owns the request cronhook puts on the wire (user headers, then `webhook-id`,
//! `webhook-timestamp`, `webhook-scheduled-at`, which users cannot override), the
//! per-attempt timeout (connect and total, so a target that trickles bytes is cut), the
//! capped capture of the response, redaction of secret headers in the record, and the
//! classification of the outcome. It does not decide *whether* to retry a run: the worker
//! does, with [`classify`]'s answer and the schedule's retry policy.

pub mod classify;
pub mod retry;
pub mod seal;
mod sender;
pub mod signing;
pub mod ssrf;
mod timing;

pub use classify::{NO_RETRY_HEADER, Verdict, classify};
pub use sender::{HttpSender, SendResult, SenderConfig};

/// Header carrying the tick id (Standard Webhooks `webhook-id`): the same across retries.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the attempt's send time, Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the Standard Webhooks signatures (one per valid secret).
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Header carrying the tick's nominal fire time, RFC 3339 with milliseconds.
pub const HEADER_SCHEDULED_AT: &str = "webhook-scheduled-at";

/// Errors of building a sender.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}
