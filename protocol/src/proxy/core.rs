//! The proxy core: transaction tables, dispatch of inbound messages, timers and outputs.
//!
//! Request handling is split by concern: [`routing`](super::routing) decides where a request
//! goes, [`forward`](super::forward) builds what is sent and runs the client side,
//! [`local`](super::local) answers what the node itself answers. This file holds the tables and
//! the glue that every one of them uses.

use std::collections::{HashMap, VecDeque};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tracing::{debug, trace};

use crate::dialog::DialogEvent;
use crate::header::HeaderName;
use crate::message::{Editor, Message, Method, StatusCode, response_to};
use crate::peer::{Destination, Origin, Transmit};
use crate::registrar::{Aor, Binding, RegisterError, RegisterOutcome, RegisterRequest};
use crate::transaction::{
    ClientInviteTx, ClientNonInviteTx, ServerInviteTx, ServerNonInviteTx, Transaction,
    TransactionKey,
};

use super::addressing::{reply_destination, via_destination};
use super::config::CoreConfig;
use super::locality::Locality;
use super::matching::{DigestState, server_key};
use super::response_context::ResponseContext;
use super::rng::IdGenerator;
use super::timers::TimerQueue;

/// Something the shell must do.
#[derive(Debug)]
pub enum Output {
    /// Send bytes.
    Transmit(Transmit),
    /// Send bytes over a connection held by another cluster node, `holder` (see
    /// [`Incarnation`](super::Incarnation)): the shell hands them to that node, and calls
    /// [`Core::handle_flow_unreachable`] when it cannot.
    RemoteTransmit {
        /// The node process holding `transmit.destination.connection`.
        holder: super::Incarnation,
        /// What to send there.
        transmit: Transmit,
    },
    /// Apply a REGISTER to the location store, then call
    /// [`Core::handle_register_result`] with `token`.
    Register {
        /// Correlates the result.
        token: u64,
        /// The registration, already checked for syntax.
        request: RegisterRequest,
    },
    /// Look a host name up (A/AAAA), then call [`Core::handle_resolve_result`] with `token`
    /// and the addresses found (none on failure or timeout).
    Resolve {
        /// Correlates the result.
        token: u64,
        /// The name.
        host: String,
        /// The port for every address.
        port: u16,
    },
    /// Fetch the bindings of an AOR, then call [`Core::handle_lookup_result`] with `token`.
    Lookup {
        /// Correlates the result.
        token: u64,
        /// The address of record.
        aor: Aor,
    },
    /// A dialog was created, confirmed, refreshed or ended (see [`crate::dialog`]); the shell
    /// hands it to the dialog's actor. Nothing comes back: routing never waits for it.
    Dialog(DialogEvent),
    /// A 2xx confirmed a dialog (`event` is [`DialogEvent::Confirmed`]): store it, then call
    /// [`Core::handle_dialog_stored`] with `token`. The 2xx is held until then, or at most
    /// [`DIALOG_HOLD`](super::DIALOG_HOLD) (DESIGN.md: state an answer promises is stored
    /// before the answer goes out; a slow store delays a call, it never drops one).
    StoreDialog {
        /// Correlates the acknowledgement.
        token: u64,
        /// The confirmed dialog.
        event: DialogEvent,
    },
    /// Send an ng request to rtpengine (see `proxy/media.rs`). With a token, call
    /// [`Core::handle_media_result`] with it and the SDP of the reply; without one
    /// (`delete`), nothing waits for the reply.
    Media {
        /// Correlates the result (`None`: fire and forget).
        token: Option<u64>,
        /// The ng request.
        request: crate::ng::Request,
    },
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The registrar rules refused the request (the peer's fault: 400, 403, 423).
    Rejected(RegisterError),
    /// The store is unreachable (our fault: 503 + Retry-After).
    Unavailable,
    /// A lookup found no binding because the AOR's last bindings were flows whose connections
    /// closed (RFC 5626 §5.4, RFC 7118 §5): the user is temporarily unavailable (480), not
    /// unknown (404).
    FlowsClosed,
}

/// A server transaction of either kind.
#[derive(Debug)]
pub(super) enum ServerFsm {
    Invite(ServerInviteTx),
    NonInvite(ServerNonInviteTx),
}

/// A client transaction of either kind.
#[derive(Debug)]
pub(super) enum ClientFsm {
    Invite(ClientInviteTx),
    NonInvite(ClientNonInviteTx),
}

impl ServerFsm {
    /// The machine, whatever its kind.
    pub(super) fn machine(&mut self) -> &mut dyn Transaction {
        match self {
            Self::Invite(tx) => tx,
            Self::NonInvite(tx) => tx,
        }
    }
}

impl ClientFsm {
    /// The machine, whatever its kind.
    pub(super) fn machine(&mut self) -> &mut dyn Transaction {
        match self {
            Self::Invite(tx) => tx,
            Self::NonInvite(tx) => tx,
        }
    }
}

/// One server transaction and what the proxy knows about it.
#[derive(Debug)]
pub(super) struct ServerEntry {
    pub(super) key: TransactionKey,
    /// Second key under which an RFC 2543 ACK finds this INVITE transaction.
    pub(super) ack_key: Option<TransactionKey>,
    pub(super) fsm: ServerFsm,
    /// Where responses go (RFC 3261 §18.2.2, RFC 3581).
    pub(super) reply: Destination,
    /// The request as received; dropped once a final response went out (nothing needs it
    /// after that, and a UDP transaction lingers 32 s in Completed).
    pub(super) request: Option<Message>,
    /// The response context when the request was forwarded.
    pub(super) context: Option<u64>,
    /// To tag of responses the node generates itself.
    pub(super) local_tag: String,
    /// A CANCEL arrived before any branch existed (the lookup was still running).
    pub(super) cancelled: bool,
    /// A final response went out.
    pub(super) finished: bool,
}

/// One client transaction (a branch of a forwarded request, or a CANCEL we sent).
#[derive(Debug)]
pub(super) struct ClientEntry {
    pub(super) key: TransactionKey,
    pub(super) fsm: ClientFsm,
    pub(super) destination: Destination,
    /// The request as sent, parsed back (kept for INVITEs: ACK and CANCEL are built from it).
    pub(super) request: Option<Message>,
    /// The response context and branch index this transaction serves (None for our CANCELs).
    pub(super) branch: Option<(u64, usize)>,
    /// A CANCEL was asked for before a provisional response arrived.
    pub(super) cancel_pending: bool,
    /// A CANCEL was sent for this branch.
    pub(super) cancel_sent: bool,
    /// The request as sent, when its connection is held by another node but the target can
    /// be dialled too (see `Target::redial`): sent again on a new connection if that node
    /// cannot deliver it.
    pub(super) redial: Option<Bytes>,
    /// The request was sent again on a new connection (see `redial`); it fails when a stream
    /// connection to its destination closes before it completes (a failed dial).
    pub(super) redialled: bool,
}

/// The response context of a forwarded request.
#[derive(Debug)]
pub(super) struct ProxyContext {
    pub(super) server: u64,
    pub(super) rc: ResponseContext,
    /// Client transaction id of each branch.
    pub(super) branches: Vec<u64>,
    /// The final response kept per branch for best-response selection.
    pub(super) kept: Vec<Option<Message>>,
    /// Timer C deadline per branch (INVITE only).
    pub(super) timer_c: Vec<Option<Instant>>,
}

/// A non-INVITE server transaction whose final response went out over UDP, reduced to what
/// Timer J needs: answer a retransmitted request with the same response (§17.2.2). Keeping
/// only this (about a tenth of a live transaction) matters at tens of thousands of REGISTERs a
/// second, each of which must be remembered for 64*T1.
#[derive(Debug)]
pub(super) struct Completed {
    pub(super) response: Bytes,
    pub(super) reply: Destination,
}

/// What a store operation was started for.
#[derive(Debug)]
pub(super) enum Pending {
    Register {
        server: u64,
    },
    Lookup {
        server: u64,
    },
    Resolve {
        server: u64,
        transport: crate::peer::Transport,
    },
}

/// Timer queue entries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerRef {
    Server(u64),
    Client(u64),
    TimerC {
        context: u64,
        branch: usize,
    },
    /// The hold of a 2xx waiting for its dialog to be stored ran out.
    DialogHold(u64),
}

