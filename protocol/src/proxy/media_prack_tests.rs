//! Deterministic tests of reliable provisional responses with SDP (`media_prack.rs`, RFC 3262):
//! an answer in a reliable 183 is answered once, an offer in one is offered and its answer in
//! the PRACK answered, an unreliable 18x's SDP on an INVITE without SDP passes untouched.

use bytes::Bytes;

use crate::message::Message;
use crate::ng::Request;

use super::media_tests::{RELAYED, media_harness, sdp_answer};
use super::tests::{ALICE, BOB, Harness, PROXY, addr, invite, status};

/// A reliable (`Require: 100rel`, `RSeq: 1`) response to `req` with an SDP body.
fn reliable(req: &Message, code: u16, to_tag: &str, sdp: &str) -> String {
    sdp_answer(req, code, to_tag, sdp).replacen("\r\n", "\r\nRequire: 100rel\r\nRSeq: 1\r\n", 1)
}

/// The message sent to `to` (a request when `request`), if any.
fn sent_to(
    out: &[(crate::peer::Destination, Message)],
    to: &str,
    request: bool,
) -> Option<Message> {
    out.iter()
        .find(|(d, m)| d.addr == addr(to) && m.is_request() == request)
        .map(|(_, m)| m.clone())
}

/// Alice's INVITE without SDP, forwarded at once: the INVITE bob got.
fn late_invite(h: &mut Harness) -> Message {
    let text = invite("bob", "z9hG4bKp1")
        .replace("Content-Type: application/sdp\n", "")
        .replace("Content-Length: 5\n\nv=0\n", "Content-Length: 0\n\n");
    h.recv(ALICE, &text);
    assert!(h.media.is_empty(), "no offer yet: {:?}", h.media);
    sent_to(&h.take(), BOB, true).expect("INVITE forwarded at once")
}

/// Resumes the oldest ng request with `sdp`.
fn resume(h: &mut Harness, token: Option<u64>, sdp: &str) {
    let now = h.now;
    h.core.handle_media_result(
        now,
        token.expect("a token"),
        Ok(Bytes::from(sdp.to_owned())),
    );
    h.pump();
}

#[test]
fn an_answer_in_a_reliable_183_is_answered_once_and_the_2xx_reuses_it() {
    let mut h = media_harness();
    h.recv(ALICE, &invite("bob", "z9hG4bKp0"));
    let (token, _) = h.media.pop().expect("the offer");
    resume(&mut h, token, RELAYED);
    let inv = sent_to(&h.take(), BOB, true).expect("INVITE forwarded");
    let bob_sdp = "v=0\r\nc=IN IP4 127.0.0.3\r\nm=audio 4000 RTP/AVP 0\r\n";
    h.recv(BOB, &reliable(&inv, 183, "b1", bob_sdp));
    let (token, request) = h.media.pop().expect("the 183's answer");
    assert!(matches!(request, Request::Answer(ref a) if a.call.to_tag.as_deref() == Some("b1")));
    let relayed = "v=0\r\nc=IN IP4 10.9.9.9\r\nm=audio 30002 RTP/AVP 0\r\n";
    resume(&mut h, token, relayed);
    let p = sent_to(&h.take(), ALICE, false).expect("183 forwarded");
    assert_eq!((status(&p), p.body()), (183, Bytes::from(relayed)));
    // The 183 retransmitted until the PRACK, then the 200 repeating its SDP: no new ng
    // request, the same rewritten SDP.
    h.recv(BOB, &reliable(&inv, 183, "b1", bob_sdp));
    h.recv(BOB, &sdp_answer(&inv, 200, "b1", bob_sdp));
    assert!(h.media.is_empty(), "no second answer: {:?}", h.media);
    let out = h.take();
    assert!(
        out.iter()
            .filter(|(d, _)| d.addr == addr(ALICE))
            .all(|(_, m)| m.body() == relayed),
        "each forwarded with the cached answer"
    );
    assert!(out.iter().any(|(_, m)| status(m) == 200));
}

