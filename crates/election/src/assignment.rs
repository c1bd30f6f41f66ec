//! Pure shard assignment: given who is alive and who owns what, which shards should this
//! node try to take and which should it give back.
//!
//! Rules (property-tested below):
//! - quotas: live nodes sorted by id; with `S` shards and `n` nodes, the first `S mod n`
//!   nodes get `ceil(S / n)`, the others `floor(S / n)`. Quotas sum to `S` and differ by at
//!   most one, so a converged cluster is balanced within 1;
//! - a node only takes FREE shards (ownership itself is a compare-and-set in the lease
//!   store, so two nodes can never both take one), up to its quota, preferring shards by
//!   rendezvous hash so that nodes rarely race for the same one;
//! - a node above its quota gives back its least preferred shards;
//! - with membership stable, repeated rounds converge: every shard owned, balanced within 1.

use std::collections::{BTreeMap, BTreeSet};

/// What a node should do this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moves {
    /// Free shards to try to take, most preferred first.
    pub acquire: Vec<u32>,
    /// Owned shards to give back.
    pub release: Vec<u32>,
}

/// Returns the quota of `me` among `live` nodes for `shard_count` shards (0 if not live).
pub fn quota(me: &str, live: &BTreeSet<String>, shard_count: u32) -> u32 {
    let n = live.len() as u32;
    let Some(rank) = live.iter().position(|l| l == me) else { return 0 };
    if n == 0 {
        return 0;
    }
    shard_count / n + u32::from((rank as u32) < shard_count % n)
}

/// Returns the preference of `node` for `shard` (rendezvous hashing: higher wins).
pub fn preference(node: &str, shard: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.as_bytes().iter().chain(shard.to_be_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // final avalanche (splitmix64) so neighbouring shards spread
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Decides the moves of `me`. `owners` maps each owned shard to its owner; shards missing
/// from it are free.
pub fn decide(me: &str, shard_count: u32, live: &BTreeSet<String>, owners: &BTreeMap<u32, String>) -> Moves {
    let q = quota(me, live, shard_count) as usize;
    let mut mine: Vec<u32> = owners.iter().filter(|(_, o)| o.as_str() == me).map(|(s, _)| *s).collect();
    mine.sort_by_key(|s| std::cmp::Reverse(preference(me, *s)));
    if mine.len() > q {
        return Moves { acquire: Vec::new(), release: mine.split_off(q) };
    }
    let mut free: Vec<u32> = (0..shard_count).filter(|s| !owners.contains_key(s)).collect();
    free.sort_by_key(|s| std::cmp::Reverse(preference(me, *s)));
    free.truncate(q - mine.len());
    Moves { acquire: free, release: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nodes(n: usize) -> BTreeSet<String> {
        (0..n).map(|i| format!("planner-{i}")).collect()
    }

    #[test]
    fn quotas_sum_and_differ_by_at_most_one() {
        for n in 1..10 {
            let live = nodes(n);
            let qs: Vec<u32> = live.iter().map(|m| quota(m, &live, 256)).collect();
            assert_eq!(qs.iter().sum::<u32>(), 256);
            assert!(qs.iter().max().unwrap() - qs.iter().min().unwrap() <= 1);
        }
        assert_eq!(quota("ghost", &nodes(3), 256), 0);
    }

    /// Simulates rounds in which nodes act in a random order against a CAS store: taking a
    /// shard succeeds only if it is still free.
    fn round(owners: &mut BTreeMap<u32, String>, live: &BTreeSet<String>, order: &[usize], shards: u32) {
        let list: Vec<&String> = live.iter().collect();
        for &i in order {
            let me = list[i % list.len()];
            let m = decide(me, shards, live, owners);
            for s in m.release {
                if owners.get(&s) == Some(me) {
                    owners.remove(&s);
                }
            }
            for s in m.acquire {
                owners.entry(s).or_insert_with(|| me.clone());
            }
        }
    }

    fn balanced(owners: &BTreeMap<u32, String>, live: &BTreeSet<String>, shards: u32) -> bool {
        let counts: Vec<usize> = live.iter().map(|m| owners.values().filter(|o| *o == m).count()).collect();
        owners.len() == shards as usize
            && owners.values().all(|o| live.contains(o))
            && counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0) <= 1
    }

    proptest! {
        #[test]
        fn converges_balanced_after_joins_and_leaves(
            shards in 1u32..300,
            start in 1usize..6,
            changes in proptest::collection::vec((any::<bool>(), 0usize..8), 0..5),
            orders in proptest::collection::vec(proptest::collection::vec(0usize..16, 1..16), 8),
        ) {
            let mut live = nodes(start);
            let mut owners = BTreeMap::new();
            let mut next_id = start;
            for (join, pick) in changes {
                if join || live.len() == 1 {
                    live.insert(format!("planner-{next_id}"));
                    next_id += 1;
                } else {
                    // a node leaves: its lease expires and its shards become free
                    let gone = live.iter().nth(pick % live.len()).cloned().unwrap();
                    live.remove(&gone);
                    owners.retain(|_, o| *o != gone);
                }
                round(&mut owners, &live, &orders[0], shards);
                // at every step: each shard has at most one owner (a map) and it is live
                prop_assert!(owners.values().all(|o| live.contains(o)));
            }
            // With membership stable: every node acting once per round, in any order,
            // converges within a few rounds.
            for order in &orders {
                let everyone: Vec<usize> = (0..live.len()).chain(order.iter().copied()).collect();
                round(&mut owners, &live, &everyone, shards);
            }
            prop_assert!(balanced(&owners, &live, shards), "not balanced: {:?}", owners.values().fold(BTreeMap::new(), |mut m, o| { *m.entry(o.clone()).or_insert(0) += 1; m }));
        }
    }
}
