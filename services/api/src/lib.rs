//! The API role: serves `cronhook.v1.ScheduleService` and `cronhook.v1.RunService` over
//! gRPC, with the standard health service and server reflection.
//!
//! Handlers convert proto messages to domain types at the edge ([`convert`]), validate
//! everything before writing anything, and report errors through [`error::ApiError`], the
//! only path from a failure to a gRPC status.

pub mod convert;
pub mod error;
mod runs;
mod schedules;
mod ticks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cronhook_core::ProjectId;
use cronhook_core::validate::Limits;
use cronhook_delivery::seal::SealKey;
use cronhook_delivery::ssrf::SsrfPolicy;
use cronhook_proto::v1::run_service_server::RunServiceServer;
use cronhook_proto::v1::schedule_service_server::ScheduleServiceServer;
use cronhook_proto::v1::tick_service_server::TickServiceServer;
use cronhook_store::Stores;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Settings of the API (`[api]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Largest request body a schedule may carry, in bytes.
    pub max_body_bytes: usize,
    /// Catch-up window of schedules that do not set one.
    #[serde(with = "humantime_serde")]
    pub default_catchup_window: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            max_body_bytes: 256 * 1024,
            default_catchup_window: Duration::from_secs(300),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) stores: Stores,
    pub(crate) limits: Arc<Limits>,
    pub(crate) shard_count: u32,
    pub(crate) default_catchup_ms: i64,
    /// Single-project until API keys land; every query is scoped by it already.
    pub(crate) project: ProjectId,
    /// Destinations refused at creation (the worker checks again at send time).
    pub(crate) ssrf: Arc<SsrfPolicy>,
    /// Seals secret header values and signing secrets (`None`: not configured).
    pub(crate) seal: Option<SealKey>,
}

impl ApiState {
    /// Creates the handlers' state.
    pub fn new(
        stores: Stores,
        cfg: &ApiConfig,
        shard_count: u32,
        ssrf: Arc<SsrfPolicy>,
        seal: Option<SealKey>,
    ) -> Self {
        Self {
            stores,
            limits: Arc::new(Limits { max_body_bytes: cfg.max_body_bytes, ..Limits::default() }),
            shard_count,
            default_catchup_ms: cfg.default_catchup_window.as_millis() as i64,
            project: ProjectId::default_project(),
            ssrf,
            seal,
        }
    }
}

/// Errors that stop the API server.
#[derive(Debug)]
pub struct ServeError(String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServeError {}

/// Serves the API on `listener` until `cancel` fires (in-flight calls then finish).
pub async fn serve(listener: TcpListener, state: ApiState, cancel: CancellationToken) -> Result<(), ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<ScheduleServiceServer<schedules::Schedules>>().await;
    health_reporter.set_serving::<RunServiceServer<runs::Runs>>().await;
    health_reporter.set_serving::<TickServiceServer<ticks::Ticks>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cronhook_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError(format!("reflection: {e}")))?;
    // TCP_NODELAY on every accepted connection: without it a unary call's response waited
    // out the client's delayed ACK (a constant ~40 ms per call, docs/benchmarks.md).
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(60)));
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(ScheduleServiceServer::new(schedules::Schedules::new(state.clone())))
        .add_service(RunServiceServer::new(runs::Runs::new(state.clone())))
        .add_service(TickServiceServer::new(ticks::Ticks::new(state)))
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await
        .map_err(|e| ServeError(format!("grpc server: {e}")))
}