/// The sans-IO proxy and registrar front end of one shard.
#[derive(Debug)]
pub struct Core {
    pub(super) cfg: CoreConfig,
    pub(super) locality: Locality,
    pub(super) ids: IdGenerator,
    pub(super) next_id: u64,
    pub(super) server_keys: HashMap<TransactionKey, u64>,
    /// Completed non-INVITE server transactions by key digest, and their expiry in order
    /// (Timer J is the same for all, so insertion order is expiry order).
    pub(super) completed: HashMap<u128, Completed, DigestState>,
    pub(super) completed_expiry: VecDeque<(Instant, u128)>,
    /// Where completed transactions keep their responses.
    pub(super) completed_arena: super::arena::SegmentArena,
    pub(super) servers: HashMap<u64, ServerEntry>,
    pub(super) client_keys: HashMap<TransactionKey, u64>,
    pub(super) clients: HashMap<u64, ClientEntry>,
    pub(super) contexts: HashMap<u64, ProxyContext>,
    pub(super) pending: HashMap<u64, Pending>,
    /// Forwarding plans of requests waiting for a location lookup.
    pub(super) plans: HashMap<u64, super::forward::ForwardPlan>,
    pub(super) timers: TimerQueue<TimerRef>,
    /// Dialog facts of forwarded requests, by response context (see `dialogs.rs`).
    pub(super) dialog_tracks: HashMap<u64, super::dialogs::DialogTrack>,
    /// 2xx responses held until their dialog is stored, by token.
    pub(super) held: HashMap<u64, super::dialogs::Held>,
    pub(super) outputs: VecDeque<Output>,
    pub(super) draining: bool,
    /// SDP relaying through rtpengine (see `media.rs`).
    pub(super) media: super::media::MediaHooks,
}

