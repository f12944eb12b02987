//! The admin view of the cluster (`GET /cluster`): one entry per member, this node first.

use std::net::SocketAddr;

use serde::Serialize;

use crate::detector::MemberState;
use crate::id::{Epoch, NodeId};

/// The cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// This node.
    pub node_id: NodeId,
    /// Members that count for placement now (live or suspect; this node unless fenced).
    pub live: Vec<NodeId>,
    /// Every known member, this node first.
    pub members: Vec<MemberView>,
    /// Whether the mesh sessions run over mutual TLS.
    pub tls: bool,
    /// Routers of each service in the process groups: `(service, local, remote)`.
    pub routers: Vec<RouterCount>,
}

/// One member in a [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Its id.
    pub id: NodeId,
    /// Its cluster address.
    pub addr: Option<SocketAddr>,
    /// Whether this entry is the node answering.
    pub is_self: bool,
    /// Live, suspect, dead or fenced.
    pub state: MemberState,
    /// Why this node is fenced (this node only; `None` when it is not).
    pub fenced_by: Option<FenceReason>,
    /// The epoch of its current lease.
    pub epoch: Option<Epoch>,
    /// Milliseconds since its lease was last renewed.
    pub lease_age_ms: Option<u64>,
    /// Milliseconds since its last heartbeat (`None` for this node).
    pub heartbeat_age_ms: Option<u64>,
    /// Whether a ractor_cluster session to it is up (`None` for this node).
    pub connected: Option<bool>,
    /// How many times it lost its lease (known for this node only).
    pub times_fenced: Option<u64>,
    /// Actors it runs, all kinds together ([`ActorCounts::total`]); `None` while no fresh
    /// count is known (a dead member, or before the first report).
    pub owned_actors: Option<u64>,
    /// The same per kind.
    pub actors: Option<ActorCounts>,
}

/// The actors one member runs, per kind (issue 5, point 5). A member publishes its own every
/// second; peers' counts can be up to about a second old.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ActorCounts {
    /// Per-AOR registrar actors (AORs with recent activity, not every registered AOR).
    pub aors: u64,
    /// Dialog actors.
    pub dialogs: u64,
    /// Media sessions (relayed calls).
    pub media_sessions: u64,
    /// Stream connections (TCP, TLS, WS, WSS), each run by a connection actor.
    pub connections: u64,
}

impl ActorCounts {
    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.aors
            .saturating_add(self.dialogs)
            .saturating_add(self.media_sessions)
            .saturating_add(self.connections)
    }

    /// The form stored in Redis: `aors dialogs media_sessions connections`.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.aors, self.dialogs, self.media_sessions, self.connections
        )
    }

    /// Reads [`Self::encode`]'s form; `None` when it is malformed.
    pub fn decode(s: &str) -> Option<Self> {
        let mut it = s.split(' ').map(str::parse::<u64>);
        let counts = Self {
            aors: it.next()?.ok()?,
            dialogs: it.next()?.ok()?,
            media_sessions: it.next()?.ok()?,
            connections: it.next()?.ok()?,
        };
        it.next().is_none().then_some(counts)
    }
}

/// Router actors of one service in its process group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterCount {
    /// The service.
    pub service: String,
    /// Routers on this node.
    pub local: usize,
    /// Routers on peers, seen through ractor_cluster.
    pub remote: usize,
}

/// Why a node is fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FenceReason {
    /// It holds no valid lease (never acquired, Redis unreachable, or it was frozen past it).
    Lease,
    /// It holds a lease but hears fewer than a majority of the leased members.
    Isolated,
    /// It just (re)gained its lease or its contact with the majority and waits
    /// [`Timing::settle`](crate::Timing::settle) for its peers to place it before claiming keys.
    Settling,
}

#[cfg(test)]
mod tests {
    use super::ActorCounts;

    #[test]
    fn counts_round_trip_and_refuse_malformed_values() {
        let c = ActorCounts {
            aors: 3,
            dialogs: 7,
            media_sessions: 1,
            connections: 12,
        };
        assert_eq!(c.encode(), "3 7 1 12");
        assert_eq!(ActorCounts::decode(&c.encode()), Some(c));
        assert_eq!(c.total(), 23);
        for bad in ["", "1 2 3", "1 2 3 4 5", "1 x 3 4", "-1 2 3 4"] {
            assert_eq!(ActorCounts::decode(bad), None, "{bad:?}");
        }
    }
}
