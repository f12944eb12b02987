//! Late offers through rtpengine (issue 6; RFC 3261 §13.2.1, RFC 3264 §4).
//!
//! An INVITE without SDP (initial or re-INVITE) asks the callee to offer: the offer comes in
//! the 2xx and the caller's answer in the ACK. The proxy side (`media.rs`) forwards such an
//! INVITE as it is and sends the 2xx's SDP to rtpengine as an `offer` from the callee
//! (`from-tag` = the callee's To tag, `to-tag` = the caller's From tag, options for the
//! caller). This file handles the other half: the ACK for that 2xx is end-to-end and
//! forwarded statelessly (§16.11). An ACK carries SDP only as the answer to an offer in the
//! 2xx (§13.2.1: a UAC never offers in an ACK), so every ACK with SDP is parked, its body
//! goes to rtpengine as the `answer` (`from-tag` = the callee's tag, options for the callee),
//! and the ACK is forwarded with rtpengine's SDP and a matching Content-Length.
//!
//! The ACK carries a branch of its own, so it may reach another shard than its INVITE: the
//! [`LateOffers`] table of the shard that relayed the offer only refines what it knows (the
//! legs' kinds from the 2xx's SDP, a cached answer for a retransmitted ACK — the UAC sends
//! one per retransmitted 2xx —, absorbing a copy while the answer is in flight); without an
//! entry the kinds come from the ACK's transports and SDP. rtpengine answers an ACK whose
//! 2xx it never saw with an error, and the ACK is then forwarded as it came.
//!
//! An offer in a reliable 18x (RFC 3262) is entered in the same table; its answer comes in
//! the PRACK (`media_prack.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, warn};

use crate::media::{LegKind, MediaProfiles, has_sdp, replace_body};
use crate::message::Message;
use crate::ng::{CallRef, Request, SdpRequest};
use crate::peer::{Origin, Transport};
use crate::transaction::TransactionKey;

use super::MediaFailure;
use super::core::{Core, Output};
use super::media::{CallMedia, Parked, call_profile};

/// How long an ACK is awaited after its 2xx (64·T1, the 2xx retransmission span, §13.3.1.4).
const ACK_WAIT: Duration = Duration::from_secs(32);

/// One late offer sent in a 2xx (or a reliable 18x) whose ACK (or PRACK) has not brought the
/// answer yet.
#[derive(Debug, Clone)]
pub(super) struct LateOffer {
    pub(super) caller: LegKind,
    pub(super) callee: LegKind,
    pub(super) profile: MediaProfiles,
    /// The answer is with rtpengine.
    pub(super) answering: bool,
    /// (ACK or PRACK body as received, as rewritten).
    pub(super) answered: Option<(Bytes, Bytes)>,
    pub(super) until: Instant,
}

impl LateOffer {
    /// An offer this shard did not relay (the ACK or PRACK reached another shard than the
    /// offer): the legs' kinds come from the request's transports and SDP.
    pub(super) fn unseen(
        now: Instant,
        caller: LegKind,
        callee: LegKind,
        profile: MediaProfiles,
    ) -> Self {
        Self {
            caller,
            callee,
            profile,
            answering: false,
            answered: None,
            until: now + ACK_WAIT,
        }
    }
}

/// What to do with the answer to a late offer ([`Core::late_answer`]).
pub(super) enum LateAnswer {
    /// The call's media is not relayed: the request goes on as it came.
    NotRelayed,
    /// The same answer was rewritten before: forward the request with this SDP.
    Repeat(Bytes),
    /// The answer is with rtpengine already: absorb this request.
    InFlight,
    /// Send this answer to rtpengine, and park the request until it replies.
    Ask(Box<Request>),
}

/// Late offers of one dialog: (Call-ID, caller's tag, callee's tag).
pub(super) type DialogKey = (String, String, String);

/// The late offers of one core, by (Call-ID, caller's tag, callee's tag).
#[derive(Debug, Default)]
pub(super) struct LateOffers {
    pub(super) offers: HashMap<DialogKey, LateOffer>,
}

impl LateOffers {
    /// rtpengine rewrote the offer of `call`'s 2xx from the callee tagged `callee_tag`.
    pub(super) fn offered(&mut self, now: Instant, call: &CallMedia, callee_tag: &str) {
        self.offers.retain(|_, o| o.until > now);
        self.offers.insert(
            (
                call.call_id.clone(),
                call.from_tag.clone(),
                callee_tag.to_owned(),
            ),
            LateOffer {
                caller: call.caller,
                callee: call.callee,
                profile: call.profile.clone(),
                answering: false,
                answered: None,
                until: now + ACK_WAIT,
            },
        );
    }

    /// The entry of `dialog`, made with `unseen` when this shard has none (expired ones are
    /// dropped first when the table grows).
    pub(super) fn entry(
        &mut self,
        now: Instant,
        dialog: DialogKey,
        unseen: impl FnOnce() -> LateOffer,
    ) -> &mut LateOffer {
        if self.offers.len() > 64 {
            self.offers.retain(|_, o| o.until > now);
        }
        self.offers.entry(dialog).or_insert_with(unseen)
    }

