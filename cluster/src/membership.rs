//! [`Membership`]: the running cluster layer of a node, and the handle the rest of the node
//! asks "who is live, who owns this key, am I fenced, which epoch do I write with".
//!
//! Tasks (all stop with [`Membership::shutdown`]):
//!
//! - **lease**: drives [`Lease`](crate::lease::Lease) against Redis and publishes its [`LeaseStatus`];
//! - **heartbeat out**: every [`Timing::heartbeat_every`](crate::Timing::heartbeat_every), one datagram to every known member
//!   and every seed, saying which epoch we hold or that we are fenced;
//! - **heartbeat in**, **registry poll** and **mesh** feed the **detector**, which owns the
//!   [`MemberTable`] and publishes a snapshot every 100 ms;
//! - **mesh** also redials seeds and members without a ractor_cluster session.
//!
//! Fencing is evaluated against the clock at the moment of the question, not by a task: a
//! process that was frozen past its lease is fenced the instant it runs again. A node is also
//! fenced while it is cut off from the majority of the leased members
//! ([`MemberTable::is_isolated`]), which includes its first moments, until it has read the
//! registry and heard from a majority: a joining node does not claim keys before it knows who
//! else is there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::Actor;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::ClusterConfig;
use crate::detector::{MemberState, MemberTable};
use crate::heartbeat::HeartbeatKey;
use crate::id::{Epoch, NodeId};
use crate::lease::LeaseStatus;
use crate::mesh::{Mesh, MeshError};
use crate::placement;
use crate::router::{RouterArgs, RouterPing, ServiceRouter, ping_remote_routers, router_count};
use crate::store::{ClusterStore, StoreError};
use crate::tasks::{
    HeartbeatOut, PeerSnapshot, detector_task, heartbeat_in_task, heartbeat_out_task, lease_task,
    mesh_task, registry_task,
};
use crate::tls::ClusterTls;
use crate::view::{ClusterView, FenceReason, MemberView, RouterCount};

/// Age past which the detector's snapshot is not trusted (it publishes every 100 ms).
const STALE_SNAPSHOT: Duration = Duration::from_millis(300);

/// Services that get a router in their process group on every node.
pub const SERVICES: [&str; 2] = ["registrar", "dialog"];

/// Why the cluster layer did not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The timing does not fit together.
    #[error("cluster timing: {0}")]
    Timing(#[from] crate::config::TimingError),
    /// The Redis URL is unusable.
    #[error("cluster store: {0}")]
    Store(#[from] StoreError),
    /// The heartbeat socket could not be bound.
    #[error("binding the heartbeat socket udp:{addr}: {source}")]
    Heartbeat {
        /// The cluster address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// The cluster TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::ClusterTlsError),
    /// The ractor_cluster node server did not start.
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// A service router did not start.
    #[error("starting the {service} router: {reason}")]
    Router {
        /// The service.
        service: &'static str,
        /// ractor's reason.
        reason: String,
    },
}

/// The cluster layer of a running node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Membership {
    me: NodeId,
    addr: SocketAddr,
    lease: watch::Receiver<LeaseStatus>,
    peers: watch::Receiver<PeerSnapshot>,
    store: ClusterStore,
    /// Test hook: drop every heartbeat in and out.
    muted: watch::Sender<bool>,
    settle: Duration,
    /// The mesh runs over TLS.
    tls: bool,
    tasks: Arc<Tasks>,
}

/// Round trips from this node: to every peer's registrar router over ractor_cluster, and to
/// Redis. The two costs that "forward to the owner" and "serve from Redis" trade.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PingReport {
    /// `Whoami` calls to each remote registrar router.
    pub routers: Vec<RouterPing>,
    /// Median `PING` round trip to Redis, microseconds (`None` when Redis did not answer).
    pub redis_median_us: Option<u64>,
}

/// Why a node is fenced at `now`, from its lease, its isolation and how long it has held both:
/// the rule behind [`Membership::fence_reason`], kept pure for the simulation tests.
pub fn fence_reason(
    now: Instant,
    lease: &LeaseStatus,
    isolated: bool,
    in_contact_since: Option<Instant>,
    settle: Duration,
) -> Option<FenceReason> {
    if lease.owner_epoch(now).is_none() {
        return Some(FenceReason::Lease);
    }
    if isolated {
        return Some(FenceReason::Isolated);
    }
    let since = lease.acquired_at.max(in_contact_since)?;
    (now < since + settle).then_some(FenceReason::Settling)
}

