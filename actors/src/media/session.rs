//! One media session: the task that runs the ng requests of one call leg pair (Call-ID +
//! caller's From tag, [`SessionKey`]), in order, on the instance the call was placed on, and
//! watches its media once it is answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sipmesh_protocol::ng::{CallRef, Dict, Request, Response};
use sipmesh_protocol::proxy::MediaFailure;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use super::pool::RtpenginePool;
use super::supervisor::SessionKey;
use crate::rtpengine::NgError;

/// Where the result of one offer or answer goes. Dropped without an answer (a session task
/// that panicked, a runtime shutting down) it answers [`MediaFailure::Unavailable`], so a
/// parked request never waits forever.
pub(super) struct Reply(Option<ReplyFn>);

/// The callback behind a [`Reply`].
type ReplyFn = Box<dyn FnOnce(Result<Bytes, MediaFailure>) + Send>;

impl Reply {
    pub(super) fn new(f: impl FnOnce(Result<Bytes, MediaFailure>) + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }

    pub(super) fn none() -> Self {
        Self(None)
    }

    pub(super) fn send(mut self, result: Result<Bytes, MediaFailure>) {
        if let Some(f) = self.0.take() {
            f(result);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(MediaFailure::Unavailable));
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// A message to a session task.
#[derive(Debug)]
pub(super) struct SessionMsg {
    pub(super) request: Request,
    pub(super) reply: Reply,
}

/// A call whose media stopped, with the tags its offer and answer carried (the dialog's id
/// when both are known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    /// The call.
    pub call_id: String,
    /// The From tag of the first offer (the caller's).
    pub from_tag: Option<String>,
    /// The To tag of the first answer (the callee's).
    pub to_tag: Option<String>,
}

/// What a session needs besides its queue.
pub(super) struct SessionArgs {
    /// The call leg pair.
    pub(super) key: SessionKey,
    /// The instance the call is on; a first offer that fails moves it (see [`serve`]).
    pub(super) instance: Arc<AtomicUsize>,
    pub(super) pool: Arc<RtpenginePool>,
    pub(super) media_timeout: Duration,
    pub(super) poll_interval: Duration,
    /// Gets the calls whose media stopped.
    pub(super) timeouts: mpsc::UnboundedSender<TimedOut>,
    /// An answered call adopted from a dead node (its dialog's From and To tags): the watch
    /// starts at once (see `takeover`).
    pub(super) adopted: Option<(String, String)>,
    /// The last offer and answer that went through (what a failover replays, `failover`).
    pub(super) negotiated: Arc<std::sync::Mutex<Negotiated>>,
}

/// The last ng offer and answer of a call that rtpengine accepted, with the endpoints' SDPs
/// as received and the options used (issue 6: moving the call to another instance replays
/// them there).
#[derive(Debug, Default, Clone)]
pub struct Negotiated {
    /// The last accepted offer.
    pub offer: Option<sipmesh_protocol::ng::SdpRequest>,
    /// The last accepted answer.
    pub answer: Option<sipmesh_protocol::ng::SdpRequest>,
}

impl Negotiated {
    /// The offer and answer as the dialog record keeps them (bencoded ng dictionaries);
    /// `None` before both exist, or when an SDP is not UTF-8.
    pub fn to_record(&self) -> Option<sipmesh_protocol::dialog::MediaNegotiation> {
        use sipmesh_protocol::ng::{Request, bencode::Value};
        let text = |r: Request| String::from_utf8(Value::Dict(r.to_dict()).encode()).ok();
        Some(sipmesh_protocol::dialog::MediaNegotiation {
            offer: text(Request::Offer(self.offer.clone()?))?,
            answer: text(Request::Answer(self.answer.clone()?))?,
        })
    }

