//! Requests the node answers itself: REGISTER (RFC 3261 §10.3, with the rules in
//! [`registrar`](crate::registrar)) and OPTIONS addressed to the node (§11.2).

use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::header::{Contacts, HeaderName};
use crate::message::{Message, StatusCode};
use crate::peer::Origin;
use crate::registrar::{
    Aor, ContactInput, RegisterOutcome, RegisterRequest, RequestContacts, Source,
    contact_header_values,
};

use super::addressing::reply_destination;
use super::core::{Core, Output, Pending, StoreFailure};
use super::routing::SUPPORTED;

/// Methods the node handles or proxies, for `Allow`.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, PRACK, UPDATE, SUBSCRIBE, NOTIFY, REFER, PUBLISH";

impl Core {
    /// 200 OK to an OPTIONS for the node itself, with what it can do (§11.2).
    pub(super) fn answer_options(&mut self, now: Instant, server: u64) {
        if self.reject_unsupported_require(now, server) {
            return;
        }
        let extra = [
            ("Allow", ALLOW.to_owned()),
            ("Accept", "application/sdp".to_owned()),
            ("Supported", SUPPORTED.join(", ")),
        ];
        self.respond_local(now, server, StatusCode::OK, "OK", &extra);
    }

    /// 420 + Unsupported when `Require` names an extension we lack (§8.2.2.3). True if sent.
    fn reject_unsupported_require(&mut self, now: Instant, server: u64) -> bool {
        let Some(entry) = self.servers.get(&server) else {
            return true;
        };
        let Some(request) = entry.request.as_ref() else {
            return true;
        };
        let unsupported: Vec<String> = request
            .option_tags(&HeaderName::Require)
            .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .map(str::to_owned)
            .collect();
        if unsupported.is_empty() {
            return false;
        }
        self.respond_local(
            now,
            server,
            StatusCode(420),
            "Bad Extension",
            &[("Unsupported", unsupported.join(", "))],
        );
        true
    }

    /// Checks a REGISTER and hands it to the store (§10.3 steps 1-6; the binding rules of
    /// steps 6-8 run in the store, atomically per AOR).
    pub(super) fn start_register(
        &mut self,
        now: Instant,
        server: u64,
        msg: &Message,
        origin: Origin,
    ) {
        if self.reject_unsupported_require(now, server) {
            return;
        }
        let aor = msg
            .to()
            .ok()
            .and_then(|to| self.canonical_aor(to.uri_raw).ok());
        let request = match register_request(msg, &origin, aor) {
            Ok(r) => r,
            Err((code, reason)) => {
                self.respond_local(now, server, StatusCode(code), reason, &[]);
                return;
            }
        };
        let token = self.new_id();
        self.pending.insert(token, Pending::Register { server });
        self.outputs.push_back(Output::Register { token, request });
    }

    /// Answers a REGISTER from the store's result: 200 with every current binding, or the
    /// rule's error (423 carries Min-Expires), or 503 + Retry-After.
    pub(super) fn finish_register(
        &mut self,
        now: Instant,
        wall: SystemTime,
        server: u64,
        result: Result<RegisterOutcome, StoreFailure>,
    ) {
        match result {
            Ok(outcome) => {
                let mut extra: Vec<(&str, String)> = contact_header_values(&outcome.bindings, wall)
                    .into_iter()
                    .map(|v| ("Contact", String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                for p in &outcome.response_path {
                    extra.push(("Path", String::from_utf8_lossy(p).into_owned()));
                }
                extra.push(("Supported", SUPPORTED.join(", ")));
                self.respond_local(now, server, StatusCode::OK, "OK", &extra);
            }
            Err(StoreFailure::Rejected(e)) => {
                let mut extra = Vec::new();
                if let Some(min) = e.min_expires() {
                    extra.push(("Min-Expires", min.to_string()));
                }
                self.respond_local(
                    now,
                    server,
                    StatusCode(e.status_code()),
                    e.reason_phrase(),
                    &extra,
                );
            }
            Err(StoreFailure::Unavailable | StoreFailure::FlowsClosed) => {
                self.respond_local(
                    now,
                    server,
                    StatusCode(503),
                    "Service Unavailable: location store unreachable",
                    &[("Retry-After", "5".to_owned())],
                );
            }
        }
    }
}

/// Turns a parsed REGISTER into the registrar's input, or a (status, reason) for the peer.
fn register_request(
    msg: &Message,
    origin: &Origin,
    aor: Option<Aor>,
) -> Result<RegisterRequest, (u16, &'static str)> {
    msg.to().map_err(|_| (400, "Bad Request: malformed To"))?;
    let aor = aor.ok_or((404, "Not Found: To is not a SIP AOR of ours"))?;
    let call_id = msg
        .call_id()
        .map_err(|_| (400, "Bad Request: missing Call-ID"))?;
    let cseq = msg
        .cseq()
        .map_err(|_| (400, "Bad Request: malformed CSeq"))?;
    let contacts = match msg
        .contacts()
        .map_err(|_| (400, "Bad Request: malformed Contact"))?
    {
        Contacts::Star => RequestContacts::Star,
        Contacts::List(list) if list.is_empty() => RequestContacts::None,
        Contacts::List(list) => RequestContacts::List(
            list.iter()
                .map(|c| ContactInput {
                    uri: Bytes::copy_from_slice(c.name_addr.uri_raw.as_bytes()),
                    q: c.q,
                    expires: c.expires,
                    // As received, quotes and `<>` included: the 200 echoes it (RFC 5626
                    // §6) and a UA such as JsSIP cannot parse an unquoted `<urn:…>`.
                    instance: c
                        .param("+sip.instance")
                        .flatten()
                        .map(|i| Bytes::copy_from_slice(i.as_bytes())),
                    reg_id: c.reg_id(),
                })
                .collect(),
        ),
    };
    let expires_header = msg
        .expires()
        .map_err(|_| (400, "Bad Request: malformed Expires"))?;
    let path: Vec<Bytes> = msg
        .header_values(&HeaderName::Path)
        .map(|p| Bytes::copy_from_slice(trim(p)))
        .collect();
    let supports_path = msg
        .option_tags(&HeaderName::Supported)
        .any(|t| t.eq_ignore_ascii_case("path"));
    let via = msg
        .top_via()
        .map_err(|_| (400, "Bad Request: malformed Via"))?;
    let reply = reply_destination(origin, via.rport.is_some(), via.port);
    Ok(RegisterRequest {
        aor,
        call_id: Bytes::copy_from_slice(call_id.as_bytes()),
        cseq: cseq.seq,
        contacts,
        expires_header,
        path,
        supports_path,
        source: Source {
            remote: reply.addr,
            transport: origin.transport,
            local: origin.local,
            connection: origin.connection,
        },
    })
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}
