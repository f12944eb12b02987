//! Flows (RFC 5626 §3.2, §5.3; RFC 7118 §5): reaching a UA over the connection it opened.
//!
//! A WebSocket client cannot be dialed, and its Contact host is usually `xxx.invalid`; a UA
//! behind a NAT is reachable only over the connection it keeps open. Two mechanisms take a
//! request there:
//!
//! - **Bindings**: a binding remembers the connection its REGISTER came on
//!   ([`Source::connection`](crate::registrar::Source)); requests to the AOR go out over it (see
//!   [`binding_destination`]).
//! - **Flow tokens in Record-Route**: when the proxy record-routes a dialog whose caller or
//!   callee sits on a connection, the Record-Route value facing that side carries
//!   `;ob;flow=TOKEN` (see [`FlowToken`]). An in-dialog request from the other side pops that
//!   Route value, finds a token naming a connection other than the one it arrived on, and is
//!   sent over the named connection whatever its Request-URI says (RFC 5626 §5.3).
//!
//! The token is `ID-HOST-PORT`: the shell's connection number and the peer's address (for a
//! TCP/TLS flow that closed, the shell falls back to that address). It is not authenticated;
//! see docs/DESIGN-NOTES.md.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::header::NameAddr;
use crate::peer::{ConnectionId, Destination, Origin, Transport};
use crate::registrar::Binding;

use super::core::{ClientFsm, Core};

/// URI parameter carrying a flow token in our Record-Route values.
pub(super) const FLOW_PARAM: &str = "flow";

/// A connection named in a Record-Route / Route value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FlowToken {
    /// The shell's connection.
    pub(super) connection: ConnectionId,
    /// The peer at the far end of it.
    pub(super) remote: SocketAddr,
}

impl FlowToken {
    /// The flow a message arrived on, if it came over a connection.
    pub(super) fn of_origin(origin: &Origin) -> Option<Self> {
        origin.connection.map(|connection| Self {
            connection,
            remote: origin.source,
        })
    }

    /// The flow a destination uses, if it names a connection.
    pub(super) fn of_destination(d: &Destination) -> Option<Self> {
        d.connection.map(|connection| Self {
            connection,
            remote: d.addr,
        })
    }

    /// `ID-HOST-PORT` (IPv6 hosts in brackets): only characters allowed in a URI parameter
    /// value (RFC 3261 §25.1 `paramchar`).
    pub(super) fn encode(&self) -> String {
        let mut s = String::with_capacity(32);
        let _ = write!(s, "{}-", self.connection.0);
        match self.remote.ip() {
            IpAddr::V4(a) => {
                let _ = write!(s, "{a}");
            }
            IpAddr::V6(a) => {
                let _ = write!(s, "[{a}]");
            }
        }
        let _ = write!(s, "-{}", self.remote.port());
        s
    }

    /// Parses what [`encode`](Self::encode) wrote; `None` for anything else.
    pub(super) fn decode(s: &str) -> Option<Self> {
        let (id, rest) = s.split_once('-')?;
        let (host, port) = rest.rsplit_once('-')?;
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        Some(Self {
            connection: ConnectionId(id.parse().ok()?),
            remote: SocketAddr::new(ip, port.parse().ok()?),
        })
    }
}

/// The flow named by the Route values the proxy popped (they name this node), other than the
/// flow the request arrived on: where an in-dialog request must go (RFC 5626 §5.3). The
/// transport is the Route value's `transport` parameter (our listener's, and so the flow's).
pub(super) fn flow_from_routes(popped: &[NameAddr<'_>], origin: &Origin) -> Option<Destination> {
    let arrived = origin.connection;
    popped.iter().find_map(|r| {
        let sip = r.uri.as_sip()?;
        let token = FlowToken::decode(sip.params.get(FLOW_PARAM)??)?;
        if Some(token.connection) == arrived {
            return None;
        }
        let transport = sip
            .transport()
            .and_then(Transport::from_token)
            .filter(|t| t.is_reliable())?;
        Some(Destination {
            transport,
            addr: token.remote,
            local: None,
            connection: Some(token.connection),
        })
    })
}

impl Core {
    /// A stream connection closed (the shell's connection-closed event; every shard gets it).
    /// Client transactions sent over it to a WebSocket peer can never get their response (a
    /// WebSocket peer cannot be reached any other way), so they fail now and their requests
    /// are answered 480 rather than after Timer B/F (RFC 5626 §5.4, RFC 7118 §5).
    pub fn handle_connection_closed(&mut self, now: Instant, connection: ConnectionId) {
        let ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, e)| {
                e.destination.connection == Some(connection)
                    && matches!(e.destination.transport, Transport::Ws | Transport::Wss)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(entry) = self.clients.get_mut(&id) {
                match &mut entry.fsm {
                    ClientFsm::Invite(tx) => tx.transport_error(now),
                    ClientFsm::NonInvite(tx) => tx.transport_error(now),
                }
            }
            self.drive_client(now, id, None);
        }
    }
}

/// Where a binding that must be reached over its REGISTER's connection goes: over that
/// connection to the address the REGISTER came from. `None` when the binding is not such a
/// flow (see [`Binding::is_flow`]).
pub(super) fn binding_destination(b: &Binding) -> Option<Destination> {
    if !b.is_flow() {
        return None;
    }
    Some(Destination {
        transport: b.source.transport,
        addr: b.source.remote,
        local: Some(b.source.local),
        connection: b.source.connection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_v4_and_v6() {
        for remote in ["192.0.2.7:50123", "[2001:db8::1]:443"] {
            let t = FlowToken {
                connection: ConnectionId(17),
                remote: remote.parse().unwrap(),
            };
            let s = t.encode();
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b)),
                "{s}"
            );
            assert_eq!(FlowToken::decode(&s), Some(t));
        }
        assert_eq!(FlowToken::decode("17"), None);
        assert_eq!(FlowToken::decode("x-1.2.3.4-5"), None);
        assert_eq!(FlowToken::decode("1-host-5"), None);
    }

    #[test]
    fn route_with_another_flow_is_chosen_and_own_flow_ignored() {
        let token = FlowToken {
            connection: ConnectionId(9),
            remote: "192.0.2.7:50123".parse().unwrap(),
        }
        .encode();
        let text = format!("<sip:127.0.0.1:8080;transport=ws;lr;ob;flow={token}>");
        let route = NameAddr::parse(&text).unwrap();
        let udp = Origin {
            transport: Transport::Udp,
            source: "127.0.0.9:5060".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            connection: None,
        };
        let d = flow_from_routes(std::slice::from_ref(&route), &udp).unwrap();
        assert_eq!(d.transport, Transport::Ws);
        assert_eq!(d.connection, Some(ConnectionId(9)));
        assert_eq!(d.addr, "192.0.2.7:50123".parse().unwrap());
        let same = Origin {
            transport: Transport::Ws,
            connection: Some(ConnectionId(9)),
            ..udp
        };
        assert_eq!(flow_from_routes(&[route], &same), None);
    }
}
