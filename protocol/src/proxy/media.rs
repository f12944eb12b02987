//! Media hooks of the proxy: SDP goes through rtpengine before it is forwarded (issue 6).
//!
//! With media enabled ([`Core::enable_media`]), the core does not forward an SDP body as it
//! came:
//!
//! - an INVITE or UPDATE with an SDP offer (RFC 3264 §4, RFC 3311) is parked and comes out as
//!   [`Output::Media`] with an ng `offer`; [`Core::handle_media_result`] resumes it with
//!   rtpengine's SDP (body and Content-Length rewritten), or answers it 503 + Retry-After
//!   (no instance answered) or 500 (rtpengine refused). Other calls never wait for it;
//! - a 18x or 2xx with an SDP answer to such a request is parked the same way with an ng
//!   `answer` (the callee's To tag as `to-tag`). A retransmission of a parked response is
//!   absorbed; one of an answered response reuses the rewritten SDP without asking again. If
//!   rtpengine fails on the answer the response is forwarded as it came (the callee already
//!   accepted; failing the call here would leave it half up);
//! - a BYE, and a final failure (≥300, which includes the 487 after a CANCEL) sent upstream
//!   for an initial INVITE, come out as an ng `delete` without a token (nothing waits). Every
//!   ng request names its call leg pair: Call-ID and From tag (and the To tag when known), so
//!   two calls sharing a Call-ID with different From tags are two sessions (issue 6).
//!
//! The ng options come from [`MediaProfiles`]: the offer is rewritten for the callee's
//! [`LegKind`] (its transport; targets of different kinds get an offer each, see
//! `media_fork.rs`), the answer for the
//! caller's (its transport and the offer's SDP). Late offers (an INVITE without SDP, the
//! offer in the 2xx and the answer in the ACK, RFC 3261 §13.2.1) are in `media_late.rs`; an
//! offer in a reliable 18x (RFC 3262) goes to rtpengine here like a 2xx's, and its answer in
//! the PRACK is in `media_prack.rs`. An *unreliable* 18x's SDP on an INVITE without SDP is not
//! an offer (§13.2.1: only a reliable message offers) and passes untouched.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use crate::media::{LegKind, MediaProfiles, has_sdp, replace_body};
use crate::message::{Message, Method, StatusCode};
use crate::ng::{CallRef, Request, SdpRequest};

use super::core::{Core, Output};
use super::forward::{ForwardPlan, Target};

/// Why rtpengine gave no SDP for an offer or answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaFailure {
    /// No healthy instance, or the instance did not answer in time: 503 + Retry-After.
    #[error("no media relay available")]
    Unavailable,
    /// rtpengine answered `result: error` (or gave no SDP): 500 with the reason.
    #[error("media relay refused: {0}")]
    Refused(String),
}

/// Seconds a caller is asked to wait when no media relay is available (RFC 3261 §21.5.4).
const RETRY_AFTER: &str = "5";

/// Media facts of one forwarded request with an SDP offer, by response context.
#[derive(Debug, Clone)]
pub(super) struct CallMedia {
    pub(super) call_id: String,
    pub(super) from_tag: String,
    pub(super) caller: LegKind,
    pub(super) callee: LegKind,
    /// The flags of this call (global ones with its `[[media.route]]` applied).
    pub(super) profile: MediaProfiles,
    /// An initial INVITE (its failure ends the rtpengine session).
    initial: bool,
    /// An INVITE without SDP: the offer comes in the 2xx, the answer in the ACK (or in a
    /// reliable 18x, the answer in the PRACK).
    pub(super) late: bool,
    /// A late offer of a reliable 18x went to rtpengine: a failure must delete it.
    early_offer: bool,
    /// Forked to targets of different kinds: the kind of each branch (by target index),
    /// each kind offered on its own rtpengine `via-branch` (`media_fork.rs`).
    pub(super) branch_kinds: Option<Vec<LegKind>>,
    /// (To tag, status) of responses waiting for rtpengine's answer.
    answering: Vec<(String, u16)>,
    /// (To tag, SDP as received, SDP as rewritten) of answered responses.
    pub(super) answered: Vec<(String, Bytes, Bytes)>,
    /// The To tag and branch index of the 2xx whose answer rtpengine took.
    pub(super) confirmed: Option<(String, usize)>,
    /// Branches that ended without a 2xx (index, To tag), waiting for their rtpengine
    /// state to be deleted (`media_fork.rs`).
    pub(super) losers: Vec<(usize, Option<String>)>,
    /// Branch kinds whose offer (`via-branch`) was deleted.
    pub(super) deleted_kinds: Vec<LegKind>,
    /// Indices of the branches that ended without a 2xx and were dealt with.
    pub(super) ended_branches: Vec<usize>,
}

