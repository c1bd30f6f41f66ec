//! Test harness shared by every crate's tests: throwaway Postgres databases on the server
//! `scripts/test.sh` starts, a webhook sink that records what it receives, and
//! `wait_for` polling (never sleeps as synchronisation).
//!
//! Test-only: nothing here is used by a production path.

pub mod postgres;
pub mod servers;
pub mod sink;
pub mod target;

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

/// Returns the value of the env var `name` set by scripts/test.sh, or panics saying how to
/// get the server `what`: a test that needs a server must fail, never pass, without it.
pub fn server_env(name: &str, what: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs {what}. Run the tests with scripts/test.sh, which starts \
             throwaway Postgres, etcd and Kafka-protocol (Tansu) servers, or export {name} yourself"
        ),
    }
}

/// Returns a name unique to this test run (for etcd prefixes, topics, consumer groups).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
