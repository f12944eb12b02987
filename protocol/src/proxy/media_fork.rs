//! Forking to targets of different kinds through rtpengine (issue 6): one AOR with a WS
//! binding (a browser) and a UDP binding (a desk phone) needs a WebRTC offer on one branch and
//! a plain RTP/AVP offer on the other (RFC 3261 §16.6: each branch is its own request).
//!
//! rtpengine keeps several offers from the same `from-tag` apart by their `via-branch`
//! (measured against rtpengine 10.5: two offers with one from-tag and different via-branch
//! values produce an SDP per kind, and an `answer` names the branch it answers). So a request
//! whose targets are not all of one [`LegKind`] gets one ng `offer` per kind, with the kind's
//! name as `via-branch` and the kind's options; once every offer came back, each target is
//! sent the SDP of its kind (`media_target_body`, called by `forward`). A response's answer
//! names the branch kind of the target that sent it.
//!
//! **Losing branches** (any fork, of one kind or several) go from rtpengine when they end: a
//! branch whose final response is not a 2xx (its own failure, or the 487 after the proxy
//! cancelled it because another branch answered, RFC 3261 §16.7 step 10) is deleted with
//! [`Request::DeleteBranch`]: by its To tag when rtpengine took an answer from it (an 18x with
//! SDP), and, for a kind none of whose branches answered or won, by that kind's `via-branch`.
//! rtpengine 10.5 ends the whole call when the only answered branch is deleted, so these
//! deletes wait until the winner's 2xx answer went through (a branch that fails earlier is
//! kept in `CallMedia::losers` until then; if no branch wins, the call's own delete removes
//! everything). When the call ends, the session still deletes the whole Call-ID (a tagless
//! `delete`, see `actors/src/media/session.rs`).

use std::time::Instant;

use bytes::Bytes;
use tracing::debug;

use crate::media::{LegKind, replace_body};
use crate::message::Message;
use crate::ng::{CallRef, MediaOptions, Request, SdpRequest, Value};

use super::MediaFailure;
use super::core::{Core, Output};
use super::forward::Target;
use super::media::{Parked, ParkedRequest};

/// The ng key naming a branch of an offer (rtpengine `via-branch`).
const VIA_BRANCH: &[u8] = b"via-branch";

/// A forked request waiting for the offer of each kind of target.
#[derive(Debug)]
pub(super) struct Fork {
    request: ParkedRequest,
    waiting: usize,
    bodies: Vec<(LegKind, Bytes)>,
    failure: Option<MediaFailure>,
}

/// Names the branch of kind `kind` in an offer's or answer's options.
pub(super) fn set_via_branch(options: &mut MediaOptions, kind: LegKind) {
    options
        .extra
        .insert(Bytes::from_static(VIA_BRANCH), Value::str(kind.as_str()));
}

impl Core {
    /// Parks `request` and asks rtpengine for one offer per kind among `kinds`.
    pub(super) fn fork_offers(
        &mut self,
        request: ParkedRequest,
        kinds: &[LegKind],
        call: &CallRef,
        caller: LegKind,
    ) {
        let mut distinct: Vec<LegKind> = Vec::new();
        for k in kinds {
            if !distinct.contains(k) {
                distinct.push(*k);
            }
        }
        let fork = self.new_id();
        let sdp = request.msg.body();
        debug!(
            kinds = distinct.len(),
            "forked to legs of different kinds: an offer per kind"
        );
        for kind in &distinct {
            let mut options = request.call.profile.options_towards(*kind, caller);
            set_via_branch(&mut options, *kind);
            let token = self.new_id();
            self.media
                .parked
                .insert(token, Parked::Fork { fork, kind: *kind });
            self.outputs.push_back(Output::Media {
                token: Some(token),
                request: Request::Offer(SdpRequest {
                    call: call.clone(),
                    sdp: sdp.clone(),
                    options,
                }),
            });
        }
        self.media.forks.insert(
            fork,
            Fork {
                request,
                waiting: distinct.len(),
                bodies: Vec::new(),
                failure: None,
            },
        );
    }

    /// The offer of one kind came back; the request goes on once all of them did.
    pub(super) fn fork_offer_result(
        &mut self,
        now: Instant,
        fork: u64,
        kind: LegKind,
        result: Result<Bytes, MediaFailure>,
    ) {
        let Some(f) = self.media.forks.get_mut(&fork) else {
            return;
        };
        f.waiting = f.waiting.saturating_sub(1);
        match result {
            Ok(sdp) => f.bodies.push((kind, sdp)),
            Err(e) => f.failure = Some(e),
        }
        if f.waiting > 0 {
            return;
        }
        let Some(Fork {
            request,
            bodies,
            failure,
            ..
        }) = self.media.forks.remove(&fork)
        else {
            return;
        };
        let first = bodies.first().map(|(_, b)| b.clone());
        let result = match (failure, first) {
            (Some(e), _) => Err(e),
            (None, Some(sdp)) => Ok(sdp),
            (None, None) => Err(MediaFailure::Unavailable),
        };
        if result.is_ok() {
            self.media.branch_bodies = bodies;
        }
        let ParkedRequest {
            server,
            msg,
            plan,
            targets,
            call,
        } = request;
        self.resume_request(now, server, &msg, plan, targets, call, result);
        self.media.branch_bodies.clear();
    }

