//! Message construction on the wire: our branch format and loop hash (RFC 3261 §16.6 step 8),
//! the forwarded copy of a request (§16.6), Record-Route values, and the ACK (§17.1.1.3) and
//! CANCEL (§9.1) the proxy originates.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::header::HeaderName;
use crate::message::{Editor, Message, Method, RequestBuilder};
use crate::peer::{Listener, Origin, Transport};

use super::config::DEFAULT_MAX_FORWARDS;
use super::flow::{FLOW_PARAM, FlowToken, FlowTokenKey};
use super::forward::{ForwardPlan, Target};

/// Prefix of every branch this node creates: the RFC 3261 magic cookie, then `sm`, two hex
/// digits of shard, 16 of loop hash, then randomness.
pub(super) const OUR_BRANCH_PREFIX: &str = "z9hG4bKsm";

/// FNV-1a over the fields that identify a request for loop detection (§16.6 step 8): a spiral
/// changes the Request-URI and so the hash; a loop does not.
pub(super) fn loop_hash(msg: &Message) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(msg.request_uri_raw().unwrap_or_default());
    eat(msg
        .from()
        .ok()
        .and_then(|f| f.tag())
        .unwrap_or_default()
        .as_bytes());
    eat(msg
        .to()
        .ok()
        .and_then(|t| t.tag())
        .unwrap_or_default()
        .as_bytes());
    eat(msg.call_id().unwrap_or_default().as_bytes());
    eat(&msg.cseq().map(|c| c.seq).unwrap_or(0).to_be_bytes());
    for route in msg.header_values(&HeaderName::Route) {
        eat(route);
    }
    h
}

/// Splits one of our branches into (shard, loop hash).
pub(super) fn parse_our_branch(branch: &str) -> Option<(u8, u64)> {
    let rest = branch.strip_prefix(OUR_BRANCH_PREFIX)?;
    let shard = u8::from_str_radix(rest.get(..2)?, 16).ok()?;
    let hash = u64::from_str_radix(rest.get(2..18)?, 16).ok()?;
    Some((shard, hash))
}

/// The shard a response belongs to, read from its top Via branch (for the ingress).
pub fn shard_of_branch(branch: &str) -> Option<u8> {
    parse_our_branch(branch).map(|(s, _)| s)
}

/// `sip:IP:PORT;transport=tcp;lr` for one of our listeners, with `;ob;flow=TOKEN` when the
/// side it faces is a flow (see [`flow`](super::flow)).
fn record_route_value(l: &Listener, flow: Option<FlowToken>, key: &FlowTokenKey) -> String {
    let mut v = String::with_capacity(80);
    v.push_str("<sip:");
    push_hostport(&mut v, l.addr);
    if l.transport != Transport::Udp {
        let _ = write!(
            v,
            ";transport={}",
            l.transport.via_token().to_ascii_lowercase()
        );
    }
    v.push_str(";lr");
    if let Some(flow) = flow {
        let _ = write!(v, ";ob;{FLOW_PARAM}={}", flow.encode(key));
    }
    v.push('>');
    v
}

/// The flow token a Record-Route value facing a peer on `transport` carries: only for peers
/// that cannot be dialed back (WebSocket; TLS, whose certificate we could not verify), and in
/// a cluster for TCP too: an in-dialog request may enter at a node other than the one holding
/// the connection, and only the token tells it which connection (and node) that is.
fn flow_for_record_route(transport: Transport, token: Option<FlowToken>) -> Option<FlowToken> {
    token.filter(|t| match transport {
        Transport::Ws | Transport::Wss | Transport::Tls => true,
        Transport::Tcp => super::Incarnation::of(t.connection).is_clustered(),
        Transport::Udp | Transport::Sctp => false,
    })
}

fn push_hostport(v: &mut String, addr: std::net::SocketAddr) {
    match addr {
        std::net::SocketAddr::V4(a) => {
            let _ = write!(v, "{}:{}", a.ip(), a.port());
        }
        std::net::SocketAddr::V6(a) => {
            let _ = write!(v, "[{}]:{}", a.ip(), a.port());
        }
    }
}

