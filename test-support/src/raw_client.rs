//! One hand-driven client of the node over either transport, so a bad-input case is written
//! once and run over UDP and TCP.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::{HarnessError, RawMessage, RawRequest, SipmeshNode, TcpPeer, UdpPeer, ViaTransport};

/// How long a TCP connect to a local node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A raw client talking to one node over UDP or over one TCP connection.
#[derive(Debug)]
pub enum RawClient {
    /// A UDP socket and the node's UDP address.
    Udp {
        /// The socket.
        peer: UdpPeer,
        /// Where requests go.
        node: SocketAddr,
    },
    /// One TCP connection to the node's TCP listener.
    Tcp(TcpPeer),
}

impl RawClient {
    /// A client of `node` over `transport`, bound to `local_ip` for UDP (TCP connects from
    /// the address the kernel picks for the node's address, which is `local_ip`'s family).
    pub fn connect(
        transport: ViaTransport,
        local_ip: IpAddr,
        node: &SipmeshNode,
    ) -> Result<Self, HarnessError> {
        match transport {
            ViaTransport::Udp => Ok(Self::Udp {
                peer: UdpPeer::bind(local_ip)?,
                node: node.udp_addr(),
            }),
            ViaTransport::Tcp => Ok(Self::Tcp(TcpPeer::connect(
                node.tcp_addr(),
                CONNECT_TIMEOUT,
            )?)),
        }
    }

    /// The transport in use.
    pub fn transport(&self) -> ViaTransport {
        match self {
            Self::Udp { .. } => ViaTransport::Udp,
            Self::Tcp(_) => ViaTransport::Tcp,
        }
    }

    /// The client's own address (what goes into Via and Contact).
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Self::Udp { peer, .. } => peer.local_addr(),
            Self::Tcp(peer) => peer.local_addr(),
        }
    }

    /// A well-formed request from this client (see [`RawRequest::new`]).
    pub fn new_request(&self, method: &str, uri: &str) -> RawRequest {
        RawRequest::new(method, uri, self.transport(), self.local_addr())
    }

    /// Sends raw octets to the node.
    pub fn send(&mut self, data: &[u8]) -> Result<(), HarnessError> {
        match self {
            Self::Udp { peer, node } => peer.send(*node, data),
            Self::Tcp(peer) => peer.send(data),
        }
    }

    /// The next message from the node; `None` after `wait` (or when TCP was closed).
    pub fn recv(&mut self, wait: Duration) -> Option<RawMessage> {
        match self {
            Self::Udp { peer, .. } => peer.recv(wait),
            Self::Tcp(peer) => peer.recv(wait),
        }
    }

    /// The next message that is not a provisional response; `None` after `wait`.
    pub fn recv_final(&mut self, wait: Duration) -> Option<RawMessage> {
        match self {
            Self::Udp { peer, .. } => peer.recv_final(wait),
            Self::Tcp(peer) => peer.recv_final(wait),
        }
    }

    /// Sends `request` and returns the first non-provisional answer within `wait`.
    pub fn request(
        &mut self,
        request: &RawRequest,
        wait: Duration,
    ) -> Result<Option<RawMessage>, HarnessError> {
        self.send(&request.to_bytes())?;
        Ok(self.recv_final(wait))
    }

    /// The TCP connection, when this is a TCP client.
    pub fn tcp(&mut self) -> Option<&mut TcpPeer> {
        match self {
            Self::Udp { .. } => None,
            Self::Tcp(peer) => Some(peer),
        }
    }
}
