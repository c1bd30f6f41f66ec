//! Test harness shared by every crate's tests: throwaway Postgres databases on the server
//! `scripts/test.sh` starts, a webhook sink that records what it receives, and
//! `wait_for` polling (never sleeps as synchronisation).
//!
//! Test-only: nothing here is used by a production path.

pub mod postgres;
pub mod sink;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `cond` every 50 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