/// Builds the forwarded copy of `msg` for one branch (§16.6 steps 1-8): Request-URI, Route
/// pops and Path, Max-Forwards, Record-Route, received/rport on the previous hop's Via, and our
/// Via on top. Everything else is copied byte for byte. Flow tokens are authenticated with
/// `key`.
pub(super) fn build_forwarded(
    msg: &Message,
    plan: &ForwardPlan,
    target: &Target,
    branch: &str,
    (out, inbound): (Listener, Option<Listener>),
    key: &FlowTokenKey,
) -> Bytes {
    let mut e = Editor::new(msg);
    let routes: Vec<&[u8]> = msg.header_values(&HeaderName::Route).collect();
    let mut remaining: Vec<Bytes> = routes
        .iter()
        .skip(plan.pop_routes)
        .map(|r| Bytes::copy_from_slice(r))
        .collect();
    if plan.drop_last_route {
        remaining.pop();
    }
    let mut request_uri = target
        .request_uri
        .clone()
        .or_else(|| plan.new_request_uri.clone());
    if let Some(strict) = &plan.strict_next_hop {
        // §16.6 step 6: the strict router's URI becomes the Request-URI and the current
        // Request-URI goes last in the route set.
        let current = request_uri
            .clone()
            .unwrap_or_else(|| Bytes::copy_from_slice(msg.request_uri_raw().unwrap_or_default()));
        if !remaining.is_empty() {
            remaining.remove(0);
        }
        let mut v = Vec::with_capacity(current.len() + 2);
        v.push(b'<');
        v.extend_from_slice(&current);
        v.push(b'>');
        remaining.push(Bytes::from(v));
        request_uri = Some(strict.clone());
    }
    let mut route_set: Vec<Bytes> = target.path.clone();
    let rewrite_routes =
        plan.drop_last_route || plan.strict_next_hop.is_some() || !target.path.is_empty();
    if rewrite_routes {
        route_set.extend(remaining);
        e.remove_header(&HeaderName::Route);
        if !route_set.is_empty() {
            let joined = route_set
                .iter()
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            e.append_header("Route", joined);
        }
    } else {
        for _ in 0..plan.pop_routes {
            e.remove_first_value(&HeaderName::Route);
        }
    }
    if let Some(uri) = request_uri {
        e.set_request_uri(uri);
    }
    let mf = msg
        .max_forwards()
        .ok()
        .flatten()
        .map_or(DEFAULT_MAX_FORWARDS, |m| m.saturating_sub(1));
    e.set_header("Max-Forwards", mf.to_string());
    // Prepends come out last-first: Record-Route values, then the rewritten previous Via, then
    // ours, so that ours ends on top.
    if plan.record_route {
        // RFC 5658 §4 double Record-Route: the value facing the callee (our outbound listener)
        // on top, the one facing the caller below it. Both are needed when the listeners differ,
        // or when either side is a flow (a token each; see `flow`).
        let out_flow = flow_for_record_route(
            target.destination.transport,
            FlowToken::of_destination(&target.destination),
        );
        let in_flow = inbound
            .and_then(|i| flow_for_record_route(i.transport, FlowToken::of_origin(&plan.origin)));
        // Insertions at one place come out in call order: the upper one first.
        e.insert_header_near(
            &HeaderName::RecordRoute,
            &HeaderName::Via,
            "Record-Route",
            record_route_value(&out, out_flow, key),
        );
        if let Some(inb) = inbound.filter(|i| *i != out || in_flow != out_flow) {
            e.insert_header_near(
                &HeaderName::RecordRoute,
                &HeaderName::Via,
                "Record-Route",
                record_route_value(&inb, in_flow, key),
            );
        }
    }
    if let Some(v) = annotated_top_via(msg, &plan.origin) {
        e.remove_first_value(&HeaderName::Via);
        e.prepend_header("Via", v);
    }
    let mut via = String::with_capacity(64);
    let _ = write!(via, "SIP/2.0/{} ", out.transport.via_token());
    push_hostport(&mut via, out.addr);
    let _ = write!(via, ";branch={branch}");
    if out.transport == Transport::Udp {
        via.push_str(";rport");
    }
    e.prepend_header("Via", via);
    e.finish()
}

