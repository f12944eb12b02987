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
//! The token is `ID-HOST-PORT-MAC`: the shell's connection number, the peer's address (for a
//! TCP/TLS flow that closed, the shell falls back to that address), and an HMAC over the rest
//! (RFC 5626 §5.2: a proxy must be able to tell its own tokens from forged ones, or anyone
//! could steer a request onto another user's connection). The MAC is HMAC-SHA256 (RFC 2104,
//! FIPS 180-4) keyed with the node's [`FlowTokenKey`] over `ID-HOST-PORT`, truncated to its
//! first 128 bits ([`MAC_LEN`]) and written as lowercase hex. A Route value naming us whose
//! token fails the check gets the request refused with 403 (RFC 5626 §5.3: "SHOULD send a 403
//! (Forbidden) response"); see docs/DESIGN-NOTES.md.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::header::NameAddr;
use crate::peer::{ConnectionId, Destination, Origin, Transport};
use crate::registrar::Binding;

use super::core::{ClientFsm, Core};

/// URI parameter carrying a flow token in our Record-Route values.
pub(super) const FLOW_PARAM: &str = "flow";

/// Octets of the HMAC kept in a token (128 of SHA-256's 256 bits).
pub const MAC_LEN: usize = 16;

/// The secret that authenticates this node's flow tokens: 32 octets, generated from the OS RNG
/// when the node starts, or configured (`flow_token_key`) so that several nodes share it.
/// Every shard of a node must get the same key. `Debug` does not show it.
#[derive(Clone)]
pub struct FlowTokenKey {
    /// The HMAC-SHA256 state after absorbing the key (cloned for every token).
    keyed: Hmac<Sha256>,
}

impl FlowTokenKey {
    /// Length of a key, in octets.
    pub const LEN: usize = 32;

    /// The key `bytes`.
    pub fn new(bytes: [u8; Self::LEN]) -> Self {
        // RFC 2104: a key shorter than the hash's 64-octet block is zero-padded to it, so the
        // padded block is the same key, and the fixed-size constructor cannot fail.
        let mut block = [0u8; 64];
        for (b, k) in block.iter_mut().zip(bytes) {
            *b = k;
        }
        Self {
            keyed: <Hmac<Sha256> as Mac>::new(&block.into()),
        }
    }

    /// A key written as 64 hexadecimal digits (the `flow_token_key` setting).
    pub fn from_hex(text: &str) -> Result<Self, FlowTokenKeyError> {
        let text = text.trim();
        if text.len() != 2 * Self::LEN {
            return Err(FlowTokenKeyError::Length(text.len()));
        }
        let mut bytes = [0u8; Self::LEN];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            *byte = std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or(FlowTokenKeyError::NotHex)?;
        }
        Ok(Self::new(bytes))
    }

    /// The MAC of `data`, truncated to [`MAC_LEN`] octets.
    fn mac(&self, data: &str) -> [u8; MAC_LEN] {
        let mut m = self.keyed.clone();
        m.update(data.as_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        for (o, b) in out.iter_mut().zip(full) {
            *o = b;
        }
        out
    }

    /// Whether `tag` is the truncated MAC of `data` (compared in constant time).
    fn verify(&self, data: &str, tag: &[u8]) -> bool {
        let mut m = self.keyed.clone();
        m.update(data.as_bytes());
        tag.len() == MAC_LEN && m.verify_truncated_left(tag).is_ok()
    }
}

#[cfg(test)]
impl FlowTokenKey {
    /// The truncated MAC of `data` in hex, for known-answer tests.
    pub(super) fn mac_hex_for_tests(&self, data: &str) -> String {
        self.mac(data).iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for FlowTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlowTokenKey(..)")
    }
}

/// Why a configured [`FlowTokenKey`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowTokenKeyError {
    /// Not 64 characters.
    #[error("a flow token key is 64 hexadecimal digits (32 octets), not {0} characters")]
    Length(usize),
    /// A character is not a hexadecimal digit.
    #[error("a flow token key is 64 hexadecimal digits; found another character")]
    NotHex,
}

