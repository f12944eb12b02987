//! The SIP transport layer: UDP sockets and TCP, TLS, WebSocket and secure WebSocket
//! listeners/connections on tokio.
//!
//! The transport moves bytes, never SIP semantics. Upward it hands each received message as raw
//! bytes ([`Inbound`]) to an [`InboundSink`]; on streams the message boundaries come from the
//! sans-IO [`StreamFramer`](sipmesh_protocol::framing::StreamFramer), on UDP a datagram is a
//! message (RFC 3261 §18.3). Downward it takes a payload and a [`Destination`] through the
//! cloneable [`TransportHandle`] and never blocks the caller: every socket and connection has a
//! bounded queue, and a full queue drops the message with a `warn` trace and a counter
//! ([`TransportStats`]).
//!
//! ```text
//!            InboundSink::deliver(InboundEvent)            TransportHandle::send(dest, bytes)
//!                      ▲                                               │
//!   ┌──────────────────┴──────────────────┐        ┌───────────────────┴───────────────────┐
//!   │ UDP reader (recvmmsg batch)         │        │ UDP writer queue → sendmmsg batch     │
//!   │ TCP connection reader → StreamFramer│        │ TCP connection queue → coalesced write│
//!   └─────────────────────────────────────┘        └───────────────────────────────────────┘
//! ```
//!
//! # Layout
//! - `config`: [`TransportConfig`] and its defaults.
//! - `sink`: the [`InboundSink`] trait and its implementations.
//! - `udp`: UDP sockets, one reader and one writer task per socket.
//! - `mmsg`: the audited `recvmmsg`/`sendmmsg` wrappers (the only `unsafe` code).
//! - `tcp`: stream listeners, the connection registry shared by TCP, TLS, WS and WSS, and
//!   `tcp/connection.rs`, the TCP/TLS per-connection reader and writer.
//! - `actor`: the `ConnectionActor` of each stream connection (its registration, idle
//!   timer, close and end-of-connection notification); `supervisor`: their
//!   `ConnectionSupervisor`, which closes a connection whose actor panicked.
//! - `activity`: the last-activity clock a connection's I/O and its actor's idle timer share.
//! - `tls`: certificates, rustls configurations and their hot reload ([`TlsConfig`]).
//! - `ws`: the WebSocket upgrade (RFC 7118: subprotocol `sip`, Origin, limits) and
//!   `ws/connection.rs`, one SIP message per frame.
//! - `stats`: drop and error counters.

mod activity;
mod actor;
mod config;
#[cfg(target_os = "linux")]
mod mmsg;
mod sink;
mod stats;
mod supervisor;
mod tcp;
mod tls;
mod udp;
mod ws;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

pub use self::config::TransportConfig;
pub use self::sink::{FnSink, InboundSink};
pub use self::stats::{StatsSnapshot, TransportStats};
use self::supervisor::{ConnectionSupervisor, SupervisorMsg};
pub use self::tls::{TlsConfig, TlsError, TlsFiles};
pub use self::ws::WsConfig;

/// Transports and connection identifiers are the protocol crate's, so the shells and the core
/// share one vocabulary (SCTP has no listener).
pub use sipmesh_protocol::peer::{ConnectionId, Transport};

/// One received SIP message, unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The message octets (a whole datagram, or one framed message of a stream).
    pub data: Bytes,
    /// The peer's address (datagram source or connection peer).
    pub source: SocketAddr,
    /// The local address the message arrived on: the local end of the connection, or for UDP
    /// the datagram's destination address (from `IP_PKTINFO`/`IPV6_PKTINFO` on a wildcard-bound
    /// socket on Linux, else the bound address) with the socket's port.
    pub local: SocketAddr,
    /// How the message arrived.
    pub transport: Transport,
    /// The connection it arrived on, for stream transports; responses should go back on it
    /// (RFC 3261 §18.2.2).
    pub connection: Option<ConnectionId>,
}

/// What the transport reports upward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent {
    /// A complete message.
    Message(Inbound),
    /// A message larger than `max_message_size`. `partial` holds the complete header section
    /// when it was available, otherwise the first `max_message_size` octets, so the core can try
    /// to answer 513 Message Too Large (RFC 3261 §21.5.14). On TCP the connection is closed
    /// shortly after (see [`TransportConfig::too_large_linger`]).
    TooLarge {
        /// The beginning of the message.
        partial: Bytes,
        /// The peer's address.
        source: SocketAddr,
        /// The local address the message arrived on.
        local: SocketAddr,
        /// How the message arrived.
        transport: Transport,
        /// The connection, for stream transports.
        connection: Option<ConnectionId>,
    },
    /// A stream connection ended (closed by either side, idle, failed, or never established).
    ConnectionClosed {
        /// The connection that ended.
        connection: ConnectionId,
        /// Its peer.
        peer: SocketAddr,
    },
}