    /// The dialog ended (BYE, from either end).
    pub(super) fn forget(&mut self, call_id: &str, from: &str, to: &str) {
        for key in [
            (call_id.to_owned(), from.to_owned(), to.to_owned()),
            (call_id.to_owned(), to.to_owned(), from.to_owned()),
        ] {
            self.offers.remove(&key);
        }
    }

    /// Number of late offers waiting for their ACK (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.offers.len()
    }
}

/// An ACK waiting for rtpengine's answer.
#[derive(Debug)]
pub(super) struct ParkedAck {
    msg: Message,
    origin: Origin,
    key: TransactionKey,
    dialog: DialogKey,
}

impl Core {
    /// Called by `handle_ack` before an end-to-end ACK is forwarded: `true` when it was
    /// taken over (parked for rtpengine's answer, absorbed, or forwarded with a cached one).
    pub(super) fn media_ack_gate(
        &mut self,
        now: Instant,
        msg: &Message,
        origin: &Origin,
        key: &TransactionKey,
        towards: Transport,
    ) -> bool {
        if self.media.resuming_ack {
            self.media.resuming_ack = false;
            return false;
        }
        if self.media.profiles.is_none() || !has_sdp(msg) {
            return false;
        }
        let (Ok(call_id), Ok(Some(from)), Ok(Some(to))) =
            (msg.call_id(), msg.from_tag(), msg.to_tag())
        else {
            return false;
        };
        let dialog = (call_id.to_owned(), from.to_owned(), to.to_owned());
        let body = msg.body();
        let Some(global) = self.media.profiles.as_ref() else {
            return false;
        };
        let stateless = LegKind::of(origin.transport, Some(&body));
        let callee = LegKind::of(towards, None);
        let profile = call_profile(global, msg, origin.transport);
        let request = match self.late_answer(now, dialog.clone(), body, stateless, callee, profile)
        {
            LateAnswer::NotRelayed => return false,
            LateAnswer::Repeat(sdp) => {
                self.forward_ack(now, msg, &Ok(sdp), origin, key);
                return true;
            }
            LateAnswer::InFlight => return true,
            LateAnswer::Ask(request) => *request,
        };
        let token = self.new_id();
        debug!("late answer in the ACK to rtpengine");
        self.media.parked.insert(
            token,
            Parked::Ack(Box::new(ParkedAck {
                msg: msg.clone(),
                origin: *origin,
                key: key.clone(),
                dialog,
            })),
        );
        self.outputs.push_back(Output::Media {
            token: Some(token),
            request,
        });
        true
    }

    /// The answer `body` to the late offer of `dialog` (in an ACK, or a PRACK after an offer in
    /// a reliable 18x), between legs `caller` and `callee`: what to do with its request.
    pub(super) fn late_answer(
        &mut self,
        now: Instant,
        dialog: DialogKey,
        body: Bytes,
        caller: LegKind,
        callee: LegKind,
        profile: MediaProfiles,
    ) -> LateAnswer {
        if !self.media.late.offers.contains_key(&dialog) && !profile.relays(caller, callee) {
            return LateAnswer::NotRelayed;
        }
        let offer = self.media.late.entry(now, dialog.clone(), || {
            LateOffer::unseen(now, caller, callee, profile)
        });
        if let Some((original, rewritten)) = &offer.answered
            && *original == body
        {
            // The same answer again (a new transaction: a retransmission is absorbed by its
            // server transaction before it gets here).
            return LateAnswer::Repeat(rewritten.clone());
        }
        if offer.answering {
            return LateAnswer::InFlight;
        }
        offer.answering = true;
        let options = offer.profile.options_towards(offer.callee, offer.caller);
        LateAnswer::Ask(Box::new(Request::Answer(SdpRequest {
            call: CallRef::new(&dialog.0, &dialog.2).with_to_tag(&dialog.1),
            sdp: body,
            options,
        })))
    }

    /// rtpengine's answer for a parked ACK: forwarded with it, or as it came on a failure
    /// (the call is up already; dropping the ACK would only make the callee retransmit).
    pub(super) fn resume_ack(
        &mut self,
        now: Instant,
        ack: ParkedAck,
        result: Result<Bytes, MediaFailure>,
    ) {
        if let Some(offer) = self.media.late.offers.get_mut(&ack.dialog) {
            offer.answering = false;
            if let Ok(sdp) = &result {
                offer.answered = Some((ack.msg.body(), sdp.clone()));
            }
        }
        self.forward_ack(now, &ack.msg, &result, &ack.origin, &ack.key);
    }

    fn forward_ack(
        &mut self,
        now: Instant,
        msg: &Message,
        sdp: &Result<Bytes, MediaFailure>,
        origin: &Origin,
        key: &TransactionKey,
    ) {
        let rewritten = match sdp {
            Ok(sdp) => replace_body(msg, sdp)
                .map_err(|e| warn!(error = %e, "late answer SDP not applied"))
                .ok(),
            Err(e) => {
                warn!(error = %e, "rtpengine late answer failed: ACK forwarded as is");
                None
            }
        };
        self.media.resuming_ack = true;
        self.handle_ack(
            now,
            rewritten.unwrap_or_else(|| msg.clone()),
            *origin,
            key.clone(),
        );
        self.media.resuming_ack = false;
    }
}
