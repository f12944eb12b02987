//! WebSocket and secure WebSocket listeners (RFC 7118): the upgrade and its refusals.
//!
//! An accepted TCP connection (after the TLS handshake for WSS) must upgrade within the
//! handshake timeout. The upgrade is refused with an HTTP error, and counted, when:
//! - the listener is at [`WsConfig::max_connections`] or the transport at `max_connections`
//!   (503 Service Unavailable). The transport-wide limit is checked twice: cheaply when the TCP
//!   connection is accepted, and for real when the upgrade is about to be answered with 101,
//!   by reserving a connection slot ([`Reservation`]) under the registry lock. Upgrades that
//!   race past the first check therefore get 503 too, never a 101 followed by a close; the
//!   slot is registered in once the upgrade completes, or given back if it fails;
//! - `Sec-WebSocket-Protocol` does not offer `sip` (400 Bad Request, RFC 7118 §4.1: the
//!   server must not accept a handshake without it);
//! - an Origin allow-list is configured and the request's `Origin` is not on it (403
//!   Forbidden, RFC 6455 §10.2).
//!
//! An accepted upgrade answers `Sec-WebSocket-Protocol: sip`, gets a connection id and a
//! registry entry like any stream connection, and runs in `ws/connection.rs`.

mod connection;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{Instrument, debug, debug_span, warn};

use super::activity::Activity;
use super::tcp::TcpShared;
use super::{Transport, TransportConfig, TransportStats};

/// The WebSocket subprotocol of SIP (RFC 7118 §3).
const SUBPROTOCOL: &str = "sip";

/// WebSocket settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConfig {
    /// Allowed `Origin` header values (exact, for example `https://app.example.com`). Empty
    /// allows every origin, and requests without an Origin (non-browser clients).
    pub allowed_origins: Vec<String>,
    /// A ping is sent after this long; a connection that sent nothing at all (not even a pong)
    /// between two pings is closed. Default 30 s.
    pub ping_interval: Duration,
    /// Most WS and WSS connections together, including upgrades in progress; further upgrades
    /// get 503. Default 4,096 (the transport's `max_connections` also applies).
    pub max_connections: usize,
    /// Initial read buffer of a connection, in octets (tungstenite's default is 128 KiB, far
    /// too much for many idle connections). Default 1 KiB; it grows to fit a larger frame.
    pub read_buffer_size: usize,
    /// Output is written to the socket once this much is buffered, and at every flush (after
    /// each batch of queued messages). Default 0: each batch goes out at once.
    pub write_buffer_size: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            ping_interval: Duration::from_secs(30),
            max_connections: 4_096,
            read_buffer_size: 1 << 10,
            write_buffer_size: 0,
        }
    }
}

/// What the WebSocket code needs, copied once out of the [`TransportConfig`].
#[derive(Debug, Clone)]
pub(super) struct WsSettings {
    pub(super) allowed_origins: Arc<[String]>,
    pub(super) ping_interval: Duration,
    pub(super) max_connections: usize,
    pub(super) protocol: WebSocketConfig,
}

impl WsSettings {
    pub(super) fn new(config: &TransportConfig) -> Self {
        let ws = &config.ws;
        let protocol = WebSocketConfig::default()
            .read_buffer_size(ws.read_buffer_size)
            .write_buffer_size(ws.write_buffer_size)
            // Room for a full write buffer plus one message; beyond it sends fail (backpressure).
            .max_write_buffer_size(
                ws.write_buffer_size
                    .saturating_add(config.max_message_size)
                    .saturating_add(1024),
            )
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_message_size));
        Self {
            allowed_origins: ws.allowed_origins.clone().into(),
            ping_interval: ws.ping_interval,
            max_connections: ws.max_connections,
            protocol,
        }
    }
}

/// Takes an accepted TCP connection of a WS or WSS listener: spawns its handshake and, if the
/// upgrade is accepted, the connection.
pub(super) fn accepted(
    shared: &Arc<TcpShared>,
    listener: Transport,
    stream: TcpStream,
    peer: SocketAddr,
) {
    // The slot is taken before the handshake so that a flood of upgrades cannot overshoot the
    // limit; the guard gives it back whenever the task ends.
    let active = shared.ws_active.fetch_add(1, Ordering::Relaxed) + 1;
    let slot = Slot(Arc::clone(shared));
    let full = active > shared.ws.max_connections
        || shared.connection_count() >= shared.settings.max_connections;
    let span = debug_span!("ws", transport = %listener, %peer);
    let shared = Arc::clone(shared);
    let task = handshake(shared, listener, stream, peer, full, slot);
    // `accepted` runs on the accept task, inside the runtime.
    tokio::spawn(task.instrument(span));
}

/// A transport connection slot held for an upgrade being answered: counted against
/// `max_connections` (see [`TcpShared::register`]) until [`Reservation::register`] uses it, or
/// given back when dropped (the upgrade failed or timed out).
struct Reservation(Option<Arc<TcpShared>>);

impl Reservation {
    /// Reserves a slot, unless the transport is at `max_connections` (reservations included).
    fn take(shared: &Arc<TcpShared>) -> Option<Self> {
        let mut reg = shared.lock();
        if shared.is_full(&reg) {
            return None;
        }
        reg.reserved += 1;
        Some(Self(Some(Arc::clone(shared))))
    }

    /// Registers the upgraded connection in the reserved slot.
    fn register(
        mut self,
        listener: Transport,
        peer: SocketAddr,
    ) -> Option<(super::ConnectionId, super::tcp::Channels)> {
        let shared = self.0.take()?;
        let mut reg = shared.lock();
        reg.reserved = reg.reserved.saturating_sub(1);
        shared.register(&mut reg, listener, peer)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            let mut reg = shared.lock();
            reg.reserved = reg.reserved.saturating_sub(1);
        }
    }
}

