//! The readiness probe: a tiny UDP `OPTIONS` to the node itself, expecting `200`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Distinguishes the probes of one process (Call-ID, branch, CSeq).
static PROBE_SEQ: AtomicU32 = AtomicU32::new(1);

/// Sends one `OPTIONS` from `local_ip` to `target` over UDP and waits up to `wait` for a
/// final response; returns `true` only for a `200`.
///
/// The request is addressed to the node itself (no user part), which RFC 3261 11 lets a server
/// answer; sipmesh and the Kamailio reference config both do.
pub fn options_ping(local_ip: IpAddr, target: SocketAddr, wait: Duration) -> bool {
    let Ok(socket) = UdpSocket::bind(SocketAddr::new(local_ip, 0)) else {
        return false;
    };
    let Ok(local) = socket.local_addr() else {
        return false;
    };
    let seq = PROBE_SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let request = format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{pid}-{seq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=probe{pid}x{seq}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: probe-{pid}-{seq}@{local_ip}\r\n\
         CSeq: {seq} OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    );
    if socket.send_to(request.as_bytes(), target).is_err() {
        return false;
    }
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        let Ok((len, _)) = socket.recv_from(&mut buf) else {
            return false;
        };
        let reply = buf.get(..len).unwrap_or_default();
        // Skip provisional responses; judge the first final one.
        if reply.starts_with(b"SIP/2.0 1") {
            continue;
        }
        return reply.starts_with(b"SIP/2.0 200");
    }
    false
}
