//! Unit tests of the dialog model: ids, facts from real messages, and the transition function.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::message::{Message, Method};
use crate::peer::{Destination, Transport};

use super::*;

fn msg(text: &str) -> Message {
    Message::parse(Bytes::from(
        text.replace("\r\n", "\n").replace('\n', "\r\n"),
    ))
    .unwrap()
}

fn dest(a: &str) -> Destination {
    Destination {
        transport: Transport::Udp,
        addr: a.parse::<SocketAddr>().unwrap(),
        local: None,
        connection: None,
    }
}

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\n\
    Max-Forwards: 70\nFrom: \"Alice\" <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>\n\
    Call-ID: c1@10.0.0.1\nCSeq: 5 INVITE\nContact: <sip:alice@10.0.0.1:5060>\nSession-Expires: 1800\n\
    Content-Length: 0\n\n";

fn response(code: u16, extra: &str) -> Message {
    msg(&format!(
        "SIP/2.0 {code} X\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\n\
         Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>;tag=b1\n\
         Call-ID: c1@10.0.0.1\nCSeq: 5 INVITE\nContact: <sip:bob@10.0.0.2:5070;transport=udp>\n{extra}\
         Content-Length: 0\n\n"
    ))
}

fn wall(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn confirmed() -> DialogState {
    let facts = InviteFacts::from_request(&msg(INVITE), dest("10.0.0.1:5060")).unwrap();
    let ev = facts
        .event_for(&response(200, ""), dest("10.0.0.2:5070"))
        .unwrap();
    DialogState::from_event(&ev, wall(100), &DialogConfig::default()).unwrap()
}

#[test]
fn key_roundtrips_and_rejects_bad_keys() {
    let id = DialogId::new("abc@host", "t1", "t2");
    assert_eq!(id.key(), "abc@host;t1;t2");
    assert_eq!(DialogId::parse_key(&id.key()), Ok(id.clone()));
    assert_eq!(DialogId::parse_key("a;b"), Err(DialogIdError::MissingPart));
    assert_eq!(DialogId::parse_key("a;;c"), Err(DialogIdError::EmptyPart));
    assert_eq!(id.reversed().reversed(), id);
    assert_eq!(id.reversed().caller_tag, "t2");
}

#[test]
fn session_expires_reads_delta_seconds_and_ignores_junk() {
    assert_eq!(
        session_expires(&response(200, "Session-Expires: 90;refresher=uas\n")),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        session_expires(&response(200, "x: 120\n")),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        session_expires(&response(200, "Session-Expires: soon\n")),
        None
    );
    assert_eq!(session_expires(&response(200, "")), None);
}

#[test]
fn snapshot_orients_route_sets_per_side() {
    let facts = InviteFacts::from_request(&msg(INVITE), dest("10.0.0.1:5060")).unwrap();
    let s = facts
        .snapshot(&response(200, ""), dest("10.0.0.2:5070"))
        .unwrap();
    assert_eq!(s.id, DialogId::new("c1@10.0.0.1", "a1", "b1"));
    // RFC 3261 §12.1.2: the UAC's route set is the Record-Route reversed; §12.1.1: the UAS's
    // is in order.
    assert_eq!(
        s.caller.route_set,
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(
        s.callee.route_set,
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
    assert_eq!(
        s.callee.target.as_deref(),
        Some("sip:bob@10.0.0.2:5070;transport=udp")
    );
    assert_eq!(s.caller.cseq, Some(5));
    // The request's Session-Expires counts when the answer has none.
    assert_eq!(s.session_expires, Some(Duration::from_secs(1800)));
    let s = facts
        .snapshot(
            &response(200, "Session-Expires: 300\n"),
            dest("10.0.0.2:5070"),
        )
        .unwrap();
    assert_eq!(s.session_expires, Some(Duration::from_secs(300)));
}

#[test]
fn only_1xx_with_tag_and_2xx_make_events() {
    let facts = InviteFacts::from_request(&msg(INVITE), dest("10.0.0.1:5060")).unwrap();
    let to = dest("10.0.0.2:5070");
    assert!(matches!(
        facts.event_for(&response(180, ""), to),
        Some(DialogEvent::Early(_))
    ));
    assert!(matches!(
        facts.event_for(&response(200, ""), to),
        Some(DialogEvent::Confirmed(_))
    ));
    assert_eq!(facts.event_for(&response(486, ""), to), None);
    let no_tag = msg(&String::from_utf8_lossy(response(180, "").as_bytes()).replace(";tag=b1", ""));
    assert_eq!(facts.event_for(&no_tag, to), None);
    let untagged = msg(&INVITE.replace(";tag=a1", ""));
    assert_eq!(
        InviteFacts::from_request(&untagged, to),
        Err(DialogError::MissingFromTag)
    );
}

#[test]
fn early_then_confirmed_then_bye() {
    let cfg = DialogConfig::default();
    let facts = InviteFacts::from_request(&msg(INVITE), dest("10.0.0.1:5060")).unwrap();
    let early = facts
        .event_for(&response(180, ""), dest("10.0.0.2:5070"))
        .unwrap();
    let mut s = DialogState::from_event(&early, wall(1), &cfg).unwrap();
    assert_eq!(s.phase, DialogPhase::Early);
    assert_eq!(s.timeout, cfg.early_timeout);
    assert_eq!(s.confirmed, None);

    let ok = facts
        .event_for(&response(200, ""), dest("10.0.0.2:5070"))
        .unwrap();
    assert_eq!(
        s.apply(&ok, wall(5), &cfg),
        Applied {
            changed: true,
            ended: false
        }
    );
    assert_eq!(s.phase, DialogPhase::Confirmed);
    assert_eq!(s.confirmed, Some(wall(5)));
    assert_eq!(s.created, wall(1));
    assert_eq!(s.timeout, Duration::from_secs(1800) + cfg.session_grace);
    // The same 2xx again changes nothing.
    assert_eq!(s.apply(&ok, wall(6), &cfg), Applied::default());

    let bye = DialogEvent::Terminated {
        id: s.id.reversed(),
        reason: EndReason::Bye,
    };
    assert_eq!(
        s.apply(&bye, wall(9), &cfg),
        Applied {
            changed: true,
            ended: true
        }
    );
    assert_eq!(s.phase, DialogPhase::Terminated);
    // Terminated absorbs everything.
    assert_eq!(s.apply(&ok, wall(10), &cfg), Applied::default());
    assert_eq!(s.phase, DialogPhase::Terminated);
}

#[test]
fn without_session_timer_the_default_timeout_applies() {
    let cfg = DialogConfig {
        default_timeout: Duration::from_secs(77),
        ..DialogConfig::default()
    };
    let facts = InviteFacts::from_request(
        &msg(&INVITE.replace("Session-Expires: 1800\n", "")),
        dest("10.0.0.1:5060"),
    )
    .unwrap();
    let ok = facts
        .event_for(&response(200, ""), dest("10.0.0.2:5070"))
        .unwrap();
    let s = DialogState::from_event(&ok, wall(1), &cfg).unwrap();
    assert_eq!(s.phase, DialogPhase::Confirmed);
    assert_eq!(s.timeout, Duration::from_secs(77));
}

fn refresh(from: &str, to: &str, cseq: u32) -> DialogEvent {
    DialogEvent::Refreshed(Box::new(InDialogUpdate {
        id: DialogId::new("c1@10.0.0.1", from, to),
        method: Method::Invite,
        cseq,
        requester_target: Some(format!("sip:{from}@new")),
        responder_target: Some(format!("sip:{to}@new")),
        requester_flow: Some(dest("10.9.9.9:5060")),
        session_expires: Some(Duration::from_secs(120)),
    }))
}

#[test]
fn target_refresh_from_either_side_updates_targets_cseq_flow_and_timer() {
    let cfg = DialogConfig::default();
    let mut s = confirmed();
    assert!(s.apply(&refresh("a1", "b1", 6), wall(200), &cfg).changed);
    assert_eq!(s.caller.cseq, Some(6));
    assert_eq!(s.caller.target.as_deref(), Some("sip:a1@new"));
    assert_eq!(s.callee.target.as_deref(), Some("sip:b1@new"));
    assert_eq!(s.caller.flow, Some(dest("10.9.9.9:5060")));
    assert_eq!(s.timeout, Duration::from_secs(120) + cfg.session_grace);

    assert!(s.apply(&refresh("b1", "a1", 1), wall(201), &cfg).changed);
    assert_eq!(s.callee.cseq, Some(1));
    assert_eq!(s.callee.flow, Some(dest("10.9.9.9:5060")));
    assert_eq!(s.caller.target.as_deref(), Some("sip:a1@new"));
}

#[test]
fn stale_refresh_and_strangers_change_nothing() {
    let cfg = DialogConfig::default();
    let mut s = confirmed();
    let before = s.clone();
    assert_eq!(
        s.apply(&refresh("a1", "b1", 5), wall(200), &cfg),
        Applied::default()
    );
    assert_eq!(
        s.apply(&refresh("zz", "b1", 50), wall(200), &cfg),
        Applied::default()
    );
    assert_eq!(s, before);
}

#[test]
fn in_dialog_facts_pick_bye_reinvite_update_only() {
    let req = |method: &str| {
        msg(&format!(
            "{method} sip:bob@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2\nMax-Forwards: 70\n\
             From: <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>;tag=b1\n\
             Call-ID: c1@10.0.0.1\nCSeq: 6 {method}\nContent-Length: 0\n\n"
        ))
    };
    let flow = dest("10.0.0.1:5060");
    for m in ["BYE", "INVITE", "UPDATE"] {
        let f = InDialogFacts::from_request(&req(m), flow).unwrap().unwrap();
        assert_eq!(f.id, DialogId::new("c1@10.0.0.1", "a1", "b1"));
        assert_eq!(f.cseq, 6);
    }
    for m in ["INFO", "MESSAGE", "NOTIFY"] {
        assert_eq!(InDialogFacts::from_request(&req(m), flow), Ok(None));
    }
    let bye = InDialogFacts::from_request(&req("BYE"), flow)
        .unwrap()
        .unwrap();
    assert_eq!(bye.event_for(100, None), None);
    assert!(matches!(
        bye.event_for(481, None),
        Some(DialogEvent::Terminated {
            reason: EndReason::Bye,
            ..
        })
    ));
    let reinvite = InDialogFacts::from_request(&req("INVITE"), flow)
        .unwrap()
        .unwrap();
    assert_eq!(reinvite.event_for(488, None), None);
}

#[test]
fn phase_names_roundtrip() {
    for p in [
        DialogPhase::Early,
        DialogPhase::Confirmed,
        DialogPhase::Terminated,
    ] {
        assert_eq!(DialogPhase::from_name(p.as_str()), Some(p));
    }
    assert_eq!(DialogPhase::from_name("gone"), None);
}
