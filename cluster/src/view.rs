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
    /// Actors it owns; not counted yet (`None`) until the per-entity actors report to the
    /// cluster layer.
    pub owned_actors: Option<u64>,
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