/// Where to send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Which transport to use.
    pub transport: Transport,
    /// The peer address. For TCP and TLS without `connection` (or when that connection is
    /// gone), an existing connection to this address is reused, or a new one is opened. WS and
    /// WSS peers cannot be dialed: without a live connection the message is dropped.
    pub addr: SocketAddr,
    /// The stream connection to use, normally the one a request arrived on (RFC 3261 §18.2.2).
    pub connection: Option<ConnectionId>,
    /// UDP: send from the socket bound to this address when there is one.
    pub local: Option<SocketAddr>,
}

/// Errors starting the transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Creating, configuring or binding a socket failed.
    #[error("cannot bind {transport} on {addr}: {source}")]
    Bind {
        /// The transport of the listener.
        transport: Transport,
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// `start` was called outside a tokio runtime.
    #[error("the transport must be started inside a tokio runtime")]
    NoRuntime,
    /// The configuration is unusable.
    #[error("invalid transport configuration: {0}")]
    InvalidConfig(&'static str),
    /// The connection supervisor could not be started.
    #[error("cannot start the connection supervisor: {0}")]
    Supervisor(String),
}

/// A cheap, cloneable handle for sending through the transport.
#[derive(Clone)]
pub struct TransportHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    /// One sender per UDP socket, with its bound address.
    udp: Vec<udp::UdpSender>,
    /// The TCP connection registry (present even without TCP listeners, for outgoing
    /// connections).
    tcp: Arc<tcp::TcpShared>,
    /// What was bound, in configuration order.
    local: Vec<(Transport, SocketAddr)>,
    stats: Arc<TransportStats>,
    shutdown: watch::Sender<bool>,
}

impl fmt::Debug for TransportHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportHandle")
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

impl TransportHandle {
    /// Queues `payload` for `dest`. Never blocks: when the queue of the chosen socket or
    /// connection is full, or no socket can reach the destination, the message is dropped with a
    /// `warn` trace and a counter in [`stats`](Self::stats).
    pub fn send(&self, dest: Destination, payload: Bytes) {
        match dest.transport {
            Transport::Udp => self.send_udp(dest.local, dest.addr, payload),
            Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
                self.inner
                    .tcp
                    .send(dest.transport, dest.connection, dest.addr, payload);
            }
            other @ Transport::Sctp => {
                TransportStats::incr(&self.inner.stats.no_route);
                warn!(transport = %other, peer = %dest.addr, "no listener for this transport; message dropped");
            }
        }
    }

    fn send_udp(&self, local: Option<SocketAddr>, addr: SocketAddr, payload: Bytes) {
        // The socket the caller named (so replies leave from the address the request reached),
        // else one of the destination's address family.
        let udp = &self.inner.udp;
        let sender = local
            .and_then(|l| udp.iter().find(|s| s.local() == l))
            .or_else(|| udp.iter().find(|s| s.local().is_ipv4() == addr.is_ipv4()));
        match sender {
            Some(sender) => sender.send(addr, payload, &self.inner.stats),
            None => {
                TransportStats::incr(&self.inner.stats.no_route);
                warn!(peer = %addr, "no UDP socket for this address family; message dropped");
            }
        }
    }

    /// Closes a stream connection after flushing what is already queued on it. Unknown or
    /// already closed connections are ignored.
    pub fn close(&self, connection: ConnectionId) {
        self.inner.tcp.close(connection);
    }

    /// Closes every stream connection (TCP, TLS, WS, WSS, accepted or dialed) after flushing
    /// what is queued on each; listeners keep accepting. Returns how many were asked to close.
    /// A node that may have been declared dead by its peers uses it so its clients notice the
    /// flow is gone and recover it elsewhere (RFC 5626 §4.4.1).
    pub fn close_all_streams(&self) -> usize {
        self.inner.tcp.close_all()
    }

    /// The bound addresses, in configuration order (with the real port when port 0 was asked).
    pub fn local_addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.inner.local
    }

    /// The first bound address of a transport, if any.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.inner
            .local
            .iter()
            .find(|(kind, _)| *kind == transport)
            .map(|(_, addr)| *addr)
    }

    /// Drop and error counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Number of open (or connecting) stream connections.
    pub fn connection_count(&self) -> usize {
        self.inner.tcp.connection_count()
    }

    /// Whether `connection` is open (or connecting).
    pub fn has_connection(&self, connection: ConnectionId) -> bool {
        self.inner.tcp.has_connection(connection)
    }

    /// The newest open (or connecting) `transport` connection to `peer`, if any.
    pub fn connection_to(&self, transport: Transport, peer: SocketAddr) -> Option<ConnectionId> {
        self.inner.tcp.connection_to(transport, peer)
    }

    /// Test hook: makes the connection actor of `connection` panic. Its supervisor then
    /// closes that connection (and only it) and `ConnectionClosed` is delivered. Returns
    /// `false` if there is no such connection, or its actor has not started yet.
    pub fn inject_connection_panic(&self, connection: ConnectionId) -> bool {
        self.inner.tcp.inject_panic(connection)
    }

    /// Stops listeners, socket tasks and connections. Tasks end soon after; await the
    /// [`JoinSet`] returned by [`start`] to wait for the long-lived ones.
    pub fn shutdown(&self) {
        debug!("transport shutdown requested");
        self.inner.shutdown.send_replace(true);
    }
}

