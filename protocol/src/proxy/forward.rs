//! The client side of the proxy: building forwarded requests (RFC 3261 §16.6), running their
//! client transactions, choosing and forwarding responses (§16.7), CANCEL (§16.10), Timer C,
//! and stateless forwarding of ACK for 2xx.

use std::fmt::Write as _;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, trace};

use crate::header::HeaderName;
use crate::message::{Editor, Message, Method, RequestBuilder, StatusCode};
use crate::peer::{Destination, Listener, Origin, Transport};
use crate::registrar::Binding;
use crate::transaction::{
    CancelPermit, ClientInviteTx, ClientNonInviteTx, TransactionKey, TxEvent,
};
use crate::uri::Uri;

use super::config::{DEFAULT_MAX_FORWARDS, TIMER_C};
use super::core::{ClientEntry, ClientFsm, Core, ProxyContext, StoreFailure, TimerRef, server_key};
use super::response_context::{ResponseAction, ResponseContext};
use super::routing::{Resolve, resolve};

/// Prefix of every branch this node creates: the RFC 3261 magic cookie, then `sm`, two hex
/// digits of shard, 16 of loop hash, then randomness.
const OUR_BRANCH_PREFIX: &str = "z9hG4bKsm";

/// How a request is to be rewritten, decided by Route processing.
#[derive(Debug, Clone)]
pub(super) struct ForwardPlan {
    /// Where the request came from (its listener faces the upstream side).
    pub(super) origin: Origin,
    /// Replace the Request-URI (strict-router interop, §16.4).
    pub(super) new_request_uri: Option<Bytes>,
    /// Drop the last Route value (it moved into the Request-URI).
    pub(super) drop_last_route: bool,
    /// Number of leading Route values that name us and are removed.
    pub(super) pop_routes: usize,
    /// Insert Record-Route (initial dialog-creating requests).
    pub(super) record_route: bool,
    /// The next hop is a strict router with this URI (§16.6 step 6).
    pub(super) strict_next_hop: Option<Bytes>,
}

impl ForwardPlan {
    pub(super) fn new(origin: Origin) -> Self {
        Self {
            origin,
            new_request_uri: None,
            drop_last_route: false,
            pop_routes: 0,
            record_route: false,
            strict_next_hop: None,
        }
    }
}

/// One branch to create.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The Request-URI for this branch (a registered contact), or `None` to keep it.
    pub(super) request_uri: Option<Bytes>,
    /// Where to send it.
    pub(super) destination: Destination,
    /// Route values to put first (a binding's Path, RFC 3327).
    pub(super) path: Vec<Bytes>,
}

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

