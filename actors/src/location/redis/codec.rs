//! The byte format of bindings in Redis: netstring fields, readable by the Lua scripts.
//!
//! A binding is the concatenation of `<decimal length>:<bytes>` fields, in this order:
//! `expires_at` (ms since the Unix epoch), Call-ID, CSeq, contact URI, `+sip.instance`,
//! `reg-id`, connection, q (per mille), transport token, remote address, local address, then
//! one field per `Path` value. Optional fields are empty when absent and `=value` when present,
//! so `Some("")` and `None` stay distinct. An AOR value is the concatenation of its bindings,
//! each wrapped in one more netstring. The scripts read only the first seven fields.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sipmesh_protocol::peer::{ConnectionId, Transport};
use sipmesh_protocol::registrar::{Binding, Source};

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

fn put_opt(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put(out, b""),
        Some(v) => {
            let mut f = Vec::with_capacity(v.len() + 1);
            f.push(b'=');
            f.extend_from_slice(v);
            put(out, &f);
        }
    }
}

/// The stored text of a connection: `scope:id`, so connection ids of different nodes sharing
/// one Redis never collide.
pub(super) fn connection_text(scope: &str, connection: ConnectionId) -> String {
    format!("{scope}:{}", connection.0)
}

/// Encodes one binding. `expires_at_ms` overrides the binding's expiry (0 marks a removal in a
/// REGISTER argument). `scope` namespaces the connection id.
pub(super) fn encode_binding(b: &Binding, expires_at_ms: u64, scope: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.contact.len() + b.call_id.len() + 96);
    put(&mut out, expires_at_ms.to_string().as_bytes());
    put(&mut out, &b.call_id);
    put(&mut out, b.cseq.to_string().as_bytes());
    put(&mut out, &b.contact);
    put_opt(&mut out, b.instance.as_deref());
    put_opt(
        &mut out,
        b.reg_id
            .map(|r| r.to_string())
            .as_deref()
            .map(str::as_bytes),
    );
    put_opt(
        &mut out,
        b.source
            .connection
            .map(|c| connection_text(scope, c))
            .as_deref()
            .map(str::as_bytes),
    );
    put(&mut out, b.q.to_string().as_bytes());
    put(&mut out, b.source.transport.via_token().as_bytes());
    put(&mut out, b.source.remote.to_string().as_bytes());
    put(&mut out, b.source.local.to_string().as_bytes());
    for p in &b.path {
        put(&mut out, p);
    }
    out
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

/// Decodes one binding (slices share `blob`'s buffer).
pub(super) fn decode_binding(blob: &Bytes) -> Result<Binding, CodecError> {
    let f = fields(blob)?;
    let [
        expires,
        call_id,
        cseq,
        contact,
        instance,
        reg_id,
        connection,
        q,
        transport,
        remote,
        local,
        path @ ..,
    ] = f.as_slice()
    else {
        return Err(CodecError::MissingField);
    };
    let expires_ms: u64 = number(expires, 0)?;
    let reg_id = optional(reg_id).map(|r| number(&r, 5)).transpose()?;
    let connection = optional(connection)
        .map(|c| {
            // `scope:id`: the id follows the last ':'.
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
        contact: contact.clone(),
        q: number(q, 7)?,
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_millis(expires_ms),
        call_id: call_id.clone(),
        cseq: number(cseq, 2)?,
        path: path.to_vec(),
        instance: optional(instance),
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
pub(super) fn decode_set(value: &Bytes) -> Result<Vec<Binding>, CodecError> {
    fields(value)?.iter().map(decode_binding).collect()
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
        let blob = Bytes::from(encode_binding(&b, millis(b.expires_at), "node-a:1"));
        assert_eq!(decode_binding(&blob), Ok(b.clone()));
        let mut set = Vec::new();
        put(&mut set, &blob);
        put(&mut set, &blob);
        assert_eq!(decode_set(&Bytes::from(set)), Ok(vec![b.clone(), b]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b"5:abc"[..], b"x:", b"3:abc", b"99999999999999999999999:"] {
            assert!(decode_binding(&Bytes::copy_from_slice(bad)).is_err());
        }
    }
}
