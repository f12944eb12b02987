//! A REGISTER reduced to the plain data the registrar rules need.
//!
//! The glue builds a [`RegisterRequest`] from a parsed message: the To URI canonicalised into an
//! [`Aor`], Call-ID, CSeq number, the Contact values, `Expires`, `Path` and whether
//! `Supported` lists `path`, plus where the request came from ([`Source`]).

use std::net::SocketAddr;

use bytes::Bytes;

use crate::peer::{ConnectionId, Transport};
use crate::registrar::aor::Aor;

/// One REGISTER, as input to [`apply_register`](crate::registrar::apply_register).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest {
    /// The canonical To URI.
    pub aor: Aor,
    /// The Call-ID header value.
    pub call_id: Bytes,
    /// The CSeq sequence number.
    pub cseq: u32,
    /// The Contact header field values.
    pub contacts: RequestContacts,
    /// The `Expires` header value, if present and valid.
    pub expires_header: Option<u32>,
    /// The `Path` header values (RFC 3327), topmost first, each a full `<uri>;params` value.
    pub path: Vec<Bytes>,
    /// Whether `Supported` lists `path`: only then does the 200 echo `Path` (RFC 3327 §5.3).
    pub supports_path: bool,
    /// Where the request arrived from.
    pub source: Source,
}

/// The Contact header fields of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestContacts {
    /// No Contact: a query for the current bindings (RFC 3261 §10.2.3).
    None,
    /// `Contact: *` alone: remove all bindings (needs `Expires: 0`).
    Star,
    /// Contact values. A value whose `uri` is `*` marks a wildcard mixed with other values (the
    /// glue may pass the Contact list as is): a list holding only `*` is treated as
    /// [`RequestContacts::Star`], a longer one is refused with
    /// [`RegisterError::StarWithOtherContacts`](crate::registrar::RegisterError).
    List(Vec<ContactInput>),
}

/// One Contact header field value of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactInput {
    /// The URI text inside `<>` (or the bare URI when there were no angle brackets).
    pub uri: Bytes,
    /// The `q` parameter in per mille (`q=0.5` -> 500); above 1000 is refused.
    pub q: Option<u16>,
    /// The `expires` parameter; it takes precedence over the `Expires` header.
    pub expires: Option<u32>,
    /// The `+sip.instance` parameter value, quotes included as received (RFC 5626 §4.1).
    pub instance: Option<Bytes>,
    /// The `reg-id` parameter (RFC 5626 §4.2).
    pub reg_id: Option<u32>,
}

impl ContactInput {
    /// A contact with only a URI.
    pub fn new(uri: impl Into<Bytes>) -> Self {
        Self {
            uri: uri.into(),
            q: None,
            expires: None,
            instance: None,
            reg_id: None,
        }
    }
}

/// Where a REGISTER came from, kept with the binding so the proxy can reach a NATed UA over the
/// same path (RFC 5626 flows, RFC 3581 symmetric response routing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The packet's source address: the `received`/`rport` of the top Via, i.e. the address a
    /// NATed UA is reachable at.
    pub remote: SocketAddr,
    /// The transport the request arrived over.
    pub transport: Transport,
    /// The local listener address that received it.
    pub local: SocketAddr,
    /// The stream connection it arrived on, if any.
    pub connection: Option<ConnectionId>,
}