/// Something waiting for rtpengine.
#[derive(Debug)]
pub(super) enum Parked {
    Request(Box<ParkedRequest>),
    Response {
        ctx: u64,
        index: usize,
        code: u16,
        msg: Box<Message>,
        tag: String,
    },
    /// An ACK with the answer to a late offer (`media_late.rs`).
    Ack(Box<super::media_late::ParkedAck>),
    /// A PRACK with the answer to a reliable 18x's offer (`media_prack.rs`).
    Prack(Box<super::media_prack::ParkedPrack>),
    /// One kind's offer of a request forked to targets of different kinds (`media_fork.rs`).
    Fork {
        fork: u64,
        kind: LegKind,
    },
}

/// A request waiting for its offer.
#[derive(Debug)]
pub(super) struct ParkedRequest {
    pub(super) server: u64,
    pub(super) msg: Message,
    pub(super) plan: ForwardPlan,
    pub(super) targets: Vec<Target>,
    pub(super) call: CallMedia,
}

/// The media state of one core.
#[derive(Debug, Default)]
pub(super) struct MediaHooks {
    /// `None`: media disabled, SDP passes untouched.
    pub(super) profiles: Option<MediaProfiles>,
    pub(super) parked: HashMap<u64, Parked>,
    pub(super) calls: HashMap<u64, CallMedia>,
    /// The next forward of this server transaction already went through rtpengine.
    pub(super) resuming_request: Option<u64>,
    /// The next response handled already went through rtpengine.
    resuming_response: bool,
    /// The next ACK handled already went through rtpengine.
    pub(super) resuming_ack: bool,
    /// Late offers sent in a 2xx, waiting for their answer in the ACK.
    pub(super) late: super::media_late::LateOffers,
    /// Requests forked to targets of different kinds, waiting for each kind's offer.
    pub(super) forks: HashMap<u64, super::media_fork::Fork>,
    /// While a forked request is forwarded: rtpengine's SDP for each kind of target.
    pub(super) branch_bodies: Vec<(LegKind, Bytes)>,
}

impl Core {
    /// Relays SDP through rtpengine from now on (see the module docs of `proxy::media`).
    pub fn enable_media(&mut self, profiles: MediaProfiles) {
        self.media.profiles = Some(profiles);
    }

    /// Number of requests and responses waiting for rtpengine (for tests and statistics).
    pub fn media_waiting(&self) -> usize {
        self.media.parked.len()
    }

    /// The result of an [`Output::Media`] with `token`: rtpengine's SDP, or why there is none.
    pub fn handle_media_result(
        &mut self,
        now: Instant,
        token: u64,
        result: Result<Bytes, MediaFailure>,
    ) {
        match self.media.parked.remove(&token) {
            Some(Parked::Request(p)) => {
                let ParkedRequest {
                    server,
                    msg,
                    plan,
                    targets,
                    call,
                } = *p;
                self.resume_request(now, server, &msg, plan, targets, call, result);
            }
            Some(Parked::Ack(ack)) => self.resume_ack(now, *ack, result),
            Some(Parked::Prack(prack)) => self.resume_prack(now, *prack, result),
            Some(Parked::Fork { fork, kind }) => self.fork_offer_result(now, fork, kind, result),
            Some(Parked::Response {
                ctx,
                index,
                code,
                msg,
                tag,
            }) => {
                let rewritten = match result {
                    Ok(sdp) => {
                        if let Some(c) = self.media.calls.get_mut(&ctx) {
                            c.answering.retain(|(t, c)| !(*t == tag && *c == code));
                            // A late offer (in a 2xx or a reliable 18x) waits for its answer
                            // in the ACK or the PRACK.
                            if c.late {
                                let call = c.clone();
                                self.media.late.offered(now, &call, &tag);
                            }
                        }
                        if let Some(c) = self.media.calls.get_mut(&ctx) {
                            if code >= 200 && !c.late && c.confirmed.is_none() {
                                c.confirmed = Some((tag.clone(), index));
                            }
                            c.answered.push((tag, msg.body(), sdp.clone()));
                        }
                        replace_body(&msg, &sdp)
                            .map_err(|e| warn!(error = %e, "answer SDP not applied"))
                            .ok()
                    }
                    Err(e) => {
                        warn!(error = %e, code, "rtpengine answer failed: response forwarded as is");
                        if let Some(c) = self.media.calls.get_mut(&ctx) {
                            c.answering.retain(|(t, c)| !(*t == tag && *c == code));
                        }
                        None
                    }
                };
                self.media.resuming_response = true;
                self.branch_response(now, ctx, index, code, rewritten.as_ref().unwrap_or(&msg));
                self.media.resuming_response = false;
                self.delete_losers(ctx);
            }
            None => {}
        }
    }

