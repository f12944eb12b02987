//! Dialog events from what the proxy forwards (RFC 3261 §12, §16.7).
//!
//! When a request goes out, the core keeps the dialog facts of it next to its response
//! context: for an initial INVITE, the caller's end ([`InviteFacts`]); for a BYE, re-INVITE or
//! UPDATE inside a dialog, the request's identity ([`InDialogFacts`]). The responses then
//! become [`DialogEvent`]s on [`Output::Dialog`], pushed *before* the response itself is
//! transmitted, so the shell sees a dialog confirmed no later than the caller does.
//!
//! Forking (§16.7, §13.2.2.4): every To tag in a provisional response is its own early
//! dialog; a failure on a branch ends that branch's early dialogs; the first 2xx confirms its
//! dialog and ends every other early one (the proxy cancels those branches); a later 2xx from
//! another branch confirms that dialog too (the caller will send it a BYE). A final failure
//! sent upstream ends whatever is still early.
//!
//! Holding the 2xx (DESIGN.md "an answer that promises state is sent only after the store has
//! it"): the 2xx that confirms a dialog goes out as [`Output::StoreDialog`] and is held until
//! [`Core::handle_dialog_stored`] or [`DIALOG_HOLD`], whichever comes first; then it is
//! forwarded (with a warning when the store did not confirm). Retransmissions of a held 2xx
//! are absorbed, so the caller sees one 2xx, not a retransmission before the original; after
//! the release they are forwarded as usual (RFC 6026).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, warn};

use crate::dialog::{DialogEvent, EndReason, InDialogFacts, InviteFacts};
use crate::message::{Message, Method};
use crate::peer::Destination;

use super::core::{Core, Output, TimerRef};

/// Longest time a 2xx waits for its dialog to be stored. Short: a slow store delays the
/// answer by this much at most, it never loses the call.
pub const DIALOG_HOLD: Duration = Duration::from_millis(200);

/// What the core does with a response after the dialog bookkeeping.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Forward it as usual.
    Pass,
    /// Hold it until the dialog is stored (`tag`: the callee's To tag).
    Hold { token: u64, tag: String },
    /// A retransmission of a held 2xx: drop it, the held one goes out.
    Absorb,
}

/// A 2xx waiting for its dialog to be stored.
#[derive(Debug)]
pub(super) struct Held {
    ctx: u64,
    tag: String,
    server: u64,
    code: u16,
    response: Bytes,
}

/// The dialog facts of one forwarded request.
#[derive(Debug)]
pub(super) enum DialogTrack {
    /// A dialog-creating INVITE.
    Invite {
        facts: InviteFacts,
        /// Early dialogs: the branch index and the callee's To tag.
        early: Vec<(usize, String)>,
        /// To tags of the dialogs a 2xx confirmed.
        confirmed: Vec<String>,
    },
    /// A BYE, re-INVITE or UPDATE inside a dialog; `done` once its event went out.
    InDialog { facts: InDialogFacts, done: bool },
}

impl Core {
    /// Remembers the dialog facts of `msg`, forwarded under context `ctx_id`, that came from
    /// `from` (the server transaction's reply destination).
    pub(super) fn track_dialog(&mut self, ctx_id: u64, msg: &Message, from: Destination) {
        let Some(method) = msg.method() else { return };
        let in_dialog = msg.to_tag().ok().flatten().is_some();
        let track = if *method == Method::Invite && !in_dialog {
            match InviteFacts::from_request(msg, from) {
                Ok(facts) => DialogTrack::Invite {
                    facts,
                    early: Vec::new(),
                    confirmed: Vec::new(),
                },
                Err(e) => {
                    debug!(error = %e, "INVITE forwarded without dialog tracking");
                    return;
                }
            }
        } else {
            match InDialogFacts::from_request(msg, from) {
                Ok(Some(facts)) => DialogTrack::InDialog { facts, done: false },
                Ok(None) => return,
                Err(e) => {
                    debug!(error = %e, "in-dialog request forwarded without dialog tracking");
                    return;
                }
            }
        };
        self.dialog_tracks.insert(ctx_id, track);
    }

