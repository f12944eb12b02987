//! Wiring between the engine's flows ([`EngineFlows`]) and the cluster's `transport` service
//! ([`sipmesh_cluster::flow`]): a request entering at one node reaches a UA connected to
//! another, and every node accepts every member's Record-Route (docs/DESIGN-NOTES.md,
//! "Cluster"). A holder that stops answering (frozen, not dead) costs one delivery timeout,
//! not one per request: it is suspect until it answers a probe
//! ([`sipmesh_cluster::suspects`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use sipmesh_actors::engine::{EngineFlows, FlowRelay, RelayFuture, RemoteFrame};
use sipmesh_cluster::flow::{self, FlowError, FlowFrame, FlowHost, FlowRouterArgs, FlowRouterRef};
use sipmesh_cluster::suspects::SuspectHolders;
use sipmesh_protocol::peer::{ConnectionId, Transport};
use sipmesh_protocol::proxy::{Incarnation, Listener};

/// How long a node waits for the holder of a connection to confirm a delivery before the
/// request is answered 480. A live holder answers in about a millisecond (the mesh RPC
/// median is ~0.5 ms); a dead one is usually gone from the process group already.
pub const DELIVER_TIMEOUT: Duration = Duration::from_millis(1500);

/// How often a suspect holder is probed, and how long each probe waits.
const PROBE_EVERY: Duration = Duration::from_millis(250);
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How often the members' SIP listeners are asked for.
const PEERS_EVERY: Duration = Duration::from_secs(1);

fn to_frame(f: RemoteFrame) -> FlowFrame {
    FlowFrame {
        from: f.from.0,
        transport: f.transport.via_token().to_owned(),
        connection: f.connection.0,
        peer: f.peer.to_string(),
        payload: f.payload.to_vec(),
    }
}

fn from_frame(f: FlowFrame) -> Option<RemoteFrame> {
    Some(RemoteFrame {
        from: Incarnation(f.from),
        transport: Transport::from_token(&f.transport)?,
        connection: ConnectionId(f.connection),
        peer: f.peer.parse().ok()?,
        payload: Bytes::from(f.payload),
    })
}

/// [`FlowRelay`] over the mesh, with a circuit breaker on holders that stop answering
/// ([`SuspectHolders`]): after one delivery timed out, deliveries to that holder fail at once
/// (480 without the 1.5 s wait) until it answers a probe or the hold passes.
#[derive(Debug, Default)]
struct MeshRelay {
    suspects: Arc<Mutex<SuspectHolders>>,
}

impl MeshRelay {
    fn suspects(&self) -> std::sync::MutexGuard<'_, SuspectHolders> {
        lock(&self.suspects)
    }
}

fn lock(m: &Mutex<SuspectHolders>) -> std::sync::MutexGuard<'_, SuspectHolders> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Probes `holder` until it answers, leaves the mesh, or stops being suspect.
async fn probe(holder: Incarnation, suspects: Arc<Mutex<SuspectHolders>>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if !lock(&suspects).is_suspect(holder.0, Instant::now()) {
            return;
        }
        match flow::probe(holder.0, PROBE_TIMEOUT).await {
            Ok(()) => {
                if lock(&suspects).clear(holder.0) {
                    info!(%holder, "suspect flow holder answers again");
                }
                return;
            }
            Err(FlowError::NoHolder(_)) => {
                // Gone from the mesh: deliveries fail fast without the breaker.
                lock(&suspects).clear(holder.0);
                return;
            }
            Err(_) => {}
        }
    }
}

impl FlowRelay for MeshRelay {
    fn deliver(&self, holder: Incarnation, frame: RemoteFrame) -> RelayFuture {
        if self.suspects().is_suspect(holder.0, Instant::now()) {
            debug!(%holder, "flow holder suspect: unreachable at once");
            return Box::pin(std::future::ready(false));
        }
        let frame = to_frame(frame);
        let suspects = Arc::clone(&self.suspects);
        Box::pin(async move {
            match flow::deliver(holder.0, frame, DELIVER_TIMEOUT).await {
                Ok(()) => true,
                Err(FlowError::NoAnswer) => {
                    if lock(&suspects).trip(holder.0, Instant::now()) {
                        warn!(%holder, timeout = ?DELIVER_TIMEOUT, "flow holder did not answer; suspect");
                        tokio::spawn(probe(holder, suspects));
                    }
                    false
                }
                Err(e) => {
                    debug!(%holder, error = %e, "delivery to a remote flow failed");
                    false
                }
            }
        })
    }

