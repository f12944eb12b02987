//! UDP sockets: one reader task and one writer task per bound socket.
//!
//! The reader waits for readiness and then drains the socket in batches (`recvmmsg` on Linux),
//! delivering each datagram as one message (RFC 3261 §18.3: a datagram carries exactly one
//! message, so nothing is framed here). Datagrams longer than `max_message_size` are delivered
//! as [`InboundEvent::TooLarge`] with their first `max_message_size` octets, so the core can
//! answer 513.
//!
//! The writer owns a bounded queue; it takes everything queued (up to one batch) and hands it
//! to the kernel with one `sendmmsg`. A full queue drops the message in
//! [`UdpSender::send`] without blocking. While the queue is empty, [`UdpSender::send`] hands a
//! datagram to the kernel itself (`try_send_to`), sparing the hop to the writer.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, debug_span, trace, warn};

use super::{
    Inbound, InboundEvent, InboundSink, Transport, TransportConfig, TransportError, TransportStats,
};

/// The sending side of one UDP socket.
#[derive(Debug, Clone)]
pub(crate) struct UdpSender {
    local: SocketAddr,
    tx: mpsc::Sender<(SocketAddr, Bytes)>,
    /// The socket, for direct sends (None: always through the writer).
    direct: Option<Arc<UdpSocket>>,
    /// Datagrams queued for the writer and not yet handed to the kernel: a direct send is
    /// only tried at zero, so it never overtakes a queued datagram.
    queued: Arc<AtomicUsize>,
}

impl UdpSender {
    /// The socket's bound address.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Sends one datagram: straight to the kernel when nothing is queued and the socket is
    /// writable, else queued for the writer; drops it (with a warning and a count) if the
    /// queue is full.
    pub(crate) fn send(&self, dest: SocketAddr, payload: Bytes, stats: &TransportStats) {
        if let Some(socket) = &self.direct
            && self.queued.load(Ordering::Acquire) == 0
        {
            match socket.try_send_to(&payload, dest) {
                Ok(_) => {
                    trace!(peer = %dest, "datagram sent directly");
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    TransportStats::add(&stats.udp_send_errors, 1);
                    debug!(peer = %dest, error = %e, "UDP send failed; datagram dropped");
                    return;
                }
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let queued = self.tx.try_send((dest, payload));
        if queued.is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        match queued {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                TransportStats::incr(&stats.udp_queue_full);
                warn!(local = %self.local, peer = %dest, "UDP send queue full; datagram dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                TransportStats::incr(&stats.no_route);
                debug!(local = %self.local, peer = %dest, "UDP socket closed; datagram dropped");
            }
        }
    }
}

/// Binds a UDP socket on `addr` and spawns its reader and writer into `tasks`, on `runtime`
/// (whose I/O driver then owns the socket, so a datagram wakes that runtime's thread only).
pub(crate) fn spawn(
    addr: SocketAddr,
    config: &TransportConfig,
    sink: Arc<dyn InboundSink>,
    stats: Arc<TransportStats>,
    shutdown: watch::Receiver<bool>,
    (tasks, runtime): (&mut JoinSet<()>, &Handle),
) -> Result<UdpSender, TransportError> {
    // The socket registers with the reactor of the runtime entered here.
    let _entered = runtime.enter();
    let bind_err = |source| TransportError::Bind {
        transport: Transport::Udp,
        addr,
        source,
    };
    let socket = Arc::new(bind(addr, config.udp_socket_buffer).map_err(bind_err)?);
    let local = socket.local_addr().map_err(bind_err)?;
    #[cfg(target_os = "linux")]
    if local.ip().is_unspecified() {
        use std::os::fd::AsRawFd;
        super::mmsg::enable_packet_info(socket.as_raw_fd(), local.is_ipv6()).map_err(bind_err)?;
    }
    let (tx, rx) = mpsc::channel(config.udp_send_queue);
    let queued = Arc::new(AtomicUsize::new(0));
    let direct = config.udp_direct_send.then(|| Arc::clone(&socket));
    let span = debug_span!("udp", %local);
    let reader = Reader {
        socket: Arc::clone(&socket),
        local,
        max_message_size: config.max_message_size,
        batch: config.udp_batch,
        sink,
        stats: Arc::clone(&stats),
    };
    tasks.spawn_on(
        reader.run(shutdown.clone()).instrument(span.clone()),
        runtime,
    );
    tasks.spawn_on(
        write_loop(
            socket,
            (rx, Arc::clone(&queued)),
            config.udp_batch,
            stats,
            shutdown,
        )
        .instrument(span),
        runtime,
    );
    debug!(%local, "UDP socket bound");
    Ok(UdpSender {
        local,
        tx,
        direct,
        queued,
    })
}

/// Creates the socket with socket2 so that IPv6 sockets are v6-only and buffers are large.
fn bind(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel silently caps these at net.core.{r,w}mem_max.
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        debug!(error = %e, "SO_RCVBUF not set");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer) {
        debug!(error = %e, "SO_SNDBUF not set");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

struct Reader {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    max_message_size: usize,
    batch: usize,
    sink: Arc<dyn InboundSink>,
    stats: Arc<TransportStats>,
}

impl Reader {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut batch = Batch::new(self.batch, self.max_message_size);
        loop {
            tokio::select! {
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        warn!(error = %e, "UDP socket failed; reader stops");
                        return;
                    }
                }
                _ = super::set_or_gone(&mut shutdown) => return,
            }
            match self
                .socket
                .try_io(Interest::READABLE, || batch.recv(&self.socket))
            {
                Ok(()) => self.deliver(&batch),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // ICMP errors (e.g. port unreachable for an earlier send) surface here; they
                // concern one peer, not the socket.
                Err(e) => debug!(error = %e, "UDP receive error"),
            }
        }
    }