    /// A response arrived on branch `index` of context `ctx_id` (before it is forwarded).
    pub(super) fn dialog_response(
        &mut self,
        ctx_id: u64,
        index: usize,
        code: u16,
        msg: &Message,
    ) -> Verdict {
        let mut verdict = Verdict::Pass;
        let token = self.next_id;
        let callee_flow = self
            .contexts
            .get(&ctx_id)
            .and_then(|c| c.branches.get(index))
            .and_then(|id| self.clients.get(id))
            .map(|c| c.destination);
        let held = &self.held;
        let Some(track) = self.dialog_tracks.get_mut(&ctx_id) else {
            return verdict;
        };
        let mut events = Vec::new();
        let mut store = None;
        match track {
            DialogTrack::Invite {
                facts,
                early,
                confirmed,
            } => {
                let tag = msg.to_tag().ok().flatten().map(str::to_owned);
                match (code, tag, callee_flow) {
                    (101..=199, Some(tag), Some(flow)) if confirmed.is_empty() => {
                        if let Some(ev) = facts.event_for(msg, flow) {
                            if !early.iter().any(|(_, t)| *t == tag) {
                                early.push((index, tag));
                            }
                            events.push(ev);
                        }
                    }
                    // A retransmission of a 2xx that is still held goes nowhere.
                    (200..=299, Some(tag), _)
                        if confirmed.contains(&tag)
                            && held.values().any(|h| h.ctx == ctx_id && h.tag == tag) =>
                    {
                        verdict = Verdict::Absorb;
                    }
                    // One that was released is forwarded again (RFC 6026), no new event.
                    (200..=299, Some(tag), _) if confirmed.contains(&tag) => {}
                    (200..=299, Some(tag), Some(flow)) => {
                        if let Some(ev) = facts.event_for(msg, flow) {
                            store = Some(ev);
                            verdict = Verdict::Hold {
                                token,
                                tag: tag.clone(),
                            };
                            let first = confirmed.is_empty();
                            early.retain(|(_, t)| *t != tag);
                            confirmed.push(tag);
                            if first {
                                for (_, loser) in early.drain(..) {
                                    events.push(DialogEvent::Terminated {
                                        id: crate::dialog::DialogId::new(
                                            facts.call_id.clone(),
                                            facts.caller.tag.clone(),
                                            loser,
                                        ),
                                        reason: EndReason::OtherForkAnswered,
                                    });
                                }
                            }
                        }
                    }
                    (300.., _, _) => {
                        // This branch failed: its early dialogs end.
                        let (ended, kept): (Vec<_>, Vec<_>) =
                            early.drain(..).partition(|(i, _)| *i == index);
                        *early = kept;
                        for (_, tag) in ended {
                            events.push(DialogEvent::Terminated {
                                id: crate::dialog::DialogId::new(
                                    facts.call_id.clone(),
                                    facts.caller.tag.clone(),
                                    tag,
                                ),
                                reason: EndReason::Rejected(code),
                            });
                        }
                    }
                    _ => {}
                }
            }
            DialogTrack::InDialog { facts, done } => {
                if !*done && let Some(ev) = facts.event_for(code, Some(msg)) {
                    *done = true;
                    events.push(ev);
                } else if code >= 200 {
                    *done = true;
                }
            }
        }
        if let Some(event) = store {
            self.next_id += 1;
            self.outputs.push_back(Output::StoreDialog { token, event });
        }
        self.outputs.extend(events.into_iter().map(Output::Dialog));
        verdict
    }

    /// Holds the 2xx `response` of context `ctx_id` until its dialog is stored.
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    pub(super) fn hold(
        &mut self,
        now: Instant,
        token: u64,
        ctx: u64,
        tag: String,
        server: u64,
        code: u16,
        response: Bytes,
    ) {
        self.held.insert(
            token,
            Held {
                ctx,
                tag,
                server,
                code,
                response,
            },
        );
        self.timers
            .schedule(now + DIALOG_HOLD, TimerRef::DialogHold(token));
    }

    /// Sends a held 2xx: the store answered (`Some(true)` stored, `Some(false)` failed) or
    /// the hold ran out (`None`).
    pub(super) fn release_hold(&mut self, now: Instant, token: u64, stored: Option<bool>) {
        let Some(h) = self.held.remove(&token) else {
            return;
        };
        match stored {
            Some(true) => {}
            Some(false) => warn!("dialog not stored (store failed): 2xx forwarded anyway"),
            None => warn!(
                ?DIALOG_HOLD,
                "dialog store did not answer in time: 2xx forwarded anyway"
            ),
        }
        self.respond(now, h.server, h.code, h.response);
    }

    /// The final response `code` of context `ctx_id` is going upstream (forwarded or made
    /// here): a failure ends every dialog still early; an in-dialog BYE that got no response
    /// of its own (timeout, unreachable) still ends its dialog.
    pub(super) fn dialog_final(&mut self, ctx_id: u64, code: u16) {
        self.media_final(ctx_id, code);
        let Some(track) = self.dialog_tracks.get_mut(&ctx_id) else {
            return;
        };
        let mut events = Vec::new();
        match track {
            DialogTrack::Invite { facts, early, .. } if code >= 300 => {
                for (_, tag) in early.drain(..) {
                    events.push(DialogEvent::Terminated {
                        id: crate::dialog::DialogId::new(
                            facts.call_id.clone(),
                            facts.caller.tag.clone(),
                            tag,
                        ),
                        reason: EndReason::Rejected(code),
                    });
                }
            }
            DialogTrack::InDialog { facts, done } if !*done => {
                *done = true;
                if let Some(ev) = facts.event_for(code, None) {
                    events.push(ev);
                }
            }
            _ => {}
        }
        self.outputs.extend(events.into_iter().map(Output::Dialog));
    }
}
