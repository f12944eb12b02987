//! The failure detector, sans-IO: what this node knows about every other member, and the state
//! it derives at a given instant.
//!
//! Two independent signals must agree before a peer counts as live:
//!
//! - its **lease** in Redis (read every [`Timing::poll_every`]): absent means dead, whatever the
//!   network says. A frozen or partitioned node loses it within the lease TTL. The last
//!   successful read counts: while Redis cannot be read, a lease is *not* presumed expired by
//!   extrapolation, because the peer may have renewed it since, and presuming it gone would
//!   move its keys while it still acts as their owner. A peer whose own lease lapsed says so in
//!   its heartbeats (`F`) and stops acting first;
//! - its **heartbeat** (a UDP datagram every [`Timing::heartbeat_every`]), carrying the epoch it
//!   holds: silent for [`Timing::suspect_after`] makes it suspect, for [`Timing::dead_after`]
//!   dead. ractor_cluster's own sessions cannot do this (no ping timeout, no TCP keepalive).
//!
//! A heartbeat whose epoch is not the lease's epoch (an old incarnation still talking, or a
//! node that says it is fenced) does not count.
//!
//! The table also tells whether this node is **isolated** ([`MemberTable::is_isolated`]): cut
//! off from the majority of the leased members while still reaching Redis. Such a node fences
//! itself too, so that a node partitioned from its peers (but not from Redis) does not keep
//! owning keys that the majority has already moved.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Timing;
use crate::heartbeat::Heartbeat;
use crate::id::{Epoch, NodeId};

/// A member's state as seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Leased and heard from recently: part of the placement set.
    Live,
    /// Leased but silent for a while: still in the placement set, about to be declared dead.
    Suspect,
    /// No lease, or silent too long: out of the placement set.
    Dead,
    /// This node itself, without a valid lease: it must not act as an owner.
    Fenced,
}

impl MemberState {
    /// Whether keys may be placed on a member in this state.
    pub fn is_placeable(self) -> bool {
        matches!(self, Self::Live | Self::Suspect)
    }
}

/// One member's entry in the Redis registry, with its lease if present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// The member.
    pub node: NodeId,
    /// Its cluster address (ractor_cluster TCP and heartbeat UDP).
    pub addr: SocketAddr,
    /// The epoch its lease holds and the lease's remaining lifetime, when it has one.
    pub lease: Option<(Epoch, Duration)>,
}

/// The last registry read of a peer.
#[derive(Debug, Clone, Copy)]
struct LeaseSeen {
    epoch: Epoch,
    /// When the read happened (for the lease age).
    seen: Instant,
    ttl_left: Duration,
}

/// What is known of one peer.
#[derive(Debug, Clone, Default)]
struct Peer {
    addr: Option<SocketAddr>,
    lease: Option<LeaseSeen>,
    heartbeat: Option<(Instant, Heartbeat)>,
    connected: bool,
}

/// A derived view of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// The peer.
    pub node: NodeId,
    /// Its cluster address, once known.
    pub addr: Option<SocketAddr>,
    /// Its state now.
    pub state: MemberState,
    /// The epoch of its lease, when it has one.
    pub epoch: Option<Epoch>,
    /// Time since its lease was last renewed (lease TTL minus remaining lifetime).
    pub lease_age: Option<Duration>,
    /// Time since its last heartbeat.
    pub heartbeat_age: Option<Duration>,
    /// Whether a ractor_cluster session to it is up.
    pub connected: bool,
}

/// Everything this node knows about its peers.
#[derive(Debug, Clone)]
pub struct MemberTable {
    me: NodeId,
    timing: Timing,
    peers: BTreeMap<NodeId, Peer>,
    /// The registry has been read at least once.
    registry_read: bool,
}

impl MemberTable {
    /// An empty table for node `me`.
    pub fn new(me: NodeId, timing: Timing) -> Self {
        Self {
            me,
            timing,
            peers: BTreeMap::new(),
            registry_read: false,
        }
    }

    /// A heartbeat arrived at `now` from `from`.
    pub fn handle_heartbeat(&mut self, now: Instant, from: SocketAddr, hb: Heartbeat) {
        if hb.node == self.me {
            return;
        }
        let peer = self.peers.entry(hb.node.clone()).or_default();
        peer.addr.get_or_insert(from);
        peer.heartbeat = Some((now, hb));
    }

