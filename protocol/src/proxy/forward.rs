//! The client side of the proxy: forking a request to its targets (RFC 3261 §16.6), running
//! the client transactions, and choosing and forwarding responses (§16.7). The bytes sent are
//! built in [`wire`](super::wire); CANCEL and ACK have their own modules.

use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, trace};

use crate::header::HeaderName;
use crate::message::{Editor, Message, Method, StatusCode};
use crate::peer::{Destination, Listener, Origin, Transport};
use crate::registrar::Binding;
use crate::transaction::{ClientInviteTx, ClientNonInviteTx, TransactionKey, TxEvent};
use crate::uri::Uri;

use super::config::TIMER_C;
use super::core::{ClientEntry, ClientFsm, Core, ProxyContext, StoreFailure, TimerRef};
use super::dialogs::Verdict;
use super::flow::binding_destination;
use super::response_context::{ResponseAction, ResponseContext};
use super::routing::{Resolve, is_secure, is_sips, resolve};
use super::wire::{OUR_BRANCH_PREFIX, build_ack, build_forwarded, loop_hash};

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
    /// The destination's connection is only reused (a binding that is not a flow, whose
    /// Contact is the address the connection came from): when the node holding it cannot
    /// deliver, the request may be sent on a new connection to that address instead (RFC 3261
    /// §18.1.1), see [`Core::handle_flow_unreachable`](super::Core::handle_flow_unreachable).
    pub(super) redial: bool,
}

impl Core {
    fn branch_id(&mut self, hash: u64) -> String {
        format!(
            "{OUR_BRANCH_PREFIX}{:02x}{hash:016x}{:012x}",
            self.cfg.shard,
            self.ids.next_u64() >> 16
        )
    }

    pub(super) fn inbound_listener(&self, origin: &Origin) -> Option<Listener> {
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
        if self.media_request_gate(now, server, msg, &plan, &targets) {
            return;
        }
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
            // Issue 6: a branch forked to a leg of another kind gets its own SDP.
            let own = self.media_target_body(msg, &target);
            let bytes = build_forwarded(
                own.as_ref().unwrap_or(msg),
                &plan,
                &target,
                &branch,
                (out, inbound),
                &self.cfg.flow_token_key,
            );
            let mut destination = target.destination;
            destination.local = Some(out.addr);
            let key = TransactionKey::client(&branch, msg.method().map_or("", Method::as_str));
            let reliable = destination.transport.is_reliable();
            // Kept only for a reused connection another node holds (see `Target::redial`).
            let redial = (target.redial
                && destination
                    .connection
                    .and_then(|c| super::cluster::remote_holder(self.cfg.incarnation, c))
                    .is_some())
            .then(|| bytes.clone());
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
                    redial,
                    redialled: false,
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
        if let Some(from) = self.servers.get(&server).map(|e| e.reply) {
            self.track_dialog(ctx_id, msg, from);
        }
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
                    // A transport error is only reported when the flow to the UA closed
                    // (see `handle_connection_closed`): the UA is unavailable, not slow.
                    let code = if ev == TxEvent::TransportError {
                        480
                    } else {
                        408
                    };
                    if let Some(c) = self.contexts.get_mut(&ctx) {
                        c.rc.on_branch_failed_with(index, code);
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

    pub(super) fn branch_response(
        &mut self,
        now: Instant,
        ctx_id: u64,
        index: usize,
        code: u16,
        msg: &Message,
    ) {
        if self.media_response_gate(now, ctx_id, index, code, msg) {
            return;
        }
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
        let verdict = self.dialog_response(ctx_id, index, code, msg);
        if action == ResponseAction::ForwardFinal && code >= 300 {
            self.dialog_final(ctx_id, code);
        }
        match action {
            ResponseAction::Forward | ResponseAction::ForwardFinal => {
                let mut e = Editor::new(msg);
                e.remove_first_value(&HeaderName::Via);
                let bytes = e.finish();
                match verdict {
                    Verdict::Pass => self.respond(now, server, code, bytes),
                    Verdict::Hold { token, tag } => {
                        self.hold(now, token, ctx_id, tag, server, code, bytes);
                    }
                    Verdict::Absorb => {}
                }
            }
            ResponseAction::Keep => {
                if let Some(slot) = self
                    .contexts
                    .get_mut(&ctx_id)
                    .and_then(|c| c.kept.get_mut(index))
                {
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
        // §16.7 step 7: a 401/407 carries the challenges of every 401/407 branch, so the client
        // can answer all the realms in one retry.
        let challenges: Vec<(&'static str, Bytes)> = if matches!(code, 401 | 407) {
            ctx.kept
                .iter()
                .flatten()
                .flat_map(|m| {
                    [
                        ("WWW-Authenticate", HeaderName::WwwAuthenticate),
                        ("Proxy-Authenticate", HeaderName::ProxyAuthenticate),
                    ]
                    .into_iter()
                    .flat_map(move |(name, header)| {
                        m.headers()
                            .filter(move |h| h.header_name() == header)
                            .map(move |h| (name, Bytes::copy_from_slice(h.value)))
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        self.dialog_final(ctx_id, code);
        match kept {
            Some(msg) if msg.status().map(|s| s.0) == Some(code) => {
                let mut e = Editor::new(&msg);
                e.remove_first_value(&HeaderName::Via);
                for (name, value) in challenges {
                    e.append_header(name, value);
                }
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
        let bindings = match result {
            Ok(b) => b,
            Err(StoreFailure::FlowsClosed) => {
                self.respond_local(
                    now,
                    server,
                    StatusCode(480),
                    "Temporarily Unavailable: connection closed",
                    &[],
                );
                return;
            }
            Err(_) => {
                self.respond_local(
                    now,
                    server,
                    StatusCode(503),
                    "Service Unavailable: location store unreachable",
                    &[("Retry-After", "5".to_owned())],
                );
                return;
            }
        };
        if bindings.is_empty() {
            self.respond_local(now, server, StatusCode::NOT_FOUND, "Not Found", &[]);
            return;
        }
        // A `sips:` request only goes to bindings reachable over TLS or WSS (RFC 3261 §26.2.2).
        let sips = msg
            .request_uri()
            .and_then(Result::ok)
            .is_some_and(|u| is_sips(&u));
        let targets: Vec<Target> = bindings
            .iter()
            .filter_map(binding_target)
            .filter(|t| !sips || is_secure(t.destination.transport))
            .collect();
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

/// The branch target for a binding. Request-URI = the contact. A flow (see
/// [`Binding::is_flow`]) goes over its connection to the address the REGISTER came from.
/// Otherwise the next hop is the first Path value, else the contact; the registering connection
/// is preferred while open when it reaches that hop (same address; for TLS, same IP: a TLS UA
/// connects from an ephemeral port and cannot be dialed back with a certificate we could
/// verify).
pub(super) fn binding_target(b: &Binding) -> Option<Target> {
    if let Some(destination) = binding_destination(b) {
        return Some(Target {
            request_uri: Some(b.contact.clone()),
            destination,
            path: b.path.clone(),
            redial: false,
        });
    }
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
    let same_peer = b.source.remote == addr
        || (transport == Transport::Tls && b.source.remote.ip() == addr.ip());
    let connection = (b.source.transport == transport && same_peer)
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
        // TCP and TLS can be dialled; WS/WSS never (and flows took the branch above).
        redial: connection.is_some() && matches!(transport, Transport::Tcp | Transport::Tls),
    })
}