/// Gives back a WebSocket slot when dropped.
struct Slot(Arc<TcpShared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.ws_active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handshake(
    shared: Arc<TcpShared>,
    listener: Transport,
    stream: TcpStream,
    peer: SocketAddr,
    full: bool,
    slot: Slot,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let deadline = tokio::time::Instant::now() + shared.settings.handshake_timeout;
    if listener == Transport::Wss {
        let Some(acceptor) = shared.tls.as_ref().and_then(|t| t.acceptor()) else {
            warn!("WSS connection without a server certificate");
            return;
        };
        match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                upgrade(shared, listener, tls, peer, local, full, deadline, slot).await;
            }
            Ok(Err(e)) => {
                TransportStats::incr(&shared.stats.handshake_failures);
                debug!(error = %e, "TLS handshake failed");
            }
            Err(_) => {
                TransportStats::incr(&shared.stats.handshake_failures);
                debug!("TLS handshake timed out");
            }
        }
    } else {
        upgrade(shared, listener, stream, peer, local, full, deadline, slot).await;
    }
}

/// Upgrades the connection; on success starts its actor, which runs the connection as a task
/// of its own, so that the handshake's (larger) state is not kept for the connection's
/// lifetime.
#[allow(clippy::too_many_arguments)]
async fn upgrade<S>(
    shared: Arc<TcpShared>,
    listener: Transport,
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    full: bool,
    deadline: tokio::time::Instant,
    slot: Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let check = UpgradeCheck {
        shared: &shared,
        full,
        refused: AtomicBool::new(false),
        over_limit: AtomicBool::new(false),
        reservation: Mutex::new(None),
    };
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let accepting =
        tokio_tungstenite::accept_hdr_async_with_config(stream, &check, Some(shared.ws.protocol));
    let ws = match timeout(remaining, accepting).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            if check.over_limit.load(Ordering::Relaxed) {
                TransportStats::incr(&shared.stats.connections_refused);
            }
            if !check.refused.load(Ordering::Relaxed) {
                TransportStats::incr(&shared.stats.handshake_failures);
            }
            debug!(error = %e, "WebSocket upgrade failed or refused");
            return;
        }
        Err(_) => {
            TransportStats::incr(&shared.stats.handshake_failures);
            debug!("WebSocket upgrade timed out");
            return;
        }
    };
    let reservation = check
        .reservation
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    // Without a reservation (impossible after a 101: the callback answered it) the plain
    // limit check still applies.
    let registered = match reservation {
        Some(reservation) => reservation.register(listener, peer),
        None => shared.register(&mut shared.lock(), listener, peer),
    };
    let Some((id, channels)) = registered else {
        TransportStats::incr(&shared.stats.connections_refused);
        warn!("max_connections reached after the upgrade; closing");
        connection::refuse(ws).await;
        return;
    };
    debug!(connection = %id, "WebSocket connection accepted");
    let span = debug_span!("conn", transport = %listener, connection = %id, %peer);
    let activity = Arc::new(Activity::new());
    let io_activity = Arc::clone(&activity);
    let io_shared = Arc::clone(&shared);
    let run = async move {
        let _slot = slot;
        connection::run(
            io_shared,
            listener,
            id,
            peer,
            local,
            ws,
            channels,
            &io_activity,
        )
        .await;
    };
    super::actor::spawn(
        shared,
        listener,
        id,
        peer,
        activity,
        Box::pin(run.instrument(span)),
    )
    .await;
}

/// The checks made on the upgrade request. `refused` records an HTTP refusal so it is not
/// also counted as a handshake failure, `over_limit` one for the connection limit; an accepted
/// request leaves its connection slot in `reservation`.
struct UpgradeCheck<'a> {
    shared: &'a Arc<TcpShared>,
    full: bool,
    refused: AtomicBool,
    over_limit: AtomicBool,
    reservation: Mutex<Option<Reservation>>,
}

impl Callback for &UpgradeCheck<'_> {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        let verdict = verdict(self, request).and_then(|()| {
            // The last check, made just before answering 101: a slot of its own.
            let reservation = Reservation::take(self.shared).ok_or(TOO_MANY)?;
            *self
                .reservation
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(reservation);
            Ok(())
        });
        match verdict {
            Ok(()) => {
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(SUBPROTOCOL),
                );
                Ok(response)
            }
            Err((status, why)) => {
                self.refused.store(true, Ordering::Relaxed);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    self.over_limit.store(true, Ordering::Relaxed);
                }
                TransportStats::incr(&self.shared.stats.upgrades_refused);
                debug!(%status, why, "WebSocket upgrade refused");
                let mut refusal = ErrorResponse::new(Some(why.to_owned()));
                *refusal.status_mut() = status;
                Err(refusal)
            }
        }
    }
}

/// The refusal for a full listener or transport.
const TOO_MANY: (StatusCode, &str) = (
    StatusCode::SERVICE_UNAVAILABLE,
    "too many WebSocket connections",
);

/// Accepts the upgrade, or names the HTTP status and reason to refuse it with.
fn verdict(check: &UpgradeCheck<'_>, request: &Request) -> Result<(), (StatusCode, &'static str)> {
    if check.full {
        return Err(TOO_MANY);
    }
    let offers_sip = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offers_sip {
        return Err((
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must include sip",
        ));
    }
    let allowed_origins = &check.shared.ws.allowed_origins;
    if !allowed_origins.is_empty() {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let allowed = origin.is_some_and(|o| allowed_origins.iter().any(|a| a == o));
        if !allowed {
            return Err((StatusCode::FORBIDDEN, "Origin not allowed"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
