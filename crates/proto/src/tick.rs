//! The Kafka payload of a tick: `cronhook.v1.TickMessage`, version [`TICK_FORMAT_VERSION`].
//!
//! Unlike API output, the payload carries secret header values in clear: the worker needs
//! them to send the request. Protect the topic like the database (ACLs, TLS).

use cronhook_core::{
    Header, HttpMethod, HttpTarget, OverlapPolicy, ProjectId, RetryPolicy, ScheduleId, SigningSecret, Tick, TickId,
    Timestamp, TriggerKind,
};
use prost::Message;

use crate::v1 as pb;
use crate::{duration_ms, from_timestamp, timestamp, to_duration_ms};

/// The payload format this release writes and reads.
pub const TICK_FORMAT_VERSION: u32 = 1;

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a protobuf `TickMessage`.
    #[error("undecodable tick payload: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Written by a newer (or broken) release.
    #[error("unknown tick format version {0} (this release reads {TICK_FORMAT_VERSION})")]
    Version(u32),
    /// A field is missing or malformed.
    #[error("malformed tick: {0}")]
    Field(&'static str),
}

/// Encodes a tick as a `TickMessage`.
pub fn encode_tick(t: &Tick) -> Vec<u8> {
    let msg = pb::TickMessage {
        format_version: TICK_FORMAT_VERSION,
        tick_id: t.id.to_string(),
        project_id: t.project_id.to_string(),
        schedule_id: t.schedule_id.to_string(),
        schedule_version: t.schedule_version,
        nominal_time: Some(timestamp(t.nominal_time)),
        fire_time: Some(timestamp(t.fire_time)),
        trigger: match t.trigger {
            TriggerKind::Scheduled => pb::TriggerKind::Scheduled,
            TriggerKind::Manual => pb::TriggerKind::Manual,
            TriggerKind::Backfill => pb::TriggerKind::Backfill,
            TriggerKind::Notification => pb::TriggerKind::Notification,
        } as i32,
        target: Some(pb::HttpTarget {
            url: t.target.url.clone(),
            method: t.target.method.as_str().to_owned(),
            headers: t
                .target
                .headers
                .iter()
                .map(|h| pb::Header { name: h.name.clone(), value: h.value.clone(), secret: h.secret })
                .collect(),
            body: t.target.body.clone(),
            timeout: Some(duration_ms(t.target.timeout_ms)),
            follow_redirects: t.target.follow_redirects,
        }),
        retry_policy: Some(pb::RetryPolicy {
            max_attempts: t.retry.max_attempts,
            initial_backoff: Some(duration_ms(t.retry.initial_backoff_ms)),
            max_backoff: Some(duration_ms(t.retry.max_backoff_ms)),
            multiplier: t.retry.multiplier,
            max_retry_duration: t.retry.max_retry_duration_ms.map(duration_ms),
        }),
        shard_epoch: t.epoch,
        shard: t.shard,
        signing_secrets: t
            .signing_secrets
            .iter()
            .map(|s| pb::SealedSecret {
                id: s.id.clone(),
                sealed: s.sealed.clone(),
                create_time: Some(timestamp(s.created_at)),
                expire_time: s.expires_at.map(timestamp),
            })
            .collect(),
        failure_notification_url: t.failure_notification_url.clone().unwrap_or_default(),
        auto_pause_after_failures: t.auto_pause_after_failures,
        overlap_policy: match t.overlap {
            OverlapPolicy::Skip => pb::OverlapPolicy::Skip,
            OverlapPolicy::BufferOne => pb::OverlapPolicy::BufferOne,
            OverlapPolicy::Allow => pb::OverlapPolicy::Allow,
            OverlapPolicy::CancelPrevious => pb::OverlapPolicy::CancelPrevious,
        } as i32,
    };
    msg.encode_to_vec()
}

