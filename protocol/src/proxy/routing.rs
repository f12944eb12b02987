//! Where a new request goes: validation (RFC 3261 §16.3), Route pre-processing (§16.4) and
//! target determination (§16.5).
//!
//! The outcome is one of: answer it here (OPTIONS to the node, REGISTER, an error), look the
//! Request-URI up in the location store, or forward it to one next hop (a Route, or the
//! Request-URI of an in-dialog or foreign request).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use tracing::debug;

use crate::header::{HeaderName, NameAddr};
use crate::message::{Message, Method, StatusCode};
use crate::peer::{Destination, Origin, Transport};
use crate::registrar::{Aor, AorError};
use crate::uri::{Host, SipUri, Uri};

use super::core::{Core, Pending};
use super::flow::flow_from_routes;
use super::forward::ForwardPlan;
use super::wire::{loop_hash, parse_our_branch};

/// Option tags this node supports (`Supported`, and accepted in `Require` of requests it
/// answers itself).
pub(super) const SUPPORTED: &[&str] = &["path"];

/// How to reach a URI.
#[derive(Debug)]
pub(super) enum Resolve {
    /// An address and transport.
    Ok(Transport, SocketAddr),
    /// A host name: the shell must look it up (A/AAAA) before the request can go.
    Name {
        /// The name.
        host: String,
        /// The port to use with every address found.
        port: u16,
        /// The transport.
        transport: Transport,
    },
    /// The host is a name we cannot resolve here, or the transport is not one we speak.
    Unreachable(&'static str),
}

impl Core {
    /// A new request has its server transaction: decide what to do with it.
    pub(super) fn process_new_request(&mut self, now: Instant, server: u64, origin: Origin) {
        let Some(entry) = self.servers.get(&server) else {
            return;
        };
        let Some(msg) = entry.request.clone() else {
            return;
        };
        let Some(method) = msg.method().cloned() else {
            return;
        };
        if method == Method::Invite {
            self.respond_local(now, server, StatusCode(100), "Trying", &[]);
        }
        if self.draining {
            self.respond_local(
                now,
                server,
                StatusCode(503),
                "Service Unavailable: node shutting down",
                &[("Retry-After", "5".to_owned())],
            );
            return;
        }
        if let Err(e) = msg.validate_request() {
            let code = e.status();
            self.respond_local(now, server, code, &e.reason_phrase(), &[]);
            return;
        }
        // §16.3 step 2: a scheme we cannot handle gets 416.
        let ruri = match msg.request_uri() {
            Some(Ok(u)) => u,
            Some(Err(e)) => {
                self.respond_local(now, server, StatusCode(400), &e.reason_phrase(), &[]);
                return;
            }
            None => return,
        };
        if let Uri::Absolute { .. } = ruri {
            self.respond_local(now, server, StatusCode(416), "Unsupported URI Scheme", &[]);
            return;
        }
        // RFC 3261 §26.2.2 / RFC 5630: a `sips:` request travels over TLS on every hop; one
        // that reached us over a plain transport already broke that promise.
        if is_sips(&ruri) && !is_secure(origin.transport) {
            self.respond_local(
                now,
                server,
                StatusCode(403),
                "Forbidden: SIPS request over an insecure transport",
                &[],
            );
            return;
        }
        // §16.3 step 3: Max-Forwards.
        let max_forwards = match msg.max_forwards() {
            Ok(mf) => mf,
            Err(e) => {
                self.respond_local(now, server, StatusCode(400), &e.reason_phrase(), &[]);
                return;
            }
        };
        let to_self = ruri
            .as_sip()
            .is_some_and(|u| u.user.is_none() && self.uri_is_self(u));
        if max_forwards == Some(0) {
            if method == Method::Options && to_self {
                self.answer_options(now, server);
            } else {
                self.respond_local(now, server, StatusCode(483), "Too Many Hops", &[]);
            }
            return;
        }
        // §16.3 step 4: loop detection against our own Via values.
        if method != Method::Cancel && self.is_loop(&msg) {
            self.respond_local(now, server, StatusCode(482), "Loop Detected", &[]);
            return;
        }
        // §16.3 step 5: Proxy-Require (we support no proxy extension).
        let unsupported: Vec<&str> = msg.option_tags(&HeaderName::ProxyRequire).collect();
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            self.respond_local(
                now,
                server,
                StatusCode(420),
                "Bad Extension",
                &[("Unsupported", list)],
            );
            return;
        }
        self.route_request(now, server, &msg, &ruri, origin);
    }

