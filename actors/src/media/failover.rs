//! Moving answered calls off an rtpengine instance that died (issue 6, point 4: "a call
//! whose instance died gets a re-INVITE with a new offer from a healthy instance where the
//! endpoints support it"). Design in docs/DESIGN-NOTES.md "Media", failover.
//!
//! - **When.** A watcher compares the pool's health every [`TICK`]; an instance that has been
//!   down for [`FailoverShell::down_after`] (its pings failed for about 2 s) triggers one
//!   failover round for the answered calls this node runs on it (it has their session task,
//!   so it is the node that set the call up or adopted it). It is not retried while the
//!   instance stays down; when it is back, a later outage triggers a new round.
//! - **How, per call** ([`fail_over`]). The session task kept the last ng offer and answer
//!   rtpengine accepted ([`Negotiated`]): the endpoints' SDPs as received, with their
//!   options (also in the dialog record, so an adopted call has them too). Side O made the
//!   offer, side A answered.
//!   1. The last offer is replayed on a healthy instance B: B now knows O's media and
//!      gives an SDP for A. The call's session moves to B (later offers, answers, polls and
//!      the delete go there; the dialog record's `media_session` is updated).
//!   2. A gets a re-INVITE in O's name with that SDP ([`reinvite`]); its 2xx is ACKed and
//!      its SDP goes to B as an ng `answer` (the last answer's options).
//!   3. As if A re-INVITEd O: A's SDP goes to B as an `offer` from A to O, O gets a
//!      re-INVITE in A's name with B's SDP, its 2xx is ACKed and its SDP goes to B as the
//!      `answer`, so an O that moved its media keeps it. This pair is the call's last
//!      offer/answer from then on (here and in the dialog record).
//!
//!   A 488, 491, any other failure or no answer within [`ANSWER_WAIT`] leaves the call as
//!   it is (logged; the failure is ACKed). Nothing is tried when either end sent an Allow
//!   without INVITE in its dialog-creating message (recorded in the dialog record): moving
//!   one end only would not bring the media back.
//! - **CSeq.** Each re-INVITE claims a CSeq in its sender's space
//!   ([`CseqShifts::claim`]); the shards then raise that side's later requests and lower the
//!   responses to them ([`MediaSessions::shift_request`], [`MediaSessions::shift_response`]).
//!   A clustered node shares the offset through Redis before it sends the re-INVITE
//!   (`shift_sync`), so every node shifts the side's requests.
//! - **Responses** to the proxy's own requests carry a Via branch starting with
//!   [`OWN_BRANCH`]; the ingress hands them to [`OwnReplies`] instead of a shard.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use sipmesh_protocol::dialog::{DialogId, DialogState};
use sipmesh_protocol::media::reinvite::{self, End, OwnRequest, ReInvite};
use sipmesh_protocol::message::Message;
use sipmesh_protocol::ng::{CallRef, MediaOptions, Request, SdpRequest};
use sipmesh_protocol::peer::Transport;
use sipmesh_protocol::proxy::Listener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use super::session::Negotiated;
use super::supervisor::{MediaSessions, SessionKey};
use crate::dialog::store::load_either;
use crate::dialog::{DialogStore, Dialogs};
use crate::transport::{self, TransportHandle};

/// Branch prefix of the requests the proxy sends on its own (re-INVITE, its ACKs).
pub const OWN_BRANCH: &str = "z9hG4bKmf";

/// The default [`FailoverShell::down_after`]: the pool marks an instance down at its first
/// failed ping (about 0.5–0.9 s after it stopped), so its calls move after about 2 s of
/// failed pings.
pub const DOWN_AFTER: Duration = Duration::from_millis(1200);

/// How often the watcher looks at the pool's health.
const TICK: Duration = Duration::from_millis(200);

/// How long a re-INVITE waits for its final response.
pub const ANSWER_WAIT: Duration = Duration::from_secs(8);

/// RFC 3261 T1: the first retransmission interval over UDP.
const T1: Duration = Duration::from_millis(500);

