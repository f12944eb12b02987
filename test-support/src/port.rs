//! Loopback addresses and free ports for tests that run in parallel.
//!
//! All of 127.0.0.0/8 is loopback on Linux, so each test gets its own address from
//! [`test_ip`] and ports from [`free_port`]. Ports come from [`PORT_RANGE`], below the
//! kernel's ephemeral range (32768–60999 here) and below the media ports the test rtpengine
//! uses (30000–39999): an outgoing connection or an rtpengine stream can then never take a
//! port between the moment a test picks it and the moment its server binds it. One process
//! never hands out the same address twice, so the ports of one node (UDP/TCP, WS, admin,
//! cluster) are always distinct.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where [`free_port`] picks from: outside the ephemeral range and rtpengine's media range.
pub(crate) const PORT_RANGE: std::ops::Range<u16> = 10_000..30_000;

/// Addresses this process has handed out.
static HANDED_OUT: Mutex<Option<HashSet<SocketAddr>>> = Mutex::new(None);

/// Sequence number mixed into each pick.
static PICKS: AtomicU64 = AtomicU64::new(0);

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

/// A pseudo-random candidate in [`PORT_RANGE`]: SplitMix64 over the process id, the clock
/// and a per-process sequence number, so parallel test processes pick different ports.
fn candidate() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seq = PICKS.fetch_add(1, Ordering::Relaxed);
    let mut z =
        nanos ^ (u64::from(std::process::id()) << 32) ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
    PORT_RANGE.start + u16::try_from(z % span).unwrap_or(0)
}

/// A port on `ip`, free for both UDP and TCP at the time of the call, that this process has
/// not handed out before; up to 256 attempts.
///
/// # Panics
///
/// When no port is found: a test cannot go on without ports.
pub fn free_port(ip: IpAddr) -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..256 {
        let addr = SocketAddr::new(ip, candidate());
        if handed_out.contains(&addr) {
            continue;
        }
        let bindable = UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok();
        if bindable {
            handed_out.insert(addr);
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

    #[test]
    fn free_port_never_repeats_within_a_process_and_stays_in_range() {
        let ip = test_ip("free_port_never_repeats");
        let ports: Vec<u16> = (0..500).map(|_| free_port(ip)).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|p| PORT_RANGE.contains(p)));
    }
}