    fn relay(&self, to: Incarnation, frame: RemoteFrame) {
        if let Err(e) = flow::relay(to.0, to_frame(frame)) {
            debug!(%to, error = %e, "relaying a response failed");
        }
    }

    fn closed(&self, to: Incarnation, connection: ConnectionId) {
        if let Err(e) = flow::closed(to.0, connection.0) {
            debug!(%to, error = %e, "reporting a closed flow failed");
        }
    }
}

/// [`FlowHost`] over the engine.
#[derive(Debug)]
struct EngineHost(EngineFlows);

impl FlowHost for EngineHost {
    fn deliver(&self, frame: FlowFrame) -> bool {
        from_frame(frame).is_some_and(|f| self.0.deliver_local(f))
    }

    fn relayed(&self, frame: FlowFrame) {
        if let Some(f) = from_frame(frame) {
            self.0.inject_relayed(f);
        }
    }

    fn listeners(&self) -> String {
        self.0
            .listeners()
            .iter()
            .map(|l| format!("{} {}\n", l.transport.via_token(), l.addr))
            .collect()
    }

    fn closed(&self, connection: u64) {
        self.0.remote_closed(ConnectionId(connection));
    }
}

/// Parses [`FlowHost::listeners`] text.
fn parse_listeners(text: &str) -> impl Iterator<Item = Listener> + '_ {
    text.lines().filter_map(|line| {
        let (t, a) = line.split_once(' ')?;
        Some(Listener {
            transport: Transport::from_token(t)?,
            addr: a.parse::<SocketAddr>().ok()?,
        })
    })
}

/// The running flow wiring of a clustered node.
#[derive(Debug)]
pub struct ClusterFlows {
    router: FlowRouterRef,
    peers: JoinHandle<()>,
}

impl ClusterFlows {
    /// Starts this node's transport router, the relay, and the task that keeps the shards'
    /// list of cluster peers (listeners learned are kept: a dead member's Record-Route still
    /// names the cluster).
    pub async fn start(flows: EngineFlows) -> anyhow::Result<Self> {
        let router = flow::start_router(FlowRouterArgs {
            incarnation: flows.incarnation().0,
            host: Arc::new(EngineHost(flows.clone())),
        })
        .await?;
        flows.set_relay(Arc::new(MeshRelay::default()));
        let peers = tokio::spawn(async move {
            let own: BTreeSet<(Transport, SocketAddr)> = flows
                .listeners()
                .iter()
                .map(|l| (l.transport, l.addr))
                .collect();
            let mut known = BTreeSet::new();
            let mut tick = tokio::time::interval(PEERS_EVERY);
            loop {
                tick.tick().await;
                let before = known.len();
                for text in flow::peer_listeners(PEERS_EVERY).await {
                    known.extend(
                        parse_listeners(&text)
                            .map(|l| (l.transport, l.addr))
                            .filter(|l| !own.contains(l)),
                    );
                }
                if known.len() != before {
                    debug!(
                        peers = known.len(),
                        "cluster Record-Route identities updated"
                    );
                    flows.set_cluster_peers(
                        known
                            .iter()
                            .map(|&(transport, addr)| Listener { transport, addr })
                            .collect(),
                    );
                }
            }
        });
        Ok(Self { router, peers })
    }

    /// Stops the router and the peer task.
    pub fn stop(&self) {
        self.peers.abort();
        self.router.stop(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_text_round_trips() {
        let text = "UDP 127.0.0.11:5060\nWS 127.0.0.11:8080\nbogus\n";
        let got: Vec<Listener> = parse_listeners(text).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].transport, Transport::Ws);
    }

    #[test]
    fn frames_round_trip() {
        let f = RemoteFrame {
            from: Incarnation(4),
            transport: Transport::Tcp,
            connection: ConnectionId(Incarnation(9).connection_base() + 3),
            peer: "127.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}")),
            payload: Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"),
        };
        assert_eq!(from_frame(to_frame(f.clone())), Some(f));
    }
}