    /// Reads [`Self::to_record`] back; an unreadable part is left out.
    pub fn from_record(n: &sipmesh_protocol::dialog::MediaNegotiation) -> Self {
        use sipmesh_protocol::ng::{Request, SdpRequest, bencode};
        let read = |text: &str| {
            let value = bencode::decode(&Bytes::copy_from_slice(text.as_bytes())).ok()?;
            SdpRequest::from_dict(value.as_dict()?)
        };
        Self {
            offer: match read(&n.offer) {
                Some(Request::Offer(r)) => Some(r),
                _ => None,
            },
            answer: match read(&n.answer) {
                Some(Request::Answer(r)) => Some(r),
                _ => None,
            },
        }
    }
}

impl SessionArgs {
    /// The caller's tag, when the session has one.
    fn own_tag(&self) -> Option<String> {
        (!self.key.from_tag.is_empty()).then(|| self.key.from_tag.clone())
    }

    /// This leg pair for rtpengine: Call-ID and the caller's tag (all of the call without one).
    fn call_ref(&self) -> CallRef {
        CallRef {
            call_id: self.key.call_id.clone(),
            from_tag: self.own_tag(),
            to_tag: None,
        }
    }
}

/// The session task: requests in arrival order; after a `delete` it ends.
pub(super) async fn run(args: SessionArgs, rx: mpsc::UnboundedReceiver<SessionMsg>) {
    let span =
        tracing::debug_span!("media", call_id = %args.key.call_id, from_tag = %args.key.from_tag);
    serve(args, rx).instrument(span).await;
}

async fn serve(args: SessionArgs, mut rx: mpsc::UnboundedReceiver<SessionMsg>) {
    let mut watch: Option<Watch> = args.adopted.as_ref().map(|_| Watch {
        next_poll: Instant::now() + args.poll_interval,
        packets: None,
        last_change: Instant::now(),
    });
    // Until something succeeded here, nothing lives on the instance: an offer may move. An
    // adopted call lives there already.
    let mut placed = args.adopted.is_some();
    // Offers went out per via-branch (a request forked to legs of different kinds).
    let mut forked = false;
    // Accepted offers not answered yet (one per via-branch when forked).
    let mut offers: Vec<sipmesh_protocol::ng::SdpRequest> = Vec::new();
    let (mut from_tag, mut to_tag) = match args.adopted.clone() {
        Some((from, to)) => (Some(from), Some(to)),
        None => (args.own_tag(), None),
    };
    loop {
        let poll_at = watch.as_ref().map(|w| w.next_poll);
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            () = sleep_until(poll_at) => {
                if let Some(w) = &mut watch
                    && poll(&args, w).await
                {
                    info!(after = ?args.media_timeout, "no media: call timed out");
                    let _ = args.timeouts.send(TimedOut {
                        call_id: args.key.call_id.clone(),
                        from_tag: from_tag.clone(),
                        to_tag: to_tag.clone(),
                    });
                    watch = None;
                }
                continue;
            }
        };
        let Some(SessionMsg { mut request, reply }) = msg else {
            return;
        };
        if let Request::Offer(r) = &request
            && r.options.extra.contains_key(&b"via-branch"[..])
        {
            forked = true;
        }
        // A forked call left its losing branches in rtpengine (one per via-branch): only a
        // delete of the whole Call-ID removes them.
        if forked && let Request::Delete(c) = &mut request {
            c.from_tag = None;
            c.to_tag = None;
        }
        let is_delete = matches!(request, Request::Delete(_));
        let is_answer = matches!(request, Request::Answer(_));
        let tags = match &request {
            Request::Offer(r) | Request::Answer(r) => {
                (r.call.from_tag.clone(), r.call.to_tag.clone())
            }
            _ => (None, None),
        };
        let kept = match &request {
            Request::Offer(r) | Request::Answer(r) => Some(r.clone()),
            _ => None,
        };
        let retry = (!placed && matches!(request, Request::Offer(_))).then(|| request.clone());
        let mut result = execute(&args, request).await;
        // The first offer of a call failed on an instance that did not answer (it is now
        // marked down): nothing lives there yet, so the call moves to another healthy
        // instance and the offer is tried once more there.
        if let (Err(MediaFailure::Unavailable), Some(request)) = (&result, retry)
            && let Some(next) = args.pool.pick()
            && next != args.instance.load(Ordering::Relaxed)
        {
            info!(rtpengine = %args.pool.get(next).map(|i| i.spec.addr.to_string()).unwrap_or_default(),
                "first offer failed: call moved to another instance");
            let old = args.instance.swap(next, Ordering::Relaxed);
            // The old instance may only be slow: if the offer reaches it later, this delete
            // follows it (a frozen daemon reads its queued datagrams in order).
            if let Some(i) = args.pool.get(old).cloned() {
                let delete = Request::Delete(args.call_ref());
                tokio::spawn(async move {
                    let _ = i.client.request(delete).await;
                });
            }
            result = execute(&args, request).await;
        }
        if result.is_ok()
            && let Some(r) = kept
        {
            keep_negotiated(&args.negotiated, &mut offers, r, is_answer);
        }
        if result.is_ok() {
            placed = true;
            from_tag = from_tag.or(tags.0);
            if is_answer {
                to_tag = to_tag.or(tags.1);
            }
        }
        if is_answer && result.is_ok() && watch.is_none() {
            watch = Some(Watch {
                next_poll: Instant::now() + args.poll_interval,
                packets: None,
                last_change: Instant::now(),
            });
        }
        reply.send(result);
        if is_delete {
            debug!("media session deleted");
            return;
        }
    }
}