#[test]
fn an_offer_in_a_reliable_183_is_answered_in_the_prack() {
    let mut h = media_harness();
    let inv = late_invite(&mut h);
    let bob_offer = "v=0\r\nc=IN IP4 127.0.0.3\r\nm=audio 4000 RTP/AVP 0\r\n";
    h.recv(BOB, &reliable(&inv, 183, "b1", bob_offer));
    let (token, request) = h.media.pop().expect("the 183's offer");
    let Request::Offer(offer) = request else {
        panic!("an offer: {request:?}")
    };
    assert_eq!(offer.call.from_tag.as_deref(), Some("b1"), "offered by bob");
    assert_eq!(offer.call.to_tag.as_deref(), Some("a1"));
    resume(&mut h, token, RELAYED);
    let p = sent_to(&h.take(), ALICE, false).expect("183 forwarded to alice");
    assert_eq!(p.body(), Bytes::from_static(RELAYED.as_bytes()));
    let routes: String = p
        .headers()
        .filter(|x| x.name_str().eq_ignore_ascii_case("Record-Route"))
        .map(|x| format!("Route: {}\r\n", x.value_str().unwrap()))
        .collect();
    let alice_answer = "v=0\r\nc=IN IP4 127.0.0.2\r\nm=audio 5000 RTP/AVP 0\r\n";
    let prack = format!(
        "PRACK sip:bob@{BOB} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKpr1\r\n{routes}\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>;tag=b1\r\nCall-ID: call-1\r\nCSeq: 2 PRACK\r\n\
         RAck: 1 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n\
         {alice_answer}",
        alice_answer.len()
    );
    h.recv(ALICE, &prack);
    assert!(sent_to(&h.take(), BOB, true).is_none(), "PRACK parked");
    let (token, request) = h.media.pop().expect("the PRACK's answer");
    let Request::Answer(answer) = request else {
        panic!("an answer: {request:?}")
    };
    assert_eq!(answer.call.from_tag.as_deref(), Some("b1"));
    assert_eq!(answer.call.to_tag.as_deref(), Some("a1"));
    let relayed_answer = "v=0\r\nc=IN IP4 10.9.9.9\r\nm=audio 30002 RTP/AVP 0\r\na=x\r\n";
    resume(&mut h, token, relayed_answer);
    let fwd = sent_to(&h.take(), BOB, true).expect("PRACK forwarded to bob");
    assert_eq!(fwd.method(), Some(&crate::message::Method::Prack));
    assert_eq!(fwd.body(), Bytes::from(relayed_answer));
    assert_eq!(
        fwd.content_length().unwrap(),
        Some(u32::try_from(relayed_answer.len()).unwrap())
    );
    // The 200 INVITE without SDP passes; offer/answer is done.
    h.recv(BOB, &super::tests::answer(&inv, 200, "b1"));
    assert!(h.media.is_empty(), "nothing more to relay: {:?}", h.media);
    assert!(sent_to(&h.take(), ALICE, false).is_some_and(|m| status(&m) == 200));
}

#[test]
fn a_failure_after_an_offer_in_a_reliable_183_deletes_the_session() {
    let mut h = media_harness();
    let inv = late_invite(&mut h);
    h.recv(
        BOB,
        &reliable(&inv, 183, "b1", "v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
    );
    let (token, _) = h.media.pop().expect("the 183's offer");
    resume(&mut h, token, RELAYED);
    h.take();
    h.recv(BOB, &super::tests::answer(&inv, 486, "b1"));
    let (token, request) = h.media.pop().expect("a delete");
    assert_eq!(token, None);
    assert!(matches!(request, Request::Delete(ref c) if c.call_id == "call-1"));
}

#[test]
fn an_unreliable_18x_sdp_on_an_invite_without_sdp_passes_untouched() {
    let mut h = media_harness();
    let inv = late_invite(&mut h);
    let preview = "v=0\r\nc=IN IP4 127.0.0.3\r\nm=audio 4000 RTP/AVP 0\r\n";
    h.recv(BOB, &sdp_answer(&inv, 183, "b1", preview));
    assert!(h.media.is_empty(), "not an offer: {:?}", h.media);
    let p = sent_to(&h.take(), ALICE, false).expect("183 forwarded");
    assert_eq!(p.body(), Bytes::from(preview));
}

/// A PRACK has its own branch and may reach a shard that never saw the 18x's offer: a PRACK
/// with SDP is answered all the same (callee's tag as `from-tag`), and forwarded as it came
/// if rtpengine refuses.
#[test]
fn a_prack_with_sdp_on_another_shard_is_still_answered() {
    let mut h = media_harness();
    let sdp = "v=0\r\nc=IN IP4 127.0.0.2\r\nm=audio 5000 RTP/AVP 0\r\n";
    let prack = format!(
        "PRACK sip:bob@{BOB} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKopr\r\n\
         Route: <sip:{PROXY};lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a9\r\n\
         To: <sip:bob@example.com>;tag=b9\r\nCall-ID: call-9\r\nCSeq: 2 PRACK\r\n\
         RAck: 1 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    h.recv(ALICE, &prack);
    assert!(sent_to(&h.take(), BOB, true).is_none(), "PRACK parked");
    let (token, request) = h.media.pop().expect("an answer");
    let Request::Answer(answer) = request else {
        panic!("an answer: {request:?}")
    };
    assert_eq!(answer.call.from_tag.as_deref(), Some("b9"));
    assert_eq!(answer.call.to_tag.as_deref(), Some("a9"));
    let now = h.now;
    h.core.handle_media_result(
        now,
        token.unwrap(),
        Err(super::MediaFailure::Refused("Unknown call-id".into())),
    );
    h.pump();
    let fwd = sent_to(&h.take(), BOB, true).expect("PRACK forwarded as it came");
    assert_eq!(fwd.body(), Bytes::from(sdp));
}