/// How long 2xx retransmissions are still ACKed after the first.
const LINGER: Duration = Duration::from_secs(4);

/// Responses to the proxy's own requests, by branch (filled by the ingress).
#[derive(Debug, Default)]
pub struct OwnReplies {
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>,
}

impl OwnReplies {
    /// Takes `msg` when it is a response to one of the proxy's own requests (its top Via
    /// branch starts with [`OWN_BRANCH`]); true when taken (also when nobody waits any more:
    /// a late retransmission is dropped).
    pub fn deliver(&self, msg: &Message) -> bool {
        if msg.is_request() {
            return false;
        }
        let Some(branch) = msg.top_via().ok().and_then(|v| v.branch) else {
            return false;
        };
        if !branch.starts_with(OWN_BRANCH) {
            return false;
        }
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = waiting.get(branch) {
            let _ = tx.send(msg.clone());
        }
        true
    }

    fn register(&self, branch: &str) -> mpsc::UnboundedReceiver<Message> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(branch.to_owned(), tx);
        rx
    }

    fn forget(&self, branch: &str) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(branch);
    }
}

/// What moving calls needs from the engine.
#[derive(Clone)]
pub struct FailoverShell {
    /// Sends the re-INVITEs and ACKs.
    pub transport: TransportHandle,
    /// This node's listeners (Via sent-by and source).
    pub local: Vec<(Transport, SocketAddr)>,
    /// The cluster members' listeners (their Record-Route entries count as ours).
    pub peers: Arc<RwLock<Vec<Listener>>>,
    /// Dialog records.
    pub store: Arc<dyn DialogStore>,
    /// The dialog actors (the record's `media_session` follows the call).
    pub dialogs: Dialogs,
    /// Where the ingress puts the responses to our own requests.
    pub replies: Arc<OwnReplies>,
    /// How long an instance must be down before its calls move.
    pub down_after: Duration,
}

impl std::fmt::Debug for FailoverShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverShell")
            .field("down_after", &self.down_after)
            .finish_non_exhaustive()
    }
}

/// How one call's failover ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailoverError {
    /// No healthy instance to move to.
    #[error("no healthy rtpengine instance")]
    NoInstance,
    /// The call has no accepted offer and answer yet.
    #[error("call not answered")]
    NotAnswered,
    /// Its dialog record is missing or unreadable.
    #[error("no dialog record: {0}")]
    NoRecord(String),
    /// An end listed Allow without INVITE (RFC 3261 §20.5).
    #[error("end {0:?} does not allow re-INVITE")]
    NoReinvite(End),
    /// An end cannot be reached (no flow, no target, no listener for its transport).
    #[error("end {0:?} unreachable")]
    Unreachable(End),
    /// rtpengine refused or did not answer.
    #[error("rtpengine {0}: {1}")]
    Ng(&'static str, String),
    /// An end answered the re-INVITE with a failure, or not at all.
    #[error("re-INVITE to {0:?}: {1}")]
    Rejected(End, String),
}