/// Keeps an accepted offer or answer for a failover: an answer is paired with the offer of
/// its via-branch (a forked call has one offer per branch kind), or the last offer.
fn keep_negotiated(
    negotiated: &std::sync::Mutex<Negotiated>,
    offers: &mut Vec<sipmesh_protocol::ng::SdpRequest>,
    request: sipmesh_protocol::ng::SdpRequest,
    is_answer: bool,
) {
    let branch =
        |r: &sipmesh_protocol::ng::SdpRequest| r.options.extra.get(&b"via-branch"[..]).cloned();
    if !is_answer {
        if branch(&request).is_none() {
            offers.clear();
        }
        offers.push(request);
        return;
    }
    let wanted = branch(&request);
    let offer = offers
        .iter()
        .rev()
        .find(|o| wanted.is_some() && branch(o) == wanted)
        .or_else(|| offers.last())
        .cloned();
    let mut n = negotiated
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(offer) = offer {
        n.offer = Some(offer);
    }
    n.answer = Some(request);
    offers.clear();
}

/// Media watch of an answered call.
struct Watch {
    next_poll: Instant,
    packets: Option<i64>,
    last_change: Instant,
}

/// Queries the call; true when its packet count has not moved for the media timeout.
async fn poll(args: &SessionArgs, w: &mut Watch) -> bool {
    w.next_poll = Instant::now() + args.poll_interval;
    let Some(instance) = args.pool.get(args.instance.load(Ordering::Relaxed)) else {
        return false;
    };
    let query = Request::Query(args.call_ref());
    let packets = match instance.client.request(query).await {
        Ok(r) => rtp_packets(&r),
        // rtpengine forgot the call (its own timeout, a restart): no media either.
        Err(NgError::Refused(_)) => Some(-1),
        Err(e) => {
            debug!(error = %e, "media query failed");
            return false;
        }
    };
    let Some(packets) = packets else {
        return false;
    };
    if w.packets != Some(packets) {
        w.packets = Some(packets);
        w.last_change = Instant::now();
        return false;
    }
    w.last_change.elapsed() >= args.media_timeout
}

/// `totals.RTP.packets` plus `totals.RTCP.packets` of a `query` reply.
fn rtp_packets(r: &Response) -> Option<i64> {
    let totals = r.raw.get(&b"totals"[..])?.as_dict()?;
    let count = |d: &Dict, k: &[u8]| {
        d.get(k)
            .and_then(|v| v.as_dict())
            .and_then(|d| d.get(&b"packets"[..]))
            .and_then(|v| v.as_int())
    };
    Some(count(totals, b"RTP").unwrap_or(0) + count(totals, b"RTCP").unwrap_or(0))
}

