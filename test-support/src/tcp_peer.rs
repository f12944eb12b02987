//! A raw SIP endpoint on a std `TcpStream`: send hand-made bytes, read back messages framed by
//! Content-Length (RFC 3261 §18.3), and notice when the node closes the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::raw_message::find;
use crate::{HarnessError, RawMessage, RawRequest, free_port};

/// One TCP connection to the node.
#[derive(Debug)]
pub struct TcpPeer {
    /// The connection.
    stream: TcpStream,
    /// Its local address.
    local: SocketAddr,
    /// Octets read but not yet framed.
    buf: Vec<u8>,
    /// The node closed (or reset) the connection.
    closed: bool,
}

impl TcpPeer {
    /// Connects to `to` within `wait`.
    ///
    /// To a loopback `to`, the connection comes from a port [`free_port`] picks on `to`'s own
    /// address, not from the kernel's ephemeral range on 127.0.0.1: Linux hands one ephemeral
    /// port to several outgoing connections with different destinations, so a test that later
    /// listens on its peer's address (a UA the node dials, `cluster_redial`) could find it
    /// taken by any other process's connection (`Address already in use`). The socket has
    /// `SO_REUSEADDR`, so listening on the same address after it closed never waits for
    /// `TIME_WAIT`.
    pub fn connect(to: SocketAddr, wait: Duration) -> Result<Self, HarnessError> {
        let stream = if to.ip().is_loopback() {
            Self::connect_from(SocketAddr::new(to.ip(), free_port(to.ip())), to, wait)?
        } else {
            TcpStream::connect_timeout(&to, wait)
                .map_err(|e| HarnessError::io(format!("connecting to {to}"), e))?
        };
        let local = stream
            .local_addr()
            .map_err(|e| HarnessError::io("reading the TCP socket's address", e))?;
        // Best effort: small requests go out at once.
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            local,
            buf: Vec::new(),
            closed: false,
        })
    }

    /// A stream from `local` (bound with `SO_REUSEADDR`) to `to`, connected within `wait`.
    fn connect_from(
        local: SocketAddr,
        to: SocketAddr,
        wait: Duration,
    ) -> Result<TcpStream, HarnessError> {
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| HarnessError::io("creating a TCP socket", e))?;
        socket
            .set_reuse_address(true)
            .map_err(|e| HarnessError::io("setting SO_REUSEADDR", e))?;
        socket
            .bind(&local.into())
            .map_err(|e| HarnessError::io(format!("binding {local}"), e))?;
        socket
            .connect_timeout(&to.into(), wait)
            .map_err(|e| HarnessError::io(format!("connecting to {to} from {local}"), e))?;
        Ok(socket.into())
    }

    /// Waits up to `wait` for a connection on `listener` (a UA the node dials) and wraps it.
    pub fn accept(listener: &std::net::TcpListener, wait: Duration) -> Result<Self, HarnessError> {
        let deadline = Instant::now() + wait;
        listener
            .set_nonblocking(true)
            .map_err(|e| HarnessError::io("making the listener non-blocking", e))?;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(HarnessError::io("accepting a connection", e)),
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| HarnessError::io("making the connection blocking", e))?;
        let local = stream
            .local_addr()
            .map_err(|e| HarnessError::io("reading the TCP socket's address", e))?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            local,
            buf: Vec::new(),
            closed: false,
        })
    }

    /// The connection's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Writes `data` (all of it).
    pub fn send(&mut self, data: &[u8]) -> Result<(), HarnessError> {
        self.stream
            .write_all(data)
            .map_err(|e| HarnessError::io(format!("writing {} octets", data.len()), e))
    }

    /// The next complete message; `None` after `wait` or once the connection is closed.
    pub fn recv(&mut self, wait: Duration) -> Option<RawMessage> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(msg) = self.take_message() {
                return Some(msg);
            }
            if self.closed || !self.fill(deadline) {
                return None;
            }
        }
    }

    /// The next message that is not a provisional response; `None` after `wait`.
    pub fn recv_final(&mut self, wait: Duration) -> Option<RawMessage> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = self.recv(left)?;
            if !msg.is_provisional() {
                return Some(msg);
            }
        }
    }

    /// Sends `request` and returns the first non-provisional answer within `wait`.
    pub fn request(
        &mut self,
        request: &RawRequest,
        wait: Duration,
    ) -> Result<Option<RawMessage>, HarnessError> {
        self.send(&request.to_bytes())?;
        Ok(self.recv_final(wait))
    }

    /// Whether the node has closed the connection (as far as has been read).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Reads (keeping what arrives for [`Self::recv`]) until the node closes the connection or
    /// `wait` passes; true when it closed.
    pub fn wait_closed(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.closed {
            if !self.fill(deadline) {
                break;
            }
        }
        self.closed
    }

    /// Reads once, until `deadline`; false on timeout or when the connection is closed.
    fn fill(&mut self, deadline: Instant) -> bool {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.closed = true;
                false
            }
            Ok(n) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(_) => {
                // Reset or similar: the node is gone from this connection.
                self.closed = true;
                false
            }
        }
    }

    /// Frames one message off the buffer (skipping CRLF keep-alives, RFC 5626 §3.5.1).
    fn take_message(&mut self) -> Option<RawMessage> {
        let skip = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        self.buf.drain(..skip);
        let head_end = find(&self.buf, b"\r\n\r\n")? + 4;
        let head = RawMessage::parse(self.buf.get(..head_end)?)?;
        let body_len: usize = head
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let total = head_end.checked_add(body_len)?;
        if self.buf.len() < total {
            return None;
        }
        let bytes: Vec<u8> = self.buf.drain(..total).collect();
        RawMessage::parse(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn frames_messages_and_sees_close() {
        let ip = crate::test_ip("tcp_peer::frames");
        let listener = TcpListener::bind((ip, 0)).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.write_all(
                b"\r\n\r\nSIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\nSIP/2.0 200 OK\r\n",
            )
            .expect("write");
            std::thread::sleep(Duration::from_millis(50));
            conn.write_all(b"Content-Length: 3\r\n\r\nabc")
                .expect("write");
        });
        let mut peer = TcpPeer::connect(addr, Duration::from_secs(2)).expect("connect");
        let got = peer.recv_final(Duration::from_secs(2)).expect("final");
        assert_eq!(got.status(), Some(200));
        assert_eq!(got.body(), b"abc");
        server.join().expect("server thread");
        assert!(peer.wait_closed(Duration::from_secs(2)));
        assert!(peer.recv(Duration::from_millis(10)).is_none());
    }
}