    /// §16.4 and §16.5: Route pre-processing, then the target.
    fn route_request(
        &mut self,
        now: Instant,
        server: u64,
        msg: &Message,
        ruri: &Uri<'_>,
        origin: Origin,
    ) {
        let routes: Vec<NameAddr<'_>> = match msg.routes() {
            Ok(r) => r,
            Err(e) => {
                self.respond_local(now, server, StatusCode(400), &e.reason_phrase(), &[]);
                return;
            }
        };
        let mut plan = ForwardPlan::new(origin);
        let mut routes = routes.as_slice();
        let mut target_uri: Uri<'_> = *ruri;
        // Strict-router interop (§16.4): the previous hop put our Record-Route URI into the
        // Request-URI; the real target is the last Route value.
        if let (Some(sip), Some((last, rest))) = (ruri.as_sip(), routes.split_last())
            && sip.user.is_none()
            && self.uri_is_self(sip)
        {
            plan.new_request_uri = Some(Bytes::copy_from_slice(last.uri_raw.as_bytes()));
            plan.drop_last_route = true;
            target_uri = last.uri;
            routes = rest;
        }
        // Pop every leading Route value that names us (two of them after double Record-Route).
        let before_pop = routes;
        let mut popped = 0;
        while let Some((first, rest)) = routes.split_first() {
            match first.uri.as_sip() {
                Some(u) if self.uri_is_self(u) => {
                    popped += 1;
                    routes = rest;
                }
                _ => break,
            }
        }
        plan.pop_routes = popped;
        let method = msg.method().cloned().unwrap_or(Method::Options);
        let in_dialog = msg.to().ok().and_then(|t| t.tag()).is_some();
        // A NOTIFY can create the subscriber's dialog (RFC 6665 §4.1.2.4), whose route set then
        // comes from the NOTIFY's Record-Route; it always has a To tag, so every NOTIFY is
        // record-routed (in mid-dialog requests UAs ignore Record-Route, RFC 3261 §12.2).
        plan.record_route = (!in_dialog && is_dialog_creating(&method)) || method == Method::Notify;

        // A popped Route value with a flow token names the connection an in-dialog request
        // from the other side must take (RFC 5626 §5.3): the Request-URI (`xxx.invalid` for a
        // browser) is not used to find the next hop. A token that fails its MAC check was
        // forged or altered: 403 (§5.3), never a guess at a connection.
        let flow = flow_from_routes(
            before_pop.get(..popped).unwrap_or_default(),
            &origin,
            &self.cfg.flow_token_key,
        );
        let flow = match flow {
            Ok(flow) => flow,
            Err(e) => {
                tracing::debug!(error = %e, "request refused: flow token");
                self.respond_local(
                    now,
                    server,
                    StatusCode(403),
                    "Forbidden: invalid flow token",
                    &[],
                );
                return;
            }
        };
        if let Some(destination) = flow {
            self.forward(
                now,
                server,
                msg,
                plan,
                vec![super::forward::Target {
                    request_uri: None,
                    destination,
                    path: Vec::new(),
                    redial: false,
                }],
            );
            return;
        }