    fn deliver(&self, batch: &Batch) {
        for (data, truncated, source, destination) in batch.received() {
            let Some(source) = source else { continue };
            // On a wildcard-bound socket, the address the datagram was sent to.
            let local = destination.map_or(self.local, |ip| SocketAddr::new(ip, self.local.port()));
            trace!(peer = %source, len = data.len(), "datagram received");
            let data = Bytes::copy_from_slice(data);
            let event = if truncated || data.len() > self.max_message_size {
                TransportStats::incr(&self.stats.too_large);
                debug!(peer = %source, "datagram larger than max_message_size");
                InboundEvent::TooLarge {
                    partial: data,
                    source,
                    local,
                    transport: Transport::Udp,
                    connection: None,
                }
            } else {
                InboundEvent::Message(Inbound {
                    data,
                    source,
                    local,
                    transport: Transport::Udp,
                    connection: None,
                })
            };
            self.sink.deliver(event);
        }
    }
}

/// Receive buffers: `recvmmsg` batches on Linux, one `recv_from` elsewhere.
#[cfg(target_os = "linux")]
struct Batch(super::mmsg::RecvBatch);

#[cfg(target_os = "linux")]
impl Batch {
    fn new(batch: usize, max_message_size: usize) -> Self {
        Self(super::mmsg::RecvBatch::new(batch, max_message_size))
    }

    fn recv(&mut self, socket: &UdpSocket) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        super::mmsg::recv(socket.as_raw_fd(), &mut self.0).map(drop)
    }

    fn received(
        &self,
    ) -> impl Iterator<Item = (&[u8], bool, Option<SocketAddr>, Option<std::net::IpAddr>)> {
        self.0
            .received()
            .map(|r| (r.data, r.truncated, r.source, r.destination))
    }
}

#[cfg(not(target_os = "linux"))]
struct Batch {
    buf: Vec<u8>,
    last: Option<(usize, SocketAddr)>,
}

#[cfg(not(target_os = "linux"))]
impl Batch {
    fn new(_batch: usize, max_message_size: usize) -> Self {
        // One spare octet tells a datagram of exactly the limit from a longer one.
        Self {
            buf: vec![0; max_message_size.saturating_add(1)],
            last: None,
        }
    }

    fn recv(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.last = None;
        let (len, source) = socket.try_recv_from(&mut self.buf)?;
        self.last = Some((len, source));
        Ok(())
    }

    fn received(
        &self,
    ) -> impl Iterator<Item = (&[u8], bool, Option<SocketAddr>, Option<std::net::IpAddr>)> {
        self.last.iter().map(|&(len, source)| {
            let data = self.buf.get(..len).unwrap_or_default();
            (data, len >= self.buf.len(), Some(source), None)
        })
    }
}

async fn write_loop(
    socket: Arc<UdpSocket>,
    (mut rx, queued): (mpsc::Receiver<(SocketAddr, Bytes)>, Arc<AtomicUsize>),
    batch: usize,
    stats: Arc<TransportStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pending: Vec<(SocketAddr, Bytes)> = Vec::with_capacity(batch);
    loop {
        pending.clear();
        tokio::select! {
            n = rx.recv_many(&mut pending, batch) => if n == 0 { return },
            _ = super::set_or_gone(&mut shutdown) => return,
        }
        let mut sent = 0;
        while sent < pending.len() {
            let rest = pending.get(sent..).unwrap_or_default();
            if let Err(e) = socket.writable().await {
                warn!(error = %e, "UDP socket failed; writer stops");
                return;
            }
            match socket.try_io(Interest::WRITABLE, || send_batch(&socket, rest)) {
                Ok(n) => {
                    trace!(count = n, "datagrams sent");
                    sent += n.max(1);
                    queued.fetch_sub(n.max(1), Ordering::AcqRel);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // The first datagram of `rest` was refused (e.g. EMSGSIZE, or an ICMP error
                    // from an earlier send); drop it and go on with the others.
                    TransportStats::add(&stats.udp_send_errors, 1);
                    if let Some((peer, _)) = rest.first() {
                        debug!(%peer, error = %e, "UDP send failed; datagram dropped");
                    }
                    sent += 1;
                    queued.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn send_batch(socket: &UdpSocket, batch: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    super::mmsg::send(socket.as_raw_fd(), batch)
}

#[cfg(not(target_os = "linux"))]
fn send_batch(socket: &UdpSocket, batch: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    match batch.first() {
        Some((addr, payload)) => socket.try_send_to(payload, *addr).map(|_| 1),
        None => Ok(0),
    }
}
