//! Flows held by other cluster nodes: cluster-unique connection ids and the decision to hand a
//! message to the node that holds its connection (issue 5, "any node serves any request").
//!
//! A stream connection (TCP, TLS, WS, WSS) exists on one node only. In a cluster, bindings
//! (RFC 5626 §5.3: a request to a flow goes over that flow) and Record-Route flow tokens name
//! connections that may live on another node, so a [`ConnectionId`] must say whose it is. It
//! does: a clustered node takes a cluster-unique [`Incarnation`] number when it starts (a Redis
//! counter, new at every start, so a restarted node never reuses a dead process's ids) and its
//! transport numbers connections from [`Incarnation::connection_base`]. The incarnation is the
//! connection id's bits 40..56; an unclustered node has incarnation 0 and plain ids.
//!
//! The core compares a destination's incarnation with its own ([`CoreConfig`]'s
//! `incarnation`) and emits [`Output::RemoteTransmit`](super::Output::RemoteTransmit) instead
//! of a plain transmit for a connection held elsewhere; the shell carries it over the cluster.
//! When the holder is dead or the connection gone, the shell calls
//! [`Core::handle_flow_unreachable`], and the request is answered 480 at once (RFC 5626 §5.4:
//! the flow failed; the UA is temporarily unavailable until it registers a new one).
//!
//! [`CoreConfig`]: super::CoreConfig

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use crate::peer::{ConnectionId, Listener};

use super::core::{ClientFsm, Core};

/// Bit position of the incarnation in a connection id.
const SHIFT: u32 = 40;
/// Incarnations are 16 bits; the counter wraps (ids of 65,535 starts ago are long expired).
const MASK: u64 = 0xffff;

/// A clustered node process's number, unique across the cluster's processes (within 65,535
/// starts). 0 is "not clustered".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Incarnation(pub u16);

impl Incarnation {
    /// From a counter value (any `u64`): folded into 1..=65535, never 0.
    pub fn from_counter(n: u64) -> Self {
        // `n % MASK` is at most 65534, so the sum fits in 16 bits.
        Self(u16::try_from(n % MASK + 1).unwrap_or(u16::MAX))
    }

    /// The first connection id of this incarnation (the transport adds its own counter).
    pub fn connection_base(self) -> u64 {
        u64::from(self.0) << SHIFT
    }

    /// The incarnation that holds `connection` (0 for an unclustered node's ids).
    pub fn of(connection: ConnectionId) -> Self {
        Self(u16::try_from((connection.0 >> SHIFT) & MASK).unwrap_or(0))
    }

    /// True for a clustered node (not 0).
    pub fn is_clustered(self) -> bool {
        self.0 != 0
    }
}

impl std::fmt::Display for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "i{}", self.0)
    }
}

/// Where a connection is, seen from a node of incarnation `own`.
pub(super) fn remote_holder(own: Incarnation, connection: ConnectionId) -> Option<Incarnation> {
    let holder = Incarnation::of(connection);
    (own.is_clustered() && holder.is_clustered() && holder != own).then_some(holder)
}

impl Core {
    /// The shell could not hand a message to the connection `connection` held by another node
    /// (the node is dead, unknown, did not answer, or no longer has the connection): every
    /// client transaction waiting on it fails now, so its request gets 480 (RFC 5626 §5.4)
    /// rather than a timeout. A request whose connection was only reused (a TCP or TLS binding
    /// that is not a flow, its Contact the connection's remote address) is sent again from
    /// this node on a new connection to that address instead (RFC 3261 §18.1.1: the
    /// transport may open a new connection to the destination); it fails like the others if
    /// that does not work. Flows (RFC 5626: WS/WSS, `;ob`, `.invalid` Contacts) never are.
    pub fn handle_flow_unreachable(&mut self, now: Instant, connection: ConnectionId) {
        let ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, e)| e.destination.connection == Some(connection))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(entry) = self.clients.get_mut(&id) {
                if let Some(bytes) = entry.redial.take() {
                    entry.destination.connection = None;
                    entry.redialled = true;
                    let destination = entry.destination;
                    debug!(%connection, peer = %destination.addr, "holder unreachable: dialling the contact");
                    self.transmit(destination, bytes);
                    continue;
                }
                match &mut entry.fsm {
                    ClientFsm::Invite(tx) => tx.transport_error(now),
                    ClientFsm::NonInvite(tx) => tx.transport_error(now),
                }
            }
            self.drive_client(now, id, None);
        }
    }

    /// A stream connection to `peer` closed (or could not be opened): requests redialled there
    /// by [`Self::handle_flow_unreachable`] that are still waiting fail now, so the caller gets
    /// 480 at once rather than after Timer B/F (an address that cannot be dialled: a
    /// connection-reuse alias behind NAT, a UA that does not listen).
    pub fn handle_redial_closed(&mut self, now: Instant, peer: SocketAddr) {
        let ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, e)| e.redialled && e.destination.addr == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(entry) = self.clients.get_mut(&id) {
                entry.redialled = false;
                match &mut entry.fsm {
                    ClientFsm::Invite(tx) => tx.transport_error(now),
                    ClientFsm::NonInvite(tx) => tx.transport_error(now),
                }
            }
            self.drive_client(now, id, None);
        }
    }

    /// The SIP listeners of the other cluster members (learned from them; kept after a member
    /// dies, so dialogs it record-routed still work through the survivors). A Route value or
    /// Via naming one of them is treated as naming this node (RFC 3261 §16.4: the cluster
    /// shares one Record-Route identity).
    pub fn set_cluster_peers(&mut self, peers: Vec<Listener>) {
        self.locality.set_peers(peers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnation_round_trips_through_a_connection_id() {
        let i = Incarnation::from_counter(7);
        assert_eq!(i, Incarnation(8));
        let c = ConnectionId(i.connection_base() + 12_345);
        assert_eq!(Incarnation::of(c), i);
        assert_eq!(Incarnation::of(ConnectionId(12_345)), Incarnation(0));
        assert_eq!(Incarnation::from_counter(MASK - 1), Incarnation(u16::MAX));
        assert_eq!(Incarnation::from_counter(MASK), Incarnation(1));
    }

    #[test]
    fn only_a_clustered_node_sees_remote_holders() {
        let a = Incarnation(1);
        let b = Incarnation(2);
        let on_b = ConnectionId(b.connection_base() + 1);
        assert_eq!(remote_holder(a, on_b), Some(b));
        assert_eq!(remote_holder(b, on_b), None);
        assert_eq!(remote_holder(Incarnation(0), on_b), None);
        assert_eq!(remote_holder(a, ConnectionId(5)), None);
    }
}
