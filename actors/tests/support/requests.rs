//! Builders for REGISTER requests and sources used by the store tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sipmesh_protocol::peer::{ConnectionId, Transport};
use sipmesh_protocol::registrar::{Aor, ContactInput, RegisterRequest, RequestContacts, Source};

/// A whole-second wall-clock origin, so stored millisecond expiries compare exactly.
pub(crate) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// `sip:<user>@example.com`.
pub(crate) fn aor(user: &str) -> Aor {
    Aor::from_uri(format!("sip:{user}@example.com").as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// A UDP source, or TCP over `connection`.
pub(crate) fn source(connection: Option<u64>) -> Source {
    Source {
        remote: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 40000)),
        transport: if connection.is_some() {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        local: SocketAddr::from((Ipv4Addr::new(198, 51, 100, 1), 5060)),
        connection: connection.map(ConnectionId),
    }
}

/// A Contact with an optional `expires` parameter.
pub(crate) fn contact(uri: impl Into<String>, expires: Option<u32>) -> ContactInput {
    ContactInput {
        expires,
        ..ContactInput::new(Bytes::from(uri.into()))
    }
}

/// A REGISTER of `contacts` for `aor` over UDP.
pub(crate) fn req(
    aor: &Aor,
    call_id: &str,
    cseq: u32,
    contacts: Vec<ContactInput>,
) -> RegisterRequest {
    RegisterRequest {
        aor: aor.clone(),
        call_id: Bytes::copy_from_slice(call_id.as_bytes()),
        cseq,
        contacts: RequestContacts::List(contacts),
        expires_header: None,
        path: Vec::new(),
        supports_path: false,
        source: source(None),
    }
}
