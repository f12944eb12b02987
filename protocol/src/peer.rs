//! Where a message came from and where one goes: transports, listeners, peers.
//!
//! These are plain values the I/O shell fills in; the core never opens a socket. A connection is
//! named by an opaque [`ConnectionId`] the shell hands out, so a response or a request to a registered UA can
//! go back over exactly the connection it came on.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

/// A SIP transport (RFC 3261 §18; WebSocket per RFC 7118).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// Datagrams: unreliable, so transactions retransmit.
    Udp,
    /// A byte stream framed by Content-Length: reliable.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket (one SIP message per frame).
    Ws,
    /// Secure WebSocket.
    Wss,
}

/// Identifier of a stream connection (TCP/TLS/WS), assigned by the transport layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl Transport {
    /// The token used in Via (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Sctp => "SCTP",
            Self::Ws => "WS",
            Self::Wss => "WSS",
        }
    }

    /// True for stream transports: no retransmissions (§17.1.1.2, §17.1.2.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Self::Udp)
    }

    /// The transport named by a Via token or a `transport=` URI parameter, case-insensitively.
    pub fn from_token(token: &str) -> Option<Self> {
        [
            Self::Udp,
            Self::Tcp,
            Self::Tls,
            Self::Sctp,
            Self::Ws,
            Self::Wss,
        ]
        .into_iter()
        .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }

    /// Default port for this transport (RFC 3261 §19.1.2: 5061 for TLS; RFC 7118 leaves
    /// WebSocket ports to the HTTP defaults, which we do not assume).
    pub fn default_port(self) -> u16 {
        match self {
            Self::Tls | Self::Wss => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// One address the node listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listener {
    /// Its transport.
    pub transport: Transport,
    /// The bound address (with the real port when the shell bound port 0).
    pub addr: SocketAddr,
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Where an inbound message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Transport it arrived on.
    pub transport: Transport,
    /// The peer's address (the packet source, or the connection's remote end).
    pub source: SocketAddr,
    /// The listener (local address) it arrived on.
    pub local: SocketAddr,
    /// The stream connection it arrived on, if any.
    pub connection: Option<ConnectionId>,
}

/// Where an outbound message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Transport to use.
    pub transport: Transport,
    /// Remote address.
    pub addr: SocketAddr,
    /// Send from this local listener address (UDP: the socket; TCP: ignored).
    pub local: Option<SocketAddr>,
    /// Use this connection when it is still open (responses, flows); otherwise the shell reuses or
    /// opens a connection to `addr`.
    pub connection: Option<ConnectionId>,
}

/// Bytes to send somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: Destination,
    /// The serialised SIP message.
    pub payload: Bytes,
}
