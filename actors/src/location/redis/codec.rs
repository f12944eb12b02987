//! The byte format of bindings in Redis, readable by the Lua scripts.
//!
//! An AOR value is a MessagePack array of bindings (written by the scripts' `cmsgpack.pack`);
//! a binding is an array of eight items: `expires_at` (integer, ms since the Unix epoch),
//! Call-ID, CSeq (integer), contact URI, `+sip.instance`, `reg-id`, connection, and the rest
//! as one byte string of netstring fields (`<decimal length>:<bytes>`): q (per mille),
//! transport token, remote address, local address, then one field per `Path` value. Optional
//! fields are empty when absent and `=value` when present, so `Some("")` and `None` stay
//! distinct. The scripts read the first seven items and carry the rest opaquely. A REGISTER
//! passes each Contact to the script as one argument: the AOR value that binding alone would
//! make, in the forms `cmsgpack.pack` picks, so that a refresh of an AOR's only binding stores
//! that argument as it is, without the script decoding or encoding anything (docs/REDIS.md,
//! "Script cost").

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sipmesh_protocol::peer::{ConnectionId, Transport};
use sipmesh_protocol::registrar::{Binding, Source};

use super::msgpack::{MsgpackError, Reader, write};

/// Why stored bytes could not be read back as bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A length prefix is missing, not a number, or runs past the end.
    #[error("malformed netstring at byte {0}")]
    Framing(usize),
    /// A binding has fewer fields than the format requires.
    #[error("binding has too few fields")]
    MissingField,
    /// A numeric field is not a number in range.
    #[error("bad number in field {0}")]
    Number(usize),
    /// The transport token is unknown.
    #[error("unknown transport")]
    Transport,
    /// A socket address does not parse.
    #[error("bad socket address")]
    Address,
    /// The MessagePack structure is not what the scripts write.
    #[error("malformed value: {0}")]
    Msgpack(#[from] MsgpackError),
}

/// Milliseconds since the Unix epoch (0 for times before it), the stored expiry unit.
pub(super) fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(field.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(field);
}

/// Appended to the stored connection of a binding that is not a flow (see `binding_args`).
const NOT_A_FLOW: char = '~';

/// The stored text of a connection: `scope:id`, so connection ids of different nodes sharing
/// one Redis never collide.
pub(super) fn connection_text(scope: &str, connection: ConnectionId) -> String {
    format!("{scope}:{}", connection.0)
}

/// Number of stored items per binding.
pub(super) const BINDING_ITEMS: usize = 8;

/// Number of script arguments per Contact (`binding_args`).
pub(super) const CONTACT_ARGS: usize = 1;

fn opt(field: Option<&[u8]>) -> Vec<u8> {
    field.map_or_else(Vec::new, |v| {
        let mut f = Vec::with_capacity(v.len() + 1);
        f.push(b'=');
        f.extend_from_slice(v);
        f
    })
}

/// One binding as its REGISTER script argument: the AOR value holding this binding alone (an
/// array of one array of the eight stored items), each item in the form `cmsgpack.pack` writes
/// for it (`msgpack::write`), so the bytes are what the script would store for it.
/// `expires_at_ms` overrides the binding's expiry (0 marks a removal). `scope` namespaces the
/// connection id.
pub(super) fn binding_args(
    b: &Binding,
    expires_at_ms: u64,
    scope: &str,
) -> [Vec<u8>; CONTACT_ARGS] {
    // A binding that is not a flow (`Binding::is_flow`) keeps its connection with a `~` suffix:
    // the scripts leave it out of the connection index, so the connection going removes flows
    // only, as in the memory store.
    let connection = b.source.connection.map(|c| {
        let mut text = connection_text(scope, c);
        if !b.is_flow() {
            text.push(NOT_A_FLOW);
        }
        text
    });
    let mut rest = Vec::with_capacity(64 + b.path.iter().map(|p| p.len() + 4).sum::<usize>());
    put(&mut rest, b.q.to_string().as_bytes());
    put(&mut rest, b.source.transport.via_token().as_bytes());
    put(&mut rest, b.source.remote.to_string().as_bytes());
    put(&mut rest, b.source.local.to_string().as_bytes());
    for p in &b.path {
        put(&mut rest, p);
    }
    let instance = opt(b.instance.as_deref());
    let reg_id = opt(b
        .reg_id
        .map(|r| r.to_string())
        .as_deref()
        .map(str::as_bytes));
    let connection = opt(connection.as_deref().map(str::as_bytes));
    let mut out = Vec::with_capacity(
        32 + b.call_id.len()
            + b.contact.len()
            + instance.len()
            + reg_id.len()
            + connection.len()
            + rest.len(),
    );
    write::array(&mut out, 1);
    write::array(&mut out, BINDING_ITEMS);
    write::uint(&mut out, expires_at_ms);
    write::bytes(&mut out, &b.call_id);
    write::uint(&mut out, u64::from(b.cseq));
    write::bytes(&mut out, &b.contact);
    write::bytes(&mut out, &instance);
    write::bytes(&mut out, &reg_id);
    write::bytes(&mut out, &connection);
    write::bytes(&mut out, &rest);
    [out]
}

