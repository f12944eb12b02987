//! Where messages go back to: the reply address of a request (RFC 3261 §18.2.2, RFC 3581) and
//! the next hop named by a Via for stateless response forwarding (§16.11).

use crate::peer::{Destination, Origin};

/// Where responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4): over the same connection
/// for streams; for UDP to the packet's source address, at the source port when the Via asked
/// for `rport`, else at the Via's port (5060 by default).
pub(super) fn reply_destination(
    origin: &Origin,
    rport: bool,
    via_port: Option<u16>,
) -> Destination {
    if origin.transport.is_reliable() {
        return Destination {
            transport: origin.transport,
            addr: origin.source,
            local: Some(origin.local),
            connection: origin.connection,
        };
    }
    let port = if rport {
        origin.source.port()
    } else {
        via_port.unwrap_or(5060)
    };
    Destination {
        transport: origin.transport,
        addr: std::net::SocketAddr::new(origin.source.ip(), port),
        local: Some(origin.local),
        connection: None,
    }
}

/// The destination named by a Via value (for stateless response forwarding): `received` and
/// `rport` when present, else sent-by. Never a broadcast, multicast or unspecified address.
pub(super) fn via_destination(via: &crate::header::Via<'_>) -> Option<Destination> {
    let transport = crate::peer::Transport::from_token(via.transport)?;
    let ip = match via.received_ip() {
        Some(ip) => ip,
        None => match via.host {
            crate::uri::Host::Ipv4(a) => std::net::IpAddr::V4(a),
            crate::uri::Host::Ipv6(a) => std::net::IpAddr::V6(a),
            crate::uri::Host::Domain(_) => return None,
        },
    };
    if !super::routing::is_unicast(ip) {
        return None;
    }
    let port = via
        .rport
        .flatten()
        .or(via.port)
        .unwrap_or_else(|| transport.default_port());
    Some(Destination {
        transport,
        addr: std::net::SocketAddr::new(ip, port),
        local: None,
        connection: None,
    })
}
