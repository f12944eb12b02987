//! Stream connections: TCP listeners, the connection registry shared with TLS, WS and WSS, and
//! sending over connections.
//!
//! Every connection (TCP, TLS, WS or WSS), accepted or opened by us, gets a [`ConnectionId`], an entry in the
//! registry (its bounded send queue, its close signal and its actor), a
//! [`ConnectionActor`](super::actor::ConnectionActor) that owns its lifecycle, and one task
//! running its reader and writer (see `connection`, and `ws/connection.rs` for WebSocket). The registry also maps each
//! transport and peer address to its newest connection, so that a message for a TCP destination without a connection id reuses an
//! existing connection (RFC 3261 §18.1.1: "a client SHOULD use an existing connection") and only
//! otherwise opens a new one (TCP or TLS; WebSocket peers cannot be dialed), with a timeout. Messages queued while it connects go out once it
//! is up; replies on it come back as [`Inbound`](super::Inbound) like on accepted connections.

mod connection;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use std::time::Duration;

use bytes::Bytes;
use ractor::{ActorCell, ActorId, ActorRef};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, debug_span, warn};

use super::activity::Activity;
use super::actor::{self as conn_actor, ConnMsg};
use super::tls::TlsConfig;
use super::ws::{self, WsSettings};
use super::{
    ConnectionId, InboundEvent, InboundSink, Transport, TransportConfig, TransportError,
    TransportStats,
};

/// Listen backlog for TCP listeners.
const BACKLOG: i32 = 1024;

/// The per-connection limits, copied out of [`TransportConfig`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    max_message_size: usize,
    require_content_length: bool,
    pub(super) idle_timeout: Duration,
    pub(super) max_connections: usize,
    connect_timeout: Duration,
    send_queue: usize,
    read_chunk: usize,
    linger: Duration,
    pub(super) handshake_timeout: Duration,
}

/// State shared by the handle, the acceptors and the connection tasks.
pub(crate) struct TcpShared {
    pub(super) settings: Settings,
    pub(super) sink: Arc<dyn InboundSink>,
    pub(super) stats: Arc<TransportStats>,
    /// Used to spawn outgoing connections from `send`, which may run on any thread.
    pub(super) runtime: Handle,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Certificates for TLS/WSS listeners and outgoing TLS, when configured.
    pub(super) tls: Option<TlsConfig>,
    /// Outgoing TLS without a configured [`TlsConfig`]: system roots, built on first use.
    system_tls: OnceLock<Option<TlsConfig>>,
    /// WebSocket settings.
    pub(super) ws: WsSettings,
    /// WS and WSS connections, including those still in their handshake.
    pub(super) ws_active: AtomicUsize,
    next_id: AtomicU64,
    /// The [`ConnectionSupervisor`](super::supervisor::ConnectionSupervisor) every connection
    /// actor is linked to (set once by `start`).
    pub(super) supervisor: OnceLock<ActorCell>,
    /// A std mutex, not tokio's: it is held only for a map lookup or insert and never across an
    /// await, and `send` must work from synchronous code.
    registry: Mutex<Registry>,
}

#[derive(Default)]
pub(super) struct Registry {
    conns: HashMap<ConnectionId, Entry>,
    /// Slots promised to WebSocket upgrades being answered (`ws.rs`, `Reservation`): they count
    /// against `max_connections` until the connection registers in its slot or gives it back.
    pub(super) reserved: usize,
    /// The newest connection of each transport to each peer address.
    by_peer: HashMap<(Transport, SocketAddr), ConnectionId>,
}

struct Entry {
    transport: Transport,
    peer: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    /// Set to ask the connection to flush and close; dropping it (on unregister) also wakes it.
    close: watch::Sender<CloseReason>,
    /// The connection's actor, once it started.
    actor: Option<ActorRef<ConnMsg>>,
}

/// The close signal of a connection: why its I/O should flush and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloseReason {
    /// Keep going.
    Open,
    /// Closed by request ([`TcpShared::close`]), or the registry entry is gone.
    Requested,
    /// The actor's idle timer found nothing read or written for the idle timeout.
    Idle,
}