    #[allow(clippy::too_many_arguments)] // the parked request, taken apart
    pub(super) fn resume_request(
        &mut self,
        now: Instant,
        server: u64,
        msg: &Message,
        plan: ForwardPlan,
        targets: Vec<Target>,
        call: CallMedia,
        result: Result<Bytes, MediaFailure>,
    ) {
        let alive = self
            .servers
            .get(&server)
            .is_some_and(|e| !e.finished && !e.cancelled);
        if !alive {
            debug!("request ended while rtpengine worked on its offer");
            if call.initial {
                self.media_delete(&call.call_id, Some(&call.from_tag), None);
            }
            return;
        }
        let sdp = match result {
            Ok(sdp) => sdp,
            Err(e) => {
                warn!(error = %e, "rtpengine offer failed");
                if call.initial {
                    // The offer may have reached rtpengine and only the reply been lost.
                    self.media_delete(&call.call_id, Some(&call.from_tag), None);
                }
                match e {
                    MediaFailure::Unavailable => self.respond_local(
                        now,
                        server,
                        StatusCode(503),
                        "Service Unavailable: media relay unavailable",
                        &[("Retry-After", RETRY_AFTER.to_owned())],
                    ),
                    MediaFailure::Refused(_) => self.respond_local(
                        now,
                        server,
                        StatusCode(500),
                        "Server Internal Error: media relay refused the offer",
                        &[],
                    ),
                }
                return;
            }
        };
        let rewritten = match replace_body(msg, &sdp) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "offer SDP not applied");
                self.respond_local(
                    now,
                    server,
                    StatusCode(500),
                    "Server Internal Error: media relay SDP unusable",
                    &[],
                );
                return;
            }
        };
        self.media.resuming_request = Some(server);
        self.forward(now, server, &rewritten, plan, targets);
        self.media.resuming_request = None;
        self.media.branch_bodies.clear();
        self.remember_call(server, call);
    }

    /// Keeps the media facts of `server`'s forwarded request for its responses.
    fn remember_call(&mut self, server: u64, call: CallMedia) {
        if let Some(ctx) = self.servers.get(&server).and_then(|e| e.context) {
            if self.media.calls.len() > 64 + 2 * self.contexts.len() {
                let live = &self.contexts;
                self.media.calls.retain(|c, _| live.contains_key(c));
            }
            self.media.calls.insert(ctx, call);
        }
    }

    /// Called by `forward` before anything is sent: `true` when the request was taken over
    /// (parked for an rtpengine offer).
    pub(super) fn media_request_gate(
        &mut self,
        now: Instant,
        server: u64,
        msg: &Message,
        plan: &ForwardPlan,
        targets: &[Target],
    ) -> bool {
        let Some(profiles) = &self.media.profiles else {
            return false;
        };
        if self.media.resuming_request == Some(server) {
            self.media.resuming_request = None;
            return false;
        }
        let Some(method) = msg.method() else {
            return false;
        };
        let Ok(call_id) = msg.call_id() else {
            return false;
        };
        if *method == Method::Bye {
            // Either end may hang up: rtpengine and the session table find the leg pair by
            // either tag.
            let call_id = call_id.to_owned();
            let from = msg.from_tag().ok().flatten().map(str::to_owned);
            let to = msg.to_tag().ok().flatten().map(str::to_owned);
            self.media_delete(&call_id, from.as_deref(), to.as_deref());
            if let (Some(from), Some(to)) = (from, to) {
                self.media.late.forget(&call_id, &from, &to);
            }
            return false;
        }
        if *method == Method::Prack {
            return self.media_prack_gate(now, server, msg, plan, targets);
        }
        let late = *method == Method::Invite && !has_sdp(msg);
        if !matches!(method, Method::Invite | Method::Update) || !(late || has_sdp(msg)) {
            return false;
        }
        let Some(first) = targets.first() else {
            return false;
        };
        let Ok(Some(from_tag)) = msg.from_tag() else {
            return false;
        };
        let body = msg.body();
        let caller = LegKind::of(plan.origin.transport, Some(&body));
        let callee = LegKind::of(first.destination.transport, None);
        let profile = call_profile(profiles, msg, plan.origin.transport);
        if !profile.relays(caller, callee) {
            return false;
        }
        let options = profile.options_towards(callee, caller);
        let call = CallMedia {
            call_id: call_id.to_owned(),
            from_tag: from_tag.to_owned(),
            caller,
            callee,
            profile,
            initial: *method == Method::Invite && !matches!(msg.to_tag(), Ok(Some(_))),
            late,
            early_offer: false,
            branch_kinds: None,
            answering: Vec::new(),
            answered: Vec::new(),
            confirmed: None,
            losers: Vec::new(),
            deleted_kinds: Vec::new(),
            ended_branches: Vec::new(),
        };
        if late {
            // No offer yet: the request goes on as it is; its 2xx will carry the offer
            // (from whichever branch answers, so each branch's kind is kept).
            let kinds: Vec<LegKind> = targets
                .iter()
                .map(|t| LegKind::of(t.destination.transport, None))
                .collect();
            let call = CallMedia {
                branch_kinds: kinds.iter().any(|k| *k != callee).then_some(kinds),
                ..call
            };
            self.media.resuming_request = Some(server);
            self.forward(now, server, msg, plan.clone(), targets.to_vec());
            self.media.resuming_request = None;
            self.remember_call(server, call);
            return true;
        }
        let mut call_ref = CallRef::new(&call.call_id, &call.from_tag);
        // A re-offer inside a dialog names the other end too (and lets a node without the
        // session find its instance in the dialog record).
        if let Ok(Some(to_tag)) = msg.to_tag() {
            call_ref = call_ref.with_to_tag(to_tag);
        }
        let kinds: Vec<LegKind> = targets
            .iter()
            .map(|t| LegKind::of(t.destination.transport, None))
            .collect();
        if kinds.iter().any(|k| *k != callee) {
            let parked = ParkedRequest {
                server,
                msg: msg.clone(),
                plan: plan.clone(),
                targets: targets.to_vec(),
                call: CallMedia {
                    branch_kinds: Some(kinds.clone()),
                    ..call
                },
            };
            self.fork_offers(parked, &kinds, &call_ref, caller);
            return true;
        }
        let request = Request::Offer(SdpRequest {
            call: call_ref,
            sdp: body,
            options,
        });
        let token = self.new_id();
        debug!(
            caller = caller.as_str(),
            callee = callee.as_str(),
            "SDP offer to rtpengine"
        );
        self.media.parked.insert(
            token,
            Parked::Request(Box::new(ParkedRequest {
                server,
                msg: msg.clone(),
                plan: plan.clone(),
                targets: targets.to_vec(),
                call,
            })),
        );
        self.outputs.push_back(Output::Media {
            token: Some(token),
            request,
        });
        true
    }

    /// Called by `branch_response` first: `true` when the response was taken over (parked
    /// for an rtpengine answer, absorbed, or forwarded with a cached answer).
    pub(super) fn media_response_gate(
        &mut self,
        now: Instant,
        ctx: u64,
        index: usize,
        code: u16,
        msg: &Message,
    ) -> bool {
        if self.media.profiles.is_none() {
            return false;
        }
        if self.media.resuming_response {
            self.media.resuming_response = false;
            return false;
        }
        if code >= 300 {
            self.media_branch_ended(ctx, index, msg);
            return false;
        }
        if code >= 200 {
            self.media_branch_won(ctx, index, msg);
        }
        if !(101..300).contains(&code) || !has_sdp(msg) {
            return false;
        }
        let Ok(Some(tag)) = msg.to_tag() else {
            return false;
        };
        let tag = tag.to_owned();
        let Some(call) = self.media.calls.get_mut(&ctx) else {
            return false;
        };
        // A late offer is in the 2xx or a reliable 18x (RFC 3262); an unreliable 18x's SDP is
        // no offer (RFC 3261 §13.2.1) and passes untouched.
        if call.late && code < 200 && !super::media_prack::is_reliable(msg) {
            return false;
        }
        let body = msg.body();
        if let Some((_, _, sdp)) = call
            .answered
            .iter()
            .find(|(t, original, _)| *t == tag && *original == body)
        {
            let sdp = sdp.clone();
            let Ok(rewritten) = replace_body(msg, &sdp) else {
                return false;
            };
            self.media.resuming_response = true;
            self.branch_response(now, ctx, index, code, &rewritten);
            self.media.resuming_response = false;
            return true;
        }
        if call.answering.iter().any(|(t, c)| *t == tag && *c == code) {
            return true;
        }
        call.answering.push((tag.clone(), code));
        let request = if call.late {
            // The callee offers: rtpengine's offer names the offerer's tag as from-tag and
            // rewrites for the caller; the callee's kind is its branch's (forking), or shows
            // in its SDP.
            if let Some(kind) = call.branch_kinds.as_ref().and_then(|k| k.get(index)) {
                call.callee = *kind;
            }
            if LegKind::of(crate::peer::Transport::Udp, Some(&body)) == LegKind::Browser {
                call.callee = LegKind::Browser;
            }
            if code < 200 {
                call.early_offer = true;
            }
            Request::Offer(SdpRequest {
                call: CallRef::new(&call.call_id, &tag).with_to_tag(&call.from_tag),
                options: call.profile.options_towards(call.caller, call.callee),
                sdp: body,
            })
        } else {
            let branch_kind = call
                .branch_kinds
                .as_ref()
                .and_then(|k| k.get(index).copied());
            let mut options = call
                .profile
                .options_towards(call.caller, branch_kind.unwrap_or(call.callee));
            if let Some(kind) = branch_kind {
                super::media_fork::set_via_branch(&mut options, kind);
            }
            Request::Answer(SdpRequest {
                call: CallRef::new(&call.call_id, &call.from_tag).with_to_tag(&tag),
                options,
                sdp: body,
            })
        };
        let token = self.new_id();
        self.media.parked.insert(
            token,
            Parked::Response {
                ctx,
                index,
                code,
                msg: Box::new(msg.clone()),
                tag,
            },
        );
        self.outputs.push_back(Output::Media {
            token: Some(token),
            request,
        });
        true
    }

    /// The final response `code` of context `ctx` goes upstream: a failure of an initial
    /// INVITE ends its rtpengine session.
    pub(super) fn media_final(&mut self, ctx: u64, code: u16) {
        if code < 300 {
            return;
        }
        let Some(call) = self.media.calls.get(&ctx) else {
            return;
        };
        // A late offer comes with a 2xx or a reliable 18x: a failure after neither leaves
        // nothing in rtpengine.
        if call.initial && (!call.late || call.early_offer) {
            let (call_id, from_tag) = (call.call_id.clone(), call.from_tag.clone());
            self.media.calls.remove(&ctx);
            self.media_delete(&call_id, Some(&from_tag), None);
        }
    }

    /// Emits an ng `delete` of one call leg pair (Call-ID + tags; nothing waits for it).
    pub(super) fn media_delete(
        &mut self,
        call_id: &str,
        from_tag: Option<&str>,
        to_tag: Option<&str>,
    ) {
        self.outputs.push_back(Output::Media {
            token: None,
            request: Request::Delete(CallRef {
                call_id: call_id.to_owned(),
                from_tag: from_tag.filter(|t| !t.is_empty()).map(str::to_owned),
                to_tag: to_tag.filter(|t| !t.is_empty()).map(str::to_owned),
            }),
        });
    }
}

/// The flags of the call `msg` belongs to: the global ones with the first `[[media.route]]`
/// matching its target applied. An initial request is matched on its Request-URI; one inside
/// a dialog (it has a To tag) on its To URI, since its Request-URI is a remote target.
pub(super) fn call_profile(
    global: &MediaProfiles,
    msg: &Message,
    transport: crate::peer::Transport,
) -> MediaProfiles {
    if global.routes.is_empty() {
        return global.clone();
    }
    let in_dialog = matches!(msg.to_tag(), Ok(Some(_)));
    let to = if in_dialog { msg.to().ok() } else { None };
    let uri = match &to {
        Some(na) => Some(na.uri),
        None => msg.request_uri().and_then(Result::ok),
    };
    match uri {
        Some(crate::uri::Uri::Sip(u)) => global.for_call(&u.host.to_string(), u.user, transport),
        _ => global.for_call("", None, transport),
    }
}
