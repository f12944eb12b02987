//! A stored binding of an AOR to a contact address, and the 200 OK `Contact` values.
//!
//! Memory: a binding built by [`apply_register`](crate::registrar::apply_register) copies its
//! variable-length fields (contact URI, Call-ID, instance, Path values) into **one** buffer and
//! keeps [`Bytes`] slices of it, so it neither holds the whole REGISTER buffer alive nor pays
//! one allocation per field.

use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};

use crate::peer::Transport;
use crate::registrar::request::Source;

/// One binding (RFC 3261 §10.3 step 8): what a lookup of the AOR returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI text (inside `<>`); binding identity per §19.1.4.
    pub contact: Bytes,
    /// Preference in per mille (`q=1` -> 1000).
    pub q: u16,
    /// Absolute wall-clock expiry; the binding is gone at and after this time.
    pub expires_at: SystemTime,
    /// Call-ID of the REGISTER that last wrote this binding (§10.3 step 7 ordering).
    pub call_id: Bytes,
    /// CSeq of the REGISTER that last wrote this binding.
    pub cseq: u32,
    /// `Path` values of that REGISTER (RFC 3327), topmost first; the route towards the UA.
    pub path: Vec<Bytes>,
    /// `+sip.instance` value, quotes included (RFC 5626).
    pub instance: Option<Bytes>,
    /// `reg-id` value (RFC 5626).
    pub reg_id: Option<u32>,
    /// Where that REGISTER came from.
    pub source: Source,
}

impl Binding {
    /// Builds a binding whose byte fields are slices of one freshly allocated buffer.
    #[allow(clippy::too_many_arguments)] // private constructor mirroring the public fields
    pub(crate) fn compact(
        contact: &[u8],
        q: u16,
        expires_at: SystemTime,
        call_id: &[u8],
        cseq: u32,
        path: &[Bytes],
        instance: Option<&[u8]>,
        reg_id: Option<u32>,
        source: Source,
    ) -> Self {
        let len = contact.len()
            + call_id.len()
            + instance.map_or(0, <[u8]>::len)
            + path.iter().map(Bytes::len).sum::<usize>();
        let mut buf = BytesMut::with_capacity(len);
        let mut take = |bytes: &[u8]| {
            buf.put_slice(bytes);
            buf.split().freeze()
        };
        let contact = take(contact);
        let call_id = take(call_id);
        let instance = instance.map(&mut take);
        let path = path.iter().map(|p| take(p)).collect();
        Self {
            contact,
            q,
            expires_at,
            call_id,
            cseq,
            path,
            instance,
            reg_id,
            source,
        }
    }

    /// Whether the binding has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at <= now
    }

    /// Whether the UA can be reached only over the connection its REGISTER came on (a flow,
    /// RFC 5626 §3.2, RFC 7118 §5): it came over a connection, and either that connection is a
    /// WebSocket (which cannot be dialed), or the UA asked for outbound (`+sip.instance` with
    /// `reg-id`, or an `ob` Contact parameter), or its Contact host is not a name anyone can
    /// dial (`.invalid`, RFC 7118 §5.2). Requests to such a binding go over that connection,
    /// and the binding is removed as soon as the connection closes (RFC 5626 §5.4).
    ///
    /// Other bindings made over TCP or TLS keep a dialable Contact: the proxy still prefers
    /// the registering connection while it is open, and dials the Contact once it is gone.
    pub fn is_flow(&self) -> bool {
        if self.source.connection.is_none() || !self.source.transport.is_reliable() {
            return false;
        }
        if matches!(self.source.transport, Transport::Ws | Transport::Wss)
            || (self.instance.is_some() && self.reg_id.is_some())
        {
            return true;
        }
        let Ok(contact) = std::str::from_utf8(&self.contact) else {
            return true;
        };
        match crate::uri::SipUri::parse(contact) {
            Ok(uri) => {
                uri.params.contains("ob")
                    || matches!(uri.host, crate::uri::Host::Domain(d)
                        if d.trim_end_matches('.').to_ascii_lowercase().ends_with(".invalid"))
            }
            Err(_) => true,
        }
    }
}

/// Seconds until `b` expires, rounded **up** (so a binding granted 3600 s reports 3600 at the
/// instant it was written, and a live binding never reports 0); 0 once expired.
pub fn remaining(b: &Binding, now: SystemTime) -> u32 {
    match b.expires_at.duration_since(now) {
        Ok(left) if left > Duration::ZERO => {
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        }
        _ => 0,
    }
}

/// The `Contact` header values of a 200 OK to REGISTER (RFC 3261 §10.3 step 8): one per live
/// binding, `<uri>;expires=N;q=Q` plus `+sip.instance` and `reg-id` when stored (RFC 5626 §6).
/// Expired bindings are skipped.
pub fn contact_header_values(bindings: &[Binding], now: SystemTime) -> Vec<Bytes> {
    bindings
        .iter()
        .filter_map(|b| {
            let left = remaining(b, now);
            if left == 0 {
                return None;
            }
            let mut v = Vec::with_capacity(b.contact.len() + 64);
            v.push(b'<');
            v.extend_from_slice(&b.contact);
            v.extend_from_slice(format!(">;expires={left};q={}", format_q(b.q)).as_bytes());
            if let Some(instance) = &b.instance {
                v.extend_from_slice(b";+sip.instance=");
                v.extend_from_slice(instance);
            }
            if let Some(reg_id) = b.reg_id {
                v.extend_from_slice(format!(";reg-id={reg_id}").as_bytes());
            }
            Some(Bytes::from(v))
        })
        .collect()
}