    /// While a forked request is forwarded: `msg` with the SDP of `target`'s kind, when it
    /// differs from the one `msg` carries.
    pub(super) fn media_target_body(&self, msg: &Message, target: &Target) -> Option<Message> {
        if self.media.branch_bodies.is_empty() {
            return None;
        }
        let kind = LegKind::of(target.destination.transport, None);
        let (_, sdp) = self.media.branch_bodies.iter().find(|(k, _)| *k == kind)?;
        if *sdp == msg.body() {
            return None;
        }
        replace_body(msg, sdp).ok()
    }
}

impl Core {
    /// Branch `index` of context `ctx` ended with a final non-2xx `msg`: its rtpengine state
    /// goes once a winner answered (see the module doc).
    pub(super) fn media_branch_ended(&mut self, ctx: u64, index: usize, msg: &Message) {
        let Some(call) = self.media.calls.get_mut(&ctx) else {
            return;
        };
        // A late call's branches offered nothing to rtpengine before their 2xx.
        if call.late {
            return;
        }
        let tag = msg.to_tag().ok().flatten().map(str::to_owned);
        // Once per branch (a final response is not passed on twice, but be sure).
        if !call.losers.iter().any(|(i, _)| *i == index) && !call.ended_branches.contains(&index) {
            call.losers.push((index, tag));
        }
        self.delete_losers(ctx);
    }

    /// Branch `index` of `ctx` sent a 2xx: when rtpengine already took an answer from it (an
    /// 18x with SDP, the 2xx repeating it or carrying none), it is the winner and the losers
    /// may go. A 2xx with a first answer becomes the winner when that answer went through.
    pub(super) fn media_branch_won(&mut self, ctx: u64, index: usize, msg: &Message) {
        let Ok(Some(tag)) = msg.to_tag() else {
            return;
        };
        let Some(call) = self.media.calls.get_mut(&ctx) else {
            return;
        };
        if call.late || call.confirmed.is_some() || !call.answered.iter().any(|(t, _, _)| t == tag)
        {
            return;
        }
        call.confirmed = Some((tag.to_owned(), index));
        self.delete_losers(ctx);
    }

    /// Deletes the rtpengine state of the losing branches of `ctx` once a winner answered.
    pub(super) fn delete_losers(&mut self, ctx: u64) {
        let Some(call) = self.media.calls.get_mut(&ctx) else {
            return;
        };
        let Some((winner, winner_index)) = call.confirmed.clone() else {
            return;
        };
        let losers = std::mem::take(&mut call.losers);
        call.ended_branches.extend(losers.iter().map(|(i, _)| *i));
        let mut requests = Vec::new();
        let answered = |tag: &Option<String>| {
            tag.as_ref()
                .is_some_and(|t| *t != winner && call.answered.iter().any(|(a, _, _)| a == t))
        };
        for (index, tag) in losers.iter().filter(|(_, t)| answered(t)) {
            if let Some(tag) = tag {
                requests.push(Request::DeleteBranch {
                    call: CallRef::new(&call.call_id, &call.from_tag).with_to_tag(tag),
                    via_branch: None,
                });
            }
            // An answer named this kind's via-branch offer: the tag deleted it.
            if let Some(kind) = call.branch_kinds.as_ref().and_then(|k| k.get(*index))
                && !call.deleted_kinds.contains(kind)
            {
                call.deleted_kinds.push(*kind);
            }
        }
        if let Some(kinds) = &call.branch_kinds {
            let winner_kind = kinds.get(winner_index).copied();
            let ended = &call.ended_branches;
            for (i, kind) in kinds.iter().enumerate() {
                let all_ended = kinds
                    .iter()
                    .enumerate()
                    .all(|(j, k)| k != kind || ended.contains(&j));
                // A kind some of whose branches answered was deleted by its tags instead.
                if Some(*kind) == winner_kind
                    || !all_ended
                    || call.deleted_kinds.contains(kind)
                    || kinds.iter().position(|k| k == kind) != Some(i)
                {
                    continue;
                }
                requests.push(Request::DeleteBranch {
                    call: CallRef::new(&call.call_id, &call.from_tag),
                    via_branch: Some(kind.as_str().to_owned()),
                });
            }
            for r in &requests {
                if let Request::DeleteBranch {
                    via_branch: Some(b),
                    ..
                } = r
                    && let Some(k) = kinds.iter().find(|k| k.as_str() == b)
                {
                    call.deleted_kinds.push(*k);
                }
            }
        }
        for request in requests {
            debug!(?request, "losing branch deleted from rtpengine");
            self.outputs.push_back(Output::Media {
                token: None,
                request,
            });
        }
    }
}