        let ruri_local = target_uri
            .as_sip()
            .is_some_and(|u| self.locality.is_local_domain(&host_text(&u.host)));
        if let Some(next) = routes.first() {
            // A Route remains: it is the next hop; the Request-URI stays (§16.6 step 6/7). A
            // route set that did not go through us, for a domain that is not ours, asks us to
            // relay: that is the relay policy's call.
            if popped == 0 && !ruri_local && !self.cfg.relay {
                self.respond_local(
                    now,
                    server,
                    StatusCode(403),
                    "Forbidden: relaying denied",
                    &[],
                );
                return;
            }
            let Some(sip) = next.uri.as_sip() else {
                self.respond_local(
                    now,
                    server,
                    StatusCode(416),
                    "Unsupported URI Scheme in Route",
                    &[],
                );
                return;
            };
            if !sip.lr() {
                // The next hop is a strict router (§16.6 step 6).
                plan.strict_next_hop = Some(Bytes::copy_from_slice(next.uri_raw.as_bytes()));
            }
            self.forward_to_uri(now, server, msg, plan, sip);
            return;
        }
        let Some(sip) = target_uri.as_sip() else {
            // tel: URIs and the like: we have no ENUM/gateway routing.
            self.respond_local(
                now,
                server,
                StatusCode(404),
                "Not Found: no route for this URI",
                &[],
            );
            return;
        };
        let host = host_text(&sip.host);
        let local_domain = self.locality.is_local_domain(&host);
        let to_self = self.uri_is_self(sip);
        if method == Method::Register && (local_domain || to_self) {
            self.start_register(now, server, msg, origin);
            return;
        }
        if to_self && sip.user.is_none() {
            if method == Method::Options {
                self.answer_options(now, server);
            } else {
                self.respond_local(
                    now,
                    server,
                    StatusCode(404),
                    "Not Found: request addressed to the proxy",
                    &[],
                );
            }
            return;
        }
        if in_dialog && !to_self && (popped > 0 || local_domain) {
            // A mid-dialog request routed through us by its route set: its Request-URI is the
            // remote target and goes out as is (no location lookup).
            self.forward_to_uri(now, server, msg, plan, sip);
            return;
        }
        if local_domain || to_self {
            let Ok(aor) = self.canonical_aor(&target_uri.to_string()) else {
                self.respond_local(now, server, StatusCode(404), "Not Found", &[]);
                return;
            };
            let token = self.new_id();
            self.pending.insert(token, Pending::Lookup { server });
            if let Some(e) = self.servers.get_mut(&server) {
                e.context = None;
            }
            self.plans.insert(server, plan);
            self.outputs.push_back(super::Output::Lookup { token, aor });
            return;
        }
        if popped > 0 || self.cfg.relay {
            self.forward_to_uri(now, server, msg, plan, sip);
            return;
        }
        debug!(%host, "request for a foreign domain refused");
        self.respond_local(
            now,
            server,
            StatusCode(403),
            "Forbidden: relaying denied",
            &[],
        );
    }

    /// The AOR of a URI (RFC 3261 §10.3 step 5, see [`Aor`]), except that the port is dropped
    /// when the host is one of our domains: `sip:bob@node:5060`, `sip:bob@node` and
    /// `sip:bob@node:5061` are one user, whichever listener (or TLS front end) a UA registered
    /// or called through. SIPp puts the port it talks to in To and the Request-URI, JsSIP none
    /// (Kamailio goes further and keys by user name alone by default).
    ///
    /// A `sips:` AOR of ours is the same user as its `sip:` form (RFC 5630 §6.2: the scheme asks
    /// for TLS on every hop, which routing enforces per hop; it does not name another resource).
    pub(super) fn canonical_aor(&self, raw: &str) -> Result<Aor, AorError> {
        if let Ok(Uri::Sip(sip)) = Uri::parse(raw)
            && self.locality.is_local_domain(&host_text(&sip.host))
            && (sip.port.is_some() || sip.secure)
        {
            let mut aor = sip.address_of_record();
            if aor.starts_with("sips:") {
                aor.replace_range(..5, "sip:");
            }
            return Aor::from_uri(aor.as_bytes());
        }
        Aor::from_uri(raw.as_bytes())
    }

    /// True when the SIP URI names this node (host and port match a listener).
    pub(super) fn uri_is_self(&self, uri: &SipUri<'_>) -> bool {
        let transport = uri.transport().and_then(Transport::from_token);
        self.locality
            .is_self(&host_text(&uri.host), uri.port, transport, uri.secure)
    }

    /// §16.3 step 4: the request carries one of our Via values whose loop hash equals the hash
    /// of the request as it is now (a spiral changes the Request-URI and so the hash).
    fn is_loop(&self, msg: &Message) -> bool {
        let hash = loop_hash(msg);
        msg.vias().flatten().any(|via| {
            via.branch
                .and_then(parse_our_branch)
                .is_some_and(|(_, h)| h == hash)
                && self.locality.is_self(
                    &host_text(&via.host),
                    via.port,
                    Transport::from_token(via.transport),
                    false,
                )
        })
    }

    /// Forwards to the single next hop named by `uri`.
    pub(super) fn forward_to_uri(
        &mut self,
        now: Instant,
        server: u64,
        msg: &Message,
        plan: ForwardPlan,
        uri: &SipUri<'_>,
    ) {
        let sips = msg
            .request_uri()
            .and_then(Result::ok)
            .is_some_and(|u| is_sips(&u));
        match resolve(uri) {
            Resolve::Ok(transport, _) | Resolve::Name { transport, .. }
                if sips && !is_secure(transport) =>
            {
                self.respond_local(
                    now,
                    server,
                    StatusCode(480),
                    "Temporarily Unavailable: no TLS path for a SIPS request",
                    &[],
                );
            }
            Resolve::Ok(transport, addr) => {
                let dest = Destination {
                    transport,
                    addr,
                    local: None,
                    connection: None,
                };
                self.forward(
                    now,
                    server,
                    msg,
                    plan,
                    vec![super::forward::Target {
                        request_uri: None,
                        destination: dest,
                        path: Vec::new(),
                        redial: false,
                    }],
                );
            }
            Resolve::Name {
                host,
                port,
                transport,
            } => {
                let token = self.new_id();
                self.pending
                    .insert(token, Pending::Resolve { server, transport });
                self.plans.insert(server, plan);
                self.outputs
                    .push_back(super::Output::Resolve { token, host, port });
            }
            Resolve::Unreachable(why) => {
                self.respond_local(now, server, StatusCode(502), why, &[]);
            }
        }
    }

    /// The addresses of a name looked up for [`Output::Resolve`](super::Output::Resolve):
    /// forward to the first one we can reach (a unicast address of a family we have a listener
    /// for), or answer 502.
    pub fn handle_resolve_result(&mut self, now: Instant, token: u64, addresses: Vec<SocketAddr>) {
        let Some(Pending::Resolve { server, transport }) = self.pending.remove(&token) else {
            return;
        };
        let plan = self.plans.remove(&server);
        let Some(entry) = self.servers.get(&server) else {
            return;
        };
        if entry.cancelled || entry.finished {
            return;
        }
        let (Some(msg), Some(plan)) = (entry.request.clone(), plan) else {
            return;
        };
        let reachable = addresses.into_iter().find(|a| {
            is_unicast(a.ip())
                && self
                    .locality
                    .outbound_listener(transport, a.ip(), None)
                    .is_some()
        });
        let Some(addr) = reachable else {
            self.respond_local(
                now,
                server,
                StatusCode(502),
                "Bad Gateway: cannot resolve destination host name",
                &[],
            );
            return;
        };
        let destination = Destination {
            transport,
            addr,
            local: None,
            connection: None,
        };
        let target = super::forward::Target {
            request_uri: None,
            destination,
            path: Vec::new(),
            redial: false,
        };
        self.forward(now, server, &msg, plan, vec![target]);
    }
}

