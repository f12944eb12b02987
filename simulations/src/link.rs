//! An agent's transport: a UDP socket (any node can be addressed), or one TCP or WebSocket
//! connection to one node (an RFC 5626 flow: the agent is reachable only over it). Each link
//! runs a reader task that hands every message to the agent's [`Endpoint`]; stream links also
//! run a writer task fed by a channel, and raise `closed` when the connection ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sipmesh_protocol::framing::{Frame, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::endpoint::Endpoint;
use crate::error::OpFailure;

/// How long a connect or WebSocket upgrade may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest SIP message read from a stream.
const MAX_MESSAGE: usize = 64 * 1024;

/// Where an answer to a received request goes.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Back to the sender's address over this UDP socket.
    Udp(Arc<UdpSocket>, SocketAddr),
    /// Back over the connection it came on.
    Stream(mpsc::UnboundedSender<Bytes>),
    /// Nowhere (unit tests).
    Discard,
}

impl Reply {
    /// Sends `bytes`; errors are ignored (the peer retransmits or the op times out).
    pub fn send(&self, bytes: Bytes) {
        match self {
            Self::Udp(socket, to) => {
                let _ = socket.try_send_to(&bytes, *to);
            }
            Self::Stream(tx) => {
                let _ = tx.send(bytes);
            }
            Self::Discard => {}
        }
    }
}

/// A connection's end, shared between its reader task and the agent.
#[derive(Debug, Default)]
pub struct Closed {
    flag: AtomicBool,
    notify: Notify,
}

impl Closed {
    /// Marks the connection closed and wakes the waiter.
    pub fn close(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Waits until the connection ends.
    pub async fn wait(&self) {
        while !self.is_closed() {
            self.notify.notified().await;
        }
    }
}

/// An open link.
#[derive(Debug, Clone)]
pub enum Link {
    /// A UDP socket.
    Udp(Arc<UdpSocket>),
    /// A TCP or WebSocket connection.
    Stream {
        /// Feeds the writer task.
        tx: mpsc::UnboundedSender<Bytes>,
        /// Raised when the connection ends.
        closed: Arc<Closed>,
    },
}

impl Link {
    /// Sends `bytes`: to `to` over UDP, over the connection otherwise.
    pub fn send(&self, bytes: Bytes, to: SocketAddr) -> Result<(), OpFailure> {
        match self {
            Self::Udp(socket) => socket
                .try_send_to(&bytes, to)
                .map(|_| ())
                .map_err(|_| OpFailure::Send),
            Self::Stream { tx, closed } => {
                if closed.is_closed() {
                    return Err(OpFailure::NoConnection);
                }
                tx.send(bytes).map_err(|_| OpFailure::NoConnection)
            }
        }
    }

    /// Whether requests need retransmission (RFC 3261 §17.1.2.2 Timer E applies to UDP only).
    pub fn is_unreliable(&self) -> bool {
        matches!(self, Self::Udp(_))
    }

    /// Whether a stream link's connection has ended (never for UDP).
    pub fn is_closed(&self) -> bool {
        match self {
            Self::Udp(_) => false,
            Self::Stream { closed, .. } => closed.is_closed(),
        }
    }
}

/// Binds a UDP socket on `ip` and starts its reader; returns the link and its local address.
pub async fn open_udp(
    ip: std::net::IpAddr,
    endpoint: Arc<Endpoint>,
) -> std::io::Result<(Link, SocketAddr)> {
    let socket = Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0)).await?);
    let local = socket.local_addr()?;
    let reader = Arc::clone(&socket);
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_MESSAGE];
        while let Ok((n, from)) = reader.recv_from(&mut buf).await {
            let bytes = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
            endpoint.dispatch(bytes, &Reply::Udp(Arc::clone(&reader), from));
        }
    });
    Ok((Link::Udp(socket), local))
}

/// Connects over TCP to `addr` and starts the reader and writer; returns the link and the
/// local address.
pub async fn open_tcp(
    addr: SocketAddr,
    endpoint: Arc<Endpoint>,
) -> Result<(Link, SocketAddr), OpFailure> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| OpFailure::Timeout)?
        .map_err(|_| OpFailure::NoConnection)?;
    let local = stream.local_addr().map_err(|_| OpFailure::NoConnection)?;
    let (mut read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let closed = Arc::new(Closed::default());
    let writer_closed = Arc::clone(&closed);
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        writer_closed.close();
    });
    let reader_closed = Arc::clone(&closed);
    let reply = Reply::Stream(tx.clone());
    tokio::spawn(async move {
        let mut framer = StreamFramer::new(MAX_MESSAGE);
        let mut buf = vec![0u8; 16 * 1024];
        'read: loop {
            let n = match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            framer.push(buf.get(..n).unwrap_or_default());
            loop {
                match framer.next_frame() {
                    Ok(Some(Frame::Message(bytes))) => endpoint.dispatch(bytes, &reply),
                    Ok(Some(Frame::KeepAlivePing)) => reply.send(Bytes::from_static(b"\r\n")),
                    Ok(Some(Frame::KeepAlivePong)) => {}
                    Ok(None) => break,
                    Err(_) => break 'read,
                }
            }
        }
        reader_closed.close();
    });
    Ok((Link::Stream { tx, closed }, local))
}

/// Opens a WebSocket (subprotocol `sip`, RFC 7118) to `addr` and starts the reader and
/// writer.
pub async fn open_ws(
    addr: SocketAddr,
    endpoint: Arc<Endpoint>,
) -> Result<(Link, SocketAddr), OpFailure> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| OpFailure::Timeout)?
        .map_err(|_| OpFailure::NoConnection)?;
    let local = stream.local_addr().map_err(|_| OpFailure::NoConnection)?;
    let mut request = format!("ws://{addr}/")
        .into_client_request()
        .map_err(|_| OpFailure::NoConnection)?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let (ws, _) = timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .map_err(|_| OpFailure::Timeout)?
    .map_err(|_| OpFailure::NoConnection)?;
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let closed = Arc::new(Closed::default());
    let writer_closed = Arc::clone(&closed);
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if sink.send(WsMessage::text(text)).await.is_err() {
                break;
            }
        }
        writer_closed.close();
    });
    let reader_closed = Arc::clone(&closed);
    let reply = Reply::Stream(tx.clone());
    tokio::spawn(async move {
        while let Some(Ok(frame)) = source.next().await {
            match frame {
                WsMessage::Text(text) => {
                    endpoint.dispatch(Bytes::copy_from_slice(text.as_bytes()), &reply);
                }
                WsMessage::Binary(bytes) => endpoint.dispatch(bytes, &reply),
                WsMessage::Close(_) => break,
                _ => {}
            }
        }
        reader_closed.close();
    });
    Ok((Link::Stream { tx, closed }, local))
}
