//! [`Membership`]: the running cluster layer of a node, and the handle the rest of the node
//! asks "who is live, who owns this key, am I fenced, which epoch do I write with".
//!
//! Tasks (all stop with [`Membership::shutdown`]):
//!
//! - **lease**: drives [`Lease`] against Redis and publishes its [`LeaseStatus`];
//! - **heartbeat out**: every [`Timing::heartbeat_every`], one datagram to every known member
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

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::Actor;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::config::ClusterConfig;
use crate::detector::{MemberState, MemberTable, PeerView, RegistryEntry};
use crate::heartbeat::{Heartbeat, HeartbeatKey, MAX_DATAGRAM};
use crate::id::{Epoch, NodeId};
use crate::lease::{Lease, LeaseStatus};
use crate::mesh::{Backoff, Mesh, MeshError, Sessions};
use crate::placement;
use crate::router::{RouterArgs, RouterPing, ServiceRouter, ping_remote_routers, router_count};
use crate::store::{ClusterStore, StoreError};
use crate::view::{ClusterView, FenceReason, MemberView, RouterCount};

/// Services that get a router in their process group on every node.
pub const SERVICES: [&str; 2] = ["registrar", "dialog"];

/// How often the detector publishes its snapshot.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

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

/// An input of the detector task.
#[derive(Debug)]
enum DetectorInput {
    Heartbeat(Instant, SocketAddr, Heartbeat),
    Registry(Instant, Vec<RegistryEntry>),
    Sessions(Sessions),
}

/// A detector snapshot.
#[derive(Debug, Clone)]
struct PeerSnapshot {
    at: Instant,
    peers: Vec<PeerView>,
    /// This node is cut off from the majority ([`MemberTable::is_isolated`]).
    isolated: bool,
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
        let mesh = Mesh::start(&config.node_id, config.listen, &config.cookie).await?;
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
        if self.lease.borrow().owner_epoch(Instant::now()).is_none() {
            Some(FenceReason::Lease)
        } else if self.peers.borrow().isolated {
            Some(FenceReason::Isolated)
        } else {
            None
        }
    }

    /// The epoch to attach to owner writes, or `None` while fenced.
    pub fn owner_epoch(&self) -> Option<Epoch> {
        let epoch = self.lease.borrow().owner_epoch(Instant::now());
        epoch.filter(|_| !self.peers.borrow().isolated)
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
        if !self.is_fenced() {
            live.push(self.me.clone());
        }
        live.sort();
        live
    }

    /// The owner of `key` by rendezvous hashing over [`Self::live_members`].
    pub fn owner_of(&self, key: &[u8]) -> Option<NodeId> {
        placement::owner_of(key, &self.live_members()).cloned()
    }

    /// Whether this node owns `key` now (never while fenced).
    pub fn is_owner(&self, key: &[u8]) -> bool {
        self.owner_of(key).as_ref() == Some(&self.me)
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

/// Drives the lease state machine against Redis.
async fn lease_task(
    store: ClusterStore,
    me: NodeId,
    addr: SocketAddr,
    timing: crate::config::Timing,
    tx: watch::Sender<LeaseStatus>,
) {
    let mut lease = Lease::new(timing, Instant::now());
    let mut was_fenced_since = None;
    loop {
        let now = Instant::now();
        if let Some(request) = lease.poll_request(now) {
            let result = store.lease(&me, addr, timing.lease_ttl, request).await;
            let done = Instant::now();
            match result {
                Ok(reply) => lease.handle_reply(now, done, reply),
                Err(e) => {
                    debug!(error = %e, "lease request failed");
                    lease.handle_error(done);
                }
            }
        }
        lease.handle_timeout(Instant::now());
        let status = lease.status();
        if lease.fenced_since() != was_fenced_since {
            was_fenced_since = lease.fenced_since();
            if was_fenced_since.is_some() {
                warn!(node = %me, "lease lost: fenced, not acting as an owner");
            }
        }
        if *tx.borrow() != status {
            if status.epoch != tx.borrow().epoch
                && let Some(epoch) = status.epoch
            {
                info!(node = %me, %epoch, "lease acquired");
            }
            tx.send_replace(status);
        }
        tokio::time::sleep_until(lease.poll_timeout().into()).await;
    }
}

/// Sends our heartbeat to every known member and seed.
/// What the heartbeat sender reads.
struct HeartbeatOut {
    /// The cluster UDP socket (shared with the receiver).
    socket: Arc<UdpSocket>,
    /// Our id.
    me: NodeId,
    /// Our cluster address (never a target).
    own: SocketAddr,
    /// Interval.
    every: Duration,
    /// Our lease.
    lease: watch::Receiver<LeaseStatus>,
    /// The detector's snapshot (for isolation).
    peers: watch::Receiver<PeerSnapshot>,
    /// Members and seeds to send to.
    targets: watch::Receiver<Vec<SocketAddr>>,
    /// Test hook: send nothing.
    muted: watch::Receiver<bool>,
    /// Authenticates the datagrams.
    key: HeartbeatKey,
}

async fn heartbeat_out_task(out: HeartbeatOut) {
    let HeartbeatOut {
        socket,
        me,
        own,
        every,
        lease,
        peers,
        targets,
        muted,
        key,
    } = out;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if *muted.borrow() {
            continue;
        }
        // The lease epoch even while isolated: peers count us for their quorum by it.
        let epoch = lease.borrow().owner_epoch(Instant::now());
        let datagram = Heartbeat {
            node: me.clone(),
            epoch,
            fenced: epoch.is_none() || peers.borrow().isolated,
        }
        .encode(&key);
        let addrs: BTreeSet<SocketAddr> = targets.borrow().iter().copied().collect();
        for addr in addrs.into_iter().filter(|a| *a != own) {
            if let Err(e) = socket.send_to(&datagram, addr).await {
                debug!(%addr, error = %e, "heartbeat send failed");
            }
        }
    }
}