/// The previous hop's Via with `received` and a filled-in `rport` (RFC 3261 §18.2.1, RFC 3581
/// §4), or `None` when it needs neither.
fn annotated_top_via(msg: &Message, origin: &Origin) -> Option<String> {
    let raw = msg.header_values(&HeaderName::Via).next()?;
    let raw = std::str::from_utf8(raw).ok()?.trim();
    let via = msg.top_via().ok()?;
    let source_ip = origin.source.ip();
    let host_matches = match via.host {
        crate::uri::Host::Ipv4(a) => std::net::IpAddr::V4(a) == source_ip,
        crate::uri::Host::Ipv6(a) => std::net::IpAddr::V6(a) == source_ip,
        crate::uri::Host::Domain(_) => false,
    };
    let wants_rport = matches!(via.rport, Some(None));
    if (host_matches && !wants_rport) || via.received.is_some() {
        return None;
    }
    let mut out = String::with_capacity(raw.len() + 40);
    // Rebuild the parameter list: drop an empty `rport`, then add what we learned.
    for (i, part) in raw.split(';').enumerate() {
        if i > 0 && part.trim().eq_ignore_ascii_case("rport") {
            continue;
        }
        if i > 0 {
            out.push(';');
        }
        out.push_str(part);
    }
    if !host_matches {
        let _ = match source_ip {
            std::net::IpAddr::V4(a) => write!(out, ";received={a}"),
            std::net::IpAddr::V6(a) => write!(out, ";received=[{a}]"),
        };
    }
    if wants_rport {
        let _ = write!(out, ";rport={}", origin.source.port());
    }
    Some(out)
}

/// The ACK for a non-2xx final response, built from the INVITE we sent (§17.1.1.3).
pub(super) fn build_ack(req: &Message, resp: &Message) -> Bytes {
    let mut b = RequestBuilder::new(
        Method::Ack,
        Bytes::copy_from_slice(req.request_uri_raw().unwrap_or_default()),
    );
    if let Some(v) = req.header_values(&HeaderName::Via).next() {
        b = b.header("Via", v);
    }
    b = b.header("Max-Forwards", "70");
    for r in req.header_values(&HeaderName::Route) {
        b = b.header("Route", r);
    }
    if let Some(h) = req.header(&HeaderName::From) {
        b = b.header("From", h.value);
    }
    if let Some(h) = resp.header(&HeaderName::To) {
        b = b.header("To", h.value);
    }
    if let Some(h) = req.header(&HeaderName::CallId) {
        b = b.header("Call-ID", h.value);
    }
    let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
    b = b.header("CSeq", format!("{seq} ACK"));
    b.build()
}

/// The CANCEL for an INVITE we sent (§9.1).
pub(super) fn build_cancel(req: &Message) -> Option<Bytes> {
    let mut b = RequestBuilder::new(
        Method::Cancel,
        Bytes::copy_from_slice(req.request_uri_raw()?),
    );
    b = b.header("Via", req.header_values(&HeaderName::Via).next()?);
    b = b.header("Max-Forwards", "70");
    for r in req.header_values(&HeaderName::Route) {
        b = b.header("Route", r);
    }
    b = b.header("From", req.header(&HeaderName::From)?.value);
    b = b.header("To", req.header(&HeaderName::To)?.value);
    b = b.header("Call-ID", req.header(&HeaderName::CallId)?.value);
    let seq = req.cseq().ok()?.seq;
    b = b.header("CSeq", format!("{seq} CANCEL"));
    Some(b.build())
}
