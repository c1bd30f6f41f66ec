//! Phases of one attempt: DNS lookup, connection (TCP and TLS, after DNS), time to first
//! byte (response headers, from the attempt's start) and total.
//!
//! reqwest exposes no per-request phase hooks, so the resolver and a connector layer record
//! into a task-local slot that the sender scopes around each attempt. Both capture the slot
//! when the connection is requested (within the attempt's task), so the figures belong to
//! that attempt. A reused pooled connection has no DNS or connect phase.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use cronhook_core::AttemptTiming;

/// Durations measured during one attempt.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Phases {
    pub dns_ms: Option<i64>,
    /// DNS + TCP + TLS, as the connector saw it.
    pub connector_ms: Option<i64>,
}

tokio::task_local! {
    static PHASES: Arc<Mutex<Phases>>;
}

/// Runs `f` with a fresh phase slot and returns its output and the phases.
pub(crate) async fn measured<F: Future>(f: F) -> (F::Output, Phases) {
    let slot = Arc::new(Mutex::new(Phases::default()));
    let out = PHASES.scope(slot.clone(), f).await;
    let phases = slot.lock().map(|p| *p).unwrap_or_default();
    (out, phases)
}

/// Returns the current attempt's slot, if any.
pub(crate) fn slot() -> Option<Arc<Mutex<Phases>>> {
    PHASES.try_with(Arc::clone).ok()
}

/// Records a DNS lookup's duration.
pub(crate) fn record_dns(slot: &Option<Arc<Mutex<Phases>>>, since: Instant) {
    if let Some(s) = slot
        && let Ok(mut p) = s.lock()
    {
        p.dns_ms = Some(p.dns_ms.unwrap_or(0) + since.elapsed().as_millis() as i64);
    }
}

/// Builds the stored timing from the phases, the headers' arrival and the total.
pub(crate) fn timing(p: Phases, ttfb_ms: Option<i64>) -> AttemptTiming {
    AttemptTiming { dns_ms: p.dns_ms, connect_ms: p.connector_ms.map(|c| (c - p.dns_ms.unwrap_or(0)).max(0)), ttfb_ms }
}

/// A connector layer timing each new connection.
#[derive(Clone, Copy, Default)]
pub(crate) struct TimeConnect;

impl<S> tower_layer::Layer<S> for TimeConnect {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed(inner)
    }
}

/// The service [`TimeConnect`] wraps around the connector.
#[derive(Clone)]
pub(crate) struct Timed<S>(S);

impl<S, R> tower_service::Service<R> for Timed<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let slot = slot();
        let start = Instant::now();
        let fut = self.0.call(req);
        Box::pin(async move {
            let out = fut.await;
            if let Some(s) = slot
                && let Ok(mut p) = s.lock()
            {
                p.connector_ms = Some(start.elapsed().as_millis() as i64);
            }
            out
        })
    }
}
