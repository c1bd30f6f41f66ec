//! Generated code of the cronhook v1 protobuf API (services, messages and the Kafka
//! `TickMessage`), and the single place where a domain error kind becomes a gRPC code.
//!
//! Proto types stop at the boundary: services convert them to `cronhook-core` types with
//! `TryFrom` at the edge; nothing below the API layer sees a prost type.

/// The `cronhook.v1` package.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("cronhook.v1");
}

pub mod tick;

/// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cronhook_descriptor");

use cronhook_core::ErrorKind;

/// Returns the gRPC status code for a domain error kind. This is the only mapping in the code base.
pub fn grpc_code(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::AlreadyExists => tonic::Code::AlreadyExists,
        ErrorKind::Conflict => tonic::Code::Aborted,
        ErrorKind::FailedPrecondition => tonic::Code::FailedPrecondition,
        ErrorKind::Unimplemented => tonic::Code::Unimplemented,
        ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::Internal => tonic::Code::Internal,
    }
}

/// Converts a domain instant into a protobuf timestamp.
pub fn timestamp(t: cronhook_core::Timestamp) -> prost_types::Timestamp {
    let ms = t.as_millis();
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// Converts a protobuf timestamp into a domain instant (millisecond precision, truncated).
pub fn from_timestamp(t: &prost_types::Timestamp) -> cronhook_core::Timestamp {
    cronhook_core::Timestamp::from_millis(
        t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos.clamp(0, 999_999_999) / 1_000_000)),
    )
}

/// Converts a domain duration (milliseconds) into a protobuf duration.
pub fn duration_ms(ms: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// Converts a protobuf duration into milliseconds, or `None` when it is negative.
pub fn to_duration_ms(d: &prost_types::Duration) -> Option<i64> {
    let ms = d.seconds.checked_mul(1000)?.checked_add(i64::from(d.nanos / 1_000_000))?;
    (ms >= 0).then_some(ms)
}
