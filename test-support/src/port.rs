//! Loopback addresses and free ports for tests that run in parallel.
//!
//! All of 127.0.0.0/8 is loopback on Linux, so each test gets its own address from
//! [`test_ip`] and ports from [`free_port`]; two tests then clash only if both the address
//! hash and the kernel's ephemeral port pick collide.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// A loopback address derived from the test's name, in 127.1.0.1 ..= 127.254.255.254.
///
/// 127.0.0.x is left to tools with fixed habits (the corpus driver uses 127.0.0.2).
pub fn test_ip(test_name: &str) -> IpAddr {
    let mut hasher = DefaultHasher::new();
    test_name.hash(&mut hasher);
    let h = hasher.finish().to_be_bytes();
    let [a, b, c, ..] = h;
    let second = 1 + a % 254;
    let fourth = 1 + c % 254;
    IpAddr::V4(Ipv4Addr::new(127, second, b, fourth))
}

/// A port on `ip` that is free for both UDP and TCP at the time of the call.
///
/// The kernel picks an ephemeral UDP port, then the same TCP port is tried; up to 64 attempts.
///
/// # Panics
///
/// When no pair is found: a test cannot go on without ports.
pub fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..64 {
        let Ok(udp) = UdpSocket::bind(SocketAddr::new(ip, 0)) else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else { continue };
        if TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("{}", crate::HarnessError::NoFreePort(ip));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ip_is_loopback_and_stable() {
        let ip = test_ip("registrar::register_udp");
        assert!(ip.is_loopback());
        assert_eq!(ip, test_ip("registrar::register_udp"));
        assert_ne!(ip, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    }

    #[test]
    fn free_port_is_bindable_for_udp_and_tcp() {
        let ip = test_ip("free_port_is_bindable");
        let port = free_port(ip);
        assert!(UdpSocket::bind((ip, port)).is_ok());
        assert!(TcpListener::bind((ip, port)).is_ok());
    }
}