impl Core {
    /// A core for one shard.
    pub fn new(cfg: CoreConfig, _now: Instant) -> Self {
        Self {
            locality: Locality::new(cfg.listeners.clone(), &cfg.domains),
            ids: IdGenerator::new(cfg.rng_seed),
            cfg,
            next_id: 1,
            server_keys: HashMap::new(),
            completed: HashMap::default(),
            completed_expiry: VecDeque::new(),
            completed_arena: super::arena::SegmentArena::default(),
            servers: HashMap::new(),
            client_keys: HashMap::new(),
            clients: HashMap::new(),
            contexts: HashMap::new(),
            pending: HashMap::new(),
            plans: HashMap::new(),
            timers: TimerQueue::default(),
            dialog_tracks: HashMap::new(),
            held: HashMap::new(),
            outputs: VecDeque::new(),
            draining: false,
            media: super::media::MediaHooks::default(),
        }
    }

    /// The node's identity as this core sees it.
    pub fn locality(&self) -> &Locality {
        &self.locality
    }

    /// A message arrived from the network.
    pub fn handle_message(&mut self, now: Instant, msg: Message, origin: Origin) {
        if msg.is_request() {
            self.handle_request(now, msg, origin);
        } else {
            self.handle_response(now, msg, origin);
        }
    }

