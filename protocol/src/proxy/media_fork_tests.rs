//! Deterministic tests of losing fork branches (`media_fork.rs`): a branch that ended without
//! a 2xx is deleted from rtpengine once the winner's answer went through, by its To tag when
//! rtpengine took an answer from it.

use bytes::Bytes;

use crate::message::Message;
use crate::ng::Request;

use super::media_tests::{RELAYED, media_harness, sdp_answer};
use super::tests::{ALICE, BOB, CAROL, Harness, addr, invite};

/// bob at BOB and at CAROL (two UDP bindings): alice's INVITE, offered once and forked; the
/// INVITEs each binding got.
fn forked_call(h: &mut Harness) -> (Message, Message) {
    h.register_with("bob", CAROL, "reg-bob-2", 1);
    h.recv(ALICE, &invite("bob", "z9hG4bKfl1"));
    let (token, request) = h.media.pop().expect("one offer");
    assert!(matches!(request, Request::Offer(_)));
    assert!(h.media.is_empty(), "one kind, one offer");
    let now = h.now;
    h.core.handle_media_result(
        now,
        token.unwrap(),
        Ok(Bytes::from_static(RELAYED.as_bytes())),
    );
    h.pump();
    let out = h.take();
    let to = |a: &str| {
        out.iter()
            .find(|(d, m)| d.addr == addr(a) && m.is_request())
            .map(|(_, m)| m.clone())
            .expect("INVITE forwarded")
    };
    (to(BOB), to(CAROL))
}

/// Answers the oldest ng request with some SDP.
fn answer_it(h: &mut Harness) {
    let (token, request) = h.media.pop().expect("an ng request");
    assert!(matches!(request, Request::Answer(_)), "{request:?}");
    let now = h.now;
    h.core.handle_media_result(
        now,
        token.unwrap(),
        Ok(Bytes::from_static(b"v=0\r\nm=audio 30010 RTP/AVP 0\r\n")),
    );
    h.pump();
    h.take();
}

fn branch_deletes(h: &mut Harness) -> Vec<Request> {
    std::mem::take(&mut h.media)
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| matches!(r, Request::DeleteBranch { .. }))
        .collect()
}

#[test]
fn a_loser_with_early_media_is_deleted_by_its_tag_after_the_winner_answered() {
    let mut h = media_harness();
    let (to_bob, to_carol) = forked_call(&mut h);
    let sdp = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
    // carol's binding rings with early media, then rejects before bob answers.
    h.recv(CAROL, &sdp_answer(&to_carol, 180, "c1", sdp));
    answer_it(&mut h);
    h.recv(CAROL, &super::tests::answer(&to_carol, 486, "c1"));
    assert!(
        branch_deletes(&mut h).is_empty(),
        "no delete while the loser is the only answered branch"
    );
    h.recv(BOB, &sdp_answer(&to_bob, 200, "b1", sdp));
    answer_it(&mut h);
    let deletes = branch_deletes(&mut h);
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    let Request::DeleteBranch { call, via_branch } = &deletes[0] else {
        unreachable!()
    };
    assert_eq!(call.call_id, "call-1");
    assert_eq!(call.from_tag.as_deref(), Some("a1"));
    assert_eq!(call.to_tag.as_deref(), Some("c1"));
    assert_eq!(*via_branch, None);
}

#[test]
fn a_loser_without_early_media_leaves_nothing_to_delete() {
    let mut h = media_harness();
    let (to_bob, to_carol) = forked_call(&mut h);
    h.recv(
        BOB,
        &sdp_answer(&to_bob, 200, "b1", "v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
    );
    answer_it(&mut h);
    // The proxy cancelled carol's branch; its 487 ends it.
    h.recv(CAROL, &super::tests::answer(&to_carol, 487, "c1"));
    assert!(
        branch_deletes(&mut h).is_empty(),
        "nothing of carol's in rtpengine"
    );
}

#[test]
fn a_winner_with_early_media_and_a_2xx_without_sdp_still_lets_the_loser_go() {
    let mut h = media_harness();
    let (to_bob, to_carol) = forked_call(&mut h);
    let sdp = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
    h.recv(CAROL, &sdp_answer(&to_carol, 183, "c1", sdp));
    answer_it(&mut h);
    h.recv(
        BOB,
        &sdp_answer(&to_bob, 183, "b1", "v=0\r\nm=audio 4100 RTP/AVP 0\r\n"),
    );
    answer_it(&mut h);
    // bob's 200 carries no SDP (the 183 answered); carol's branch is cancelled: 487.
    h.recv(BOB, &super::tests::answer(&to_bob, 200, "b1"));
    assert!(h.media.is_empty(), "no ng request for a 2xx without SDP");
    h.recv(CAROL, &super::tests::answer(&to_carol, 487, "c1"));
    let deletes = branch_deletes(&mut h);
    assert!(
        matches!(deletes.as_slice(), [Request::DeleteBranch { call, via_branch: None }]
            if call.to_tag.as_deref() == Some("c1")),
        "{deletes:?}"
    );
}
