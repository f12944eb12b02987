//! TCP: listeners, the connection registry, and sending over connections.
//!
//! Every connection, accepted or opened by us, gets a [`ConnectionId`], an entry in the
//! registry (its bounded send queue and close signal) and one task running its reader and
//! writer (see `connection`). The registry also maps each peer address to its newest
//! connection, so that a message for a TCP destination without a connection id reuses an
//! existing connection (RFC 3261 §18.1.1: "a client SHOULD use an existing connection") and only
//! otherwise opens a new one, with a timeout. Messages queued while it connects go out once it
//! is up; replies on it come back as [`Inbound`](super::Inbound) like on accepted connections.

mod connection;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, debug_span, warn};

use super::{
    ConnectionId, InboundEvent, InboundSink, Transport, TransportConfig, TransportError,
    TransportStats,
};

/// Listen backlog for TCP listeners.
const BACKLOG: i32 = 1024;

/// The per-connection limits, copied out of [`TransportConfig`].
#[derive(Debug, Clone, Copy)]
struct Settings {
    max_message_size: usize,
    require_content_length: bool,
    idle_timeout: Duration,
    max_connections: usize,
    connect_timeout: Duration,
    send_queue: usize,
    read_chunk: usize,
    linger: Duration,
}

/// State shared by the handle, the acceptors and the connection tasks.
pub(crate) struct TcpShared {
    settings: Settings,
    sink: Arc<dyn InboundSink>,
    stats: Arc<TransportStats>,
    /// Used to spawn outgoing connections from `send`, which may run on any thread.
    runtime: Handle,
    shutdown: watch::Receiver<bool>,
    next_id: AtomicU64,
    /// A std mutex, not tokio's: it is held only for a map lookup or insert and never across an
    /// await, and `send` must work from synchronous code.
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    conns: HashMap<ConnectionId, Entry>,
    /// The newest connection to each peer address.
    by_peer: HashMap<SocketAddr, ConnectionId>,
}

struct Entry {
    peer: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    /// Set to ask the connection to flush and close; dropping it (on unregister) also wakes it.
    close: watch::Sender<bool>,
}

/// What a connection task receives when its connection is registered.
struct Channels {
    rx: mpsc::Receiver<Bytes>,
    /// A sender into its own queue, for keep-alive pongs.
    tx: mpsc::Sender<Bytes>,
    close: watch::Receiver<bool>,
}

impl TcpShared {
    pub(crate) fn new(
        config: &TransportConfig,
        sink: Arc<dyn InboundSink>,
        stats: Arc<TransportStats>,
        runtime: Handle,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            settings: Settings {
                max_message_size: config.max_message_size,
                require_content_length: config.require_content_length,
                idle_timeout: config.tcp_idle_timeout,
                max_connections: config.max_connections,
                connect_timeout: config.connect_timeout,
                send_queue: config.tcp_send_queue,
                read_chunk: config.tcp_read_chunk,
                linger: config.too_large_linger,
            },
            sink,
            stats,
            runtime,
            shutdown,
            next_id: AtomicU64::new(1),
            registry: Mutex::new(Registry::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry holds no invariant a panicking holder could break halfway.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }

    /// Registers a new connection to `peer`, unless `max_connections` is reached.
    fn register(&self, reg: &mut Registry, peer: SocketAddr) -> Option<(ConnectionId, Channels)> {
        if reg.conns.len() >= self.settings.max_connections {
            return None;
        }
        let id = ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(self.settings.send_queue);
        let (close, close_rx) = watch::channel(false);
        reg.conns.insert(
            id,
            Entry {
                peer,
                tx: tx.clone(),
                close,
            },
        );
        reg.by_peer.insert(peer, id);
        Some((
            id,
            Channels {
                rx,
                tx,
                close: close_rx,
            },
        ))
    }

    /// Forgets a connection that ended.
    fn unregister(&self, id: ConnectionId) {
        let mut reg = self.lock();
        if let Some(entry) = reg.conns.remove(&id) {
            if reg.by_peer.get(&entry.peer) == Some(&id) {
                reg.by_peer.remove(&entry.peer);
            }
        }
    }

    /// Sends on `connection` if it is open, else on the newest connection to `addr`, else on a
    /// new connection to `addr`.
    pub(crate) fn send(
        self: &Arc<Self>,
        connection: Option<ConnectionId>,
        addr: SocketAddr,
        payload: Bytes,
    ) {
        let mut reg = self.lock();
        let target = match connection {
            Some(id) if reg.conns.contains_key(&id) => Some(id),
            Some(id) => {
                debug!(connection = %id, peer = %addr, "connection gone; sending by address");
                reg.by_peer.get(&addr).copied()
            }
            None => reg.by_peer.get(&addr).copied(),
        };
        if let Some((id, entry)) = target.and_then(|id| reg.conns.get(&id).map(|e| (id, e))) {
            match entry.tx.try_send(payload) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    TransportStats::incr(&self.stats.tcp_queue_full);
                    warn!(connection = %id, peer = %entry.peer, "TCP send queue full; message dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    TransportStats::incr(&self.stats.no_route);
                    debug!(connection = %id, "connection closing; message dropped");
                }
            }
            return;
        }
        let Some((id, channels)) = self.register(&mut reg, addr) else {
            drop(reg);
            TransportStats::incr(&self.stats.no_route);
            warn!(peer = %addr, "max_connections reached; cannot connect, message dropped");
            return;
        };
        drop(reg);
        // A fresh queue has room for at least one message.
        if channels.tx.try_send(payload).is_err() {
            TransportStats::incr(&self.stats.tcp_queue_full);
        }
        let span = debug_span!("tcp", connection = %id, peer = %addr);
        self.runtime
            .spawn(connection::connect(Arc::clone(self), id, addr, channels).instrument(span));
    }

    /// Asks a connection to flush its queue and close.
    pub(crate) fn close(&self, id: ConnectionId) {
        if let Some(entry) = self.lock().conns.get(&id) {
            debug!(connection = %id, "close requested");
            entry.close.send_replace(true);
        }
    }

    /// Takes an accepted connection.
    fn accepted(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let registered = self.register(&mut self.lock(), peer);
        let Some((id, channels)) = registered else {
            TransportStats::incr(&self.stats.connections_refused);
            warn!(%peer, "max_connections reached; incoming connection closed");
            return;
        };
        debug!(connection = %id, %peer, "connection accepted");
        let span = debug_span!("tcp", connection = %id, %peer);
        self.runtime
            .spawn(connection::run(Arc::clone(self), id, peer, stream, channels).instrument(span));
    }

    fn closed(&self, id: ConnectionId, peer: SocketAddr) {
        self.unregister(id);
        debug!(connection = %id, %peer, "connection closed");
        self.sink.deliver(InboundEvent::ConnectionClosed {
            connection: id,
            peer,
        });
    }
}

/// Binds a TCP listener on `addr` and spawns its accept loop into `tasks`.
pub(crate) fn listen(
    addr: SocketAddr,
    shared: Arc<TcpShared>,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, TransportError> {
    let bind_err = |source| TransportError::Bind {
        transport: Transport::Tcp,
        addr,
        source,
    };
    let listener = bind(addr).map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    debug!(%local, "TCP listener bound");
    tasks.spawn(accept_loop(listener, shared).instrument(debug_span!("tcp-listen", %local)));
    Ok(local)
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop(listener: TcpListener, shared: Arc<TcpShared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => shared.accepted(stream, peer),
                Err(e) => {
                    // Typically EMFILE/ENFILE: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = super::set_or_gone(&mut shutdown) => return,
        }
    }
}