/// Runs one request; offers and answers yield the rewritten SDP.
async fn execute(args: &SessionArgs, request: Request) -> Result<Bytes, MediaFailure> {
    let index = args.instance.load(Ordering::Relaxed);
    let Some(instance) = args.pool.get(index) else {
        return Err(MediaFailure::Unavailable);
    };
    let command = request.command();
    match instance.client.request(request).await {
        Ok(r) => r
            .sdp
            .ok_or_else(|| MediaFailure::Refused(format!("no SDP in the {command} reply"))),
        Err(NgError::Refused(reason)) => {
            warn!(command, %reason, "rtpengine refused");
            Err(MediaFailure::Refused(reason))
        }
        Err(e) => {
            warn!(command, error = %e, rtpengine = %instance.spec.addr, "rtpengine request failed");
            if matches!(e, NgError::Timeout(_)) {
                args.pool.mark_down(index);
            }
            Err(MediaFailure::Unavailable)
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sipmesh_protocol::ng::{CallRef, MediaOptions, SdpRequest, Value};

    use super::*;

    fn sdp(tag: &str, to: Option<&str>, body: &str, branch: Option<&str>) -> SdpRequest {
        let mut options = MediaOptions::default();
        if let Some(b) = branch {
            options
                .extra
                .insert(Bytes::from_static(b"via-branch"), Value::str(b));
        }
        SdpRequest {
            call: CallRef {
                call_id: "c1".into(),
                from_tag: Some(tag.into()),
                to_tag: to.map(Into::into),
            },
            sdp: Bytes::from(body.to_owned()),
            options,
        }
    }

    #[test]
    fn an_answer_is_paired_with_the_offer_of_its_via_branch() {
        let n = std::sync::Mutex::new(Negotiated::default());
        let mut offers = Vec::new();
        keep_negotiated(
            &n,
            &mut offers,
            sdp("a", None, "to-phone", Some("z9hG4bK1")),
            false,
        );
        keep_negotiated(
            &n,
            &mut offers,
            sdp("a", None, "to-browser", Some("z9hG4bK2")),
            false,
        );
        keep_negotiated(
            &n,
            &mut offers,
            sdp("a", Some("b"), "answer", Some("z9hG4bK1")),
            true,
        );
        let got = n.lock().unwrap().clone();
        assert_eq!(got.offer.map(|o| o.sdp), Some(Bytes::from("to-phone")));
        assert_eq!(got.answer.map(|a| a.sdp), Some(Bytes::from("answer")));
        assert!(offers.is_empty());
    }

    #[test]
    fn without_branches_the_last_offer_pairs_and_a_later_answer_keeps_it() {
        let n = std::sync::Mutex::new(Negotiated::default());
        let mut offers = Vec::new();
        keep_negotiated(&n, &mut offers, sdp("a", None, "first", None), false);
        keep_negotiated(&n, &mut offers, sdp("a", None, "second", None), false);
        keep_negotiated(&n, &mut offers, sdp("a", Some("b"), "183", None), true);
        keep_negotiated(&n, &mut offers, sdp("a", Some("b"), "200", None), true);
        let got = n.lock().unwrap().clone();
        assert_eq!(got.offer.map(|o| o.sdp), Some(Bytes::from("second")));
        assert_eq!(got.answer.map(|a| a.sdp), Some(Bytes::from("200")));
    }

    #[test]
    fn the_negotiated_pair_survives_the_dialog_record() {
        let n = std::sync::Mutex::new(Negotiated::default());
        let mut offers = Vec::new();
        keep_negotiated(
            &n,
            &mut offers,
            sdp("a", None, "offer", Some("browser")),
            false,
        );
        assert!(n.lock().unwrap().to_record().is_none(), "no answer yet");
        keep_negotiated(
            &n,
            &mut offers,
            sdp("a", Some("b"), "answer", Some("browser")),
            true,
        );
        let kept = n.lock().unwrap().clone();
        let record = kept.to_record().expect("both kept");
        let back = Negotiated::from_record(&record);
        assert_eq!(back.offer, kept.offer);
        assert_eq!(back.answer, kept.answer);
    }
}
