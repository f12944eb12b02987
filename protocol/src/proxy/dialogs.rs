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

use tracing::debug;

use crate::dialog::{DialogEvent, EndReason, InDialogFacts, InviteFacts};
use crate::message::{Message, Method};
use crate::peer::Destination;

use super::core::{Core, Output};

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
    pub(super) fn dialog_response(&mut self, ctx_id: u64, index: usize, code: u16, msg: &Message) {
        let callee_flow = self
            .contexts
            .get(&ctx_id)
            .and_then(|c| c.branches.get(index))
            .and_then(|id| self.clients.get(id))
            .map(|c| c.destination);
        let Some(track) = self.dialog_tracks.get_mut(&ctx_id) else {
            return;
        };
        let mut events = Vec::new();
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
                    (200..=299, Some(tag), Some(flow)) if !confirmed.contains(&tag) => {
                        if let Some(ev) = facts.event_for(msg, flow) {
                            events.push(ev);
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
        self.outputs.extend(events.into_iter().map(Output::Dialog));
    }

    /// The final response `code` of context `ctx_id` is going upstream (forwarded or made
    /// here): a failure ends every dialog still early; an in-dialog BYE that got no response
    /// of its own (timeout, unreachable) still ends its dialog.
    pub(super) fn dialog_final(&mut self, ctx_id: u64, code: u16) {
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