impl MediaSessions {
    /// Starts the failover watcher (see the module doc).
    pub fn start_failover(&self, shell: FailoverShell) -> JoinHandle<()> {
        let _ = self.inner.dialogs.set(shell.dialogs.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let n = this.inner.pool.len();
            let mut down_since: Vec<Option<Instant>> = vec![None; n];
            let mut handled = vec![false; n];
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for (index, (addr, healthy)) in this.inner.pool.health().into_iter().enumerate() {
                    let (Some(since), Some(done)) =
                        (down_since.get_mut(index), handled.get_mut(index))
                    else {
                        continue;
                    };
                    if healthy {
                        *since = None;
                        *done = false;
                        continue;
                    }
                    let at = *since.get_or_insert_with(Instant::now);
                    if *done || at.elapsed() < shell.down_after {
                        continue;
                    }
                    *done = true;
                    let calls = this.answered_on(index);
                    if !calls.is_empty() {
                        info!(rtpengine = %addr, calls = calls.len(), "rtpengine instance down: moving its calls");
                    }
                    for (key, negotiated) in calls {
                        let this = this.clone();
                        let shell = shell.clone();
                        let span = tracing::info_span!("media_failover", call_id = %key.call_id, from_tag = %key.from_tag);
                        tokio::spawn(
                            async move {
                                match fail_over(&this, &shell, &key, index, negotiated).await {
                                    Ok(to) => info!(rtpengine = %to, "call moved to another rtpengine instance"),
                                    Err(e) => warn!(error = %e, "call left on its dead rtpengine instance"),
                                }
                            }
                            .instrument(span),
                        );
                    }
                }
            }
        })
    }

    /// The answered calls on instance `index`, with their last offer and answer.
    fn answered_on(&self, index: usize) -> Vec<(SessionKey, Negotiated)> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.instance.load(Ordering::Relaxed) == index)
            .filter_map(|(key, e)| {
                let n = e
                    .negotiated
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                (n.offer.is_some() && n.answer.is_some()).then(|| (key.clone(), n))
            })
            .collect()
    }

    /// A request from a side whose CSeq space the proxy used, raised by its offset (the shards
    /// call this for every request; it costs one atomic load while no dialog has an offset).
    pub fn shift_request(&self, msg: Message) -> Message {
        if !self.inner.any_shift.load(Ordering::Relaxed) {
            return msg;
        }
        let shifts = self
            .inner
            .shifts
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match shifts.shift_request(&msg) {
            Ok(Some(m)) => m,
            Ok(None) => msg,
            Err(e) => {
                debug!(error = %e, "CSeq not shifted");
                msg
            }
        }
    }

    /// A response going out, lowered back into its request's space (see
    /// [`Self::shift_request`]). Only responses are looked at, and only while some dialog has
    /// an offset; then the Call-ID is found in the raw bytes first
    /// ([`CseqShifts::may_shift_raw`]), so only responses of shifted calls are parsed.
    ///
    /// [`CseqShifts::may_shift_raw`]: sipmesh_protocol::media::CseqShifts::may_shift_raw
    pub fn shift_response(&self, payload: Bytes) -> Bytes {
        if !self.inner.any_shift.load(Ordering::Relaxed) || !payload.starts_with(b"SIP/2.0 ") {
            return payload;
        }
        let shifts = self
            .inner
            .shifts
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if !shifts.may_shift_raw(&payload) {
            return payload;
        }
        let Ok(msg) = Message::parse(payload.clone()) else {
            return payload;
        };
        match shifts.unshift_response(&msg) {
            Ok(Some(m)) => m.message_bytes(),
            _ => payload,
        }
    }

    /// Claims a CSeq for a request in the name of side `tag` (see [`CseqShifts::claim`]).
    ///
    /// [`CseqShifts::claim`]: sipmesh_protocol::media::CseqShifts::claim
    /// Returns the CSeq and the side's new offset.
    fn claim_cseq(&self, call_id: &str, tag: &str, recorded: u32) -> (u32, u32) {
        let mut shifts = self
            .inner
            .shifts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let cseq = shifts.claim(call_id, tag, recorded);
        self.inner.any_shift.store(true, Ordering::Relaxed);
        (cseq, shifts.offset(call_id, tag))
    }

    /// Stores and announces a side's offset to the other nodes (clustered nodes), before the
    /// request that needs it goes out; a failed write is logged (other nodes then learn
    /// nothing, and a request of that side entering them is not shifted).
    async fn share_shift(&self, call_id: &str, tag: &str, offset: u32) {
        let Some(sync) = self.inner.shift_sync.get() else {
            return;
        };
        if let Err(e) = sync.raise(call_id, tag, offset).await {
            warn!(error = %e, "CSeq offset not shared with the cluster");
        }
    }

    /// Forgets the offsets of a call that ended, once its last responses are through.
    pub(super) fn forget_shifts_later(&self, call_id: &str) {
        if !self.inner.any_shift.load(Ordering::Relaxed) {
            return;
        }
        let this = self.clone();
        let call_id = call_id.to_owned();
        tokio::spawn(async move {
            // RFC 3261 Timer J / K territory: late retransmissions of the BYE's answer.
            tokio::time::sleep(Duration::from_secs(32)).await;
            let sides = {
                let mut shifts = this
                    .inner
                    .shifts
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                let sides = shifts.sides(&call_id);
                shifts.remove_call(&call_id);
                this.inner
                    .any_shift
                    .store(!shifts.is_empty(), Ordering::Relaxed);
                sides
            };
            if let Some(sync) = this.inner.shift_sync.get()
                && !sides.is_empty()
                && let Err(e) = sync.remove(&call_id, &sides).await
            {
                debug!(error = %e, "removing the shared CSeq offsets failed");
            }
        });
    }

    /// One ng offer or answer on instance `index`; the rewritten SDP.
    async fn ng_sdp(
        &self,
        index: usize,
        request: Request,
        what: &'static str,
    ) -> Result<Bytes, FailoverError> {
        let instance = self
            .inner
            .pool
            .get(index)
            .ok_or(FailoverError::NoInstance)?;
        let r = instance
            .client
            .request(request)
            .await
            .map_err(|e| FailoverError::Ng(what, e.to_string()))?;
        r.sdp
            .ok_or_else(|| FailoverError::Ng(what, "no SDP in the reply".into()))
    }
}