/// Resolves with the reason once a close is asked for; a dropped sender (the connection was
/// unregistered) counts as [`CloseReason::Requested`].
pub(super) async fn close_requested(close: &mut watch::Receiver<CloseReason>) -> CloseReason {
    match close.wait_for(|r| *r != CloseReason::Open).await {
        Ok(reason) => *reason,
        Err(_) => CloseReason::Requested,
    }
}

/// What a connection task receives when its connection is registered.
pub(super) struct Channels {
    pub(super) rx: mpsc::Receiver<Bytes>,
    /// A sender into its own queue, for keep-alive pongs.
    pub(super) tx: mpsc::Sender<Bytes>,
    pub(super) close: watch::Receiver<CloseReason>,
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
                handshake_timeout: config.handshake_timeout,
            },
            sink,
            stats,
            runtime,
            shutdown,
            tls: config.tls.clone(),
            system_tls: OnceLock::new(),
            ws: WsSettings::new(config),
            ws_active: AtomicUsize::new(0),
            next_id: AtomicU64::new(config.connection_id_base + 1),
            supervisor: OnceLock::new(),
            registry: Mutex::new(Registry::default()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry holds no invariant a panicking holder could break halfway.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }

    /// The TLS configuration for outgoing connections: the configured one, else system roots.
    pub(super) fn client_tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref().or_else(|| {
            self.system_tls
                .get_or_init(|| match TlsConfig::system_client() {
                    Ok(c) => Some(c),
                    Err(e) => {
                        warn!(error = %e, "no TLS client configuration");
                        None
                    }
                })
                .as_ref()
        })
    }

    /// Whether `max_connections` is reached, counting reserved slots.
    pub(super) fn is_full(&self, reg: &Registry) -> bool {
        reg.conns.len().saturating_add(reg.reserved) >= self.settings.max_connections
    }

    /// Registers a new connection to `peer`, unless `max_connections` is reached (reserved
    /// slots included: a reservation frees its slot before registering in it).
    pub(super) fn register(
        &self,
        reg: &mut Registry,
        transport: Transport,
        peer: SocketAddr,
    ) -> Option<(ConnectionId, Channels)> {
        if self.is_full(reg) {
            return None;
        }
        let id = ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(self.settings.send_queue);
        let (close, close_rx) = watch::channel(CloseReason::Open);
        reg.conns.insert(
            id,
            Entry {
                transport,
                peer,
                tx: tx.clone(),
                close,
                actor: None,
            },
        );
        reg.by_peer.insert((transport, peer), id);
        Some((
            id,
            Channels {
                rx,
                tx,
                close: close_rx,
            },
        ))
    }

    /// Forgets a connection that ended; `false` if it was not registered (any more).
    fn unregister(&self, id: ConnectionId) -> bool {
        let mut reg = self.lock();
        let Some(entry) = reg.conns.remove(&id) else {
            return false;
        };
        let key = (entry.transport, entry.peer);
        if reg.by_peer.get(&key) == Some(&id) {
            reg.by_peer.remove(&key);
        }
        // The entry (and with it the close sender, which tells the I/O to wind down) is
        // dropped once the lock is released.
        drop(reg);
        drop(entry);
        true
    }

    /// Records the actor of a registered connection; `false` if the connection is gone.
    pub(super) fn attach(&self, id: ConnectionId, actor: ActorRef<ConnMsg>) -> bool {
        match self.lock().conns.get_mut(&id) {
            Some(entry) => {
                entry.actor = Some(actor);
                true
            }
            None => false,
        }
    }

    /// Starts the actor of a registered connection, linked to the supervisor, which spawns
    /// `io` (the connection's reader and writer). Called from synchronous code: the actor is
    /// spawned from a task of its own.
    pub(super) fn start_actor(
        self: &Arc<Self>,
        transport: Transport,
        id: ConnectionId,
        peer: SocketAddr,
        activity: Arc<Activity>,
        io: conn_actor::IoFuture,
    ) {
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            conn_actor::spawn(shared, transport, id, peer, activity, io).await;
        });
    }

    /// A connection actor failed (panicked, or its I/O task did): closes its connection as
    /// if it had ended, so the core learns at once (RFC 5626 §5.4: its flows are gone).
    /// Supervision events name only the actor, so the entry is found by a scan; failures are
    /// rare and this keeps the per-connection footprint down.
    pub(super) fn actor_failed(&self, actor: ActorId, error: &str) {
        let found = self
            .lock()
            .conns
            .iter()
            .find(|(_, e)| e.actor.as_ref().is_some_and(|a| a.get_id() == actor))
            .map(|(id, e)| (*id, e.peer));
        let Some((id, peer)) = found else {
            debug!(%actor, %error, "failed connection actor was already unregistered");
            return;
        };
        TransportStats::incr(&self.stats.actor_failures);
        warn!(connection = %id, %peer, %error, "connection actor failed; connection closed");
        self.closed(id, peer);
    }

    /// The actor of a connection (tests).
    #[cfg(test)]
    pub(super) fn actor_of(&self, id: ConnectionId) -> Option<ActorRef<ConnMsg>> {
        self.lock().conns.get(&id).and_then(|e| e.actor.clone())
    }

    /// Whether `id` is registered (open or connecting).
    pub(crate) fn has_connection(&self, id: ConnectionId) -> bool {
        self.lock().conns.contains_key(&id)
    }

    /// The newest open connection of `transport` to `peer`.
    pub(crate) fn connection_to(
        &self,
        transport: Transport,
        peer: SocketAddr,
    ) -> Option<ConnectionId> {
        self.lock().by_peer.get(&(transport, peer)).copied()
    }

    /// Test hook: makes the actor of `id` panic. `false` if there is no such connection (or
    /// its actor has not started yet).
    pub(crate) fn inject_panic(&self, id: ConnectionId) -> bool {
        let actor = self.lock().conns.get(&id).and_then(|e| e.actor.clone());
        actor.is_some_and(|a| a.cast(ConnMsg::Panic).is_ok())
    }

    /// Sends on `connection` if it is open, else on the newest `transport` connection to `addr`,
    /// else on a new connection to `addr` (TCP and TLS only: WebSocket clients cannot be dialed,
    /// so the message is dropped and counted as `no_route`).
    pub(crate) fn send(
        self: &Arc<Self>,
        transport: Transport,
        connection: Option<ConnectionId>,
        addr: SocketAddr,
        payload: Bytes,
    ) {
        let mut reg = self.lock();
        let target = match connection {
            Some(id) if reg.conns.contains_key(&id) => Some(id),
            Some(id) => {
                debug!(connection = %id, peer = %addr, "connection gone; sending by address");
                reg.by_peer.get(&(transport, addr)).copied()
            }
            None => reg.by_peer.get(&(transport, addr)).copied(),
        };
        if let Some((id, entry)) = target.and_then(|id| reg.conns.get(&id).map(|e| (id, e))) {
            match entry.tx.try_send(payload) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    TransportStats::incr(&self.stats.tcp_queue_full);
                    warn!(connection = %id, peer = %entry.peer, "send queue full; message dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    TransportStats::incr(&self.stats.no_route);
                    debug!(connection = %id, "connection closing; message dropped");
                }
            }
            return;
        }
        if matches!(transport, Transport::Ws | Transport::Wss) {
            drop(reg);
            TransportStats::incr(&self.stats.no_route);
            warn!(%transport, peer = %addr, "no open WebSocket connection to this peer; message dropped");
            return;
        }
        let Some((id, channels)) = self.register(&mut reg, transport, addr) else {
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
        let span = debug_span!("connect", %transport, connection = %id, peer = %addr);
        let activity = Arc::new(Activity::new());
        let io = connection::connect(
            Arc::clone(self),
            transport,
            id,
            addr,
            channels,
            Arc::clone(&activity),
        )
        .instrument(span);
        self.start_actor(transport, id, addr, activity, Box::pin(io));
    }

    /// Asks a connection to flush its queue and close.
    pub(crate) fn close(&self, id: ConnectionId) {
        self.close_for(id, CloseReason::Requested);
    }

    /// Asks every stream connection (TCP, TLS, WS, WSS; accepted or dialed) to flush its queue
    /// and close; returns how many were asked.
    pub(crate) fn close_all(&self) -> usize {
        let reg = self.lock();
        let mut asked = 0;
        for (id, entry) in &reg.conns {
            let first = entry.close.send_if_modified(|r| {
                let first = *r == CloseReason::Open;
                if first {
                    *r = CloseReason::Requested;
                }
                first
            });
            if first {
                debug!(connection = %id, "close requested (all connections)");
                asked += 1;
            }
        }
        asked
    }

    /// Asks a connection to flush its queue and close, for `reason`.
    pub(super) fn close_for(&self, id: ConnectionId, reason: CloseReason) {
        if let Some(entry) = self.lock().conns.get(&id) {
            debug!(connection = %id, ?reason, "close requested");
            entry.close.send_if_modified(|r| {
                let first = *r == CloseReason::Open;
                if first {
                    *r = reason;
                }
                first
            });
        }
    }

    /// Takes an accepted connection of a `listener` transport.
    fn accepted(self: &Arc<Self>, listener: Transport, stream: TcpStream, peer: SocketAddr) {
        match listener {
            Transport::Ws | Transport::Wss => return ws::accepted(self, listener, stream, peer),
            Transport::Tls => {
                if self.connection_count() >= self.settings.max_connections {
                    TransportStats::incr(&self.stats.connections_refused);
                    warn!(%peer, "max_connections reached; incoming connection closed");
                    return;
                }
                // Registered only once the handshake succeeded, so that failed handshakes
                // produce no events.
                let span = debug_span!("conn", transport = %listener, %peer);
                self.runtime.spawn(
                    connection::run_tls_accepted(Arc::clone(self), peer, stream).instrument(span),
                );
                return;
            }
            _ => {}
        }
        let registered = self.register(&mut self.lock(), listener, peer);
        let Some((id, channels)) = registered else {
            TransportStats::incr(&self.stats.connections_refused);
            warn!(%peer, "max_connections reached; incoming connection closed");
            return;
        };
        debug!(connection = %id, %peer, %listener, "connection accepted");
        let span = debug_span!("conn", transport = %listener, connection = %id, %peer);
        let activity = Arc::new(Activity::new());
        let io = connection::run(
            Arc::clone(self),
            Transport::Tcp,
            id,
            peer,
            stream,
            channels,
            Arc::clone(&activity),
        )
        .instrument(span);
        self.start_actor(Transport::Tcp, id, peer, activity, Box::pin(io));
    }

    /// The end of a connection: unregisters it and delivers `ConnectionClosed`, once (the
    /// actor's normal stop and the supervisor's failure path may both get here).
    pub(super) fn closed(&self, id: ConnectionId, peer: SocketAddr) {
        if !self.unregister(id) {
            return;
        }
        debug!(connection = %id, %peer, "connection closed");
        self.sink.deliver(InboundEvent::ConnectionClosed {
            connection: id,
            peer,
        });
    }
}

/// Binds a stream listener (TCP, TLS, WS or WSS) on `addr` and spawns its accept loop into
/// `tasks`.
pub(crate) fn listen(
    transport: Transport,
    addr: SocketAddr,
    shared: Arc<TcpShared>,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, TransportError> {
    let bind_err = |source| TransportError::Bind {
        transport,
        addr,
        source,
    };
    let listener = bind(addr).map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    debug!(%local, %transport, "stream listener bound");
    tasks.spawn(
        accept_loop(transport, listener, shared)
            .instrument(debug_span!("listen", %transport, %local)),
    );
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

async fn accept_loop(transport: Transport, listener: TcpListener, shared: Arc<TcpShared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => shared.accepted(transport, stream, peer),
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
