use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

use crate::{Timestamp, ValidationError};

/// Namespace of the SHA-1 behind tick ids (UUIDv5, and the hash part of the UUIDv8 ids).
/// Changing it changes every tick id: never do.
const TICK_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_3a0e_9d2b_4f57_8e11_c0a5_7b3d_e942);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            pub const fn from_uuid(u: Uuid) -> Self {
                Self(u)
            }

            /// Returns the UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// Parses the text form, naming `field` in the error.
            pub fn parse(s: &str, field: &str) -> Result<Self, ValidationError> {
                s.parse().map_err(|_| {
                    ValidationError::new(field, concat!("is not a valid ", $what, " id (a UUID)"))
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s.trim()).map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifies a schedule. Time-ordered (UUIDv7), so listing by id is creation order.
    ScheduleId,
    "schedule"
);
uuid_id!(
    /// Identifies a run (one execution of a tick). Time-ordered (UUIDv7).
    RunId,
    "run"
);
uuid_id!(
    /// Identifies a tick: derived from (schedule id, nominal fire time) for scheduled ticks
    /// (DESIGN.md invariant 1), so every planner, replay and retry computes the same id.
    /// It is the run's unique key and the `webhook-id` header.
    TickId,
    "tick"
);

impl ScheduleId {
    /// Returns a fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Returns a stable 64-bit value of the id (the seed of hashed `H` cron fields).
    pub fn seed(&self) -> u64 {
        let b = self.0.as_bytes();
        u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
    }

    /// Returns the shard this schedule belongs to among `shard_count` shards.
    ///
    /// A pure function of the id (FNV-1a over its bytes), identical on every node and
    /// every release: changing it would move schedules between shards.
    pub fn shard(&self, shard_count: u32) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.0.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % u64::from(shard_count.max(1))) as u32
    }
}

impl RunId {
    /// Returns the id of the run of `tick`: the tick's own id. A tick has at most one run
    /// (DESIGN.md, invariant 3), so the tick id is the run row's one unique key, and
    /// every copy of a tick names the same run before any of them has read it.
    pub fn of_tick(tick: TickId) -> Self {
        Self(tick.0)
    }
}

impl TickId {
    /// Returns the id of the scheduled tick of `schedule` at nominal time `at`.
    ///
    /// A UUIDv8 (RFC 9562): the first 48 bits are the nominal time's Unix milliseconds, the
    /// other 74 free bits those of [`TickId::scheduled_legacy`]'s SHA-1 of the same pair.
    /// Still a function of (schedule, nominal time) alone, and unique for the same reason
    /// (a tick per schedule per millisecond), but ordered by nominal time: the ticks'
    /// primary key and the runs' `tick_id` index take their inserts at the right edge
    /// instead of at random leaves (docs/benchmarks.md has the figures).
    pub fn scheduled(schedule: ScheduleId, at: Timestamp) -> Self {
        Self::scheduled_legacy(schedule, at).time_ordered(at)
    }

    fn time_ordered(self, at: Timestamp) -> Self {
        let mut b = *self.0.as_bytes();
        b[..6].copy_from_slice(&at.as_millis().to_be_bytes()[2..]);
        Self(uuid::Builder::from_custom_bytes(b).into_uuid())
    }

    /// Returns [`TickId::scheduled_legacy`] of (`schedule`, `at`) when this id is the
    /// scheduled tick's id of that pair, `None` for any other id (a manual trigger's, a
    /// ledger-only record's).
    pub fn legacy_of(self, schedule: ScheduleId, at: Timestamp) -> Option<Self> {
        let legacy = Self::scheduled_legacy(schedule, at);
        (legacy.time_ordered(at) == self).then_some(legacy)
    }

    /// Returns the id releases before time-ordered tick ids gave the scheduled tick of
    /// `schedule` at `at` (a UUIDv5 of the pair). The stores look it up wherever a fire
    /// time in the past is recorded (a backfill, a planner catching up), so a tick an
    /// older release recorded is not recorded, and fired, a second time under the new id.
    pub fn scheduled_legacy(schedule: ScheduleId, at: Timestamp) -> Self {
        let mut name = [0u8; 24];
        name[..16].copy_from_slice(schedule.0.as_bytes());
        name[16..].copy_from_slice(&at.as_millis().to_be_bytes());
        Self(Uuid::new_v5(&TICK_NAMESPACE, &name))
    }

