//! Waiting until a SIPp UAS has bound its socket, by reading `/proc/net/{udp,tcp}`.
//!
//! Probing with a real connection would leave a stray TCP connection in the UAS; the kernel's
//! socket tables answer the question without touching it.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

/// The TCP state code for `LISTEN` in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Whether a socket is bound to `addr` (IPv4): UDP bound, or TCP listening.
pub fn is_bound(addr: SocketAddr, tcp: bool) -> bool {
    let IpAddr::V4(ip) = addr.ip() else {
        return false;
    };
    // /proc shows the address as the in-memory u32 in hex: little-endian octets on x86.
    let wanted = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        addr.port()
    );
    let table = if tcp {
        "/proc/net/tcp"
    } else {
        "/proc/net/udp"
    };
    let Ok(text) = fs::read_to_string(table) else {
        return false;
    };
    text.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1);
        let state = fields.nth(1);
        local == Some(wanted.as_str()) && (!tcp || state == Some(TCP_LISTEN))
    })
}

/// Polls [`is_bound`] for up to `limit`.
pub fn wait_bound(addr: SocketAddr, tcp: bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if is_bound(addr, tcp) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, UdpSocket};

    use super::*;

    #[test]
    fn sees_own_sockets() {
        let ip = crate::test_ip("listen::sees_own_sockets");
        let udp = UdpSocket::bind((ip, 0)).expect("bind udp");
        let tcp = TcpListener::bind((ip, 0)).expect("bind tcp");
        assert!(is_bound(udp.local_addr().expect("udp addr"), false));
        assert!(is_bound(tcp.local_addr().expect("tcp addr"), true));
        drop(tcp);
        let gone = SocketAddr::new(ip, 1);
        assert!(!is_bound(gone, true));
    }
}