    /// The registry was read at `now`: every registered member with its lease.
    pub fn handle_registry(&mut self, now: Instant, entries: Vec<RegistryEntry>) {
        self.registry_read = true;
        // A dead peer without a session that left the registry (pruned) is forgotten.
        let listed: BTreeSet<&NodeId> = entries.iter().map(|e| &e.node).collect();
        let gone: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(id, p)| !listed.contains(id) && !p.connected)
            .map(|(id, _)| id.clone())
            .filter(|id| self.state(now, id) == MemberState::Dead)
            .collect();
        for id in gone {
            self.peers.remove(&id);
        }
        for entry in entries {
            if entry.node == self.me {
                continue;
            }
            let peer = self.peers.entry(entry.node).or_default();
            peer.addr = Some(entry.addr);
            peer.lease = entry.lease.map(|(epoch, ttl_left)| LeaseSeen {
                epoch,
                seen: now,
                ttl_left,
            });
        }
    }

    /// ractor_cluster sessions are up to exactly these peers.
    pub fn handle_sessions(&mut self, connected: &BTreeSet<NodeId>) {
        for (id, peer) in &mut self.peers {
            peer.connected = connected.contains(id);
        }
        for id in connected {
            if *id != self.me {
                self.peers.entry(id.clone()).or_default().connected = true;
            }
        }
    }

    /// The state of `node` at `now` (`Dead` for an unknown peer).
    pub fn state(&self, now: Instant, node: &NodeId) -> MemberState {
        self.peers
            .get(node)
            .map_or(MemberState::Dead, |p| self.peer_state(now, p))
    }

    fn peer_state(&self, now: Instant, peer: &Peer) -> MemberState {
        match self.silence(now, peer) {
            Some((silence, false)) if silence < self.timing.suspect_after => MemberState::Live,
            Some((_, false)) => MemberState::Suspect,
            Some((_, true)) | None => MemberState::Dead,
        }
    }

    /// Time since the last heartbeat of a reachable peer (valid lease, heartbeat with that
    /// lease's epoch, under [`Timing::dead_after`] old) and whether it says it is fenced;
    /// `None` when the peer is not reachable.
    fn silence(&self, now: Instant, peer: &Peer) -> Option<(Duration, bool)> {
        let lease = peer.lease?;
        let (at, hb) = peer.heartbeat.as_ref()?;
        if hb.epoch != Some(lease.epoch) {
            return None;
        }
        let silence = now.saturating_duration_since(*at);
        (silence < self.timing.dead_after).then_some((silence, hb.fenced))
    }

    /// Whether this node is cut off from the majority of the leased members at `now`, and so
    /// must not act as an owner even with a valid lease of its own.
    ///
    /// A peer counts as heard while its last heartbeat is under [`Timing::suspect_after`] old,
    /// so a cut-off node fences itself at most `suspect_after + heartbeat_every` after the cut,
    /// while its peers need at least `dead_after - heartbeat_every` to declare it dead.
    ///
    /// The electorate is this node plus every peer holding a lease; this node's side is itself
    /// plus the peers it hears (fenced or not: a peer fenced for the same reason still proves
    /// the link works, and counting it avoids two starting nodes waiting for each other). A
    /// side with at most half the electorate is isolated, except that an exact half containing
    /// the lowest id wins the tie, so a two-node cluster split in two keeps one owner. Before
    /// the first registry read the electorate is unknown, and the node counts as isolated.
    pub fn is_isolated(&self, now: Instant) -> bool {
        if !self.registry_read {
            return true;
        }
        let mut electorate = 1;
        let mut side = 1;
        let mut lowest_on_our_side = true;
        for (id, peer) in &self.peers {
            if peer.lease.is_none() {
                continue;
            }
            electorate += 1;
            // Heard within `suspect_after`, not `dead_after`: this node must fence itself
            // before the majority can declare it dead and move its keys (margin: the
            // difference minus one heartbeat interval).
            if self
                .silence(now, peer)
                .is_some_and(|(d, _)| d < self.timing.suspect_after)
            {
                side += 1;
            } else if *id < self.me {
                lowest_on_our_side = false;
            }
        }
        match (2 * side).cmp(&electorate) {
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => !lowest_on_our_side,
            std::cmp::Ordering::Less => true,
        }
    }

    /// Every known peer with its state at `now`, ordered by id.
    pub fn peers(&self, now: Instant) -> Vec<PeerView> {
        self.peers
            .iter()
            .map(|(node, p)| PeerView {
                node: node.clone(),
                addr: p.addr,
                state: self.peer_state(now, p),
                epoch: p.lease.map(|l| l.epoch),
                lease_age: p.lease.map(|l| {
                    self.timing.lease_ttl.saturating_sub(l.ttl_left)
                        + now.saturating_duration_since(l.seen)
                }),
                heartbeat_age: p
                    .heartbeat
                    .as_ref()
                    .map(|(at, _)| now.saturating_duration_since(*at)),
                connected: p.connected,
            })
            .collect()
    }

    /// Addresses to send heartbeats to and to dial: every known peer's.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.peers.values().filter_map(|p| p.addr).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn addr() -> SocketAddr {
        "127.0.0.12:7000".parse().unwrap()
    }

    fn hb(node: &str, epoch: u64) -> Heartbeat {
        Heartbeat {
            node: id(node),
            epoch: Some(Epoch(epoch)),
            fenced: false,
        }
    }

    fn registry(node: &str, epoch: Option<u64>, ttl: u64) -> Vec<RegistryEntry> {
        vec![RegistryEntry {
            node: id(node),
            addr: addr(),
            lease: epoch.map(|e| (Epoch(e), ms(ttl))),
        }]
    }

    #[test]
    fn lease_and_heartbeat_make_a_live_member_and_silence_kills_it() {
        let t0 = Instant::now();
        let mut table = MemberTable::new(id("a"), Timing::default());
        table.handle_registry(t0, registry("b", Some(3), 3000));
        assert_eq!(
            table.state(t0, &id("b")),
            MemberState::Dead,
            "no heartbeat yet"
        );
        table.handle_heartbeat(t0, addr(), hb("b", 3));
        assert_eq!(table.state(t0, &id("b")), MemberState::Live);
        // The lease is refreshed by later reads; the heartbeats stop.
        table.handle_registry(t0 + ms(2000), registry("b", Some(3), 2900));
        assert_eq!(table.state(t0 + ms(999), &id("b")), MemberState::Live);
        assert_eq!(table.state(t0 + ms(1000), &id("b")), MemberState::Suspect);
        assert_eq!(table.state(t0 + ms(2399), &id("b")), MemberState::Suspect);
        assert_eq!(table.state(t0 + ms(2400), &id("b")), MemberState::Dead);
    }

    #[test]
    fn a_missing_lease_is_death_even_with_heartbeats() {
        let t0 = Instant::now();
        let mut table = MemberTable::new(id("a"), Timing::default());
        table.handle_registry(t0, registry("b", Some(3), 800));
        table.handle_heartbeat(t0 + ms(850), addr(), hb("b", 3));
        // Redis unreadable since t0: the lease is not presumed gone at t0 + 800 ms.
        assert_eq!(table.state(t0 + ms(900), &id("b")), MemberState::Live);
        table.handle_registry(t0 + ms(900), registry("b", None, 0));
        table.handle_heartbeat(t0 + ms(900), addr(), hb("b", 3));
        assert_eq!(table.state(t0 + ms(900), &id("b")), MemberState::Dead);
    }

    #[test]
    fn an_old_incarnation_or_a_fenced_node_does_not_count() {
        let t0 = Instant::now();
        let mut table = MemberTable::new(id("a"), Timing::default());
        table.handle_registry(t0, registry("b", Some(4), 3000));
        table.handle_heartbeat(t0, addr(), hb("b", 3));
        assert_eq!(
            table.state(t0, &id("b")),
            MemberState::Dead,
            "epoch 3 != lease 4"
        );
        let mut fenced = hb("b", 4);
        fenced.fenced = true;
        table.handle_heartbeat(t0, addr(), fenced);
        assert_eq!(table.state(t0, &id("b")), MemberState::Dead);
        table.handle_heartbeat(t0, addr(), hb("b", 4));
        assert_eq!(table.state(t0, &id("b")), MemberState::Live);
    }

    fn entry(node: &str, epoch: u64) -> RegistryEntry {
        RegistryEntry {
            node: id(node),
            addr: addr(),
            lease: Some((Epoch(epoch), ms(3000))),
        }
    }

    #[test]
    fn a_node_cut_off_from_the_majority_is_isolated() {
        let t0 = Instant::now();
        let mut table = MemberTable::new(id("b"), Timing::default());
        assert!(
            table.is_isolated(t0),
            "electorate unknown before the registry"
        );
        table.handle_registry(t0, vec![entry("a", 1), entry("b", 1), entry("c", 1)]);
        assert!(table.is_isolated(t0), "1 of 3");
        table.handle_heartbeat(t0, addr(), hb("c", 1));
        assert!(!table.is_isolated(t0), "2 of 3");
        table.handle_heartbeat(t0, addr(), hb("a", 1));
        // Both peers go silent; their leases still hold (they reach Redis, we do not hear them).
        // Isolated after `suspect_after`, well before they could declare us dead.
        assert!(!table.is_isolated(t0 + ms(999)));
        assert!(table.is_isolated(t0 + ms(1000)));
        assert_eq!(table.state(t0 + ms(1000), &id("a")), MemberState::Suspect);
    }

    #[test]
    fn a_fenced_peer_still_counts_for_the_quorum() {
        let t0 = Instant::now();
        let mut table = MemberTable::new(id("b"), Timing::default());
        table.handle_registry(t0, vec![entry("a", 1), entry("c", 1)]);
        let mut fenced = hb("c", 1);
        fenced.fenced = true;
        table.handle_heartbeat(t0, addr(), fenced);
        assert!(
            !table.is_isolated(t0),
            "two starting nodes must not wait for each other"
        );
        assert_eq!(
            table.state(t0, &id("c")),
            MemberState::Dead,
            "but it is not placeable"
        );
    }

    #[test]
    fn dead_peers_leave_the_electorate_when_their_leases_lapse() {
        let t0 = Instant::now();
        let mut table = MemberTable::new(id("c"), Timing::default());
        table.handle_registry(t0, vec![entry("a", 1), entry("b", 1)]);
        assert!(table.is_isolated(t0), "1 of 3 while the dead leases hold");
        table.handle_registry(
            t0 + ms(3000),
            vec![
                RegistryEntry {
                    node: id("a"),
                    addr: addr(),
                    lease: None,
                },
                RegistryEntry {
                    node: id("b"),
                    addr: addr(),
                    lease: None,
                },
            ],
        );
        assert!(
            !table.is_isolated(t0 + ms(3000)),
            "alone is a majority of one"
        );
    }

    #[test]
    fn an_even_split_goes_to_the_side_with_the_lowest_id() {
        let t0 = Instant::now();
        let mut low = MemberTable::new(id("a"), Timing::default());
        low.handle_registry(t0, vec![entry("b", 1)]);
        assert!(!low.is_isolated(t0));
        let mut high = MemberTable::new(id("b"), Timing::default());
        high.handle_registry(t0, vec![entry("a", 1)]);
        assert!(high.is_isolated(t0));
    }

    #[test]
    fn views_report_ages_and_sessions() {
        let t0 = Instant::now();
        let mut table = MemberTable::new(id("a"), Timing::default());
        table.handle_registry(t0, registry("b", Some(3), 2600));
        table.handle_heartbeat(t0, addr(), hb("b", 3));
        table.handle_heartbeat(t0, addr(), hb("a", 1));
        table.handle_sessions(&[id("b"), id("c")].into_iter().collect());
        let views = table.peers(t0 + ms(100));
        assert_eq!(views.len(), 2, "self is not a peer; c came from a session");
        let b = &views[0];
        assert_eq!(b.lease_age, Some(ms(500)));
        assert_eq!(b.heartbeat_age, Some(ms(100)));
        assert!(b.connected);
        assert_eq!(views[1].state, MemberState::Dead);
        assert_eq!(table.addrs(), vec![addr()]);
    }
}