/// Moves one call from instance `from` to a healthy one; the new instance's address.
async fn fail_over(
    media: &MediaSessions,
    shell: &FailoverShell,
    key: &SessionKey,
    from: usize,
    negotiated: Negotiated,
) -> Result<SocketAddr, FailoverError> {
    let call_id = key.call_id.as_str();
    let (Some(offer), Some(answer)) = (negotiated.offer, negotiated.answer) else {
        return Err(FailoverError::NotAnswered);
    };
    let (Some(o_tag), Some(a_tag)) = (offer.call.from_tag.clone(), answer.call.to_tag.clone())
    else {
        return Err(FailoverError::NotAnswered);
    };
    let pool = &media.inner.pool;
    let to = pool
        .pick()
        .filter(|i| *i != from)
        .ok_or(FailoverError::NoInstance)?;
    let to_addr = pool
        .get(to)
        .map(|i| i.spec.addr)
        .ok_or(FailoverError::NoInstance)?;
    let id = DialogId::new(call_id.to_owned(), o_tag.clone(), a_tag.clone());
    let dialog = match load_either(shell.store.as_ref(), &id).await {
        Ok(Some(d)) => d,
        Ok(None) => return Err(FailoverError::NoRecord("not found".into())),
        Err(e) => return Err(FailoverError::NoRecord(e.to_string())),
    };
    let o_end = End::of_tag(&dialog, &o_tag)
        .ok_or_else(|| FailoverError::NoRecord("offer tag not in the record".into()))?;
    let a_end = o_end.other();
    for end in [a_end, o_end] {
        if !reinvite::allows_invite(end.leg(&dialog).allow.as_deref()) {
            return Err(FailoverError::NoReinvite(end));
        }
    }

    // 1. B learns O's media and gives an SDP for A; the session moves to B.
    let for_a = media
        .ng_sdp(to, Request::Offer(offer.clone()), "offer")
        .await?;
    if let Some(e) = media.lock().get(key) {
        e.instance.store(to, Ordering::Relaxed);
    }
    shell
        .dialogs
        .set_media_session(&dialog.id, format!("udp:{to_addr}"));
    let old = pool.get(from).cloned();
    let delete_old = Request::Delete(CallRef {
        call_id: call_id.to_owned(),
        from_tag: (!key.from_tag.is_empty()).then(|| key.from_tag.clone()),
        to_tag: None,
    });
    tokio::spawn(async move {
        // The old instance may come back (a restart, a thaw): nothing may stay behind there.
        if let Some(i) = old {
            let _ = i.client.request(delete_old).await;
        }
    });

    // 2. A answers B's offer; B completes O's offer with A's SDP.
    let a_sdp = reinvite_end(media, shell, &dialog, a_end, &for_a).await?;
    media
        .ng_sdp(
            to,
            Request::Answer(SdpRequest {
                call: answer.call.clone(),
                sdp: a_sdp.clone(),
                options: answer.options.clone(),
            }),
            "answer",
        )
        .await?;
    remember(
        media,
        shell,
        key,
        &dialog,
        offer.clone(),
        SdpRequest {
            sdp: a_sdp.clone(),
            ..answer.clone()
        },
    );

    // 3. O is pointed at B too, as if A re-INVITEd it: A's SDP is offered to B in the
    // reverse direction (options for O's side, as the last answer had them), B's SDP goes to
    // O, and O's answer goes to B, so an O that answers with a new media address keeps
    // media.
    let reverse = CallRef {
        call_id: call_id.to_owned(),
        from_tag: Some(a_tag.clone()),
        to_tag: Some(o_tag.clone()),
    };
    let reverse_offer = SdpRequest {
        call: reverse.clone(),
        sdp: a_sdp,
        options: without_branch(answer.options),
    };
    let for_o = media
        .ng_sdp(to, Request::Offer(reverse_offer.clone()), "offer")
        .await?;
    let o_sdp = reinvite_end(media, shell, &dialog, o_end, &for_o).await?;
    let reverse_answer = SdpRequest {
        call: reverse,
        sdp: o_sdp,
        options: without_branch(offer.options),
    };
    media
        .ng_sdp(to, Request::Answer(reverse_answer.clone()), "answer")
        .await?;
    remember(media, shell, key, &dialog, reverse_offer, reverse_answer);
    Ok(to_addr)
}