/// Binds every configured listener and starts the reader, writer and accept tasks.
///
/// Returns the send handle and the set of long-lived tasks (UDP readers and writers, TCP
/// acceptors); connection tasks are spawned separately and end with their connections. Must be
/// called inside a tokio runtime, whose handle is kept to spawn outgoing connections from
/// [`TransportHandle::send`], which may itself be called from any thread.
///
/// Lifetime: dropping the returned `JoinSet` aborts the long-lived tasks, and dropping the last
/// `TransportHandle` acts like [`TransportHandle::shutdown`]; keep both for as long as the
/// transport should run.
pub async fn start(
    config: TransportConfig,
    sink: impl InboundSink,
) -> Result<(TransportHandle, JoinSet<()>), TransportError> {
    start_on(config, sink, None).await
}

/// [`start`] with the UDP sockets (their reader and writer tasks, and their reactor
/// registration) on `udp_runtime` instead of the current runtime: a node's dedicated
/// signalling thread (issue 6), so a datagram and the shard it reaches wake one thread. Stream
/// listeners and connections stay on the current runtime.
pub async fn start_on(
    config: TransportConfig,
    sink: impl InboundSink,
    udp_runtime: Option<tokio::runtime::Handle>,
) -> Result<(TransportHandle, JoinSet<()>), TransportError> {
    config.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
    let udp_runtime = udp_runtime.unwrap_or_else(|| runtime.clone());
    let sink: Arc<dyn InboundSink> = Arc::new(sink);
    let stats = Arc::new(TransportStats::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let tcp = Arc::new(tcp::TcpShared::new(
        &config,
        Arc::clone(&sink),
        Arc::clone(&stats),
        runtime,
        shutdown_rx.clone(),
    ));
    let (supervisor, _) = ractor::Actor::spawn(None, ConnectionSupervisor, Arc::downgrade(&tcp))
        .await
        .map_err(|e| TransportError::Supervisor(e.to_string()))?;
    // Only `start` sets it.
    let _ = tcp.supervisor.set(supervisor.get_cell());
    let mut stopping = shutdown_rx.clone();
    tasks.spawn(async move {
        set_or_gone(&mut stopping).await;
        let _ = supervisor.cast(SupervisorMsg::Shutdown);
    });
    let mut udp_senders = Vec::new();
    let mut local = Vec::new();
    for &(kind, addr) in &config.listen {
        match kind {
            Transport::Udp => {
                let sender = udp::spawn(
                    addr,
                    &config,
                    Arc::clone(&sink),
                    Arc::clone(&stats),
                    shutdown_rx.clone(),
                    (&mut tasks, &udp_runtime),
                )?;
                local.push((kind, sender.local()));
                udp_senders.push(sender);
            }
            Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
                let bound = tcp::listen(kind, addr, Arc::clone(&tcp), &mut tasks)?;
                local.push((kind, bound));
            }
            Transport::Sctp => {
                return Err(TransportError::InvalidConfig("there is no sctp listener"));
            }
        }
    }
    debug!(?local, "transport started");
    let inner = HandleInner {
        udp: udp_senders,
        tcp,
        local,
        stats,
        shutdown,
    };
    Ok((
        TransportHandle {
            inner: Arc::new(inner),
        },
        tasks,
    ))
}

/// Resolves once `flag` is set to `true` or its sender is gone (which also means stop). The
/// watch guard is dropped at once, so callers stay `Send`.
async fn set_or_gone(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}