/// `sip:IP:PORT;transport=tcp;lr` for one of our listeners.
fn record_route_value(l: &Listener) -> String {
    let mut v = String::with_capacity(48);
    v.push_str("<sip:");
    push_hostport(&mut v, l.addr);
    if l.transport != Transport::Udp {
        let _ = write!(
            v,
            ";transport={}",
            l.transport.via_token().to_ascii_lowercase()
        );
    }
    v.push_str(";lr>");
    v
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

impl Core {
    fn branch_id(&mut self, hash: u64) -> String {
        format!(
            "{OUR_BRANCH_PREFIX}{:02x}{hash:016x}{:012x}",
            self.cfg.shard,
            self.ids.next_u64() >> 16
        )
    }

    fn inbound_listener(&self, origin: &Origin) -> Option<Listener> {
        self.locality
            .listeners()
            .iter()
            .find(|l| l.addr == origin.local && l.transport == origin.transport)
            .copied()
    }

    /// Forwards the request of `server` to every target in parallel (§16.6, §16.7).
    pub(super) fn forward(
        &mut self,
        now: Instant,
        server: u64,
        msg: &Message,
        plan: ForwardPlan,
        targets: Vec<Target>,
    ) {
        let is_invite = msg.method() == Some(&Method::Invite);
        let ctx_id = self.new_id();
        let mut ctx = ProxyContext {
            server,
            rc: ResponseContext::new(is_invite, targets.len()),
            branches: Vec::with_capacity(targets.len()),
            kept: vec![None; targets.len()],
            timer_c: vec![None; targets.len()],
        };
        let hash = loop_hash(msg);
        let inbound = self.inbound_listener(&plan.origin);
        let mut created = Vec::new();
        for (index, target) in targets.into_iter().enumerate() {
            let Some(out) = self.locality.outbound_listener(
                target.destination.transport,
                target.destination.addr.ip(),
                inbound.as_ref(),
            ) else {
                debug!(dest = %target.destination.addr, "no listener for the target's transport");
                ctx.rc.on_branch_failed(index);
                ctx.branches.push(0);
                continue;
            };
            let branch = self.branch_id(hash);
            let bytes = build_forwarded(msg, &plan, &target, &branch, out, inbound);
            let mut destination = target.destination;
            destination.local = Some(out.addr);
            let key = TransactionKey::client(&branch, msg.method().map_or("", Method::as_str));
            let reliable = destination.transport.is_reliable();
            let (fsm, request) = if is_invite {
                (
                    ClientFsm::Invite(ClientInviteTx::new(
                        now,
                        bytes.clone(),
                        reliable,
                        &self.cfg.timers,
                    )),
                    Message::parse(bytes).ok(),
                )
            } else {
                (
                    ClientFsm::NonInvite(ClientNonInviteTx::new(
                        now,
                        bytes,
                        reliable,
                        &self.cfg.timers,
                    )),
                    None,
                )
            };
            let id = self.new_id();
            self.client_keys.insert(key.clone(), id);
            self.clients.insert(
                id,
                ClientEntry {
                    key,
                    fsm,
                    destination,
                    request,
                    branch: Some((ctx_id, index)),
                    cancel_pending: false,
                    cancel_sent: false,
                },
            );
            ctx.branches.push(id);
            if is_invite {
                let at = now + TIMER_C;
                if let Some(slot) = ctx.timer_c.get_mut(index) {
                    *slot = Some(at);
                }
                self.timers.schedule(
                    at,
                    TimerRef::TimerC {
                        context: ctx_id,
                        branch: index,
                    },
                );
            }
            created.push(id);
        }
        self.contexts.insert(ctx_id, ctx);
        if let Some(e) = self.servers.get_mut(&server) {
            e.context = Some(ctx_id);
        }
        for id in created {
            self.drive_client(now, id, None);
        }
        self.maybe_finish(now, ctx_id);
    }

    /// A response matched client transaction `id`.
    pub(super) fn client_response(&mut self, now: Instant, id: u64, msg: Message) {
        let Some(code) = msg.status().map(|s| s.0) else {
            return;
        };
        let Some(entry) = self.clients.get_mut(&id) else {
            return;
        };
        match &mut entry.fsm {
            ClientFsm::Invite(tx) => {
                let request = entry.request.as_ref();
                tx.handle_response(now, code, || {
                    request.map(|r| build_ack(r, &msg)).unwrap_or_default()
                });
            }
            ClientFsm::NonInvite(tx) => tx.handle_response(now, code),
        }
        self.drive_client(now, id, Some(&msg));
    }

    /// One event of client transaction `id`.
    pub(super) fn client_event(
        &mut self,
        now: Instant,
        id: u64,
        ev: TxEvent,
        response: Option<&Message>,
    ) {
        let Some(entry) = self.clients.get(&id) else {
            return;
        };
        let branch = entry.branch;
        match ev {
            TxEvent::Provisional(code)
            | TxEvent::Final(code)
            | TxEvent::RetransmittedSuccess(code) => {
                if let (Some((ctx, index)), Some(msg)) = (branch, response) {
                    self.branch_response(now, ctx, index, code, msg);
                }
            }
            TxEvent::Timeout | TxEvent::TransportError => {
                if let Some((ctx, index)) = branch {
                    trace!(?ev, "branch failed");
                    if let Some(c) = self.contexts.get_mut(&ctx) {
                        c.rc.on_branch_failed(index);
                    }
                    self.maybe_finish(now, ctx);
                }
            }
            TxEvent::CancelAllowed => {
                if self
                    .clients
                    .get(&id)
                    .is_some_and(|e| e.cancel_pending && !e.cancel_sent)
                {
                    self.send_cancel(now, id);
                }
            }
            TxEvent::AckForSuccess | TxEvent::Terminated => {}
        }
    }

    fn branch_response(
        &mut self,
        now: Instant,
        ctx_id: u64,
        index: usize,
        code: u16,
        msg: &Message,
    ) {
        let Some(ctx) = self.contexts.get_mut(&ctx_id) else {
            return;
        };
        if let Some(slot) = ctx.timer_c.get_mut(index) {
            if code < 200 && slot.is_some() {
                // §16.7 step 2: a provisional response restarts Timer C.
                let at = now + TIMER_C;
                *slot = Some(at);
                self.timers.schedule(
                    at,
                    TimerRef::TimerC {
                        context: ctx_id,
                        branch: index,
                    },
                );
            } else if code >= 200 {
                *slot = None;
            }
        }
        let action = ctx.rc.on_response(index, code);
        let server = ctx.server;
        match action {
            ResponseAction::Forward | ResponseAction::ForwardFinal => {
                let mut e = Editor::new(msg);
                e.remove_first_value(&HeaderName::Via);
                let bytes = e.finish();
                self.respond(now, server, code, bytes);
            }
            ResponseAction::Keep => {
                if let Some(slot) = ctx.kept.get_mut(index) {
                    *slot = Some(msg.clone());
                }
            }
            ResponseAction::Absorb => {}
        }
        self.cancel_pending(now, ctx_id);
        self.maybe_finish(now, ctx_id);
    }

    /// Sends the best response once every branch is final (§16.7 step 6).
    fn maybe_finish(&mut self, now: Instant, ctx_id: u64) {
        let Some(ctx) = self.contexts.get_mut(&ctx_id) else {
            return;
        };
        let Some((index, code)) = ctx.rc.best() else {
            return;
        };
        ctx.rc.mark_final_forwarded();
        let server = ctx.server;
        let kept = ctx.kept.get_mut(index).and_then(Option::take);
        match kept {
            Some(msg) if msg.status().map(|s| s.0) == Some(code) => {
                let mut e = Editor::new(&msg);
                e.remove_first_value(&HeaderName::Via);
                let bytes = e.finish();
                self.respond(now, server, code, bytes);
            }
            _ => {
                let reason = match code {
                    408 => "Request Timeout",
                    500 => "Server Internal Error: downstream unavailable",
                    _ => StatusCode(code).default_reason(),
                };
                self.respond_local(now, server, StatusCode(code), reason, &[]);
            }
        }
    }

    /// Cancels branches still pending when the context asks for it (§16.10, §16.7 step 10).
    pub(super) fn cancel_pending(&mut self, now: Instant, ctx_id: u64) {
        let Some(ctx) = self.contexts.get(&ctx_id) else {
            return;
        };
        if !ctx.rc.should_cancel_pending() {
            return;
        }
        let pending: Vec<(u64, bool)> = ctx
            .rc
            .pending_branches()
            .filter_map(|(i, proceeding)| ctx.branches.get(i).map(|id| (*id, proceeding)))
            .collect();
        for (id, _proceeding) in pending {
            let Some(entry) = self.clients.get_mut(&id) else {
                continue;
            };
            if entry.cancel_sent || entry.cancel_pending {
                continue;
            }
            let ClientFsm::Invite(tx) = &mut entry.fsm else {
                continue;
            };
            match tx.cancel_requested() {
                CancelPermit::SendNow => self.send_cancel(now, id),
                CancelPermit::AfterProvisional => entry.cancel_pending = true,
                CancelPermit::TooLate => {}
            }
        }
    }

    /// Sends a CANCEL for the INVITE of client transaction `id` (§9.1: same Request-URI,
    /// Call-ID, From, To, CSeq number, Route and top Via).
    pub(super) fn send_cancel(&mut self, now: Instant, id: u64) {
        let Some(entry) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(req) = entry.request.as_ref() else {
            return;
        };
        entry.cancel_sent = true;
        let Some(bytes) = build_cancel(req) else {
            return;
        };
        let Ok(branch) = req
            .top_via()
            .map(|v| v.branch.unwrap_or_default().to_owned())
        else {
            return;
        };
        let destination = entry.destination;
        let key = TransactionKey::client(&branch, "CANCEL");
        let tx = ClientNonInviteTx::new(
            now,
            bytes,
            destination.transport.is_reliable(),
            &self.cfg.timers,
        );
        let cid = self.new_id();
        self.client_keys.insert(key.clone(), cid);
        self.clients.insert(
            cid,
            ClientEntry {
                key,
                fsm: ClientFsm::NonInvite(tx),
                destination,
                request: None,
                branch: None,
                cancel_pending: false,
                cancel_sent: false,
            },
        );
        self.drive_client(now, cid, None);
    }

    /// Timer C fired for a branch: cancel it if it is ringing (§16.8).
    pub(super) fn fire_timer_c(&mut self, now: Instant, ctx_id: u64, index: usize) {
        let Some(ctx) = self.contexts.get(&ctx_id) else {
            return;
        };
        let due = ctx
            .timer_c
            .get(index)
            .copied()
            .flatten()
            .is_some_and(|at| at <= now);
        let Some(&id) = ctx.branches.get(index) else {
            return;
        };
        if !due {
            return;
        }
        if let Some(c) = self.contexts.get_mut(&ctx_id) {
            if let Some(slot) = c.timer_c.get_mut(index) {
                *slot = None;
            }
        }
        if self.clients.get(&id).is_some_and(|e| !e.cancel_sent) {
            debug!("Timer C fired: cancelling branch");
            self.send_cancel(now, id);
        }
    }

    /// A CANCEL arrived and has its own server transaction `cancel_id` (§16.10).
    pub(super) fn handle_cancel(&mut self, now: Instant, cancel_id: u64) {
        let Some(entry) = self.servers.get(&cancel_id) else {
            return;
        };
        let Some(request) = entry.request.as_ref() else {
            return;
        };
        let invite_key = server_key(request, "INVITE");
        let invite = invite_key
            .ok()
            .and_then(|k| self.server_keys.get(&k).copied());
        let Some(invite) = invite else {
            self.respond_local(
                now,
                cancel_id,
                StatusCode(481),
                "Call/Transaction Does Not Exist",
                &[],
            );
            return;
        };
        self.respond_local(now, cancel_id, StatusCode::OK, "OK", &[]);
        let Some(inv) = self.servers.get_mut(&invite) else {
            return;
        };
        if inv.finished {
            return;
        }
        match inv.context {
            Some(ctx) => {
                if let Some(c) = self.contexts.get_mut(&ctx) {
                    c.rc.request_cancel();
                }
                self.cancel_pending(now, ctx);
            }
            None => {
                inv.cancelled = true;
                self.respond_local(now, invite, StatusCode(487), "Request Terminated", &[]);
            }
        }
    }

    /// An ACK: hop-by-hop for a non-2xx we sent (absorbed by its transaction), otherwise the
    /// end-to-end ACK for a 2xx, forwarded statelessly along its route set.
    pub(super) fn handle_ack(
        &mut self,
        now: Instant,
        msg: Message,
        origin: Origin,
        key: TransactionKey,
    ) {
        if let Some(&id) = self.server_keys.get(&key) {
            if let Some(entry) = self.servers.get_mut(&id) {
                if let super::core::ServerFsm::Invite(tx) = &mut entry.fsm {
                    tx.handle_ack(now);
                }
                self.drive_server(now, id);
                return;
            }
        }
        if msg.validate_request().is_err() || matches!(msg.max_forwards(), Ok(Some(0)) | Err(_)) {
            return;
        }
        let Ok(routes) = msg.routes() else { return };
        let mut popped = 0;
        for r in &routes {
            match r.uri.as_sip() {
                Some(u) if self.uri_is_self(u) => popped += 1,
                _ => break,
            }
        }
        let next_uri = match routes.get(popped) {
            Some(r) => r.uri,
            None => match msg.request_uri() {
                Some(Ok(u)) => u,
                _ => return,
            },
        };
        let Uri::Sip(sip) = next_uri else { return };
        if routes.get(popped).is_none() && self.uri_is_self(&sip) {
            return; // an ACK for a response we generated ourselves
        }
        let Resolve::Ok(transport, addr) = resolve(&sip) else {
            return;
        };
        let inbound = self.inbound_listener(&origin);
        let Some(out) = self
            .locality
            .outbound_listener(transport, addr.ip(), inbound.as_ref())
        else {
            return;
        };
        // The same ACK retransmitted must get the same branch (stateless forwarding, §16.11).
        let incoming = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch)
            .unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in incoming.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let branch = format!("{OUR_BRANCH_PREFIX}{:02x}{:016x}ack", self.cfg.shard, h);
        let mut plan = ForwardPlan::new(origin);
        plan.pop_routes = popped;
        let destination = Destination {
            transport,
            addr,
            local: Some(out.addr),
            connection: None,
        };
        let target = Target {
            request_uri: None,
            destination,
            path: Vec::new(),
        };
        let bytes = build_forwarded(&msg, &plan, &target, &branch, out, inbound);
        self.transmit(destination, bytes);
    }

    /// Location lookup finished for the request of `server` (§16.5): fork to every binding.
    pub(super) fn finish_lookup(
        &mut self,
        now: Instant,
        server: u64,
        result: Result<Vec<Binding>, StoreFailure>,
    ) {
        let plan = self.plans.remove(&server);
        let Some(entry) = self.servers.get(&server) else {
            return;
        };
        if entry.cancelled || entry.finished {
            return;
        }
        let Some(msg) = entry.request.clone() else {
            return;
        };
        let Some(plan) = plan else { return };
        let Ok(bindings) = result else {
            self.respond_local(
                now,
                server,
                StatusCode(503),
                "Service Unavailable: location store unreachable",
                &[("Retry-After", "5".to_owned())],
            );
            return;
        };
        if bindings.is_empty() {
            self.respond_local(now, server, StatusCode::NOT_FOUND, "Not Found", &[]);
            return;
        }
        let targets: Vec<Target> = bindings.iter().filter_map(binding_target).collect();
        if targets.is_empty() {
            self.respond_local(
                now,
                server,
                StatusCode(480),
                "Temporarily Unavailable: no reachable contact",
                &[],
            );
            return;
        }
        self.forward(now, server, &msg, plan, targets);
    }
}

