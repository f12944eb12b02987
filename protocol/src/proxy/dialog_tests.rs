//! Deterministic tests of the dialog events the core emits (see `dialogs.rs`): a call's
//! early and confirmed dialog, forking, failures, BYE and target refreshes from either side.

use std::time::Duration;

use crate::dialog::{DialogEvent, DialogId, EndReason};
use crate::message::Message;
use crate::peer::Transport;

use super::tests::{ALICE, BOB, CAROL, Harness, addr, invite, status};

/// A UAS response to a forwarded request: Vias, From, Call-ID, CSeq and Record-Route copied,
/// a To tag, a Contact, and optional extra header lines.
fn reply(req: &Message, code: u16, to_tag: &str, contact: &str, extra: &str) -> String {
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
            if v.contains("tag=") {
                s.push_str(&format!("To: {v}\r\n"));
            } else {
                s.push_str(&format!("To: {v};tag={to_tag}\r\n"));
            }
        }
    }
    s.push_str(&format!(
        "Contact: <{contact}>\r\n{extra}Content-Length: 0\r\n\r\n"
    ));
    s
}

/// The INVITE as forwarded to `to`.
fn forwarded_to(h: &mut Harness, to: &str) -> Message {
    let out = h.take();
    out.into_iter()
        .find(|(d, m)| d.addr == addr(to) && m.is_request())
        .map(|(_, m)| m)
        .expect("request forwarded")
}

fn id(callee_tag: &str) -> DialogId {
    DialogId::new("call-1", "a1", callee_tag)
}

/// Alice calls bob (one binding); returns the INVITE as bob got it.
fn call(h: &mut Harness) -> Message {
    h.register("bob", BOB, 1);
    h.recv(ALICE, &invite("bob", "z9hG4bKinv1"));
    forwarded_to(h, BOB)
}

#[test]
fn ringing_then_answer_gives_early_then_confirmed_with_routes_contacts_and_flows() {
    let mut h = Harness::new();
    let fwd = call(&mut h);
    assert!(h.dialogs.is_empty(), "no dialog before a To tag");

    h.recv(BOB, &reply(&fwd, 100, "", "sip:bob@127.0.0.3:5080", ""));
    assert!(h.dialogs.is_empty(), "100 creates no dialog");

    h.recv(BOB, &reply(&fwd, 180, "b1", "sip:bob@127.0.0.3:5080", ""));
    let DialogEvent::Early(early) = h.dialogs.remove(0) else {
        panic!("an Early event");
    };
    assert_eq!(early.id, id("b1"));

    h.recv(
        BOB,
        &reply(
            &fwd,
            200,
            "b1",
            "sip:bob@127.0.0.3:5080",
            "Session-Expires: 1800;refresher=uac\r\n",
        ),
    );
    assert_eq!(h.dialogs.len(), 1, "{:?}", h.dialogs);
    let DialogEvent::Confirmed(s) = h.dialogs.remove(0) else {
        panic!("a Confirmed event");
    };
    assert_eq!(s.id, id("b1"));
    assert_eq!(s.caller.uri, "sip:alice@example.com");
    assert_eq!(s.caller.target.as_deref(), Some("sip:alice@127.0.0.2:5070"));
    assert_eq!(s.caller.cseq, Some(1));
    assert_eq!(s.callee.uri, "sip:bob@example.com");
    assert_eq!(s.callee.target.as_deref(), Some("sip:bob@127.0.0.3:5080"));
    assert_eq!(
        s.caller.route_set,
        vec!["<sip:127.0.0.1:5060;lr>".to_owned()]
    );
    assert_eq!(
        s.callee.route_set,
        vec!["<sip:127.0.0.1:5060;lr>".to_owned()]
    );
    let caller_flow = s.caller.flow.expect("caller flow");
    assert_eq!(
        (caller_flow.transport, caller_flow.addr),
        (Transport::Udp, addr(ALICE))
    );
    assert_eq!(s.callee.flow.expect("callee flow").addr, addr(BOB));
    assert_eq!(s.session_expires, Some(Duration::from_secs(1800)));

    // A retransmitted 2xx is forwarded again but is no new dialog.
    h.recv(BOB, &reply(&fwd, 200, "b1", "sip:bob@127.0.0.3:5080", ""));
    assert!(h.dialogs.is_empty(), "{:?}", h.dialogs);
}

