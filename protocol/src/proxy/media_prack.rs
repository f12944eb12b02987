//! Offers in reliable provisional responses through rtpengine (issue 6; RFC 3262, RFC 3264).
//!
//! RFC 3261 §13.2.1 puts the offer of an INVITE without SDP in "the first reliable non-failure
//! message" from the callee: with 100rel (RFC 3262) that may be a reliable 18x (`Require:
//! 100rel` and an `RSeq`), and the caller's answer then comes in the PRACK (RFC 3262 §5). The
//! offer half lives in `media.rs` (a late call's reliable 18x with SDP goes to rtpengine as an
//! `offer` from the callee, exactly like a 2xx's) and records the offer in the
//! [`LateOffers`](super::media_late::LateOffers) table; this file handles the PRACK.
//!
//! A PRACK is a request of its own transaction, with its own branch, so it may reach another
//! shard than the INVITE. A PRACK with SDP is taken as the answer to a reliable 18x's offer: the
//! body goes to rtpengine as the `answer` (`from-tag` = the callee's tag, the offerer's;
//! `to-tag` = the caller's) and the PRACK is forwarded with rtpengine's SDP, rewritten for the
//! callee, and a matching Content-Length. The shard that relayed the offer knows the legs'
//! kinds; another shard takes them from the PRACK's transports and SDP, as for a late ACK. If
//! rtpengine fails (or never saw an offer for that dialog, which it answers with an error) the
//! PRACK goes on as it came: the callee has already offered, failing here would leave half a
//! call. A PRACK without SDP passes untouched.
//!
//! An *answer* in a reliable 18x needs nothing here: the 18x's SDP is answered like any 18x
//! (`media.rs`), and a later 2xx repeating that SDP (RFC 3262 §5 forbids a new answer) reuses
//! the rewritten SDP without a second ng request.

use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use crate::header::HeaderName;
use crate::media::{LegKind, has_sdp, replace_body};
use crate::message::Message;

use super::MediaFailure;
use super::core::{Core, Output};
use super::forward::{ForwardPlan, Target};
use super::media::{Parked, call_profile};
use super::media_late::{DialogKey, LateAnswer};

/// A reliable provisional response (RFC 3262 §3): `Require: 100rel` and an `RSeq`.
pub(super) fn is_reliable(msg: &Message) -> bool {
    msg.header(&HeaderName::RSeq).is_some()
        && msg
            .option_tags(&HeaderName::Require)
            .any(|t| t.trim().eq_ignore_ascii_case("100rel"))
}

/// A PRACK waiting for rtpengine's answer.
#[derive(Debug)]
pub(super) struct ParkedPrack {
    server: u64,
    msg: Message,
    plan: ForwardPlan,
    targets: Vec<Target>,
    dialog: DialogKey,
}

impl Core {
    /// Called by `forward` for a PRACK: `true` when it was taken over (parked for rtpengine's
    /// answer, absorbed, or forwarded with a cached answer).
    pub(super) fn media_prack_gate(
        &mut self,
        now: Instant,
        server: u64,
        msg: &Message,
        plan: &ForwardPlan,
        targets: &[Target],
    ) -> bool {
        if !has_sdp(msg) {
            return false;
        }
        let (Ok(call_id), Ok(Some(from)), Ok(Some(to)), Some(first), Some(global)) = (
            msg.call_id(),
            msg.from_tag(),
            msg.to_tag(),
            targets.first(),
            self.media.profiles.as_ref(),
        ) else {
            return false;
        };
        let dialog: DialogKey = (call_id.to_owned(), from.to_owned(), to.to_owned());
        let body = msg.body();
        let caller = LegKind::of(plan.origin.transport, Some(&body));
        let callee = LegKind::of(first.destination.transport, None);
        let profile = call_profile(global, msg, plan.origin.transport);
        let request = match self.late_answer(now, dialog.clone(), body, caller, callee, profile) {
            LateAnswer::NotRelayed => return false,
            LateAnswer::Repeat(sdp) => {
                self.forward_prack(now, server, msg, plan.clone(), targets.to_vec(), &Ok(sdp));
                return true;
            }
            LateAnswer::InFlight => return true,
            LateAnswer::Ask(request) => *request,
        };
        let token = self.new_id();
        debug!("answer in the PRACK to rtpengine");
        self.media.parked.insert(
            token,
            Parked::Prack(Box::new(ParkedPrack {
                server,
                msg: msg.clone(),
                plan: plan.clone(),
                targets: targets.to_vec(),
                dialog,
            })),
        );
        self.outputs.push_back(Output::Media {
            token: Some(token),
            request,
        });
        true
    }

    /// rtpengine's answer for a parked PRACK: forwarded with it, or as it came on a failure.
    pub(super) fn resume_prack(
        &mut self,
        now: Instant,
        prack: ParkedPrack,
        result: Result<Bytes, MediaFailure>,
    ) {
        if let Some(offer) = self.media.late.offers.get_mut(&prack.dialog) {
            offer.answering = false;
            if let Ok(sdp) = &result {
                offer.answered = Some((prack.msg.body(), sdp.clone()));
            }
        }
        let alive = self
            .servers
            .get(&prack.server)
            .is_some_and(|e| !e.finished && !e.cancelled);
        if !alive {
            debug!("PRACK ended while rtpengine worked on its answer");
            return;
        }
        let ParkedPrack {
            server,
            msg,
            plan,
            targets,
            ..
        } = prack;
        self.forward_prack(now, server, &msg, plan, targets, &result);
    }

    fn forward_prack(
        &mut self,
        now: Instant,
        server: u64,
        msg: &Message,
        plan: ForwardPlan,
        targets: Vec<Target>,
        sdp: &Result<Bytes, MediaFailure>,
    ) {
        let rewritten = match sdp {
            Ok(sdp) => replace_body(msg, sdp)
                .map_err(|e| warn!(error = %e, "PRACK answer SDP not applied"))
                .ok(),
            Err(e) => {
                warn!(error = %e, "rtpengine answer in the PRACK failed: forwarded as is");
                None
            }
        };
        self.media.resuming_request = Some(server);
        self.forward(
            now,
            server,
            rewritten.as_ref().unwrap_or(msg),
            plan,
            targets,
        );
        self.media.resuming_request = None;
    }
}
