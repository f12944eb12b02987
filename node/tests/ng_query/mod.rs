//! rtpengine's view of one call for the media tests: an ng `query` sent by hand, its tags
//! and how many of each tag's streams still hold a local port (a deleted branch keeps its
//! tag in the reply but loses its ports, measured against rtpengine 10.5).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use sipmesh_protocol::ng::{Value, bencode};

/// rtpengine's `query` of `call_id`: each tag (`<untagged N>` for an offer's branch no
/// answer named) with the number of its streams that still hold a local port.
pub(crate) fn query_tags(ng: SocketAddr, call_id: &str) -> Option<Vec<(String, usize)>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut d = sipmesh_protocol::ng::Dict::new();
    d.insert(Bytes::from_static(b"command"), Value::str("query"));
    d.insert(Bytes::from_static(b"call-id"), Value::str(call_id));
    let cookie = format!(
        "q{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut request = format!("{cookie} ").into_bytes();
    request.extend(Value::Dict(d).encode());
    let sock = UdpSocket::bind(SocketAddr::new(ng.ip(), 0)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    sock.send_to(&request, ng).ok()?;
    let mut buf = vec![0u8; 65_535];
    let n = sock.recv(&mut buf).ok()?;
    let reply = buf.get(..n)?;
    let space = reply.iter().position(|b| *b == b' ')?;
    let value = bencode::decode(&Bytes::copy_from_slice(reply.get(space + 1..)?)).ok()?;
    let dict = value.as_dict()?;
    let tags = dict.get(&b"tags"[..])?.as_dict()?;
    let ported = |tag: &Value| -> usize {
        let medias = tag
            .as_dict()
            .and_then(|t| t.get(&b"medias"[..]))
            .and_then(Value::as_list)
            .unwrap_or_default();
        medias
            .iter()
            .filter_map(|m| m.as_dict()?.get(&b"streams"[..])?.as_list())
            .flatten()
            .filter(|s| {
                s.as_dict()
                    .is_some_and(|s| s.contains_key(&b"local port"[..]))
            })
            .count()
    };
    Some(
        tags.iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), ported(v)))
            .collect(),
    )
}