#[test]
fn the_2xx_is_held_until_the_dialog_is_stored_and_retransmissions_are_absorbed() {
    let mut h = Harness::new();
    h.ack_dialogs = false;
    let fwd = call(&mut h);
    let ok = reply(&fwd, 200, "b1", "sip:bob@127.0.0.3:5080", "");
    h.recv(BOB, &ok);
    assert!(matches!(h.dialogs[..], [DialogEvent::Confirmed(_)]));
    assert!(
        h.take().iter().all(|(d, _)| d.addr != addr(ALICE)),
        "2xx held"
    );
    h.recv(BOB, &ok);
    assert!(
        h.take().iter().all(|(d, _)| d.addr != addr(ALICE)),
        "retransmission absorbed"
    );
    let token = h.unacked.pop().expect("a StoreDialog token");
    h.core.handle_dialog_stored(h.now, token, true);
    h.pump();
    let out = h.take();
    assert_eq!(out.len(), 1, "exactly one 2xx");
    assert_eq!((out[0].0.addr, status(&out[0].1)), (addr(ALICE), 200));
    // After the release, retransmissions go through again (RFC 6026), with no new event.
    h.recv(BOB, &ok);
    assert_eq!(status(&h.take()[0].1), 200);
    assert_eq!(h.dialogs.len(), 1);
    // A late acknowledgement changes nothing.
    h.core.handle_dialog_stored(h.now, token, true);
    h.pump();
    assert!(h.take().is_empty());
}

#[test]
fn a_held_2xx_goes_out_at_the_deadline_or_at_once_when_the_store_failed() {
    let mut h = Harness::new();
    h.ack_dialogs = false;
    let fwd = call(&mut h);
    h.recv(BOB, &reply(&fwd, 200, "b1", "sip:bob@127.0.0.3:5080", ""));
    h.take();
    h.advance(super::DIALOG_HOLD - Duration::from_millis(1));
    assert!(h.take().is_empty());
    h.advance(Duration::from_millis(1));
    let out = h.take();
    assert_eq!((out[0].0.addr, status(&out[0].1)), (addr(ALICE), 200));

    let mut h = Harness::new();
    h.ack_dialogs = false;
    let fwd = call(&mut h);
    h.recv(BOB, &reply(&fwd, 200, "b1", "sip:bob@127.0.0.3:5080", ""));
    h.take();
    let token = h.unacked.pop().unwrap();
    h.core.handle_dialog_stored(h.now, token, false);
    h.pump();
    assert_eq!(status(&h.take()[0].1), 200);
}

#[test]
fn the_store_request_comes_before_the_2xx_is_sent() {
    let mut h = Harness::new();
    let fwd = call(&mut h);
    let msg = Message::parse(bytes::Bytes::from(reply(
        &fwd,
        200,
        "b2",
        "sip:x@127.0.0.3",
        "",
    )))
    .unwrap();
    h.core.handle_message(h.now, msg, origin(BOB));
    let first = h.core.poll_output().expect("an output");
    assert!(
        matches!(
            first,
            super::Output::StoreDialog {
                event: DialogEvent::Confirmed(_),
                ..
            }
        ),
        "{first:?}"
    );
    assert!(
        h.core.poll_output().is_none(),
        "the 2xx waits for the store"
    );
}

fn origin(from: &str) -> crate::peer::Origin {
    crate::peer::Origin {
        transport: Transport::Udp,
        source: addr(from),
        local: addr(super::tests::PROXY),
        connection: None,
    }
}

