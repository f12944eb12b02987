//! The tasks behind [`Membership`](crate::Membership): lease renewal, heartbeats out and in,
//! the registry poll, the mesh dialer and the detector. Each is a thin loop around a sans-IO
//! piece (`Lease`, `Heartbeat`, `MemberTable`, `Backoff`); they talk through channels only.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::detector::{MemberState, MemberTable, PeerView, RegistryEntry};
use crate::heartbeat::{Heartbeat, HeartbeatKey, MAX_DATAGRAM};
use crate::id::NodeId;
use crate::lease::{Lease, LeaseStatus};
use crate::mesh::{Backoff, Mesh, Sessions};
use crate::store::ClusterStore;

/// How often the detector publishes its snapshot.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// An input of the detector task.
#[derive(Debug)]
pub(crate) enum DetectorInput {
    Heartbeat(Instant, SocketAddr, Heartbeat),
    Registry(Instant, Vec<RegistryEntry>),
    Sessions(Sessions),
}

/// A detector snapshot.
#[derive(Debug, Clone)]
pub(crate) struct PeerSnapshot {
    pub(crate) at: Instant,
    pub(crate) peers: Vec<PeerView>,
    /// This node is cut off from the majority ([`MemberTable::is_isolated`]).
    pub(crate) isolated: bool,
    /// Since when this node has been continuously in contact with the majority.
    pub(crate) in_contact_since: Option<Instant>,
}

/// Drives the lease state machine against Redis.
pub(crate) async fn lease_task(
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

/// What the heartbeat sender reads.
pub(crate) struct HeartbeatOut {
    /// The cluster UDP socket (shared with the receiver).
    pub(crate) socket: Arc<UdpSocket>,
    /// Our id.
    pub(crate) me: NodeId,
    /// Our cluster address (never a target).
    pub(crate) own: SocketAddr,
    /// Interval.
    pub(crate) every: Duration,
    /// Our lease.
    pub(crate) lease: watch::Receiver<LeaseStatus>,
    /// The detector's snapshot (for isolation).
    pub(crate) peers: watch::Receiver<PeerSnapshot>,
    /// Members and seeds to send to.
    pub(crate) targets: watch::Receiver<Vec<SocketAddr>>,
    /// Test hook: send nothing.
    pub(crate) muted: watch::Receiver<bool>,
    /// Authenticates the datagrams.
    pub(crate) key: HeartbeatKey,
}

pub(crate) async fn heartbeat_out_task(out: HeartbeatOut) {
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
pub(crate) async fn heartbeat_in_task(
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
pub(crate) async fn registry_task(
    store: ClusterStore,
    every: Duration,
    prune: (NodeId, Duration),
    tx: mpsc::Sender<DetectorInput>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut clock = crate::prune::PruneClock::default();
    loop {
        tick.tick().await;
        match store.registry().await {
            Ok(entries) => {
                for node in clock.due(Instant::now(), &prune.0, &entries, prune.1) {
                    match store.prune_member(&node).await {
                        Ok(removed) => {
                            clock.forget(&node);
                            if removed {
                                tracing::info!(%node, "long-dead member pruned from the registry");
                            }
                        }
                        Err(e) => debug!(%node, error = %e, "pruning a member failed"),
                    }
                }
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
pub(crate) async fn mesh_task(
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
pub(crate) async fn detector_task(
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
    let mut in_contact_since = None;
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
                        in_contact_since = None;
                    } else {
                        info!("in contact with a majority of the members");
                        in_contact_since = Some(now);
                    }
                    was_isolated = isolated;
                }
                peers_tx.send_replace(PeerSnapshot {
                    at: now,
                    peers,
                    isolated,
                    in_contact_since,
                });
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