/// The options without the forked call's `via-branch` (a failover's requests are for the
/// answered branch only).
fn without_branch(mut options: MediaOptions) -> MediaOptions {
    options.extra.remove(&b"via-branch"[..]);
    options
}

/// Keeps `offer` and `answer` as the call's last accepted pair (the next failover replays
/// them), here and in the dialog record (for a node that adopts the call).
fn remember(
    media: &MediaSessions,
    shell: &FailoverShell,
    key: &SessionKey,
    dialog: &DialogState,
    offer: SdpRequest,
    answer: SdpRequest,
) {
    let pair = Negotiated {
        offer: Some(offer),
        answer: Some(answer),
    };
    if let Some(e) = media.lock().get(key) {
        *e.negotiated.lock().unwrap_or_else(PoisonError::into_inner) = pair.clone();
    }
    if let Some(record) = pair.to_record() {
        shell.dialogs.set_media_negotiation(&dialog.id, record);
    }
}

/// Sends a re-INVITE with `sdp` to end `to` of `dialog` in the other end's name, ACKs its
/// final response and returns the SDP of its 2xx.
async fn reinvite_end(
    media: &MediaSessions,
    shell: &FailoverShell,
    dialog: &DialogState,
    to: End,
    sdp: &[u8],
) -> Result<Bytes, FailoverError> {
    let sender = to.other().leg(dialog);
    let (cseq, offset) =
        media.claim_cseq(&dialog.id.call_id, &sender.tag, sender.cseq.unwrap_or(0));
    media
        .share_shift(&dialog.id.call_id, &sender.tag, offset)
        .await;
    let peers = shell
        .peers
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let local = &shell.local;
    let ours = |route: &str| {
        local.iter().any(|(_, a)| route.contains(&a.to_string()))
            || peers.iter().any(|p| route.contains(&p.addr.to_string()))
    };
    let branch = fresh_branch();
    let plan = reinvite::plan(
        dialog,
        to,
        cseq,
        branch.clone(),
        |kind| local.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a),
        ours,
    )
    .ok_or(FailoverError::Unreachable(to))?;
    let mut replies = shell.replies.register(&branch);
    let invite = plan.invite(dialog, sdp);
    let result = transaction(shell, &plan, dialog, &invite, &mut replies).await;
    match &result {
        Ok(_) => {
            // The 2xx may be retransmitted until our ACK arrives: ACK each for a while.
            let shell = shell.clone();
            let plan = plan.clone();
            let dialog = dialog.clone();
            tokio::spawn(async move {
                let until = Instant::now() + LINGER;
                while let Ok(Some(r)) = tokio::time::timeout_at(until, replies.recv()).await {
                    if r.status().is_some_and(|s| s.0 >= 200 && s.0 < 300) {
                        send(&shell, plan.ack_2xx(&dialog, &fresh_branch()));
                    }
                }
                shell.replies.forget(&plan.branch);
            });
        }
        Err(_) => shell.replies.forget(&branch),
    }
    result
}

