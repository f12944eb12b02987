//! A raw SIP endpoint on a std `UdpSocket`: send hand-made bytes, read back whole datagrams.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::{HarnessError, RawMessage, RawRequest};

/// The largest datagram read back (the node never sends more over UDP).
const MAX_DATAGRAM: usize = 65_535;

/// A UDP socket bound to a test address, used as a hand-driven UAC or UAS.
#[derive(Debug)]
pub struct UdpPeer {
    /// The socket.
    socket: UdpSocket,
    /// Its bound address.
    local: SocketAddr,
}

impl UdpPeer {
    /// Binds to a free port on `ip`.
    pub fn bind(ip: IpAddr) -> Result<Self, HarnessError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
            .map_err(|e| HarnessError::io(format!("binding UDP on {ip}"), e))?;
        let local = socket
            .local_addr()
            .map_err(|e| HarnessError::io("reading the UDP socket's address", e))?;
        Ok(Self { socket, local })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends one datagram.
    pub fn send(&self, to: SocketAddr, data: &[u8]) -> Result<(), HarnessError> {
        self.socket
            .send_to(data, to)
            .map(drop)
            .map_err(|e| HarnessError::io(format!("sending {} octets to {to}", data.len()), e))
    }

    /// The next datagram that parses as a SIP message, with its source; `None` after `wait`.
    pub fn recv_from(&self, wait: Duration) -> Option<(RawMessage, SocketAddr)> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() || self.socket.set_read_timeout(Some(left)).is_err() {
                return None;
            }
            let (len, source) = self.socket.recv_from(&mut buf).ok()?;
            if let Some(msg) = buf.get(..len).and_then(RawMessage::parse) {
                return Some((msg, source));
            }
        }
    }

    /// The next SIP message; `None` after `wait`.
    pub fn recv(&self, wait: Duration) -> Option<RawMessage> {
        self.recv_from(wait).map(|(msg, _)| msg)
    }

    /// The next message that is not a provisional response; `None` after `wait`.
    pub fn recv_final(&self, wait: Duration) -> Option<RawMessage> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = self.recv(left)?;
            if !msg.is_provisional() {
                return Some(msg);
            }
        }
    }

    /// Sends `request` to `to` and returns the first non-provisional answer within `wait`.
    pub fn request(
        &self,
        to: SocketAddr,
        request: &RawRequest,
        wait: Duration,
    ) -> Result<Option<RawMessage>, HarnessError> {
        self.send(to, &request.to_bytes())?;
        Ok(self.recv_final(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ViaTransport;

    #[test]
    fn round_trip_between_two_peers() {
        let ip = crate::test_ip("udp_peer::round_trip");
        let a = UdpPeer::bind(ip).expect("bind a");
        let b = UdpPeer::bind(ip).expect("bind b");
        let request = RawRequest::new("OPTIONS", "sip:x@h", ViaTransport::Udp, a.local_addr());
        a.send(b.local_addr(), b"garbage").expect("send garbage");
        a.send(b.local_addr(), &request.to_bytes()).expect("send");
        let (got, from) = b.recv_from(Duration::from_secs(2)).expect("received");
        assert_eq!(from, a.local_addr());
        assert_eq!(got.method(), Some("OPTIONS"));
        assert!(b.recv(Duration::from_millis(50)).is_none());
    }
}
