//! One WebSocket connection (WS or WSS): one SIP message per data frame (RFC 7118 §5.1).
//!
//! A single loop reads frames, writes queued messages, pings and watches the deadlines:
//! - a text or binary message is delivered as one [`Inbound`]; a message that is exactly
//!   CRLFCRLF is a keep-alive ping answered with CRLF (RFC 5626 §4.4.1 applied to WS), and a
//!   message of only CRLF is a pong, ignored;
//! - a text frame that is not UTF-8 closes the connection with 1007 (RFC 6455 §8.1), a frame or
//!   message over `max_message_size` with 1009;
//! - queued messages go out as text frames (binary when not UTF-8), a batch per flush;
//! - every `ping_interval` a ping is sent; when nothing at all arrived since the previous ping,
//!   the peer is gone and the connection is closed;
//! - a close request (or shutdown) flushes the queue and sends a close frame; the connection
//!   actor's idle timer asks for one when nothing was read or written for the idle timeout
//!   (close code 1001, "idle").
//!
//! When the future ends, the connection's actor unregisters it and delivers `ConnectionClosed`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tracing::{debug, trace};

use crate::transport::activity::Activity;
use crate::transport::tcp::{Channels, CloseReason, TcpShared, close_requested};
use crate::transport::{
    ConnectionId, Inbound, InboundEvent, Transport, TransportStats, set_or_gone,
};

/// Most queued messages written per flush.
const COALESCE_MAX: usize = 64;

/// Longest a flush (or the closing handshake) may take before the peer is given up as stuck;
/// 64·T1 as for TCP (RFC 3261 §17.1.2.2).
const WRITE_TIMEOUT: Duration = Duration::from_secs(32);

/// How long we wait for our close frame to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The keep-alive ping and pong (RFC 5626 §3.5.1).
const PING: &[u8] = b"\r\n\r\n";
const PONG: &[u8] = b"\r\n";

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    NoPong,
    ReadError,
    WriteError,
    Requested,
}

/// Closes an upgraded connection that cannot be registered: 1013 "try again later".
pub(super) async fn refuse<S>(mut ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Again,
        reason: Utf8Bytes::from_static("too many connections"),
    };
    let _ = timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
}

/// Runs an upgraded connection until it ends.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<S>(
    shared: Arc<TcpShared>,
    transport: Transport,
    id: ConnectionId,
    peer: SocketAddr,
    local: SocketAddr,
    mut ws: WebSocketStream<S>,
    channels: Channels,
    activity: &Activity,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Channels {
        mut rx,
        tx,
        mut close,
    } = channels;
    // Pongs go straight onto the socket; the queue sender is not needed.
    drop(tx);
    let conn = Conn {
        shared: &shared,
        transport,
        id,
        peer,
        local,
    };
    let mut shutdown = shared.shutdown.clone();
    let period = shared.ws.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard_since_ping = true;
    // Grows on first use: idle connections keep no batch buffer.
    let mut batch: Vec<Bytes> = Vec::new();
    let end = loop {
        // Unbiased: a peer flooding us with frames must not starve our writes.
        tokio::select! {
            frame = ws.next() => {
                activity.touch();
                heard_since_ping = true;
                match frame {
                    None => break End::Closed,
                    Some(Ok(message)) => {
                        if let Some(reply) = conn.on_message(message)
                            && conn.write(&mut ws, [reply]).await.is_err() {
                                break End::WriteError;
                            }
                    }
                    Some(Err(e)) => {
                        conn.on_error(&mut ws, e).await;
                        break End::ReadError;
                    }
                }
            }
            n = rx.recv_many(&mut batch, COALESCE_MAX) => {
                if n == 0 {
                    // Every sender is gone: the connection was unregistered (its actor
                    // failed). Close properly, as for a close request.
                    conn.drain_and_close(&mut ws, &mut rx, CloseCode::Normal, "").await;
                    break End::Requested;
                }
                if conn.write(&mut ws, batch.drain(..)).await.is_err() {
                    break End::WriteError;
                }
                activity.touch();
            }
            _ = ping.tick() => {
                if !heard_since_ping {
                    debug!("no answer to the last ping");
                    break End::NoPong;
                }
                heard_since_ping = false;
                trace!("ping");
                if timeout(WRITE_TIMEOUT, ws.send(Message::Ping(Bytes::new()))).await.is_err() {
                    break End::WriteError;
                }
            }
            reason = close_requested(&mut close) => {
                let (code, why) = match reason {
                    CloseReason::Idle => (CloseCode::Away, "idle"),
                    CloseReason::Open | CloseReason::Requested => (CloseCode::Normal, ""),
                };
                conn.drain_and_close(&mut ws, &mut rx, code, why).await;
                break End::Requested;
            }
            () = set_or_gone(&mut shutdown) => {
                conn.drain_and_close(&mut ws, &mut rx, CloseCode::Away, "").await;
                break End::Requested;
            }
        }
    };
    debug!(?end, "WebSocket connection ended");
    if end == End::NoPong {
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: Utf8Bytes::from_static("idle"),
        };
        let _ = timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
    }
    debug!(connection = %id, %peer, "WebSocket I/O ended");
}

