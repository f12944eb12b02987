//! One TCP or TLS connection: a reader feeding a [`StreamFramer`] and a writer draining the send
//! queue, run together in one task. The code is generic over the stream halves, so a TLS
//! connection (after its handshake) runs exactly like a TCP one.
//!
//! - The reader delivers each framed message, answers a CRLFCRLF ping with a CRLF pong (RFC 5626
//!   §4.4.1), and ends on EOF, a read error or a framing error.
//! - The writer takes everything queued (up to [`COALESCE_MAX`] messages), writes it with one
//!   write, and ends on a write error or a write stalled for [`WRITE_TIMEOUT`], on shutdown, or
//!   when asked to close (after flushing): by request, or by the connection actor's idle timer,
//!   which watches the [`Activity`] both sides record.
//! - Whichever ends first ends the connection, except after a too-large message: then the
//!   writer gets up to the linger time to send the answer (a 513), the write side is shut down
//!   (FIN) and input is discarded meanwhile, so that closing does not reset the connection
//!   before the peer has read the answer.
//!
//! When the future ends, the connection's actor unregisters it and delivers `ConnectionClosed`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sipmesh_protocol::framing::{Frame, FramingError, StreamFramer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{Instrument, debug, debug_span, trace, warn};

use super::{Channels, CloseReason, TcpShared, close_requested};
use crate::transport::activity::Activity;
use crate::transport::{
    ConnectionId, Inbound, InboundEvent, Transport, TransportStats, set_or_gone,
};

/// Most messages written with one write.
const COALESCE_MAX: usize = 64;

/// Longest a single coalesced write may take before the connection is given up as stuck (the
/// peer stopped reading). 64·T1, the lifetime of a non-INVITE transaction (RFC 3261 §17.1.2.2):
/// anything queued behind a longer stall is useless anyway.
const WRITE_TIMEOUT: Duration = Duration::from_secs(32);

/// The keep-alive pong (RFC 5626 §3.5.1).
const PONG: &[u8] = b"\r\n";

/// Why the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    Eof,
    ReadError,
    FramingError,
    TooLarge,
}

/// An outgoing connection once established.
enum Established {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>, SocketAddr),
}

/// Connects to `peer` and, for TLS, runs the client handshake.
async fn establish(
    shared: &TcpShared,
    transport: Transport,
    peer: SocketAddr,
) -> io::Result<Established> {
    let stream = TcpStream::connect(peer).await?;
    if transport != Transport::Tls {
        return Ok(Established::Tcp(stream));
    }
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let tls = shared
        .client_tls()
        .ok_or_else(|| io::Error::other("no TLS client configuration"))?;
    let stream = crate::transport::tls::connect(&tls.connector(), stream, peer).await?;
    Ok(Established::Tls(Box::new(stream), local))
}

/// Opens an outgoing TCP or TLS connection, then runs it. On failure, drops what was queued
/// for it.
pub(super) async fn connect(
    shared: Arc<TcpShared>,
    transport: Transport,
    id: ConnectionId,
    peer: SocketAddr,
    channels: Channels,
    activity: Arc<Activity>,
) {
    debug!("connecting");
    let mut shutdown = shared.shutdown.clone();
    let mut close = channels.close.clone();
    let connecting = timeout(
        shared.settings.connect_timeout,
        establish(&shared, transport, peer),
    );
    let error = tokio::select! {
        connected = connecting => match connected {
            Ok(Ok(Established::Tcp(stream))) => {
                return run(shared, transport, id, peer, stream, channels, activity).await;
            }
            Ok(Ok(Established::Tls(stream, local))) => {
                let (rd, wr) = tokio::io::split(*stream);
                let conn = Conn { shared: &shared, transport, id, peer, local };
                return conn.run(rd, wr, channels, &activity).await;
            }
            Ok(Err(e)) => e,
            Err(_) => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        },
        _ = close_requested(&mut close) => io::Error::other("closed while connecting"),
        () = set_or_gone(&mut shutdown) => io::Error::other("shut down while connecting"),
    };
    TransportStats::incr(&shared.stats.connect_failures);
    let dropped = channels.rx.len();
    TransportStats::add(
        &shared.stats.no_route,
        u64::try_from(dropped).unwrap_or(u64::MAX),
    );
    warn!(%peer, %transport, error = %error, dropped, "connect failed; queued messages dropped");
}

