//! Flows held by other cluster nodes, the engine's side (issue 5; the decision is the core's,
//! see `sipmesh_protocol::proxy::Incarnation`).
//!
//! ```text
//!  node A (request entered)                         node C (holds the connection)
//!  Core ─► Output::RemoteTransmit ─► FlowRelay::deliver ══mesh══► EngineFlows::deliver_local
//!   ▲         (fails: handle_flow_unreachable → 480)               │ remembers branch → A
//!   │                                                              ▼ writes on the connection
//!  Ingress ◄─ EngineFlows::inject_relayed ◄══mesh══ FlowRelay::relay ◄─ Ingress (response
//!                                                                      whose branch is A's)
//! ```
//!
//! The cluster crate carries the frames ([`FlowRelay`] is implemented by the node over
//! `sipmesh_cluster::flow`); this module keeps the relay table: the top Via branch of every
//! request written for another node, so the responses that come back on the connection go to
//! that node's transaction rather than to a local shard that never saw them.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::debug;

use sipmesh_protocol::message::Message;
use sipmesh_protocol::peer::{ConnectionId, Transport};
use sipmesh_protocol::proxy::{Incarnation, Listener, Transmit};

use crate::transport::{Destination, Inbound, TransportHandle};

use super::Ingress;
use super::shard::ShardInput;

/// How long a relayed request's branch is remembered: Timer B/F (64·T1 = 32 s) plus margin,
/// which also covers the retransmissions of an INVITE's 2xx until its ACK.
const RELAY_TTL: Duration = Duration::from_secs(40);

/// A message for (or from) a connection held by one node, as handed across the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFrame {
    /// The node process that sent it (responses are relayed there).
    pub from: Incarnation,
    /// The connection's transport.
    pub transport: Transport,
    /// The connection (its id names its holder).
    pub connection: ConnectionId,
    /// The UA's end of the connection.
    pub peer: SocketAddr,
    /// The SIP message.
    pub payload: Bytes,
}

/// A boxed future (the relay is implemented outside this crate, over the cluster mesh).
pub type RelayFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Carries frames between nodes (implemented by the node with `sipmesh_cluster::flow`).
pub trait FlowRelay: Send + Sync + 'static {
    /// Asks `holder` to write `frame` on its connection; resolves `true` once it did, `false`
    /// when the holder is gone, the connection is gone, or no answer came in time.
    fn deliver(&self, holder: Incarnation, frame: RemoteFrame) -> RelayFuture;
    /// Hands a response that arrived on one of this node's connections to `to`.
    fn relay(&self, to: Incarnation, frame: RemoteFrame);
    /// Tells `to` that `connection`, over which it has requests waiting for responses, closed.
    fn closed(&self, to: Incarnation, connection: ConnectionId);
}

/// Branches of requests written here for other nodes.
#[derive(Debug, Default)]
struct RelayTable {
    by_branch: HashMap<String, (Incarnation, ConnectionId)>,
    expiry: VecDeque<(Instant, String)>,
}

impl RelayTable {
    fn insert(&mut self, now: Instant, branch: String, to: Incarnation, via: ConnectionId) {
        self.expire(now);
        if self.by_branch.insert(branch.clone(), (to, via)).is_none() {
            self.expiry.push_back((now + RELAY_TTL, branch));
        }
    }

    fn get(&mut self, now: Instant, branch: &str) -> Option<Incarnation> {
        self.expire(now);
        self.by_branch.get(branch).map(|(to, _)| *to)
    }

    /// The nodes with requests over `connection`, whose entries are dropped.
    fn close(&mut self, connection: ConnectionId) -> Vec<Incarnation> {
        let mut to = Vec::new();
        self.by_branch.retain(|_, (node, via)| {
            if *via != connection {
                return true;
            }
            if !to.contains(node) {
                to.push(*node);
            }
            false
        });
        to
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiry.front() {
            if *at > now {
                break;
            }
            if let Some((_, branch)) = self.expiry.pop_front() {
                self.by_branch.remove(&branch);
            }
        }
    }
}

