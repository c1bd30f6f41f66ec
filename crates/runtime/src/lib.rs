//! Process plumbing shared by every role: layered configuration (defaults, file,
//! `CRONHOOK_*` environment, flags), shutdown signals turned into a
//! [`CancellationToken`], spawning background tasks with a declared error policy, and the
//! `/metrics` endpoint.
//!
//! No global state: everything is passed in and returned.

pub mod config;
mod metrics_server;
pub mod shutdown;

pub use metrics_server::serve_metrics;

pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;

use std::future::Future;

/// What happens when a background task ends with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Log it and cancel `shutdown`: the process stops (the task is essential).
    Shutdown,
    /// Log it and go on (the task is best-effort).
    Log,
}

/// Spawns `fut` on `tracker`; when it fails, applies `policy` (logging names the task).
pub fn spawn_task<F, E>(
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    name: &'static str,
    policy: OnError,
    fut: F,
) where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        match fut.await {
            Ok(()) => tracing::debug!(task = name, "task finished"),
            Err(e) => match policy {
                OnError::Shutdown => {
                    tracing::error!(task = name, error = %e, "essential task failed; shutting down");
                    shutdown.cancel();
                }
                OnError::Log => tracing::warn!(task = name, error = %e, "task failed"),
            },
        }
    });
}