/// Runs an established plain TCP connection until it ends.
pub(super) async fn run(
    shared: Arc<TcpShared>,
    transport: Transport,
    id: ConnectionId,
    peer: SocketAddr,
    stream: TcpStream,
    channels: Channels,
    activity: Arc<Activity>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let (rd, wr) = stream.into_split();
    let conn = Conn {
        shared: &shared,
        transport,
        id,
        peer,
        local,
    };
    conn.run(rd, wr, channels, &activity).await;
}

/// Runs the server side of the TLS handshake on an accepted connection (bounded by the
/// handshake timeout), then registers and runs the connection.
pub(super) async fn run_tls_accepted(shared: Arc<TcpShared>, peer: SocketAddr, stream: TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let Some(acceptor) = shared.tls.as_ref().and_then(|t| t.acceptor()) else {
        warn!("TLS connection without a server certificate");
        return;
    };
    let handshake = timeout(shared.settings.handshake_timeout, acceptor.accept(stream)).await;
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            TransportStats::incr(&shared.stats.handshake_failures);
            debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            TransportStats::incr(&shared.stats.handshake_failures);
            debug!("TLS handshake timed out");
            return;
        }
    };
    let registered = shared.register(&mut shared.lock(), Transport::Tls, peer);
    let Some((id, channels)) = registered else {
        TransportStats::incr(&shared.stats.connections_refused);
        warn!(%peer, "max_connections reached; TLS connection closed");
        return;
    };
    debug!(connection = %id, "TLS connection established");
    // A task of its own (spawned by the actor), so that the handshake's state is not kept
    // for the connection's lifetime.
    let span = debug_span!("conn", transport = %Transport::Tls, connection = %id, %peer);
    let activity = Arc::new(Activity::new());
    let io_activity = Arc::clone(&activity);
    let io_shared = Arc::clone(&shared);
    let run = async move {
        let (rd, wr) = tokio::io::split(stream);
        let conn = Conn {
            shared: &io_shared,
            transport: Transport::Tls,
            id,
            peer,
            local,
        };
        conn.run(rd, wr, channels, &io_activity).await;
    };
    crate::transport::actor::spawn(
        shared,
        Transport::Tls,
        id,
        peer,
        activity,
        Box::pin(run.instrument(span)),
    )
    .await;
}

/// Reads and drops input until EOF or an error.
async fn discard<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

struct Conn<'a> {
    shared: &'a Arc<TcpShared>,
    transport: Transport,
    id: ConnectionId,
    peer: SocketAddr,
    local: SocketAddr,
}

