//! Pruning long-dead members from the registry (issue 5): a member whose lease has been gone
//! for [`Timing::prune_after`](crate::Timing::prune_after) (default 60 s) is removed from
//! `P members` by the `lua/prune.lua` script, which re-checks that the lease is still absent,
//! so a node that came back in the meantime keeps its entry. Every node runs the same rule;
//! the removal is idempotent. The detector then forgets the peer (it is no longer in the
//! registry, has no session and is dead), so it leaves the admin view and the dial targets.
//!
//! [`PruneClock`] is the sans-IO part: it remembers since when each member lacks a lease.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::detector::RegistryEntry;
use crate::id::NodeId;

/// Since when each registered member has had no lease, as seen in successive registry reads.
#[derive(Debug, Default, Clone)]
pub struct PruneClock {
    leaseless_since: BTreeMap<NodeId, Instant>,
}

impl PruneClock {
    /// Folds in a registry read at `now` and returns the members without a lease for at least
    /// `after` (never `me`).
    pub fn due(
        &mut self,
        now: Instant,
        me: &NodeId,
        entries: &[RegistryEntry],
        after: Duration,
    ) -> Vec<NodeId> {
        let mut seen = BTreeMap::new();
        for e in entries {
            if &e.node == me || e.lease.is_some() {
                continue;
            }
            let since = self.leaseless_since.get(&e.node).copied().unwrap_or(now);
            seen.insert(e.node.clone(), since);
        }
        self.leaseless_since = seen;
        self.leaseless_since
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= after)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Forgets `node` (after it was pruned).
    pub fn forget(&mut self, node: &NodeId) {
        self.leaseless_since.remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Epoch;

    fn entry(id: &str, leased: bool) -> RegistryEntry {
        RegistryEntry {
            node: NodeId::new(id).expect("id"),
            addr: "127.0.0.1:7000".parse().expect("addr"),
            lease: leased.then_some((Epoch(1), Duration::from_secs(3))),
        }
    }

    #[test]
    fn a_member_is_due_only_after_being_leaseless_for_the_whole_period() {
        let me = NodeId::new("me").expect("id");
        let after = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut clock = PruneClock::default();
        let reg = [entry("a", false), entry("b", true), entry("me", false)];
        assert!(clock.due(t0, &me, &reg, after).is_empty());
        assert!(
            clock
                .due(t0 + Duration::from_secs(59), &me, &reg, after)
                .is_empty()
        );
        let due = clock.due(t0 + Duration::from_secs(60), &me, &reg, after);
        assert_eq!(due, vec![NodeId::new("a").expect("id")]);
    }

    #[test]
    fn a_lease_in_between_restarts_the_period() {
        let me = NodeId::new("me").expect("id");
        let after = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut clock = PruneClock::default();
        clock.due(t0, &me, &[entry("a", false)], after);
        clock.due(
            t0 + Duration::from_secs(30),
            &me,
            &[entry("a", true)],
            after,
        );
        let later = t0 + Duration::from_secs(70);
        assert!(
            clock
                .due(later, &me, &[entry("a", false)], after)
                .is_empty()
        );
        let due = clock.due(later + after, &me, &[entry("a", false)], after);
        assert_eq!(due.len(), 1);
    }
}
