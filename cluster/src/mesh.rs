//! The ractor_cluster mesh: a `NodeServer` with cookie authentication on the cluster address,
//! and a dialer that keeps a session to every seed and every registered member, with back-off.
//!
//! ractor_cluster's transitive mode already makes peers dial each other's peers; the dialer
//! makes the mesh heal after a restart (a restarted node dials the seeds and the registry; the
//! survivors redial it when its session dropped). Sessions are matched to targets by the peer's
//! advertised connection string (`host:port` of its cluster listener).
//!
//! With [`ClusterTls`] the sessions run over mutual TLS (`IncomingEncryptionMode::Tls` on the
//! listener, `client_connect_enc` when dialing, the peer's IP as the server name); without it
//! they are plain TCP. The cookie challenge/response runs either way.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{IncomingEncryptionMode, NodeServer, NodeServerMessage};
use rustls::pki_types::ServerName;
use tracing::debug;

use crate::id::NodeId;
use crate::tls::ClusterTls;

/// How long a `GetSessions` query may take.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// Failure to start the mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The NodeServer actor did not start (the port is taken, most likely).
    #[error("starting the ractor_cluster node server on {addr}: {reason}")]
    Spawn {
        /// The cluster listen address.
        addr: SocketAddr,
        /// ractor's reason.
        reason: String,
    },
}

/// The running NodeServer.
#[derive(Debug, Clone)]
pub struct Mesh {
    server: ActorRef<NodeServerMessage>,
    tls: Option<ClusterTls>,
}

/// Current sessions: peer ids and their advertised cluster addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    /// Ids of the peers with an authenticated session.
    pub peers: BTreeSet<NodeId>,
    /// Their advertised cluster addresses.
    pub addrs: BTreeSet<SocketAddr>,
}

impl Mesh {
    /// Starts the NodeServer of `me` on `listen`, authenticating peers with `cookie`.
    pub async fn start(
        me: &NodeId,
        listen: SocketAddr,
        cookie: &str,
        tls: Option<ClusterTls>,
    ) -> Result<Self, MeshError> {
        let server = NodeServer::new(
            listen.port(),
            cookie.to_owned(),
            me.to_string(),
            listen.ip().to_string(),
            tls.as_ref()
                .map(|t| IncomingEncryptionMode::Tls(t.acceptor.clone())),
            Some(NodeConnectionMode::Transitive),
        )
        .with_listen_addr(listen.ip());
        let (server, _handle) =
            Actor::spawn(None, server, ())
                .await
                .map_err(|e| MeshError::Spawn {
                    addr: listen,
                    reason: e.to_string(),
                })?;
        Ok(Self { server, tls })
    }

    /// Opens a session to `addr`; authentication continues in the background.
    pub async fn dial(&self, addr: SocketAddr) -> bool {
        let result = match &self.tls {
            Some(tls) => {
                let name = ServerName::IpAddress(addr.ip().into());
                ractor_cluster::client_connect_enc(&self.server, addr, tls.connector.clone(), name)
                    .await
            }
            None => ractor_cluster::client_connect(&self.server, addr).await,
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                debug!(%addr, error = %e, "cluster dial failed");
                false
            }
        }
    }

    /// The peers with a session (any stage after the name exchange).
    pub async fn sessions(&self) -> Sessions {
        let reply = self
            .server
            .call(NodeServerMessage::GetSessions, Some(QUERY_TIMEOUT))
            .await;
        let mut out = Sessions::default();
        let Ok(ractor::rpc::CallResult::Success(sessions)) = reply else {
            return out;
        };
        for info in sessions.values() {
            let Some(name) = &info.peer_name else {
                continue;
            };
            let id = name.name.split('@').next().unwrap_or_default();
            if let Ok(id) = NodeId::new(id) {
                out.peers.insert(id);
            }
            if let Ok(addr) = name.connection_string.parse() {
                out.addrs.insert(addr);
            }
        }
        out
    }

    /// Stops the NodeServer and its sessions.
    pub fn stop(&self) {
        self.server.stop(None);
    }
}

/// Per-target exponential back-off for redialing.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    next: HashMap<SocketAddr, (Instant, Duration)>,
}

impl Backoff {
    /// First retry delay.
    pub const MIN: Duration = Duration::from_millis(250);
    /// Longest retry delay.
    pub const MAX: Duration = Duration::from_secs(4);

    /// Whether `addr` may be dialed at `now`; if so, the attempt is recorded and the next delay
    /// doubles.
    pub fn attempt(&mut self, now: Instant, addr: SocketAddr) -> bool {
        let (at, delay) = self.next.get(&addr).copied().unwrap_or((now, Self::MIN));
        if now < at {
            return false;
        }
        self.next
            .insert(addr, (now + delay, (delay * 2).min(Self::MAX)));
        true
    }

    /// `addr` has a session: forget its back-off.
    pub fn connected(&mut self, addr: SocketAddr) {
        self.next.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let t0 = Instant::now();
        let a: SocketAddr = "127.0.0.12:7000".parse().unwrap();
        let mut b = Backoff::default();
        assert!(b.attempt(t0, a));
        assert!(!b.attempt(t0 + Duration::from_millis(249), a));
        let mut t = t0 + Duration::from_millis(250);
        assert!(b.attempt(t, a));
        let mut delays = Vec::new();
        for _ in 0..6 {
            let mut d = Duration::ZERO;
            while !b.attempt(t + d, a) {
                d += Duration::from_millis(50);
            }
            delays.push(d.as_millis());
            t += d;
        }
        assert_eq!(delays, [500, 1000, 2000, 4000, 4000, 4000]);
        b.connected(a);
        assert!(b.attempt(t, a));
    }
}