impl Conn<'_> {
    /// Runs the reader and writer until the connection ends (the actor then reports it
    /// closed).
    async fn run<R, W>(&self, mut rd: R, mut wr: W, channels: Channels, activity: &Activity)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let shared = self.shared;
        let (id, peer) = (self.id, self.peer);
        let Channels {
            mut rx,
            tx,
            mut close,
        } = channels;
        let (wrote_tx, mut wrote_rx) = watch::channel(0u64);
        let mut shutdown = shared.shutdown.clone();
        let conn = self;
        let mut too_large = false;
        {
            let reader = conn.read_loop(&mut rd, &tx, activity);
            let writer = write_loop(
                &mut wr,
                &mut rx,
                &mut close,
                &mut shutdown,
                activity,
                &wrote_tx,
            );
            tokio::pin!(reader, writer);
            tokio::select! {
                end = &mut reader => {
                    debug!(?end, "reader ended");
                    if matches!(end, ReadEnd::TooLarge | ReadEnd::FramingError) {
                        // Answers to messages read before the error (and the 513) are still on their
                        // way from the core: give them the linger time before closing.
                        too_large = true;
                        conn.linger(&mut writer, &mut wrote_rx, end == ReadEnd::TooLarge).await;
                    }
                }
                result = &mut writer => debug!(?result, "writer ended"),
            }
        }
        drop(tx);
        if too_large {
            // Send FIN, then read and discard until the peer closes or the linger time passes:
            // closing with unread input would reset the connection and could destroy the answer
            // before the peer reads it.
            let deadline = Instant::now() + shared.settings.linger;
            let _ = timeout_at(deadline, wr.shutdown()).await;
            let _ = timeout_at(deadline, discard(&mut rd)).await;
        }
        debug!(connection = %id, %peer, "connection I/O ended");
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        rd: &mut R,
        pong: &mpsc::Sender<Bytes>,
        activity: &Activity,
    ) -> ReadEnd {
        let settings = &self.shared.settings;
        let mut framer = StreamFramer::new(settings.max_message_size)
            .lenient_content_length(!settings.require_content_length);
        let mut buf = vec![0u8; settings.read_chunk];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) => return ReadEnd::Eof,
                Ok(n) => n,
                Err(e) => {
                    debug!(error = %e, "read failed");
                    return ReadEnd::ReadError;
                }
            };
            activity.touch();
            framer.push(buf.get(..n).unwrap_or_default());
            loop {
                match framer.next_frame() {
                    Ok(Some(Frame::Message(data))) => self.deliver(data),
                    Ok(Some(Frame::KeepAlivePing)) => {
                        trace!("keep-alive ping");
                        if pong.try_send(Bytes::from_static(PONG)).is_err() {
                            debug!("send queue full; pong dropped");
                        }
                    }
                    Ok(Some(Frame::KeepAlivePong)) => trace!("keep-alive pong"),
                    Ok(None) => break,
                    Err(FramingError::TooLarge { partial, .. }) => {
                        TransportStats::incr(&self.shared.stats.too_large);
                        debug!("message too large");
                        self.shared.sink.deliver(InboundEvent::TooLarge {
                            partial,
                            source: self.peer,
                            local: self.local,
                            transport: self.transport,
                            connection: Some(self.id),
                        });
                        return ReadEnd::TooLarge;
                    }
                    Err(e) => {
                        debug!(error = %e, "framing error");
                        return ReadEnd::FramingError;
                    }
                }
            }
        }
    }

    fn deliver(&self, data: Bytes) {
        trace!(len = data.len(), "message received");
        self.shared.sink.deliver(InboundEvent::Message(Inbound {
            data,
            source: self.peer,
            local: self.local,
            transport: self.transport,
            connection: Some(self.id),
        }));
    }

    /// After a too-large message: let the writer run until it wrote something more (the answer)
    /// or the linger time passed, then ask it to flush and close.
    async fn linger<W>(
        &self,
        writer: &mut std::pin::Pin<&mut W>,
        wrote: &mut watch::Receiver<u64>,
        until_first_write: bool,
    ) where
        W: Future<Output = io::Result<()>>,
    {
        let before = *wrote.borrow_and_update();
        let deadline = Instant::now() + self.shared.settings.linger;
        tokio::select! {
            _ = writer.as_mut() => return,
            () = async {
                if until_first_write {
                    let _ = wrote.wait_for(|n| *n > before).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
        self.shared.close(self.id);
        let _ = timeout_at(deadline, writer.as_mut()).await;
    }
}

/// Writes queued messages, coalescing whatever is queued into one write, until closed.
async fn write_loop<W: AsyncWrite + Unpin>(
    wr: &mut W,
    rx: &mut mpsc::Receiver<Bytes>,
    close: &mut watch::Receiver<CloseReason>,
    shutdown: &mut watch::Receiver<bool>,
    activity: &Activity,
    wrote: &watch::Sender<u64>,
) -> io::Result<()> {
    let mut batch: Vec<Bytes> = Vec::with_capacity(COALESCE_MAX);
    loop {
        batch.clear();
        let closing = tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, COALESCE_MAX) => n == 0,
            _ = close_requested(close) => true,
            () = set_or_gone(shutdown) => true,
        };
        if closing {
            while batch.len() < COALESCE_MAX {
                match rx.try_recv() {
                    Ok(b) => batch.push(b),
                    Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            timeout(WRITE_TIMEOUT, write_batch(wr, &batch))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write stalled"))??;
            activity.touch();
            wrote.send_modify(|n| *n += 1);
            trace!(count = batch.len(), "messages written");
        }
        if closing {
            return Ok(());
        }
    }
}

/// Writes a batch, then flushes (a no-op on TCP; on TLS it pushes the records out).
async fn write_batch<W: AsyncWrite + Unpin>(wr: &mut W, batch: &[Bytes]) -> io::Result<()> {
    match batch {
        [one] => wr.write_all(one).await?,
        many => {
            let total = many.iter().map(Bytes::len).sum();
            let mut joined = BytesMut::with_capacity(total);
            for b in many {
                joined.extend_from_slice(b);
            }
            wr.write_all(&joined).await?;
        }
    }
    wr.flush().await
}