/// Runs the re-INVITE client transaction (RFC 3261 §17.1.1, retransmitted over UDP) and
/// ACKs its final response.
async fn transaction(
    shell: &FailoverShell,
    plan: &ReInvite,
    dialog: &DialogState,
    invite: &OwnRequest,
    replies: &mut mpsc::UnboundedReceiver<Message>,
) -> Result<Bytes, FailoverError> {
    let deadline = Instant::now() + ANSWER_WAIT;
    let reliable = plan.destination.transport != Transport::Udp;
    let mut interval = T1;
    let mut resend_at = (!reliable).then(|| Instant::now() + interval);
    send(shell, invite.clone());
    loop {
        let wake = resend_at.map_or(deadline, |r| r.min(deadline));
        match tokio::time::timeout_at(wake, replies.recv()).await {
            Ok(Some(r)) => {
                let Some(code) = r.status().map(|s| s.0) else {
                    continue;
                };
                if code < 200 {
                    resend_at = None;
                    continue;
                }
                if code < 300 {
                    send(shell, plan.ack_2xx(dialog, &fresh_branch()));
                    let body = r.body();
                    if body.is_empty() {
                        return Err(FailoverError::Rejected(plan.to, "2xx without SDP".into()));
                    }
                    return Ok(body);
                }
                send(shell, plan.ack_failure(dialog));
                return Err(FailoverError::Rejected(plan.to, format!("answered {code}")));
            }
            Ok(None) => return Err(FailoverError::Rejected(plan.to, "gone".into())),
            Err(_) if Instant::now() >= deadline => {
                return Err(FailoverError::Rejected(
                    plan.to,
                    format!("no answer within {ANSWER_WAIT:?}"),
                ));
            }
            Err(_) => {
                send(shell, invite.clone());
                interval = (interval * 2).min(Duration::from_secs(4));
                resend_at = Some(Instant::now() + interval);
            }
        }
    }
}

fn send(shell: &FailoverShell, request: OwnRequest) {
    let d = request.destination;
    shell.transport.send(
        transport::Destination {
            transport: d.transport,
            addr: d.addr,
            connection: d.connection,
            local: d.local,
        },
        request.payload,
    );
}

fn fresh_branch() -> String {
    format!("{OWN_BRANCH}{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn response(branch: &str) -> Message {
        Message::parse(Bytes::from(format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\n\
             From: <sip:a@x>;tag=a\r\nTo: <sip:b@x>;tag=b\r\nCall-ID: c1\r\nCSeq: 101 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    #[tokio::test]
    async fn responses_to_our_own_branches_are_taken_and_others_are_not() {
        let replies = OwnReplies::default();
        let mine = format!("{OWN_BRANCH}00ff");
        let mut rx = replies.register(&mine);
        assert!(replies.deliver(&response(&mine)));
        assert!(rx.recv().await.is_some());
        // Another proxy branch goes to the shards as before.
        assert!(!replies.deliver(&response("z9hG4bKsm0001")));
        // A late answer to a finished request of ours is dropped, not routed.
        replies.forget(&mine);
        assert!(replies.deliver(&response(&mine)));
        assert!(rx.try_recv().is_err());
    }
}