#[test]
fn a_rejected_call_ends_its_early_dialog() {
    let mut h = Harness::new();
    let fwd = call(&mut h);
    h.recv(BOB, &reply(&fwd, 180, "b1", "sip:bob@127.0.0.3:5080", ""));
    h.recv(BOB, &reply(&fwd, 486, "b1", "sip:bob@127.0.0.3:5080", ""));
    assert!(matches!(h.dialogs[0], DialogEvent::Early(_)));
    assert_eq!(
        h.dialogs[1],
        DialogEvent::Terminated {
            id: id("b1"),
            reason: EndReason::Rejected(486)
        }
    );
    assert_eq!(h.dialogs.len(), 2, "{:?}", h.dialogs);
}

#[test]
fn a_call_rejected_without_ringing_emits_nothing() {
    let mut h = Harness::new();
    let fwd = call(&mut h);
    h.recv(BOB, &reply(&fwd, 486, "b1", "sip:bob@127.0.0.3:5080", ""));
    assert!(h.dialogs.is_empty(), "{:?}", h.dialogs);
}

#[test]
fn forked_call_confirms_the_winner_and_ends_the_other_early_dialog() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    h.register_with("bob", CAROL, "reg-bob-2", 1);
    h.recv(ALICE, &invite("bob", "z9hG4bKfork"));
    let out = h.take();
    let to_bob = out
        .iter()
        .find(|(d, m)| d.addr == addr(BOB) && m.is_request())
        .unwrap()
        .1
        .clone();
    let to_carol = out
        .iter()
        .find(|(d, m)| d.addr == addr(CAROL) && m.is_request())
        .unwrap()
        .1
        .clone();
    h.recv(
        BOB,
        &reply(&to_bob, 180, "b1", "sip:bob@127.0.0.3:5080", ""),
    );
    h.recv(
        CAROL,
        &reply(&to_carol, 180, "c1", "sip:bob@127.0.0.4:5090", ""),
    );
    h.recv(
        CAROL,
        &reply(&to_carol, 200, "c1", "sip:bob@127.0.0.4:5090", ""),
    );
    let kinds: Vec<String> = h
        .dialogs
        .iter()
        .map(|e| match e {
            DialogEvent::Early(s) => format!("early {}", s.id.callee_tag),
            DialogEvent::Confirmed(s) => format!("confirmed {}", s.id.callee_tag),
            DialogEvent::Terminated { id, reason } => format!("end {} {reason:?}", id.callee_tag),
            DialogEvent::Refreshed(_) => "refresh".to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "early b1",
            "early c1",
            "confirmed c1",
            "end b1 OtherForkAnswered"
        ]
    );
    // Bob's 487 after our CANCEL adds nothing.
    h.take();
    h.recv(
        BOB,
        &reply(&to_bob, 487, "b1", "sip:bob@127.0.0.3:5080", ""),
    );
    assert_eq!(h.dialogs.len(), 4, "{:?}", h.dialogs);
}

/// An in-dialog request from `from` along our Record-Route to `target`.
fn in_dialog(
    method: &str,
    from: &str,
    from_tag: &str,
    to_tag: &str,
    target: &str,
    cseq: u32,
    extra: &str,
) -> String {
    format!(
        "{method} sip:{target} SIP/2.0\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{method}{cseq}{from_tag}\n\
         Route: <sip:127.0.0.1:5060;lr>\nMax-Forwards: 70\n\
         From: <sip:x@example.com>;tag={from_tag}\nTo: <sip:y@example.com>;tag={to_tag}\nCall-ID: call-1\n\
         CSeq: {cseq} {method}\nContact: <sip:new@{from}>\n{extra}Content-Length: 0\n\n"
    )
}

#[test]
fn bye_from_the_callee_ends_the_dialog_oriented_from_the_request() {
    let mut h = Harness::new();
    h.recv(BOB, &in_dialog("BYE", BOB, "b1", "a1", ALICE, 7, ""));
    let fwd = forwarded_to(&mut h, ALICE);
    assert!(h.dialogs.is_empty(), "nothing before the answer");
    h.recv(ALICE, &reply(&fwd, 200, "", "sip:alice@127.0.0.2:5070", ""));
    assert_eq!(status(&h.take()[0].1), 200);
    assert_eq!(
        h.dialogs,
        vec![DialogEvent::Terminated {
            id: DialogId::new("call-1", "b1", "a1"),
            reason: EndReason::Bye
        }]
    );
}

