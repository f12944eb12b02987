//! Transport configuration and its defaults.

use std::net::SocketAddr;
use std::time::Duration;

use sipmesh_protocol::framing::DEFAULT_MAX_MESSAGE_SIZE;

use super::tls::TlsConfig;
use super::ws::WsConfig;
use super::{Transport, TransportError};

/// What to bind and how to bound resources.
///
/// Start from [`TransportConfig::default`] and set `listen`; every other field has a default
/// chosen for a registrar/proxy on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Listeners to open: UDP sockets and TCP, TLS, WS and WSS listeners, IPv4 or IPv6 (IPv6 sockets are
    /// `IPV6_V6ONLY`, so bind `0.0.0.0` and `[::]` separately). Port 0 picks a free port; see
    /// [`TransportHandle::local_addrs`](super::TransportHandle::local_addrs).
    pub listen: Vec<(Transport, SocketAddr)>,
    /// Largest accepted message (datagram, or header section plus body on a stream), in octets.
    /// Larger ones are reported as [`InboundEvent::TooLarge`](super::InboundEvent::TooLarge).
    /// Default 65,536: above the largest UDP payload, and generous for SIP.
    pub max_message_size: usize,
    /// Refuse (close) a stream message without Content-Length instead of framing it as
    /// bodiless. Default false: RFC 2543 peers omit it (see
    /// `StreamFramer::lenient_content_length`).
    pub require_content_length: bool,
    /// A TCP connection with no traffic in either direction for this long is closed. Default
    /// 600 s: longer than the 95–120 s keep-alive interval RFC 5626 §4.4.1 recommends for
    /// connection-oriented flows, so flows kept alive by their clients survive, while
    /// abandoned connections are reclaimed within minutes.
    pub tcp_idle_timeout: Duration,
    /// Maximum number of open TCP connections, incoming and outgoing together. Further accepts
    /// are closed at once and further outgoing connections are refused (message dropped).
    /// Default 4,096 (mind `RLIMIT_NOFILE`).
    pub max_connections: usize,
    /// Deadline for establishing an outgoing TCP connection. Default 5 s, well inside Timer B/F
    /// (64·T1 = 32 s, RFC 3261 §17.1.1.2) so a transaction can still fail over.
    pub connect_timeout: Duration,
    /// Capacity, in messages, of each UDP socket's send queue. Default 8,192.
    pub udp_send_queue: usize,
    /// Capacity, in messages, of each TCP connection's send queue. Default 1,024.
    pub tcp_send_queue: usize,
    /// Datagrams read (or written) per `recvmmsg`/`sendmmsg` call. Default 32.
    pub udp_batch: usize,
    /// Send a datagram straight from the caller (`try_send_to`) when the socket's send queue
    /// is empty and the socket writable, instead of through the writer task (one task hop, and
    /// possibly one thread wake-up, fewer per datagram; issue 6). Queued otherwise, so one
    /// sender's datagrams keep their order. Default true.
    pub udp_direct_send: bool,
    /// `SO_RCVBUF`/`SO_SNDBUF` requested for UDP sockets (best effort; the kernel caps it at
    /// `net.core.rmem_max`/`wmem_max`). Default 4 MiB.
    pub udp_socket_buffer: usize,
    /// Size of one TCP read. Default 16 KiB. A connection buffers at most
    /// `max_message_size + tcp_read_chunk` octets.
    pub tcp_read_chunk: usize,
    /// How long a TCP connection that sent a too-large message stays open so that the 513
    /// answer can go out before it is closed. It closes earlier once something was written.
    /// Default 2 s.
    pub too_large_linger: Duration,
    /// Certificates for TLS and WSS listeners, and trust anchors for outgoing TLS. Required
    /// when a TLS or WSS listener is configured; without it outgoing TLS verifies servers
    /// against the system roots.
    pub tls: Option<TlsConfig>,
    /// WebSocket (WS and WSS) settings.
    pub ws: WsConfig,
    /// Deadline for an accepted connection's TLS handshake and WebSocket upgrade. Default 10 s.
    pub handshake_timeout: Duration,
    /// Connection ids start above this (a clustered node puts its incarnation in the high
    /// bits, so its ids are unique across the cluster: `sipmesh_protocol::proxy::Incarnation`).
    /// Default 0.
    pub connection_id_base: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            require_content_length: false,
            tcp_idle_timeout: Duration::from_secs(600),
            max_connections: 4_096,
            connect_timeout: Duration::from_secs(5),
            udp_send_queue: 8_192,
            tcp_send_queue: 1_024,
            udp_batch: 32,
            udp_direct_send: true,
            udp_socket_buffer: 4 << 20,
            tcp_read_chunk: 16 << 10,
            too_large_linger: Duration::from_secs(2),
            tls: None,
            ws: WsConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            connection_id_base: 0,
        }
    }
}

impl TransportConfig {
    /// A default configuration listening on `listen`.
    pub fn new(listen: Vec<(Transport, SocketAddr)>) -> Self {
        Self {
            listen,
            ..Self::default()
        }
    }

    /// Checks that sizes and counts are usable.
    pub fn validate(&self) -> Result<(), TransportError> {
        let checks = [
            (
                self.max_message_size == 0,
                "max_message_size must be positive",
            ),
            (
                self.max_connections == 0,
                "max_connections must be positive",
            ),
            (self.udp_send_queue == 0, "udp_send_queue must be positive"),
            (self.tcp_send_queue == 0, "tcp_send_queue must be positive"),
            (
                self.udp_batch == 0 || self.udp_batch > 1024,
                "udp_batch must be in 1..=1024",
            ),
            (self.tcp_read_chunk == 0, "tcp_read_chunk must be positive"),
            (
                self.tcp_idle_timeout.is_zero(),
                "tcp_idle_timeout must be positive",
            ),
            (
                self.connect_timeout.is_zero(),
                "connect_timeout must be positive",
            ),
            (
                self.handshake_timeout.is_zero(),
                "handshake_timeout must be positive",
            ),
            (
                self.ws.ping_interval.is_zero(),
                "ws.ping_interval must be positive",
            ),
            (
                self.ws.max_connections == 0,
                "ws.max_connections must be positive",
            ),
            (
                self.listen
                    .iter()
                    .any(|(t, _)| matches!(t, Transport::Tls | Transport::Wss))
                    && !self
                        .tls
                        .as_ref()
                        .is_some_and(TlsConfig::has_server_certificate),
                "tls and wss listeners need a certificate and key (tls_cert, tls_key)",
            ),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(TransportError::InvalidConfig(why)),
            None => Ok(()),
        }
    }
}
