//! Placement: which member owns a key, by rendezvous (highest-random-weight) hashing.
//!
//! Every member gets a score `hash(member, key)`; the owner is the member with the highest
//! score (ties, which need a 64-bit collision, go to the larger id). Thaler and Ravishankar's
//! scheme has the two properties the cluster needs without any shared table:
//!
//! - every node computes the same owner from the same live set, with no coordination;
//! - when a member leaves, only the keys it owned move (each to its runner-up), and when one
//!   joins it takes only the keys it now wins: about `1/n` of them.
//!
//! The hash is our own FNV-1a pass followed by the MurmurHash3 64-bit finaliser, fixed here so
//! that placement never changes with the Rust version or the platform (std's `DefaultHasher`
//! promises neither).

use crate::id::NodeId;

/// The rendezvous score of `node` for `key`.
pub fn score(node: &NodeId, key: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    // The separator keeps ("ab", "c") and ("a", "bc") apart; node ids never hold 0xff.
    for &b in node.as_str().as_bytes().iter().chain(&[0xff]).chain(key) {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

/// MurmurHash3's 64-bit finaliser: spreads FNV's weak low-entropy bits over the whole word.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The owner of `key` among `members` (the live set), or `None` when it is empty.
pub fn owner_of<'a, I>(key: &[u8], members: I) -> Option<&'a NodeId>
where
    I: IntoIterator<Item = &'a NodeId>,
{
    members
        .into_iter()
        .max_by_key(|node| (score(node, key), *node))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (1..=n)
            .map(|i| NodeId::new(&format!("node-{i}")).unwrap())
            .collect()
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("sip:user{i}@example.com")).collect()
    }

    #[test]
    fn the_score_is_fixed_across_builds() {
        // Pinned values: a change here moves every key in a running cluster.
        let a = NodeId::new("a").unwrap();
        assert_eq!(score(&a, b"k"), score(&a, b"k"));
        assert_ne!(score(&a, b"k"), score(&a, b"l"));
        // Cross-checked with an independent Python implementation of FNV-1a + fmix64.
        assert_eq!(score(&a, b""), 0x3aec_69d2_86fb_d39b);
    }

    #[test]
    fn no_members_no_owner() {
        assert_eq!(owner_of(b"k", &Vec::<NodeId>::new()), None);
    }

    #[test]
    fn keys_spread_evenly() {
        let members = nodes(3);
        let mut counts: HashMap<&NodeId, usize> = HashMap::new();
        for key in keys(30_000) {
            let owner = owner_of(key.as_bytes(), &members).unwrap();
            *counts.entry(owner).or_default() += 1;
        }
        for m in &members {
            let share = counts.get(m).copied().unwrap_or_default();
            // 10,000 expected; 5 % either way is > 9 standard deviations.
            assert!((9_500..=10_500).contains(&share), "{m}: {share}");
        }
    }

    #[test]
    fn only_the_dead_members_keys_move() {
        let all = nodes(4);
        let dead = &all[2];
        let survivors: Vec<NodeId> = all.iter().filter(|n| *n != dead).cloned().collect();
        let mut moved = 0;
        for key in keys(10_000) {
            let before = owner_of(key.as_bytes(), &all).unwrap();
            let after = owner_of(key.as_bytes(), &survivors).unwrap();
            if before == dead {
                moved += 1;
                assert_ne!(after, dead);
            } else {
                assert_eq!(before, after, "{key} moved off a live member");
            }
        }
        assert!((2_200..=2_800).contains(&moved), "{moved} keys moved");
    }

    #[test]
    fn a_joining_member_takes_only_what_it_wins() {
        let old = nodes(3);
        let new = nodes(4);
        let joined = &new[3];
        let mut taken = 0;
        for key in keys(10_000) {
            let before = owner_of(key.as_bytes(), &old).unwrap();
            let after = owner_of(key.as_bytes(), &new).unwrap();
            if after == joined {
                taken += 1;
            } else {
                assert_eq!(before, after);
            }
        }
        assert!((2_200..=2_800).contains(&taken), "{taken} keys taken");
    }

    #[test]
    fn member_order_does_not_matter() {
        let mut members = nodes(5);
        let forward: Vec<_> = keys(100)
            .iter()
            .map(|k| owner_of(k.as_bytes(), &members).cloned())
            .collect();
        members.reverse();
        let backward: Vec<_> = keys(100)
            .iter()
            .map(|k| owner_of(k.as_bytes(), &members).cloned())
            .collect();
        assert_eq!(forward, backward);
    }
}
