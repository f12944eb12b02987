//! Counters of dropped messages and transport errors.
//!
//! Plain relaxed atomics: they are monotonically increasing counts read for metrics, never used
//! for synchronisation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by all transport tasks.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub(crate) udp_queue_full: AtomicU64,
    pub(crate) tcp_queue_full: AtomicU64,
    pub(crate) no_route: AtomicU64,
    pub(crate) udp_send_errors: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) upgrades_refused: AtomicU64,
    pub(crate) actor_failures: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages dropped because a UDP socket's send queue was full.
    pub udp_queue_full: u64,
    /// Messages dropped because a TCP connection's send queue was full.
    pub tcp_queue_full: u64,
    /// Messages dropped because no socket or connection could carry them (no socket of that
    /// address family, connection limit reached, or the outgoing connection failed).
    pub no_route: u64,
    /// Datagrams the kernel refused to send.
    pub udp_send_errors: u64,
    /// Outgoing TCP connections that failed or timed out.
    pub connect_failures: u64,
    /// Incoming connections closed at once because of `max_connections` (WebSocket: refused
    /// with 503).
    pub connections_refused: u64,
    /// Messages reported as too large (on WebSocket: frames or messages over the limit).
    pub too_large: u64,
    /// TLS or WebSocket handshakes that failed or timed out.
    pub handshake_failures: u64,
    /// WebSocket upgrades refused with an HTTP error (no `sip` subprotocol, Origin not
    /// allowed, connection limit).
    pub upgrades_refused: u64,
    /// Connections closed because their actor (or its I/O task) panicked.
    pub actor_failures: u64,
}

impl TransportStats {
    pub(crate) fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            udp_queue_full: get(&self.udp_queue_full),
            tcp_queue_full: get(&self.tcp_queue_full),
            no_route: get(&self.no_route),
            udp_send_errors: get(&self.udp_send_errors),
            connect_failures: get(&self.connect_failures),
            connections_refused: get(&self.connections_refused),
            too_large: get(&self.too_large),
            handshake_failures: get(&self.handshake_failures),
            upgrades_refused: get(&self.upgrades_refused),
            actor_failures: get(&self.actor_failures),
        }
    }
}