/// Receives heartbeats.
async fn heartbeat_in_task(
    socket: Arc<UdpSocket>,
    tx: mpsc::Sender<DetectorInput>,
    muted: watch::Receiver<bool>,
    key: HeartbeatKey,
) {
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok(_) if *muted.borrow() => {}
            Ok((n, from)) => match Heartbeat::decode(buf.get(..n).unwrap_or_default(), &key) {
                Ok(hb) => {
                    if tx
                        .send(DetectorInput::Heartbeat(Instant::now(), from, hb))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => debug!(%from, error = %e, "ignoring a datagram on the cluster port"),
            },
            Err(e) => {
                debug!(error = %e, "heartbeat receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads the registry and every member's lease.
async fn registry_task(store: ClusterStore, every: Duration, tx: mpsc::Sender<DetectorInput>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.registry().await {
            Ok(entries) => {
                if tx
                    .send(DetectorInput::Registry(Instant::now(), entries))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => debug!(error = %e, "registry read failed"),
        }
    }
}

/// Reports sessions and dials targets without one.
async fn mesh_task(
    mesh: Mesh,
    own: SocketAddr,
    seeds: Vec<SocketAddr>,
    targets: watch::Receiver<Vec<SocketAddr>>,
    tx: mpsc::Sender<DetectorInput>,
) {
    let mut backoff = Backoff::default();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sessions = mesh.sessions().await;
        let wanted: BTreeSet<SocketAddr> = targets
            .borrow()
            .iter()
            .chain(&seeds)
            .copied()
            .filter(|a| *a != own)
            .collect();
        let now = Instant::now();
        for addr in wanted {
            if sessions.addrs.contains(&addr) {
                backoff.connected(addr);
            } else if backoff.attempt(now, addr) {
                mesh.dial(addr).await;
            }
        }
        if tx.send(DetectorInput::Sessions(sessions)).await.is_err() {
            return;
        }
    }
}

/// Owns the member table; publishes snapshots and the heartbeat/dial targets.
async fn detector_task(
    mut table: MemberTable,
    seeds: Vec<SocketAddr>,
    mut rx: mpsc::Receiver<DetectorInput>,
    peers_tx: watch::Sender<PeerSnapshot>,
    targets_tx: watch::Sender<Vec<SocketAddr>>,
) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_states: Vec<(NodeId, MemberState)> = Vec::new();
    let mut was_isolated = true;
    loop {
        tokio::select! {
            input = rx.recv() => match input {
                Some(DetectorInput::Heartbeat(at, from, hb)) => table.handle_heartbeat(at, from, hb),
                Some(DetectorInput::Registry(at, entries)) => table.handle_registry(at, entries),
                Some(DetectorInput::Sessions(s)) => table.handle_sessions(&s.peers),
                None => return,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let peers = table.peers(now);
                let states: Vec<(NodeId, MemberState)> =
                    peers.iter().map(|p| (p.node.clone(), p.state)).collect();
                if states != last_states {
                    for (node, state) in &states {
                        let before = last_states.iter().find(|(n, _)| n == node).map(|(_, s)| *s);
                        if before != Some(*state) {
                            info!(peer = %node, ?state, "member state changed");
                        }
                    }
                    last_states = states;
                }
                let isolated = table.is_isolated(now);
                if isolated != was_isolated {
                    if isolated {
                        warn!("cut off from the majority of the members: fenced");
                    } else {
                        info!("in contact with a majority of the members");
                    }
                    was_isolated = isolated;
                }
                peers_tx.send_replace(PeerSnapshot { at: now, peers, isolated });
                let mut targets = table.addrs();
                targets.extend(&seeds);
                targets.sort();
                targets.dedup();
                targets_tx.send_if_modified(|old| {
                    let changed = *old != targets;
                    if changed {
                        *old = targets;
                    }
                    changed
                });
            }
        }
    }
}