/// A `sips:` URI.
pub(super) fn is_sips(uri: &Uri<'_>) -> bool {
    uri.as_sip().is_some_and(|u| u.secure)
}

/// Transports that satisfy a `sips:` hop (TLS, and WebSocket over TLS).
pub(super) fn is_secure(transport: Transport) -> bool {
    matches!(transport, Transport::Tls | Transport::Wss)
}

/// Requests that create a dialog and so get a Record-Route (RFC 3261 §12, RFC 6665, RFC 3515).
fn is_dialog_creating(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
    )
}

/// The host as text without IPv6 brackets (what [`Locality`](super::Locality) takes).
pub(super) fn host_text(host: &Host<'_>) -> String {
    match host {
        Host::Domain(d) => (*d).to_owned(),
        Host::Ipv4(a) => a.to_string(),
        Host::Ipv6(a) => a.to_string(),
    }
}

/// A unicast address we may send to: never broadcast, multicast or unspecified (RFC 4475
/// §3.3.10 `bcast`).
pub(super) fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_broadcast() || a.is_multicast() || a.is_unspecified()),
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified()),
    }
}

/// How to reach a SIP URI (RFC 3263 without NAPTR/SRV): an IP literal (or `localhost`) in
/// `maddr` or the host is used as is, any other name must be looked up (A/AAAA) by the shell;
/// the transport comes from `transport=`, else TLS for `sips:`, else UDP; the port defaults per
/// transport.
pub(super) fn resolve(uri: &SipUri<'_>) -> Resolve {
    let transport = match uri.transport() {
        Some(t) => match Transport::from_token(t) {
            Some(t) => t,
            None => return Resolve::Unreachable("Bad Gateway: unknown transport"),
        },
        None if uri.secure => Transport::Tls,
        None => Transport::Udp,
    };
    // WebSocket peers are reached only over their flows (see `flow`): never dialed.
    if !matches!(transport, Transport::Udp | Transport::Tcp | Transport::Tls) {
        return Resolve::Unreachable("Bad Gateway: transport not served by this node");
    }
    let ip = match uri.maddr() {
        Some(m) => m
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok(),
        None => match uri.host {
            Host::Ipv4(a) => Some(IpAddr::V4(a)),
            Host::Ipv6(a) => Some(IpAddr::V6(a)),
            Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
                Some(IpAddr::from([127, 0, 0, 1]))
            }
            Host::Domain(_) => None,
        },
    };
    let port = uri.port.unwrap_or_else(|| transport.default_port());
    let Some(ip) = ip else {
        let host = uri
            .maddr()
            .map_or_else(|| host_text(&uri.host), str::to_owned);
        return Resolve::Name {
            host,
            port,
            transport,
        };
    };
    if !is_unicast(ip) {
        return Resolve::Unreachable("Bad Gateway: destination is not a unicast address");
    }
    Resolve::Ok(transport, SocketAddr::new(ip, port))
}