/// Why a flow token in a Route value naming us was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum FlowTokenError {
    /// Not of the `ID-HOST-PORT-MAC` form (or a `flow` parameter without a value).
    #[error("malformed flow token")]
    Malformed,
    /// Well formed, but the MAC is not ours: forged, altered, or from a node with another key.
    #[error("flow token MAC does not verify")]
    BadMac,
}

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

    /// `ID-HOST-PORT-MAC` (IPv6 hosts in brackets, MAC in hex): only characters allowed in a
    /// URI parameter value (RFC 3261 §25.1 `paramchar`).
    pub(super) fn encode(&self, key: &FlowTokenKey) -> String {
        let body = self.body();
        let mut s = String::with_capacity(body.len() + 1 + 2 * MAC_LEN);
        s.push_str(&body);
        s.push('-');
        for b in key.mac(&body) {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// `ID-HOST-PORT`: what the MAC covers.
    fn body(&self) -> String {
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

    /// Parses and authenticates what [`encode`](Self::encode) wrote with `key`.
    pub(super) fn decode(s: &str, key: &FlowTokenKey) -> Result<Self, FlowTokenError> {
        let (body, mac) = s.rsplit_once('-').ok_or(FlowTokenError::Malformed)?;
        let tag = unhex(mac).ok_or(FlowTokenError::Malformed)?;
        let token = Self::decode_body(body).ok_or(FlowTokenError::Malformed)?;
        // The MAC covers the text as received.
        if !key.verify(body, &tag) {
            return Err(FlowTokenError::BadMac);
        }
        Ok(token)
    }

    /// Parses `ID-HOST-PORT`.
    fn decode_body(s: &str) -> Option<Self> {
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

/// Lowercase or uppercase hex to [`MAC_LEN`] octets.
fn unhex(text: &str) -> Option<[u8; MAC_LEN]> {
    if text.len() != 2 * MAC_LEN {
        return None;
    }
    let mut out = [0u8; MAC_LEN];
    for (o, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The flow named by the last of the Route values the proxy popped (they name this node), unless
/// it is the flow the request arrived on: where an in-dialog request must go (RFC 5626 §5.3). The
/// transport is the Route value's `transport` parameter (our listener's, and so the flow's).
///
/// Every token among them must verify with `key`, the request's own flow's included: one that
/// does not is an error (the caller refuses the request with 403, RFC 5626 §5.3).
pub(super) fn flow_from_routes(
    popped: &[NameAddr<'_>],
    origin: &Origin,
    key: &FlowTokenKey,
) -> Result<Option<Destination>, FlowTokenError> {
    let arrived = origin.connection;
    let mut found = None;
    let last = popped.len().saturating_sub(1);
    for (i, r) in popped.iter().enumerate() {
        let Some(sip) = r.uri.as_sip() else { continue };
        let Some(value) = sip.params.get(FLOW_PARAM) else {
            continue;
        };
        let token = FlowToken::decode(value.ok_or(FlowTokenError::Malformed)?, key)?;
        // The outgoing side is the last of our Route values (double Record-Route: the value
        // facing the sender comes first). A sender that reconnected arrives on a new
        // connection, so "not the arrival flow" alone would pick its own dead flow.
        if i != last || Some(token.connection) == arrived {
            continue;
        }
        found = sip
            .transport()
            .and_then(Transport::from_token)
            .filter(|t| t.is_reliable())
            .map(|transport| Destination {
                transport,
                addr: token.remote,
                local: None,
                connection: Some(token.connection),
            });
    }
    Ok(found)
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

    fn key() -> FlowTokenKey {
        FlowTokenKey::new([7; FlowTokenKey::LEN])
    }

    #[test]
    fn token_round_trips_v4_and_v6() {
        for remote in ["192.0.2.7:50123", "[2001:db8::1]:443"] {
            let t = FlowToken {
                connection: ConnectionId(17),
                remote: remote.parse().unwrap(),
            };
            let s = t.encode(&key());
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b)),
                "{s}"
            );
            assert_eq!(FlowToken::decode(&s, &key()), Ok(t));
        }
        let mac = "0".repeat(2 * MAC_LEN);
        for bad in [
            "17".to_owned(),
            format!("x-1.2.3.4-5-{mac}"),
            format!("1-host-5-{mac}"),
            "1-1.2.3.4-5".to_owned(),
            "1-1.2.3.4-5-00".to_owned(),
        ] {
            assert_eq!(
                FlowToken::decode(&bad, &key()),
                Err(FlowTokenError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            FlowToken::decode(&format!("1-1.2.3.4-5-{mac}"), &key()),
            Err(FlowTokenError::BadMac)
        );
    }

    #[test]
    fn route_with_another_flow_is_chosen_and_own_flow_ignored() {
        let token = FlowToken {
            connection: ConnectionId(9),
            remote: "192.0.2.7:50123".parse().unwrap(),
        }
        .encode(&key());
        let text = format!("<sip:127.0.0.1:8080;transport=ws;lr;ob;flow={token}>");
        let route = NameAddr::parse(&text).unwrap();
        let udp = Origin {
            transport: Transport::Udp,
            source: "127.0.0.9:5060".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            connection: None,
        };
        let d = flow_from_routes(std::slice::from_ref(&route), &udp, &key())
            .unwrap()
            .unwrap();
        assert_eq!(d.transport, Transport::Ws);
        assert_eq!(d.connection, Some(ConnectionId(9)));
        assert_eq!(d.addr, "192.0.2.7:50123".parse().unwrap());
        let same = Origin {
            transport: Transport::Ws,
            connection: Some(ConnectionId(9)),
            ..udp
        };
        assert_eq!(flow_from_routes(&[route], &same, &key()), Ok(None));
    }

    /// Double Record-Route between two flows: a request from the caller names the caller's
    /// flow first and the callee's last. A caller that reconnected (its old flow died) sends
    /// on a new connection: the callee's flow is still the one chosen, never the caller's dead
    /// one; from the callee, the caller's.
    #[test]
    fn the_last_popped_flow_is_the_way_out_even_from_a_reconnected_sender() {
        let rr = |conn: u64, port: u16| {
            let token = FlowToken {
                connection: ConnectionId(conn),
                remote: format!("192.0.2.7:{port}").parse().unwrap(),
            }
            .encode(&key());
            format!("<sip:127.0.0.1:5060;transport=tcp;lr;ob;flow={token}>")
        };
        let (caller_rr, callee_rr) = (rr(1, 40001), rr(2, 40002));
        let from_caller = [
            NameAddr::parse(&caller_rr).unwrap(),
            NameAddr::parse(&callee_rr).unwrap(),
        ];
        let origin = |conn: u64| Origin {
            transport: Transport::Tcp,
            source: "192.0.2.7:40009".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            connection: Some(ConnectionId(conn)),
        };
        for arrived in [1, 7] {
            let d = flow_from_routes(&from_caller, &origin(arrived), &key())
                .unwrap()
                .unwrap();
            assert_eq!(d.connection, Some(ConnectionId(2)), "arrived on {arrived}");
        }
        let from_callee = [
            NameAddr::parse(&callee_rr).unwrap(),
            NameAddr::parse(&caller_rr).unwrap(),
        ];
        let d = flow_from_routes(&from_callee, &origin(2), &key())
            .unwrap()
            .unwrap();
        assert_eq!(d.connection, Some(ConnectionId(1)));
    }
}