/// Decodes a `TickMessage`, refusing unknown format versions.
pub fn decode_tick(bytes: &[u8]) -> Result<Tick, DecodeError> {
    let m = pb::TickMessage::decode(bytes)?;
    if m.format_version != TICK_FORMAT_VERSION {
        return Err(DecodeError::Version(m.format_version));
    }
    let target = m.target.ok_or(DecodeError::Field("target"))?;
    let retry = m.retry_policy.ok_or(DecodeError::Field("retry_policy"))?;
    let ms =
        |d: Option<&prost_types::Duration>, f: &'static str| d.and_then(to_duration_ms).ok_or(DecodeError::Field(f));
    Ok(Tick {
        id: m.tick_id.parse::<TickId>().map_err(|_| DecodeError::Field("tick_id"))?,
        project_id: ProjectId::new(&m.project_id).map_err(|_| DecodeError::Field("project_id"))?,
        schedule_id: m.schedule_id.parse::<ScheduleId>().map_err(|_| DecodeError::Field("schedule_id"))?,
        schedule_version: m.schedule_version,
        nominal_time: from_timestamp(m.nominal_time.as_ref().ok_or(DecodeError::Field("nominal_time"))?),
        fire_time: from_timestamp(m.fire_time.as_ref().ok_or(DecodeError::Field("fire_time"))?),
        trigger: match pb::TriggerKind::try_from(m.trigger) {
            Ok(pb::TriggerKind::Manual) => TriggerKind::Manual,
            Ok(pb::TriggerKind::Backfill) => TriggerKind::Backfill,
            Ok(pb::TriggerKind::Notification) => TriggerKind::Notification,
            Ok(pb::TriggerKind::Scheduled) => TriggerKind::Scheduled,
            _ => return Err(DecodeError::Field("trigger")),
        },
        target: HttpTarget {
            url: target.url,
            method: HttpMethod::parse(&target.method).ok_or(DecodeError::Field("target.method"))?,
            headers: target
                .headers
                .into_iter()
                .map(|h| Header { name: h.name, value: h.value, secret: h.secret })
                .collect(),
            body: target.body,
            timeout_ms: ms(target.timeout.as_ref(), "target.timeout")?,
            follow_redirects: target.follow_redirects,
        },
        retry: RetryPolicy {
            max_attempts: retry.max_attempts,
            initial_backoff_ms: ms(retry.initial_backoff.as_ref(), "retry_policy.initial_backoff")?,
            max_backoff_ms: ms(retry.max_backoff.as_ref(), "retry_policy.max_backoff")?,
            multiplier: retry.multiplier,
            max_retry_duration_ms: retry.max_retry_duration.as_ref().and_then(to_duration_ms),
        },
        shard: m.shard,
        epoch: m.shard_epoch,
        signing_secrets: m
            .signing_secrets
            .into_iter()
            .map(|s| SigningSecret {
                id: s.id,
                sealed: s.sealed,
                created_at: s.create_time.as_ref().map(from_timestamp).unwrap_or(Timestamp::from_millis(0)),
                expires_at: s.expire_time.as_ref().map(from_timestamp),
            })
            .collect(),
        failure_notification_url: Some(m.failure_notification_url).filter(|u| !u.is_empty()),
        auto_pause_after_failures: m.auto_pause_after_failures,
        overlap: match pb::OverlapPolicy::try_from(m.overlap_policy) {
            Ok(pb::OverlapPolicy::Allow) => OverlapPolicy::Allow,
            Ok(pb::OverlapPolicy::BufferOne) => OverlapPolicy::BufferOne,
            Ok(pb::OverlapPolicy::CancelPrevious) => OverlapPolicy::CancelPrevious,
            _ => OverlapPolicy::Skip,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let s = ScheduleId::generate();
        let at = Timestamp::from_millis(1_800_000_000_123);
        let t = Tick {
            id: TickId::scheduled(s, at),
            project_id: ProjectId::default_project(),
            schedule_id: s,
            schedule_version: 7,
            nominal_time: at,
            fire_time: at.add_millis(250),
            trigger: TriggerKind::Manual,
            target: HttpTarget {
                url: "https://example.com/x".into(),
                method: HttpMethod::Patch,
                headers: vec![Header { name: "Authorization".into(), value: "Bearer x".into(), secret: true }],
                body: vec![0, 1, 2, 255],
                timeout_ms: 12_345,
                follow_redirects: true,
            },
            retry: RetryPolicy { max_retry_duration_ms: Some(60_000), ..RetryPolicy::default() },
            shard: 17,
            epoch: 99,
            overlap: OverlapPolicy::CancelPrevious,
            signing_secrets: vec![SigningSecret {
                id: "ss_1".into(),
                sealed: "enc:v1:abc".into(),
                created_at: Timestamp::from_millis(1_000),
                expires_at: Some(Timestamp::from_millis(2_000)),
            }],
            failure_notification_url: Some("https://example.com/alerts".into()),
            auto_pause_after_failures: 3,
        };
        assert_eq!(decode_tick(&encode_tick(&t)).unwrap(), t);

        let mut m = pb::TickMessage::decode(encode_tick(&t).as_slice()).unwrap();
        m.format_version = 2;
        assert!(matches!(decode_tick(&m.encode_to_vec()), Err(DecodeError::Version(2))));
        assert!(decode_tick(b"\xff\xff garbage").is_err());
    }
}