struct Conn<'a> {
    shared: &'a TcpShared,
    transport: Transport,
    id: ConnectionId,
    peer: SocketAddr,
    local: SocketAddr,
}

impl Conn<'_> {
    /// Handles one received message; returns an immediate reply (a keep-alive pong).
    fn on_message(&self, message: Message) -> Option<Bytes> {
        let data = match message {
            Message::Text(text) => Bytes::from(text),
            Message::Binary(data) => data,
            // tungstenite answers pings itself and handles the closing handshake; the stream
            // then ends.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {
                return None;
            }
        };
        if data.as_ref() == PING {
            trace!("keep-alive ping");
            return Some(Bytes::from_static(PONG));
        }
        if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            trace!("keep-alive pong or empty message");
            return None;
        }
        trace!(len = data.len(), "message received");
        self.shared.sink.deliver(InboundEvent::Message(Inbound {
            data,
            source: self.peer,
            local: self.local,
            transport: self.transport,
            connection: Some(self.id),
        }));
        None
    }

    /// Answers a read error with the matching close code where the protocol defines one.
    async fn on_error<S>(&self, ws: &mut WebSocketStream<S>, error: WsError)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (code, reason) = match &error {
            WsError::Utf8(_) => (CloseCode::Invalid, "text frame is not UTF-8"),
            WsError::Capacity(_) => {
                TransportStats::incr(&self.shared.stats.too_large);
                (CloseCode::Size, "message too large")
            }
            WsError::Protocol(_) => (CloseCode::Protocol, "protocol error"),
            _ => {
                debug!(error = %error, "read failed");
                return;
            }
        };
        debug!(error = %error, code = u16::from(code), "closing after a bad frame");
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
    }

    /// Writes messages as frames and flushes once.
    async fn write<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        messages: impl IntoIterator<Item = Bytes>,
    ) -> Result<(), WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let writing = async {
            let mut count = 0usize;
            for data in messages {
                let message = match Utf8Bytes::try_from(data.clone()) {
                    Ok(text) => Message::Text(text),
                    Err(_) => Message::Binary(data),
                };
                ws.feed(message).await?;
                count += 1;
            }
            ws.flush().await?;
            trace!(count, "messages written");
            Ok(())
        };
        match timeout(WRITE_TIMEOUT, writing).await {
            Ok(result) => result,
            Err(_) => {
                debug!("write stalled");
                Err(WsError::Io(std::io::ErrorKind::TimedOut.into()))
            }
        }
    }

    /// Writes what is queued, then sends a close frame.
    async fn drain_and_close<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        rx: &mut mpsc::Receiver<Bytes>,
        code: CloseCode,
        reason: &'static str,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut rest = Vec::new();
        while let Ok(b) = rx.try_recv() {
            rest.push(b);
        }
        if !rest.is_empty() && self.write(ws, rest).await.is_err() {
            return;
        }
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
    }
}