/// The tasks and actors to stop on shutdown.
#[derive(Debug)]
struct Tasks {
    handles: Vec<JoinHandle<()>>,
    mesh: Mesh,
    routers: Vec<ractor::ActorRef<crate::router::RouterMsg>>,
}

impl Membership {
    /// Starts the cluster layer: the mesh, the heartbeat socket, the lease and the detector.
    /// Returns once everything is bound; the first lease follows within one Redis round trip.
    pub async fn start(config: ClusterConfig) -> Result<Self, ClusterError> {
        config.timing.validate()?;
        let timing = config.timing;
        let store = ClusterStore::new(&config.redis_url, &config.key_prefix, timing.redis_timeout)?;
        let socket =
            UdpSocket::bind(config.listen)
                .await
                .map_err(|source| ClusterError::Heartbeat {
                    addr: config.listen,
                    source,
                })?;
        let socket = Arc::new(socket);
        let tls = config.tls.as_ref().map(ClusterTls::load).transpose()?;
        let over_tls = tls.is_some();
        let mesh = Mesh::start(&config.node_id, config.listen, &config.cookie, tls).await?;
        let mut routers = Vec::new();
        for service in SERVICES {
            let args = RouterArgs {
                node: config.node_id.clone(),
                service: service.to_owned(),
            };
            let (router, _) = Actor::spawn(None, ServiceRouter, args).await.map_err(|e| {
                ClusterError::Router {
                    service,
                    reason: e.to_string(),
                }
            })?;
            routers.push(router);
        }
        let now = Instant::now();
        let (lease_tx, lease_rx) = watch::channel(LeaseStatus::default());
        let (peers_tx, peers_rx) = watch::channel(PeerSnapshot {
            at: now,
            peers: Vec::new(),
            isolated: true,
            in_contact_since: None,
        });
        let (targets_tx, targets_rx) = watch::channel(config.seeds.clone());
        let (input_tx, input_rx) = mpsc::channel(1024);
        let (muted, muted_rx) = watch::channel(false);
        let key = HeartbeatKey::new(&config.cookie);
        let me = config.node_id.clone();
        let handles = vec![
            tokio::spawn(lease_task(
                store.clone(),
                me.clone(),
                config.listen,
                timing,
                lease_tx,
            )),
            tokio::spawn(heartbeat_out_task(HeartbeatOut {
                socket: Arc::clone(&socket),
                me: me.clone(),
                own: config.listen,
                every: timing.heartbeat_every,
                lease: lease_rx.clone(),
                peers: peers_rx.clone(),
                targets: targets_rx.clone(),
                muted: muted_rx.clone(),
                key: key.clone(),
            })),
            tokio::spawn(heartbeat_in_task(socket, input_tx.clone(), muted_rx, key)),
            tokio::spawn(registry_task(
                store.clone(),
                timing.poll_every,
                (config.node_id.clone(), timing.prune_after),
                input_tx.clone(),
            )),
            tokio::spawn(mesh_task(
                mesh.clone(),
                config.listen,
                config.seeds.clone(),
                targets_rx,
                input_tx,
            )),
            tokio::spawn(detector_task(
                MemberTable::new(me.clone(), timing),
                config.seeds,
                input_rx,
                peers_tx,
                targets_tx,
            )),
        ];
        info!(node = %me, addr = %config.listen, "cluster layer started");
        Ok(Self {
            me,
            addr: config.listen,
            lease: lease_rx,
            peers: peers_rx,
            store,
            muted,
            settle: timing.settle,
            tls: over_tls,
            tasks: Arc::new(Tasks {
                handles,
                mesh,
                routers,
            }),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.me
    }

    /// Whether this node must not act as an owner right now: no valid lease, or cut off from
    /// the majority of the leased members.
    pub fn is_fenced(&self) -> bool {
        self.fence_reason().is_some()
    }

    /// Why this node is fenced, or `None` when it may act as an owner.
    pub fn fence_reason(&self) -> Option<FenceReason> {
        let now = Instant::now();
        let lease = *self.lease.borrow();
        let snapshot = self.peers.borrow();
        // A snapshot older than a few publish intervals means the process was frozen or the
        // detector starved: what it says about our contact with the majority is stale.
        let stale = now.saturating_duration_since(snapshot.at) > STALE_SNAPSHOT;
        fence_reason(
            now,
            &lease,
            snapshot.isolated || stale,
            snapshot.in_contact_since,
            self.settle,
        )
    }

    /// The epoch to attach to owner writes, or `None` while fenced.
    pub fn owner_epoch(&self) -> Option<Epoch> {
        match self.fence_reason() {
            None => self.lease.borrow().epoch,
            Some(_) => None,
        }
    }

    /// A channel that changes whenever the lease is acquired, renewed or lost. Lapsing by the
    /// clock sends nothing: evaluate [`LeaseStatus::owner_epoch`] with the current instant.
    pub fn lease_watch(&self) -> watch::Receiver<LeaseStatus> {
        self.lease.clone()
    }

    /// The members keys are placed on: live and suspect peers, and this node unless fenced.
    pub fn live_members(&self) -> Vec<NodeId> {
        let mut live: Vec<NodeId> = self
            .peers
            .borrow()
            .peers
            .iter()
            .filter(|p| p.state.is_placeable())
            .map(|p| p.node.clone())
            .collect();
        // A settling node is placed (its peers place it too) but does not act yet.
        if matches!(self.fence_reason(), None | Some(FenceReason::Settling)) {
            live.push(self.me.clone());
        }
        live.sort();
        live
    }

    /// The owner of `key` by rendezvous hashing over [`Self::live_members`].
    pub fn owner_of(&self, key: &[u8]) -> Option<NodeId> {
        placement::owner_of(key, &self.live_members()).cloned()
    }

    /// Whether this node owns `key` now (never while fenced or settling).
    pub fn is_owner(&self, key: &[u8]) -> bool {
        !self.is_fenced() && self.owner_of(key).as_ref() == Some(&self.me)
    }

    /// The admin view.
    pub fn view(&self) -> ClusterView {
        let now = Instant::now();
        let lease = *self.lease.borrow();
        let snapshot = self.peers.borrow().clone();
        let age = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let epoch = lease.owner_epoch(now);
        let fenced_by = self.fence_reason();
        let mut members = vec![MemberView {
            id: self.me.clone(),
            addr: Some(self.addr),
            is_self: true,
            state: if fenced_by.is_some() {
                MemberState::Fenced
            } else {
                MemberState::Live
            },
            fenced_by,
            epoch,
            lease_age_ms: epoch
                .and(lease.renewed_at)
                .map(|at| age(now.saturating_duration_since(at))),
            heartbeat_age_ms: None,
            connected: None,
            times_fenced: Some(lease.times_fenced),
            owned_actors: None,
            actors: None,
        }];
        // The snapshot may be up to 100 ms old: age it to now.
        let lag = now.saturating_duration_since(snapshot.at);
        members.extend(snapshot.peers.iter().map(|p| MemberView {
            id: p.node.clone(),
            addr: p.addr,
            is_self: false,
            state: p.state,
            epoch: p.epoch,
            lease_age_ms: p.lease_age.map(|d| age(d + lag)),
            heartbeat_age_ms: p.heartbeat_age.map(|d| age(d + lag)),
            connected: Some(p.connected),
            fenced_by: None,
            times_fenced: None,
            owned_actors: None,
            actors: None,
        }));
        let routers = SERVICES
            .iter()
            .map(|s| {
                let (local, remote) = router_count(s);
                RouterCount {
                    service: (*s).to_owned(),
                    local,
                    remote,
                }
            })
            .collect();
        ClusterView {
            node_id: self.me.clone(),
            live: self.live_members(),
            tls: self.tls,
            members,
            routers,
        }
    }

    /// Measures `rounds` sequential round trips to every peer's registrar router and to Redis.
    pub async fn ping(&self, rounds: usize) -> PingReport {
        let routers = ping_remote_routers(SERVICES[0], rounds, Duration::from_millis(500)).await;
        let mut redis = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            if let Ok(rtt) = self.store.ping().await {
                redis.push(rtt);
            }
        }
        redis.sort();
        PingReport {
            routers,
            redis_median_us: redis
                .get(redis.len() / 2)
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        }
    }

    /// Test hook: drop every heartbeat sent and received, as if this node were cut off from
    /// its peers but not from Redis. It then fences itself as isolated and the others declare
    /// it dead; `false` heals the partition.
    pub fn set_partitioned(&self, partitioned: bool) {
        self.muted.send_replace(partitioned);
    }

    /// Stops every task, the routers and the mesh.
    pub fn shutdown(&self) {
        for handle in &self.tasks.handles {
            handle.abort();
        }
        for router in &self.tasks.routers {
            router.stop(None);
        }
        self.tasks.mesh.stop();
    }
}
