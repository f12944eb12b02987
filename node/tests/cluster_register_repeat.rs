//! A REGISTER retransmission that outlived its transaction (issue 5): the UA's REGISTER was
//! applied through node1, and a copy of it (same Call-ID, CSeq, Via branch, Contact, Expires)
//! reaches node2 (of three), which has no transaction for it: while node1 lives, and again after node1 was
//! SIGKILLed (the case seen in the chaos run). Both copies get 200 with the stored binding
//! (RFC 3261 §10.3 step 7 would say 400 "CSeq out of order": the rule
//! `sipmesh_protocol::registrar::is_applied_repeat`), nothing is written, and a *different*
//! REGISTER with the same CSeq is still refused with 400.

mod cluster_support;

use std::time::Duration;

use cluster_support::{Cluster, DETECTION_LIMIT, DOMAIN, IDS, all_live, state};
use sipmesh_test_support::{RawMessage, RawRequest, UdpPeer};

const WAIT: Duration = Duration::from_secs(3);

/// The status and Contact values of the answer to `r` sent to node `i`.
fn send(c: &Cluster, i: usize, ua: &UdpPeer, r: &RawRequest) -> (Option<u16>, Vec<String>) {
    let answer = ua
        .request(c.nodes[i].udp_addr(), r, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let contacts = answer
        .as_ref()
        .map(|m| m.header_all("Contact").map(str::to_owned).collect())
        .unwrap_or_default();
    (answer.as_ref().and_then(RawMessage::status), contacts)
}

/// The `expires` parameter of one Contact value.
fn expires(contact: &str) -> Option<u32> {
    contact
        .split(';')
        .find_map(|p| p.trim().strip_prefix("expires="))
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_register_copy_reaching_another_node_is_answered_200_not_400() {
    // Three members: a survivor of two would be cut off from the majority, hence fenced.
    let mut c = Cluster::start("register-repeat", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let ua = UdpPeer::bind(c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    let register = RawRequest::register(DOMAIN, "carol", ua.local_addr(), "repeat", 7);
    let (status, first) = send(&c, 0, &ua, &register);
    assert_eq!(status, Some(200), "the REGISTER at node1: {first:?}");
    assert_eq!(first.len(), 1, "{first:?}");

    // The same bytes at node2, node1 alive.
    let (status, again) = send(&c, 1, &ua, &register);
    assert_eq!(status, Some(200), "the copy at node2: {again:?}");
    assert_eq!(again.len(), 1, "{again:?}");
    let uri = |v: &str| v.split(';').next().map(str::to_owned);
    assert_eq!(uri(&again[0]), uri(&first[0]));
    // Not refreshed: the stored expiry, never more than the first answer's.
    assert!(
        expires(&again[0]) <= expires(&first[0]) && expires(&again[0]) > Some(500),
        "{first:?} then {again:?}"
    );

    // Another REGISTER with the same Call-ID and CSeq (another Contact): still refused.
    let other = register
        .clone()
        .set(
            "Contact",
            format!("<sip:carol@{}:5999>", ua.local_addr().ip()),
        )
        .set(
            "Via",
            format!(
                "SIP/2.0/UDP {};rport;branch=z9hG4bK-repeat-other",
                ua.local_addr()
            ),
        );
    let (status, refused) = send(&c, 1, &ua, &other);
    assert_eq!(
        status,
        Some(400),
        "a different REGISTER with CSeq 7: {refused:?}"
    );

    // node1 dies; once node2 owns the AOR (loaded from Redis), the copy still gets 200.
    c.nodes[0].kill();
    c.wait("node1 dead at node2", DETECTION_LIMIT + WAIT, |c| {
        c.view(1)
            .is_some_and(|v| state(&v, "node1").as_deref() == Some("dead"))
    });
    let (status, after) = send(&c, 1, &ua, &register);
    assert_eq!(
        status,
        Some(200),
        "the copy at node2 after node1's death: {after:?}"
    );
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(uri(&after[0]), uri(&first[0]));
    let (status, refused) = send(&c, 1, &ua, &other);
    assert_eq!(
        status,
        Some(400),
        "a different REGISTER with CSeq 7: {refused:?}"
    );
    // A refresh with a higher CSeq works as usual.
    let refresh = RawRequest::register(DOMAIN, "carol", ua.local_addr(), "repeat", 8);
    let (status, refreshed) = send(&c, 1, &ua, &refresh);
    assert_eq!(
        status,
        Some(200),
        "the refresh: {refreshed:?}\n{}",
        c.nodes[1].log_tail()
    );
    assert_eq!(refreshed.len(), 1, "{refreshed:?}");
}