    /// Returns the id of a ledger-only record of `schedule` at `at`: a fire time of the
    /// rule that lies outside the schedule's start and end. Never the id of a real tick,
    /// so extending the end later cannot collide with it.
    pub fn outside_bounds(schedule: ScheduleId, at: Timestamp) -> Self {
        let mut name = [0u8; 25];
        name[0] = b'b';
        name[1..17].copy_from_slice(schedule.0.as_bytes());
        name[17..].copy_from_slice(&at.as_millis().to_be_bytes());
        Self(Uuid::new_v5(&TICK_NAMESPACE, &name))
    }

    /// Returns the id of a manual trigger of `schedule`. `request` makes it unique per
    /// call (a random UUID, or a client's idempotency key).
    pub fn manual(schedule: ScheduleId, request: Uuid) -> Self {
        let mut name = [0u8; 33];
        name[0] = b'm';
        name[1..17].copy_from_slice(schedule.0.as_bytes());
        name[17..].copy_from_slice(request.as_bytes());
        Self(Uuid::new_v5(&TICK_NAMESPACE, &name))
    }
}

/// Identifies a project (a tenant). Every table, query and API resource carries one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProjectId(String);

impl ProjectId {
    /// The project every resource belongs to until multi-project support lands.
    pub fn default_project() -> Self {
        Self("default".to_owned())
    }

    /// Wraps a project id, checking its form (1-64 of `[a-z0-9-_]`).
    pub fn new(s: &str) -> Result<Self, ValidationError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new("project_id", "must be 1-64 characters of a-z, 0-9, - and _"))
        }
    }

    /// Returns the text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_id_is_deterministic_and_distinct() {
        let s = ScheduleId::generate();
        let t = Timestamp::from_millis(1_700_000_000_000);
        assert_eq!(TickId::scheduled(s, t), TickId::scheduled(s, t));
        assert_ne!(TickId::scheduled(s, t), TickId::scheduled(s, t.add_millis(1)));
        assert_ne!(TickId::scheduled(s, t), TickId::scheduled(ScheduleId::generate(), t));
        let r = Uuid::new_v4();
        assert_eq!(TickId::manual(s, r), TickId::manual(s, r));
        assert_ne!(TickId::manual(s, r), TickId::manual(s, Uuid::new_v4()));
    }

    #[test]
    fn tick_id_is_stable_across_releases() {
        // Pinned values: if these change, stored ticks would be recorded and fired again.
        let s: ScheduleId = "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap();
        let at = Timestamp::from_millis(1_700_000_000_000);
        // computed independently (Python: uuid5 over schedule bytes + big-endian millis)
        let legacy = TickId::scheduled_legacy(s, at);
        assert_eq!(legacy.to_string(), "92a979a4-9c8e-52ea-a45a-8f86c82fde7f");
        assert_eq!(legacy.as_uuid().get_version_num(), 5);
        // the same hash behind 1_700_000_000_000 = 0x018bcfe56800 and version 8
        let t = TickId::scheduled(s, at);
        assert_eq!(t.to_string(), "018bcfe5-6800-82ea-a45a-8f86c82fde7f");
        assert_eq!(t.as_uuid().get_version_num(), 8);
        assert_eq!(t.legacy_of(s, at), Some(legacy));
        assert_eq!(t.legacy_of(s, at.add_millis(1)), None);
        assert_eq!(TickId::outside_bounds(s, at).legacy_of(s, at), None);
        assert_eq!(TickId::manual(s, Uuid::new_v4()).legacy_of(s, at), None);
    }

    #[test]
    fn scheduled_tick_ids_sort_by_nominal_time() {
        let schedules = [ScheduleId::generate(), ScheduleId::generate()];
        let mut last: Option<TickId> = None;
        // from 1970 to 2033, with the millisecond part varying
        for ms in (0..2_000_000_000_000i64).step_by(7_919_999_999) {
            let at = Timestamp::from_millis(ms);
            let ids = schedules.map(|s| TickId::scheduled(s, at));
            assert!(last.is_none_or(|l| ids.iter().all(|t| *t > l)), "{ids:?} at {ms} ms after {last:?}");
            assert!(schedules.iter().zip(ids).all(|(s, t)| t != TickId::scheduled_legacy(*s, at)));
            last = ids.into_iter().max();
        }
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        let s: ScheduleId = "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap();
        assert_eq!(s.shard(256), s.shard(256));
        for _ in 0..1000 {
            assert!(ScheduleId::generate().shard(7) < 7);
        }
    }

    #[test]
    fn project_id_form() {
        assert!(ProjectId::new("default").is_ok());
        assert!(ProjectId::new("").is_err());
        assert!(ProjectId::new("Bad Name").is_err());
    }
}