/// State shared by the ingress, the shards and [`EngineFlows`].
#[derive(Default)]
pub(crate) struct Flows {
    incarnation: Incarnation,
    relay: OnceLock<Arc<dyn FlowRelay>>,
    table: Mutex<RelayTable>,
    /// Entries in `table` (read without the lock on every response over a connection).
    entries: AtomicUsize,
}

impl std::fmt::Debug for Flows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flows")
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

impl Flows {
    pub(crate) fn new(incarnation: Incarnation) -> Self {
        Self {
            incarnation,
            ..Self::default()
        }
    }

    /// Sends `transmit` to the node `holder` of its connection; `unreachable` runs when that
    /// fails (no relay yet, holder dead, connection gone, no answer).
    pub(crate) fn send_remote(
        &self,
        holder: Incarnation,
        transmit: Transmit,
        unreachable: impl FnOnce(ConnectionId) + Send + 'static,
    ) {
        let d = transmit.destination;
        let Some(connection) = d.connection else {
            return;
        };
        let Some(relay) = self.relay.get().cloned() else {
            debug!(%connection, %holder, "no cluster relay: flow unreachable");
            unreachable(connection);
            return;
        };
        let frame = RemoteFrame {
            from: self.incarnation,
            transport: d.transport,
            connection,
            peer: d.addr,
            payload: transmit.payload,
        };
        tokio::spawn(async move {
            if !relay.deliver(holder, frame).await {
                debug!(%connection, %holder, "remote flow unreachable");
                unreachable(connection);
            }
        });
    }

    /// For the ingress: relays `msg` (a response that arrived on a connection) to the node whose
    /// request it answers, if it is one; `true` when it did.
    pub(crate) fn relay_response(&self, msg: &Message, inbound: &Inbound) -> bool {
        if self.entries.load(Ordering::Relaxed) == 0 || msg.is_request() {
            return false;
        }
        let (Some(connection), Some(relay)) = (inbound.connection, self.relay.get()) else {
            return false;
        };
        let Some(branch) = msg.top_via().ok().and_then(|v| v.branch.map(str::to_owned)) else {
            return false;
        };
        let to = {
            let Ok(mut table) = self.table.lock() else {
                return false;
            };
            let to = table.get(Instant::now(), &branch);
            self.entries.store(table.by_branch.len(), Ordering::Relaxed);
            to
        };
        let Some(to) = to else { return false };
        relay.relay(
            to,
            RemoteFrame {
                from: self.incarnation,
                transport: inbound.transport,
                connection,
                peer: inbound.source,
                payload: inbound.data.clone(),
            },
        );
        true
    }

    fn remember(&self, branch: String, to: Incarnation, via: ConnectionId) {
        if let Ok(mut table) = self.table.lock() {
            table.insert(Instant::now(), branch, to, via);
            self.entries.store(table.by_branch.len(), Ordering::Relaxed);
        }
    }

    /// For the ingress: one of this node's connections closed; the nodes with requests over it
    /// learn it now (their transactions fail with 480 rather than time out).
    pub(crate) fn connection_closed(&self, connection: ConnectionId) {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(relay) = self.relay.get() else {
            return;
        };
        let to = match self.table.lock() {
            Ok(mut table) => {
                let to = table.close(connection);
                self.entries.store(table.by_branch.len(), Ordering::Relaxed);
                to
            }
            Err(_) => return,
        };
        for node in to {
            relay.closed(node, connection);
        }
    }
}

/// The engine's handle for the cluster layer: frames in, relay out, and the cluster's listeners.
#[derive(Clone)]
pub struct EngineFlows {
    pub(crate) flows: Arc<Flows>,
    pub(crate) ingress: Arc<Ingress>,
    pub(crate) transport: TransportHandle,
    pub(crate) shards: Vec<mpsc::Sender<ShardInput>>,
    pub(crate) listeners: Vec<Listener>,
    /// The other members' listeners, also read by the dialog-timeout BYEs.
    pub(crate) cluster_peers: Arc<std::sync::RwLock<Vec<Listener>>>,
}

impl std::fmt::Debug for EngineFlows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineFlows")
            .field("flows", &self.flows)
            .finish_non_exhaustive()
    }
}