/// Splits `data` into its netstring fields.
fn fields(data: &Bytes) -> Result<Vec<Bytes>, CodecError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = data.get(pos..).ok_or(CodecError::Framing(pos))?;
        let colon = memchr::memchr(b':', rest).ok_or(CodecError::Framing(pos))?;
        let len: usize = std::str::from_utf8(rest.get(..colon).ok_or(CodecError::Framing(pos))?)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(CodecError::Framing(pos))?;
        let start = pos + colon + 1;
        let end = start.checked_add(len).ok_or(CodecError::Framing(pos))?;
        if end > data.len() {
            return Err(CodecError::Framing(pos));
        }
        out.push(data.slice(start..end));
        pos = end;
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(f: &[u8], index: usize) -> Result<T, CodecError> {
    std::str::from_utf8(f)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(CodecError::Number(index))
}

fn optional(f: &Bytes) -> Option<Bytes> {
    (!f.is_empty()).then(|| f.slice(1..))
}

/// Decodes one binding from `r` (slices share the value's buffer).
fn decode_binding(r: &mut Reader<'_>) -> Result<Binding, CodecError> {
    if r.array()? != BINDING_ITEMS {
        return Err(CodecError::MissingField);
    }
    let expires_ms = r.uint()?;
    let call_id = r.bytes()?;
    let cseq = u32::try_from(r.uint()?).map_err(|_| CodecError::Number(2))?;
    let contact = r.bytes()?;
    let instance = r.bytes()?;
    let reg_id = r.bytes()?;
    let connection = r.bytes()?;
    let rest = fields(&r.bytes()?)?;
    let [q, transport, remote, local, path @ ..] = rest.as_slice() else {
        return Err(CodecError::MissingField);
    };
    let reg_id = optional(&reg_id).map(|r| number(&r, 5)).transpose()?;
    let connection = optional(&connection)
        .map(|c| {
            // `scope:id`, `~` appended for a binding that is not a flow: the id follows the
            // last ':'.
            let c = c.strip_suffix(&[NOT_A_FLOW as u8]).unwrap_or(&c);
            let id = c.rsplit(|&b| b == b':').next().unwrap_or_default();
            number(id, 6).map(ConnectionId)
        })
        .transpose()?;
    let transport = std::str::from_utf8(transport)
        .ok()
        .and_then(Transport::from_token)
        .ok_or(CodecError::Transport)?;
    let addr = |f: &Bytes| -> Result<SocketAddr, CodecError> {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(CodecError::Address)
    };
    Ok(Binding {
        contact,
        q: number(q, 7)?,
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_millis(expires_ms),
        call_id,
        cseq,
        path: path.to_vec(),
        instance: optional(&instance),
        reg_id,
        source: Source {
            remote: addr(remote)?,
            transport,
            local: addr(local)?,
            connection,
        },
    })
}

/// Decodes a whole AOR value.
/// An empty value (the script's answer for an AOR without bindings) and an empty map (what
/// `cmsgpack.pack` may write for an empty Lua table) are the empty set.
pub(super) fn decode_set(value: &Bytes) -> Result<Vec<Binding>, CodecError> {
    if value.is_empty() || value.as_ref() == [0x80] {
        return Ok(Vec::new());
    }
    let mut r = Reader::new(value);
    let n = r.array()?;
    // Each binding takes at least ten bytes: a hostile length cannot size the allocation.
    let mut out = Vec::with_capacity(n.min(value.len() / 10));
    for _ in 0..n {
        out.push(decode_binding(&mut r)?);
    }
    if !r.is_empty() {
        return Err(CodecError::Framing(value.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let b = Binding {
            contact: Bytes::from_static(b"sip:alice@192.0.2.1:5060;ob"),
            q: 500,
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_123_456),
            call_id: Bytes::from_static(b"a:b@c"),
            cseq: 42,
            path: vec![Bytes::from_static(b"<sip:p1;lr>"), Bytes::from_static(b"")],
            instance: Some(Bytes::from_static(b"\"<urn:uuid:1>\"")),
            reg_id: Some(1),
            source: Source {
                remote: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 4000)),
                transport: Transport::Tls,
                local: "[2001:db8::1]:5061"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
                connection: Some(ConnectionId(u64::MAX)),
            },
        };
        let [arg] = binding_args(&b, millis(b.expires_at), "node-a:1");
        // The argument is the one-binding value; two bindings are the same items twice.
        let value = Bytes::from(arg.clone());
        assert_eq!(decode_set(&value), Ok(vec![b.clone()]));
        let mut set = Vec::new();
        write::array(&mut set, 2);
        for _ in 0..2 {
            set.extend_from_slice(arg.get(1..).unwrap_or_default());
        }
        assert_eq!(decode_set(&Bytes::from(set)), Ok(vec![b.clone(), b]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"5:abc"[..],
            &[0x91, 0x98],
            &[0x91, 0x92, 0x01, 0xa0],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0x90, 0x00],
        ] {
            assert!(decode_set(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(decode_set(&Bytes::from_static(&[0x90])), Ok(Vec::new()));
    }
}