/// The branch target for a binding: Request-URI = the contact; next hop = the first Path value,
/// else the contact; over the connection the REGISTER came on when it is the same peer.
fn binding_target(b: &Binding) -> Option<Target> {
    let contact = std::str::from_utf8(&b.contact).ok()?;
    let first_hop: String = match b.path.first() {
        Some(p) => {
            let p = std::str::from_utf8(p).ok()?;
            let p = p.trim();
            let inner = p
                .strip_prefix('<')
                .and_then(|x| x.split_once('>'))
                .map_or(p, |(u, _)| u);
            inner.to_owned()
        }
        None => contact.to_owned(),
    };
    let hop = Uri::parse(&first_hop).ok()?;
    let sip = hop.as_sip()?;
    let Resolve::Ok(transport, addr) = resolve(sip) else {
        return None;
    };
    let connection = (b.source.transport == transport && b.source.remote == addr)
        .then_some(b.source.connection)
        .flatten();
    Some(Target {
        request_uri: Some(b.contact.clone()),
        destination: Destination {
            transport,
            addr,
            local: None,
            connection,
        },
        path: b.path.clone(),
    })
}

/// Builds the forwarded copy of `msg` for one branch (§16.6 steps 1-8): Request-URI, Route
/// pops and Path, Max-Forwards, Record-Route, received/rport on the previous hop's Via, and our
/// Via on top. Everything else is copied byte for byte.
pub(super) fn build_forwarded(
    msg: &Message,
    plan: &ForwardPlan,
    target: &Target,
    branch: &str,
    out: Listener,
    inbound: Option<Listener>,
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
        // Above any existing Record-Route, else right below the Via block (some UAs copy the
        // Via block as one run of lines).
        e.insert_header_near(
            &HeaderName::RecordRoute,
            &HeaderName::Via,
            "Record-Route",
            record_route_value(&out),
        );
        if let Some(inb) = inbound.filter(|i| *i != out) {
            e.insert_header_near(
                &HeaderName::RecordRoute,
                &HeaderName::Via,
                "Record-Route",
                record_route_value(&inb),
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
fn build_cancel(req: &Message) -> Option<Bytes> {
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