/// Formats a per-mille q-value as an RFC 3261 §20.10 `qvalue` ("1", "0.5", "0.125", "0").
fn format_q(q: u16) -> String {
    if q >= 1000 {
        return "1".to_owned();
    }
    if q == 0 {
        return "0".to_owned();
    }
    let digits = format!("{q:03}");
    format!("0.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;
    use crate::peer::{ConnectionId, Transport as TransportKind};

    pub(crate) fn source() -> Source {
        Source {
            remote: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 5060)),
            transport: TransportKind::Udp,
            local: SocketAddr::from((Ipv4Addr::new(198, 51, 100, 1), 5060)),
            connection: Some(ConnectionId(7)),
        }
    }

    fn at(now: SystemTime, secs: u64, millis: u64) -> Binding {
        let expires_at = now + Duration::from_secs(secs) + Duration::from_millis(millis);
        Binding::compact(
            b"sip:a@h",
            500,
            expires_at,
            b"cid",
            1,
            &[],
            None,
            None,
            source(),
        )
    }

    #[test]
    fn remaining_rounds_up_and_floors_at_zero() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(remaining(&at(now, 3600, 0), now), 3600);
        assert_eq!(remaining(&at(now, 3599, 1), now), 3600);
        assert_eq!(remaining(&at(now, 0, 1), now), 1);
        assert_eq!(remaining(&at(now, 0, 0), now), 0);
        let past = at(now, 10, 0);
        assert_eq!(remaining(&past, now + Duration::from_secs(11)), 0);
        assert!(past.is_expired(now + Duration::from_secs(10)));
        assert!(!past.is_expired(now + Duration::from_millis(9_999)));
    }

    #[test]
    fn q_formatting() {
        assert_eq!(format_q(1000), "1");
        assert_eq!(format_q(500), "0.5");
        assert_eq!(format_q(125), "0.125");
        assert_eq!(format_q(70), "0.07");
        assert_eq!(format_q(0), "0");
    }

    #[test]
    fn header_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut b = at(now, 120, 0);
        b.instance = Some(Bytes::from_static(b"\"<urn:uuid:1>\""));
        b.reg_id = Some(1);
        let expired = at(now, 0, 0);
        let values = contact_header_values(&[b, expired], now + Duration::from_millis(500));
        assert_eq!(
            values,
            vec![Bytes::from_static(
                b"<sip:a@h>;expires=120;q=0.5;+sip.instance=\"<urn:uuid:1>\";reg-id=1"
            )]
        );
    }

    #[test]
    fn flows_are_websocket_outbound_or_undialable_contacts_on_a_connection() {
        let now = SystemTime::UNIX_EPOCH;
        let mut tcp = source();
        tcp.transport = TransportKind::Tcp;
        let with = |contact: &[u8], src: Source, outbound: bool| {
            Binding::compact(
                contact,
                1000,
                now,
                b"c",
                1,
                &[],
                outbound.then_some(&b"\"<urn:uuid:1>\""[..]),
                outbound.then_some(1),
                src,
            )
        };
        assert!(
            !with(b"sip:a@192.0.2.1:5060", source(), false).is_flow(),
            "UDP"
        );
        assert!(!with(b"sip:a@192.0.2.1:5060;transport=tcp", tcp, false).is_flow());
        assert!(with(b"sip:a@192.0.2.1:5060;transport=tcp", tcp, true).is_flow());
        assert!(with(b"sip:a@192.0.2.1;transport=tcp;ob", tcp, false).is_flow());
        assert!(with(b"sip:a@df7jal23ls0d.invalid;transport=tcp", tcp, false).is_flow());
        let mut ws = tcp;
        ws.transport = TransportKind::Ws;
        assert!(with(b"sip:a@192.0.2.1;transport=ws", ws, false).is_flow());
        ws.connection = None;
        assert!(!with(b"sip:a@192.0.2.1;transport=ws", ws, false).is_flow());
    }

    #[test]
    fn compact_slices_one_buffer() {
        let now = SystemTime::UNIX_EPOCH;
        let path = [
            Bytes::from_static(b"<sip:p1;lr>"),
            Bytes::from_static(b"<sip:p2;lr>"),
        ];
        let b = Binding::compact(
            b"sip:a@h",
            1000,
            now,
            b"cid",
            2,
            &path,
            Some(b"\"x\""),
            Some(3),
            source(),
        );
        assert_eq!(&b.contact[..], b"sip:a@h");
        assert_eq!(&b.call_id[..], b"cid");
        assert_eq!(b.instance.as_deref(), Some(&b"\"x\""[..]));
        assert_eq!(b.path, path.to_vec());
    }
}
