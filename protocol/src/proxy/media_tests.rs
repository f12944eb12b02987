//! Deterministic tests of the media hooks (`media.rs`): offer parked until rtpengine's SDP,
//! answer rewritten, delete on failure and BYE, 503 when no relay answers.

use bytes::Bytes;

use crate::media::MediaProfiles;
use crate::message::Message;
use crate::ng::{IceMode, Request};

use super::MediaFailure;
use super::tests::{ALICE, BOB, CAROL, Harness, addr, invite, status};

pub(super) const RELAYED: &str = "v=0\r\nc=IN IP4 10.9.9.9\r\nm=audio 30000 RTP/AVP 0\r\n";

/// A response to `req` with an SDP body.
pub(super) fn sdp_answer(req: &Message, code: u16, to_tag: &str, sdp: &str) -> String {
    let mut s = format!("SIP/2.0 {code} Whatever\r\n");
    for h in req.headers() {
        let n = h.name_str();
        let v = h.value_str().unwrap();
        if ["Via", "From", "Call-ID", "CSeq", "Record-Route"]
            .iter()
            .any(|x| n.eq_ignore_ascii_case(x))
        {
            s.push_str(&format!("{n}: {v}\r\n"));
        } else if n.eq_ignore_ascii_case("To") {
            s.push_str(&format!("To: {v};tag={to_tag}\r\n"));
        }
    }
    s.push_str(&format!(
        "Contact: <sip:bob@{BOB}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    s
}

pub(super) fn media_harness() -> Harness {
    let mut h = Harness::new();
    h.core.enable_media(MediaProfiles::default());
    h.register("bob", BOB, 1);
    h
}

/// Alice's INVITE, offered to rtpengine and resumed with [`RELAYED`]: the INVITE bob got.
fn offered_call(h: &mut Harness) -> Message {
    h.recv(ALICE, &invite("bob", "z9hG4bKm1"));
    let sent = h.take();
    assert!(
        sent.iter().all(|(_, m)| !m.is_request()),
        "nothing forwarded before rtpengine answered"
    );
    let (token, request) = h.media.pop().expect("an ng request");
    let Request::Offer(offer) = request else {
        panic!("an offer: {request:?}")
    };
    assert_eq!(offer.call.call_id, "call-1");
    assert_eq!(offer.call.from_tag.as_deref(), Some("a1"));
    assert_eq!(
        offer.options.ice, None,
        "legacy to legacy: relayed unchanged"
    );
    assert_eq!(offer.options.replace, vec!["origin", "session-connection"]);
    let now = h.now;
    h.core.handle_media_result(
        now,
        token.expect("offer has a token"),
        Ok(Bytes::from_static(RELAYED.as_bytes())),
    );
    h.pump();
    let out = h.take();
    let (_, inv) = out
        .into_iter()
        .find(|(d, m)| d.addr == addr(BOB) && m.is_request())
        .expect("INVITE forwarded after the offer");
    assert_eq!(inv.body(), Bytes::from_static(RELAYED.as_bytes()));
    assert_eq!(inv.content_length().unwrap(), Some(RELAYED.len() as u32));
    inv
}

#[test]
fn offer_then_answer_rewrite_both_bodies_and_a_retransmission_reuses_the_answer() {
    let mut h = media_harness();
    let inv = offered_call(&mut h);
    h.recv(
        BOB,
        &sdp_answer(&inv, 200, "b1", "v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
    );
    assert!(
        h.take().iter().all(|(d, _)| d.addr != addr(ALICE)),
        "200 parked"
    );
    let (token, request) = h.media.pop().expect("an answer request");
    let Request::Answer(answer) = request else {
        panic!("an answer: {request:?}")
    };
    assert_eq!(answer.call.to_tag.as_deref(), Some("b1"));
    let now = h.now;
    let relayed_answer = "v=0\r\nc=IN IP4 10.9.9.9\r\nm=audio 30002 RTP/AVP 0\r\n";
    h.core
        .handle_media_result(now, token.unwrap(), Ok(Bytes::from(relayed_answer)));
    h.pump();
    let out = h.take();
    let ok = out
        .iter()
        .find(|(d, m)| d.addr == addr(ALICE) && !m.is_request())
        .map(|(_, m)| m)
        .expect("200 forwarded to alice");
    assert_eq!(status(ok), 200);
    assert_eq!(ok.body(), Bytes::from(relayed_answer));
    // The callee retransmits its 200: same rewritten SDP, no new ng request.
    h.recv(
        BOB,
        &sdp_answer(&inv, 200, "b1", "v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
    );
    assert!(h.media.is_empty(), "no second answer: {:?}", h.media);
    let again = h.take();
    assert!(
        again
            .iter()
            .any(|(d, m)| d.addr == addr(ALICE) && m.body() == relayed_answer),
        "retransmission forwarded with the cached answer"
    );
}

#[test]
fn busy_deletes_the_session() {
    let mut h = media_harness();
    let inv = offered_call(&mut h);
    h.recv(BOB, &super::tests::answer(&inv, 486, "b1"));
    let out = h.take();
    assert!(
        out.iter()
            .any(|(d, m)| d.addr == addr(ALICE) && status(m) == 486)
    );
    let (token, request) = h.media.pop().expect("a delete");
    assert_eq!(token, None);
    assert!(matches!(request, Request::Delete(ref c) if c.call_id == "call-1"));
}

#[test]
fn no_relay_answers_503_with_retry_after() {
    let mut h = media_harness();
    h.recv(ALICE, &invite("bob", "z9hG4bKm2"));
    let (token, _) = h.media.pop().unwrap();
    let now = h.now;
    h.core
        .handle_media_result(now, token.unwrap(), Err(MediaFailure::Unavailable));
    h.pump();
    let out = h.take();
    let (_, resp) = out
        .iter()
        .find(|(d, m)| d.addr == addr(ALICE) && status(m) >= 200)
        .expect("answered");
    assert_eq!(status(resp), 503);
    assert!(resp.as_bytes().windows(12).any(|w| w == b"Retry-After:"));
    assert!(out.iter().all(|(d, _)| d.addr != addr(BOB)));
    assert_eq!(h.core.media_waiting(), 0);
}

#[test]
fn refused_offer_answers_500() {
    let mut h = media_harness();
    h.recv(ALICE, &invite("bob", "z9hG4bKm3"));
    let (token, _) = h.media.pop().unwrap();
    let now = h.now;
    h.core.handle_media_result(
        now,
        token.unwrap(),
        Err(MediaFailure::Refused("Unknown call".into())),
    );
    h.pump();
    let out = h.take();
    assert!(
        out.iter()
            .any(|(d, m)| d.addr == addr(ALICE) && status(m) == 500)
    );
}

#[test]
fn browser_caller_gets_a_legacy_offer_and_a_browser_answer() {
    use crate::peer::{Origin, Transport};
    let mut h = media_harness();
    let ws = Origin {
        transport: Transport::Ws,
        source: addr(ALICE),
        local: addr(super::tests::PROXY_WS),
        connection: Some(crate::peer::ConnectionId(7)),
    };
    let text = invite("bob", "z9hG4bKm4").replace("SIP/2.0/UDP", "SIP/2.0/WS");
    h.recv_from(ws, &text);
    let (_, request) = h.media.pop().expect("offer");
    let Request::Offer(offer) = request else {
        panic!("offer")
    };
    assert_eq!(offer.options.ice, Some(IceMode::Remove));
    assert_eq!(offer.options.transport_protocol.as_deref(), Some("RTP/AVP"));
}

#[test]
fn without_media_sdp_passes_untouched() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    h.recv(ALICE, &invite("bob", "z9hG4bKm5"));
    assert!(h.media.is_empty());
    assert!(
        h.take()
            .iter()
            .any(|(d, m)| d.addr == addr(BOB) && m.is_request())
    );
}

/// Alice's late-offer INVITE (no SDP) answered by bob's 200 with an offer: the 200 goes to
/// rtpengine as an `offer` from bob, alice's ACK with her answer as the `answer`, and the ACK
/// reaches bob with rtpengine's SDP and a right Content-Length.
#[test]
fn late_offer_in_the_2xx_and_its_answer_in_the_ack() {
    let mut h = media_harness();
    let text = invite("bob", "z9hG4bKl1")
        .replace("Content-Type: application/sdp\n", "")
        .replace("Content-Length: 5\n\nv=0\n", "Content-Length: 0\n\n");
    h.recv(ALICE, &text);
    assert!(h.media.is_empty(), "no offer to relay yet: {:?}", h.media);
    let out = h.take();
    let (_, inv) = out
        .into_iter()
        .find(|(d, m)| d.addr == addr(BOB) && m.is_request())
        .expect("INVITE forwarded at once");
    let bob_offer = "v=0\r\nc=IN IP4 127.0.0.3\r\nm=audio 4000 RTP/AVP 0\r\n";
    h.recv(BOB, &sdp_answer(&inv, 200, "b1", bob_offer));
    let (token, request) = h.media.pop().expect("the 2xx's offer");
    let Request::Offer(offer) = request else {
        panic!("an offer: {request:?}")
    };
    assert_eq!(offer.call.from_tag.as_deref(), Some("b1"), "offered by bob");
    assert_eq!(offer.call.to_tag.as_deref(), Some("a1"));
    let now = h.now;
    h.core.handle_media_result(
        now,
        token.unwrap(),
        Ok(Bytes::from_static(RELAYED.as_bytes())),
    );
    h.pump();
    let out = h.take();
    let ok = out
        .iter()
        .find(|(d, m)| d.addr == addr(ALICE) && !m.is_request())
        .map(|(_, m)| m.clone())
        .expect("200 forwarded to alice");
    assert_eq!(ok.body(), Bytes::from_static(RELAYED.as_bytes()));
    assert_eq!(h.core.media.late.len(), 1);
    let routes: String = ok
        .headers()
        .filter(|x| x.name_str().eq_ignore_ascii_case("Record-Route"))
        .map(|x| format!("Route: {}\r\n", x.value_str().unwrap()))
        .collect();
    let alice_answer = "v=0\r\nc=IN IP4 127.0.0.2\r\nm=audio 5000 RTP/AVP 0\r\n";
    let ack = format!(
        "ACK sip:bob@{BOB} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKlack\r\n{routes}\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>;tag=b1\r\nCall-ID: call-1\r\nCSeq: 1 ACK\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{alice_answer}",
        alice_answer.len()
    );
    h.recv(ALICE, &ack);
    assert!(
        h.take().iter().all(|(d, _)| d.addr != addr(BOB)),
        "ACK parked"
    );
    let (token, request) = h.media.pop().expect("the ACK's answer");
    let Request::Answer(answer) = request else {
        panic!("an answer: {request:?}")
    };
    assert_eq!(answer.call.from_tag.as_deref(), Some("b1"));
    assert_eq!(answer.call.to_tag.as_deref(), Some("a1"));
    let relayed_answer = "v=0\r\nc=IN IP4 10.9.9.9\r\nm=audio 30002 RTP/AVP 0\r\na=x\r\n";
    let now = h.now;
    h.core
        .handle_media_result(now, token.unwrap(), Ok(Bytes::from(relayed_answer)));
    h.pump();
    let out = h.take();
    let (_, fwd) = out
        .iter()
        .find(|(d, m)| d.addr == addr(BOB) && m.is_request())
        .expect("ACK forwarded to bob");
    assert_eq!(fwd.body(), Bytes::from(relayed_answer));
    assert_eq!(
        fwd.content_length().unwrap(),
        Some(u32::try_from(relayed_answer.len()).unwrap())
    );
    // Alice retransmits the ACK: the same rewritten answer, no second ng request.
    h.recv(ALICE, &ack);
    assert!(h.media.is_empty(), "no second answer: {:?}", h.media);
    assert!(
        h.take()
            .iter()
            .any(|(d, m)| d.addr == addr(BOB) && m.body() == relayed_answer)
    );
}

/// The ACK of a late-offer call may reach a shard that never saw its 2xx: an ACK with SDP is
/// the answer to the 2xx's offer all the same (RFC 3261 §13.2.1), sent with the callee's tag.
#[test]
fn an_ack_with_sdp_on_another_shard_is_still_answered() {
    let mut h = media_harness();
    let sdp = "v=0\r\nc=IN IP4 127.0.0.2\r\nm=audio 5000 RTP/AVP 0\r\n";
    let ack = format!(
        "ACK sip:bob@{BOB} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKoack\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a9\r\n\
         To: <sip:bob@example.com>;tag=b9\r\nCall-ID: call-9\r\nCSeq: 1 ACK\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    h.recv(ALICE, &ack);
    assert!(h.take().is_empty(), "ACK parked");
    let (token, request) = h.media.pop().expect("an answer");
    let Request::Answer(answer) = request else {
        panic!("an answer: {request:?}")
    };
    assert_eq!(answer.call.from_tag.as_deref(), Some("b9"));
    assert_eq!(answer.call.to_tag.as_deref(), Some("a9"));
    // rtpengine never saw the offer: the ACK goes on as it came.
    let now = h.now;
    h.core.handle_media_result(
        now,
        token.unwrap(),
        Err(MediaFailure::Refused("Unknown call-id".into())),
    );
    h.pump();
    assert!(
        h.take()
            .iter()
            .any(|(d, m)| d.addr == addr(BOB) && m.body() == sdp)
    );
}

/// bob has a UDP phone and a browser over WS: each branch gets the offer rtpengine made for
/// its kind (one ng offer per kind, `via-branch` naming it), and each answer names its branch.
#[test]
fn forking_to_legs_of_different_kinds_offers_each_its_own() {
    use crate::ng::Value;
    use crate::peer::{ConnectionId, Origin, Transport};
    let mut h = media_harness();
    let ws = Origin {
        transport: Transport::Ws,
        source: addr(CAROL),
        local: addr(super::tests::PROXY_WS),
        connection: Some(ConnectionId(9)),
    };
    h.recv_from(
        ws,
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/WS b.invalid;branch=z9hG4bKwsreg\n\
         Max-Forwards: 70\nFrom: <sip:bob@example.com>;tag=rw\nTo: <sip:bob@example.com>\n\
         Call-ID: reg-ws\nCSeq: 1 REGISTER\nContact: <sip:bob@b.invalid;transport=ws>\n\
         Expires: 600\nContent-Length: 0\n\n",
    );
    assert_eq!(status(&h.take()[0].1), 200);
    h.recv(ALICE, &invite("bob", "z9hG4bKf1"));
    assert_eq!(h.media.len(), 2, "an offer per kind: {:?}", h.media);
    let now = h.now;
    let mut answers = Vec::new();
    for (token, request) in std::mem::take(&mut h.media) {
        let Request::Offer(offer) = request else {
            panic!("an offer: {request:?}")
        };
        let branch = offer
            .options
            .extra
            .get(&b"via-branch"[..])
            .and_then(Value::as_str)
            .expect("via-branch")
            .to_owned();
        let kind_sdp = format!("v=0\r\nm=audio 30000 {branch}\r\n");
        answers.push((branch.clone(), kind_sdp.clone()));
        h.core
            .handle_media_result(now, token.unwrap(), Ok(Bytes::from(kind_sdp)));
    }
    h.pump();
    let out = h.take();
    let to_phone = out
        .iter()
        .find(|(d, m)| d.addr == addr(BOB) && m.is_request())
        .expect("INVITE to the phone");
    let to_browser = out
        .iter()
        .find(|(d, m)| d.transport == Transport::Ws && m.is_request())
        .expect("INVITE to the browser");
    assert!(
        to_phone.1.body().ends_with(b"legacy\r\n"),
        "{:?}",
        to_phone.1.body()
    );
    assert!(
        to_browser.1.body().ends_with(b"browser\r\n"),
        "{:?}",
        to_browser.1.body()
    );
    assert_eq!(
        to_phone.1.content_length().unwrap(),
        Some(u32::try_from(to_phone.1.body().len()).unwrap())
    );
    // The phone answers: the answer names the legacy branch.
    h.recv(
        BOB,
        &sdp_answer(&to_phone.1, 200, "b1", "v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
    );
    let (token, request) = h.media.pop().expect("an answer");
    let Request::Answer(answer) = request else {
        panic!("an answer: {request:?}")
    };
    assert_eq!(
        answer
            .options
            .extra
            .get(&b"via-branch"[..])
            .and_then(Value::as_str),
        Some("legacy")
    );
    assert_eq!(answers.len(), 2);
    h.core.handle_media_result(
        now,
        token.unwrap(),
        Ok(Bytes::from_static(RELAYED.as_bytes())),
    );
    h.pump();
    h.take();
    // The browser's branch, cancelled, ends with 487: its kind's offer goes (via-branch).
    h.recv_from(ws, &super::tests::answer(&to_browser.1, 487, "w1"));
    let deletes: Vec<Request> = std::mem::take(&mut h.media)
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| matches!(r, Request::DeleteBranch { .. }))
        .collect();
    assert_eq!(
        deletes,
        vec![Request::DeleteBranch {
            call: crate::ng::CallRef::new("call-1", "a1"),
            via_branch: Some("browser".into()),
        }]
    );
}