#[test]
fn bye_that_times_out_still_ends_the_dialog() {
    let mut h = Harness::new();
    h.recv(ALICE, &in_dialog("BYE", ALICE, "a1", "b1", BOB, 2, ""));
    h.take();
    h.advance(Duration::from_secs(40));
    assert_eq!(
        h.dialogs,
        vec![DialogEvent::Terminated {
            id: id("b1"),
            reason: EndReason::Bye
        }]
    );
}

#[test]
fn reinvite_2xx_refreshes_targets_cseq_and_session_timer() {
    let mut h = Harness::new();
    h.recv(ALICE, &in_dialog("INVITE", ALICE, "a1", "b1", BOB, 2, ""));
    let fwd = forwarded_to(&mut h, BOB);
    h.recv(
        BOB,
        &reply(
            &fwd,
            200,
            "",
            "sip:bob2@127.0.0.3:5080",
            "Session-Expires: 600\r\n",
        ),
    );
    assert_eq!(h.dialogs.len(), 1, "{:?}", h.dialogs);
    let DialogEvent::Refreshed(u) = &h.dialogs[0] else {
        panic!("a refresh: {:?}", h.dialogs);
    };
    assert_eq!(u.id, id("b1"));
    assert_eq!(u.cseq, 2);
    assert_eq!(
        u.requester_target.as_deref(),
        Some("sip:new@127.0.0.2:5070")
    );
    assert_eq!(
        u.responder_target.as_deref(),
        Some("sip:bob2@127.0.0.3:5080")
    );
    assert_eq!(u.session_expires, Some(Duration::from_secs(600)));
    assert_eq!(u.requester_flow.map(|f| f.addr), Some(addr(ALICE)));
}

#[test]
fn failed_reinvite_and_other_in_dialog_methods_change_nothing() {
    let mut h = Harness::new();
    h.recv(ALICE, &in_dialog("INVITE", ALICE, "a1", "b1", BOB, 3, ""));
    let fwd = forwarded_to(&mut h, BOB);
    h.recv(BOB, &reply(&fwd, 491, "", "sip:bob@127.0.0.3:5080", ""));
    h.recv(ALICE, &in_dialog("INFO", ALICE, "a1", "b1", BOB, 4, ""));
    let fwd = forwarded_to(&mut h, BOB);
    h.recv(BOB, &reply(&fwd, 200, "", "sip:bob@127.0.0.3:5080", ""));
    assert!(h.dialogs.is_empty(), "{:?}", h.dialogs);
}

#[test]
fn update_2xx_refreshes() {
    let mut h = Harness::new();
    h.recv(BOB, &in_dialog("UPDATE", BOB, "b1", "a1", ALICE, 9, ""));
    let fwd = forwarded_to(&mut h, ALICE);
    h.recv(ALICE, &reply(&fwd, 200, "", "sip:alice@127.0.0.2:5070", ""));
    assert!(
        matches!(&h.dialogs[..], [DialogEvent::Refreshed(u)] if u.cseq == 9 && u.id == DialogId::new("call-1", "b1", "a1")),
        "{:?}",
        h.dialogs
    );
}

#[test]
fn dialog_facts_go_with_their_transactions() {
    let mut h = Harness::new();
    let fwd = call(&mut h);
    h.recv(BOB, &reply(&fwd, 180, "b1", "sip:bob@127.0.0.3:5080", ""));
    h.recv(BOB, &reply(&fwd, 200, "b1", "sip:bob@127.0.0.3:5080", ""));
    h.recv(ALICE, &in_dialog("BYE", ALICE, "a1", "b1", BOB, 2, ""));
    let bye = forwarded_to(&mut h, BOB);
    h.recv(BOB, &reply(&bye, 200, "", "sip:bob@127.0.0.3:5080", ""));
    assert!(!h.core.dialog_tracks.is_empty());
    h.advance(Duration::from_secs(64));
    assert!(
        h.core.dialog_tracks.is_empty(),
        "{:?}",
        h.core.dialog_tracks
    );
    assert!(h.core.held.is_empty());
    assert!(h.core.is_idle());
}