impl EngineFlows {
    /// This node process's incarnation.
    pub fn incarnation(&self) -> Incarnation {
        self.flows.incarnation
    }

    /// Starts sending frames for other nodes' connections through `relay` (once).
    pub fn set_relay(&self, relay: Arc<dyn FlowRelay>) {
        let _ = self.flows.relay.set(relay);
    }

    /// Closes every stream connection of this node (its clients must recover their flows
    /// elsewhere); returns how many were asked to close.
    pub fn close_all_streams(&self) -> usize {
        self.transport.close_all_streams()
    }

    /// Whether `connection` is open (or connecting) at this node.
    pub fn holds(&self, connection: ConnectionId) -> bool {
        self.transport.has_connection(connection)
    }

    /// This node's SIP listeners.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Writes a frame from another node on this node's connection; `false` when the
    /// connection is not (or no longer) here. Remembers the request's branch so the responses
    /// go back to the sender.
    pub fn deliver_local(&self, frame: RemoteFrame) -> bool {
        if Incarnation::of(frame.connection) != self.flows.incarnation
            || self.transport.connection_to(frame.transport, frame.peer) != Some(frame.connection)
        {
            return false;
        }
        if let Ok(msg) = Message::parse(frame.payload.clone())
            && msg.is_request()
            && let Some(branch) = msg.top_via().ok().and_then(|v| v.branch)
        {
            self.flows
                .remember(branch.to_owned(), frame.from, frame.connection);
        }
        self.transport.send(
            Destination {
                transport: frame.transport,
                addr: frame.peer,
                local: None,
                connection: Some(frame.connection),
            },
            frame.payload,
        );
        true
    }

    /// A response relayed by the holder of a connection: handled as if it had arrived here.
    pub fn inject_relayed(&self, frame: RemoteFrame) {
        let local = self
            .listeners
            .iter()
            .find(|l| l.transport == frame.transport)
            .or_else(|| self.listeners.first())
            .map_or(frame.peer, |l| l.addr);
        self.ingress.handle(Inbound {
            data: frame.payload,
            source: frame.peer,
            local,
            transport: frame.transport,
            connection: Some(frame.connection),
        });
    }

    /// The holder of `connection` says it closed: the transactions waiting on it fail now.
    pub fn remote_closed(&self, connection: ConnectionId) {
        self.broadcast(|| ShardInput::FlowUnreachable(connection));
    }

    fn broadcast(&self, input: impl Fn() -> ShardInput) {
        for tx in &self.shards {
            if let Err(mpsc::error::TrySendError::Full(input)) = tx.try_send(input()) {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(input).await;
                });
            }
        }
    }

    /// The other members' SIP listeners: Route values and Vias naming them name this node
    /// (one Record-Route identity for the cluster). Every shard gets the list.
    pub fn set_cluster_peers(&self, peers: Vec<Listener>) {
        *self
            .cluster_peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = peers.clone();
        self.broadcast(|| ShardInput::ClusterPeers(peers.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_table_forgets_after_the_ttl() {
        let mut t = RelayTable::default();
        let now = Instant::now();
        t.insert(now, "z9hG4bK1".to_owned(), Incarnation(3), ConnectionId(1));
        assert_eq!(t.get(now, "z9hG4bK1"), Some(Incarnation(3)));
        assert_eq!(t.get(now + RELAY_TTL, "z9hG4bK1"), None);
        assert!(t.by_branch.is_empty());
    }

    #[test]
    fn a_closed_connection_names_each_waiting_node_once() {
        let mut t = RelayTable::default();
        let now = Instant::now();
        t.insert(now, "a".to_owned(), Incarnation(3), ConnectionId(1));
        t.insert(now, "b".to_owned(), Incarnation(3), ConnectionId(1));
        t.insert(now, "c".to_owned(), Incarnation(4), ConnectionId(2));
        assert_eq!(t.close(ConnectionId(1)), vec![Incarnation(3)]);
        assert_eq!(t.get(now, "c"), Some(Incarnation(4)));
        assert_eq!(t.get(now, "a"), None);
    }
}
