//! Retention: deletes runs, their attempts and final ledger rows older than
//! `planner.retention`, in batches of [`BATCH`] with a pause between them, so it never
//! holds locks long enough to slow planning. Every planner may run it: deletes are
//! idempotent.

use std::sync::Arc;
use std::time::Duration;

use cronhook_store::TickStore;
use tokio_util::sync::CancellationToken;

/// Rows per table per statement.
pub const BATCH: u32 = 1000;

/// Runs one retention pass now, then every `interval`, until `cancel`. Errors are logged
/// and retried on the next pass (the janitor is best-effort).
pub async fn run_janitor(
    store: Arc<dyn TickStore>,
    retention: Duration,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        match pass(&*store, retention, &cancel).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention: old runs, attempts and ledger rows deleted"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed; retrying later"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Deletes everything older than `retention`, batch by batch; returns the rows deleted.
pub async fn pass(
    store: &dyn TickStore,
    retention: Duration,
    cancel: &CancellationToken,
) -> cronhook_store::Result<u64> {
    let cutoff = store.now().await?.add_millis(-(retention.as_millis() as i64));
    let mut total = 0;
    loop {
        let n = store.purge_before(cutoff, BATCH).await?;
        total += n;
        if n == 0 || cancel.is_cancelled() {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