    /// The deadline returned by [`poll_timeout`](Self::poll_timeout) passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, digest)) = self.completed_expiry.front() {
            if at > now {
                break;
            }
            self.completed_expiry.pop_front();
            self.completed.remove(&digest);
        }
        self.shrink_after_burst();
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                TimerRef::Server(id) => {
                    let Some(entry) = self.servers.get_mut(&id) else {
                        continue;
                    };
                    entry.fsm.machine().handle_timeout(now);
                    self.drive_server(now, id);
                }
                TimerRef::Client(id) => {
                    let Some(entry) = self.clients.get_mut(&id) else {
                        continue;
                    };
                    entry.fsm.machine().handle_timeout(now);
                    self.drive_client(now, id, None);
                }
                TimerRef::TimerC { context, branch } => self.fire_timer_c(now, context, branch),
                TimerRef::DialogHold(token) => self.release_hold(now, token, None),
            }
        }
    }

    /// Hash tables and queues keep the capacity of their largest size; after a burst (100,000
    /// REGISTERs leave 100,000 completed transactions for 32 s) give most of it back.
    fn shrink_after_burst(&mut self) {
        const FLOOR: usize = 4096;
        if self.completed.capacity() > FLOOR && self.completed.len() * 4 < self.completed.capacity()
        {
            self.completed.shrink_to(self.completed.len() * 2);
            self.completed_expiry
                .shrink_to(self.completed_expiry.len() * 2);
        }
        if self.timers.len() > FLOOR && self.timers.capacity() > 4 * self.timers.len() {
            self.timers.shrink_to(self.timers.len() * 2);
        }
        for map_len_cap in [
            (self.servers.len(), self.servers.capacity()),
            (self.clients.len(), self.clients.capacity()),
        ] {
            if map_len_cap.1 > FLOOR && map_len_cap.0 * 4 < map_len_cap.1 {
                self.servers.shrink_to(self.servers.len() * 2);
                self.server_keys.shrink_to(self.server_keys.len() * 2);
                self.clients.shrink_to(self.clients.len() * 2);
                self.client_keys.shrink_to(self.client_keys.len() * 2);
                break;
            }
        }
    }

    /// The next output, if any. Drain until `None` after every `handle_*` call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let completed = self.completed_expiry.front().map(|(at, _)| *at);
        match (self.timers.next_deadline(), completed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Stop taking new requests (they get 503); running transactions go on.
    pub fn begin_shutdown(&mut self) {
        self.draining = true;
    }

    /// True when no transaction and no store operation is running.
    pub fn is_idle(&self) -> bool {
        self.servers.is_empty()
            && self.clients.is_empty()
            && self.pending.is_empty()
            && self.completed.is_empty()
    }

    /// True when nothing is waiting for a final response: every server transaction answered,
    /// every client transaction got its final response (or gave up), no store operation runs.
    /// What is left only absorbs retransmissions, so a shutdown need not wait for it.
    pub fn is_quiescent(&self) -> bool {
        use crate::transaction::{ClientInviteState as I, ClientNonInviteState as N};
        self.pending.is_empty()
            && self.held.is_empty()
            && self.servers.values().all(|s| s.finished)
            && self.clients.values().all(|c| match &c.fsm {
                ClientFsm::Invite(tx) => {
                    matches!(tx.state(), I::Accepted | I::Completed | I::Terminated)
                }
                ClientFsm::NonInvite(tx) => matches!(tx.state(), N::Completed | N::Terminated),
            })
    }

    /// Number of (server, client) transactions, for statistics and tests.
    pub fn transaction_counts(&self) -> (usize, usize) {
        (
            self.servers.len() + self.completed.len(),
            self.clients.len(),
        )
    }

    /// The result of an [`Output::Register`]. `wall` is the wall-clock time used to express
    /// the remaining expiry of each binding in the 200 OK.
    pub fn handle_register_result(
        &mut self,
        now: Instant,
        wall: SystemTime,
        token: u64,
        result: Result<RegisterOutcome, StoreFailure>,
    ) {
        let Some(Pending::Register { server }) = self.pending.remove(&token) else {
            return;
        };
        self.finish_register(now, wall, server, result);
    }

    /// The dialog of an [`Output::StoreDialog`] was written (`stored`), or the store failed
    /// (`!stored`): the held 2xx goes out now either way.
    pub fn handle_dialog_stored(&mut self, now: Instant, token: u64, stored: bool) {
        self.release_hold(now, token, Some(stored));
    }

    /// The result of an [`Output::Lookup`].
    pub fn handle_lookup_result(
        &mut self,
        now: Instant,
        token: u64,
        result: Result<Vec<Binding>, StoreFailure>,
    ) {
        let Some(Pending::Lookup { server }) = self.pending.remove(&token) else {
            return;
        };
        self.finish_lookup(now, server, result);
    }

    // ----- shared helpers -------------------------------------------------------------------

    pub(super) fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(super) fn transmit(&mut self, destination: Destination, payload: Bytes) {
        let transmit = Transmit {
            destination,
            payload,
        };
        let remote = destination
            .connection
            .and_then(|c| super::cluster::remote_holder(self.cfg.incarnation, c));
        self.outputs.push_back(match remote {
            Some(holder) => Output::RemoteTransmit { holder, transmit },
            None => Output::Transmit(transmit),
        });
    }

    /// Handles a request: retransmission, ACK, CANCEL, or a new server transaction.
    fn handle_request(&mut self, now: Instant, msg: Message, origin: Origin) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let Ok(via) = msg.top_via() else {
            // Without a parsable Via there is nowhere RFC 3261 §18.2.2 lets us answer; the
            // ingress already answered what it could.
            debug!("request without a usable Via dropped");
            return;
        };
        let reply = reply_destination(&origin, via.rport.is_some(), via.port);
        let key = match server_key(&msg, method.as_str()) {
            Ok(k) => k,
            Err(e) => {
                self.reply_stateless(&msg, reply, StatusCode(e.status().0), &e.reason_phrase());
                return;
            }
        };
        if method == Method::Ack {
            self.handle_ack(now, msg, origin, key);
            return;
        }
        if let Some(done) = self.completed.get(&key.digest()) {
            trace!("request retransmission after the final response");
            let (reply, response) = (done.reply, done.response.clone());
            self.transmit(reply, response);
            return;
        }
        if let Some(&id) = self.server_keys.get(&key) {
            if let Some(entry) = self.servers.get_mut(&id) {
                trace!("request retransmission");
                match &mut entry.fsm {
                    ServerFsm::Invite(tx) => tx.handle_retransmission(now),
                    ServerFsm::NonInvite(tx) => tx.handle_retransmission(now),
                }
                self.drive_server(now, id);
            }
            return;
        }
        let id = self.open_server(now, key, msg, reply, method == Method::Invite);
        if method == Method::Cancel {
            self.handle_cancel(now, id);
            return;
        }
        self.process_new_request(now, id, origin);
    }

    /// Creates a server transaction for a new request.
    pub(super) fn open_server(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Message,
        reply: Destination,
        invite: bool,
    ) -> u64 {
        let reliable = reply.transport.is_reliable();
        let fsm = if invite {
            ServerFsm::Invite(ServerInviteTx::new(now, reliable, &self.cfg.timers))
        } else {
            ServerFsm::NonInvite(ServerNonInviteTx::new(now, reliable, &self.cfg.timers))
        };
        let id = self.new_id();
        let local_tag = self.ids.token();
        self.server_keys.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerEntry {
                key,
                ack_key: None,
                fsm,
                reply,
                request: Some(request),
                context: None,
                local_tag,
                cancelled: false,
                finished: false,
            },
        );
        id
    }

    /// Sends a response on a server transaction (forwarded or generated).
    pub(super) fn respond(&mut self, now: Instant, server: u64, code: u16, response: Bytes) {
        let Some(entry) = self.servers.get_mut(&server) else {
            return;
        };
        let result = match &mut entry.fsm {
            ServerFsm::Invite(tx) => tx.send_response(now, code, response.clone()),
            ServerFsm::NonInvite(tx) => tx.send_response(now, code, response.clone()),
        };
        let is_invite = entry
            .request
            .as_ref()
            .is_some_and(|r| r.method() == Some(&Method::Invite));
        if code >= 200 {
            entry.finished = true;
            entry.request = None;
        }
        if let Err(e) = result {
            // A 2xx after the transaction moved on (another fork's 2xx, §16.7 step 5) is still
            // forwarded, statelessly, to the same place.
            trace!(error = %e, code, "response outside the server transaction");
            if (200..300).contains(&code) {
                let reply = entry.reply;
                self.transmit(reply, response);
            }
            return;
        }
        if code >= 300 && is_invite && entry.key.is_rfc2543() {
            let tag = entry.local_tag.clone();
            if let Some(k) = entry.key.for_ack(&tag) {
                self.server_keys.insert(k.clone(), server);
                if let Some(e) = self.servers.get_mut(&server) {
                    e.ack_key = Some(k);
                }
            }
        }
        self.drive_server(now, server);
        if code >= 200 && !is_invite {
            self.compact_completed(now, server, response);
        }
    }

    /// Replaces a non-INVITE server transaction that just sent its final response over UDP by a
    /// [`Completed`] entry (over streams Timer J is zero and it is already gone).
    fn compact_completed(&mut self, now: Instant, server: u64, response: Bytes) {
        let Some(entry) = self.servers.get(&server) else {
            return;
        };
        if entry.reply.transport.is_reliable() {
            return;
        }
        let digest = entry.key.digest();
        let reply = entry.reply;
        let until = now + self.cfg.timers.timer_j(false);
        self.forget_server(server);
        let response = self.completed_arena.store(&response);
        self.completed.insert(digest, Completed { response, reply });
        self.completed_expiry.push_back((until, digest));
    }

    /// Generates a response to the request of a server transaction and sends it.
    pub(super) fn respond_local(
        &mut self,
        now: Instant,
        server: u64,
        code: StatusCode,
        reason: &str,
        extra: &[(&str, String)],
    ) {
        let Some(entry) = self.servers.get(&server) else {
            return;
        };
        let Some(request) = entry.request.as_ref() else {
            return;
        };
        let mut b = response_to(request, code, reason);
        if code.0 > 100 {
            b = b.to_tag(&entry.local_tag);
        }
        for (name, value) in extra {
            b = b.header(name, value);
        }
        let bytes = b.build();
        self.respond(now, server, code.0, bytes);
    }

    /// Answers without a transaction (the request could not even be keyed).
    fn reply_stateless(
        &mut self,
        req: &Message,
        reply: Destination,
        code: StatusCode,
        reason: &str,
    ) {
        let tag = self.ids.token();
        let bytes = response_to(req, code, reason).to_tag(&tag).build();
        self.transmit(reply, bytes);
    }

    /// Drains a server transaction's outputs and re-arms its timer; forgets it once terminated.
    pub(super) fn drive_server(&mut self, _now: Instant, id: u64) {
        let Some(entry) = self.servers.get_mut(&id) else {
            return;
        };
        let tx = entry.fsm.machine();
        let mut sends = Vec::new();
        while let Some(b) = tx.poll_transmit() {
            sends.push(b);
        }
        // Server machines only tell the TU about termination (and ACKs for 2xx, which a proxy
        // has no use for: the ACK is forwarded end to end).
        while tx.poll_event().is_some() {}
        let terminated = tx.is_terminated();
        if let Some(at) = tx.poll_timeout() {
            self.timers.schedule(at, TimerRef::Server(id));
        }
        let reply = entry.reply;
        for b in sends {
            self.transmit(reply, b);
        }
        if terminated {
            self.forget_server(id);
        }
    }

    fn forget_server(&mut self, id: u64) {
        if let Some(entry) = self.servers.remove(&id) {
            self.server_keys.remove(&entry.key);
            if let Some(k) = entry.ack_key {
                self.server_keys.remove(&k);
            }
            if let Some(ctx) = entry.context {
                // Branches still running keep their own transactions; the context goes once
                // they are all gone (see `forget_client`).
                if let Some(c) = self.contexts.get(&ctx)
                    && c.branches.iter().all(|b| !self.clients.contains_key(b))
                {
                    self.contexts.remove(&ctx);
                    self.dialog_tracks.remove(&ctx);
                }
            }
        }
    }

    pub(super) fn forget_client(&mut self, id: u64) {
        if let Some(entry) = self.clients.remove(&id) {
            self.client_keys.remove(&entry.key);
            if let Some((ctx, _)) = entry.branch
                && let Some(c) = self.contexts.get(&ctx)
            {
                let server_alive = self.servers.contains_key(&c.server);
                if !server_alive && c.branches.iter().all(|b| !self.clients.contains_key(b)) {
                    self.contexts.remove(&ctx);
                    self.dialog_tracks.remove(&ctx);
                }
            }
        }
    }

    /// A response arrived: match it to a client transaction (§17.1.3) or forward it statelessly
    /// when it is a stray 2xx to an INVITE we forwarded (§16.7 step 1, §16.11).
    fn handle_response(&mut self, now: Instant, msg: Message, _origin: Origin) {
        let (Ok(via), Ok(cseq)) = (msg.top_via(), msg.cseq()) else {
            debug!("response without usable Via/CSeq dropped");
            return;
        };
        let Some(branch) = via.branch else { return };
        let key = TransactionKey::client(branch, cseq.method.as_str());
        if let Some(&id) = self.client_keys.get(&key) {
            self.client_response(now, id, msg);
            return;
        }
        let ours = self
            .locality
            .is_self(&via.host.to_string(), via.port, None, false);
        let code = msg.status().map_or(0, |s| s.0);
        if ours && cseq.method == Method::Invite && (200..300).contains(&code) {
            self.forward_response_statelessly(&msg);
        } else {
            trace!(code, "stray response dropped");
        }
    }

    /// §16.11: pop our Via and send the response to the next one.
    fn forward_response_statelessly(&mut self, msg: &Message) {
        let mut vias = msg.vias();
        let _ours = vias.next();
        let Some(Ok(next)) = vias.next() else { return };
        let Some(dest) = via_destination(&next) else {
            return;
        };
        let mut e = Editor::new(msg);
        e.remove_first_value(&HeaderName::Via);
        let bytes = e.finish();
        self.transmit(dest, bytes);
    }

    /// Client transaction bookkeeping shared by responses and timeouts. `response` is the
    /// message that caused the events, if any.
    pub(super) fn drive_client(&mut self, now: Instant, id: u64, response: Option<&Message>) {
        let Some(entry) = self.clients.get_mut(&id) else {
            return;
        };
        let tx = entry.fsm.machine();
        let mut sends = Vec::new();
        let mut events = Vec::new();
        while let Some(b) = tx.poll_transmit() {
            sends.push(b);
        }
        while let Some(ev) = tx.poll_event() {
            events.push(ev);
        }
        let terminated = tx.is_terminated();
        if let Some(at) = tx.poll_timeout() {
            self.timers.schedule(at, TimerRef::Client(id));
        }
        let dest = entry.destination;
        for b in sends {
            self.transmit(dest, b);
        }
        for ev in events {
            self.client_event(now, id, ev, response);
        }
        if terminated {
            self.forget_client(id);
        }
    }
}
