//! A TCP binding that is not a flow is dialled when its holder dies (RFC 3261 §18.1.1), a flow
//! is not (RFC 5626 §5.4): three real `sipmesh` processes and a real `redis-server`. bob
//! registers over TCP at node1 without outbound, his Contact the address his connection came
//! from (so the nodes reuse that connection, relayed through node1); carol registers as a flow
//! (`;ob`), dave like bob. node1 is SIGKILLed; bob now listens on that address, dave does not. A
//! MESSAGE to bob through node2 reaches him on a connection node2 opens itself; one to carol
//! gets 480, and so does one to dave (the dial is refused) at once.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use sipmesh_test_support::{RawMessage, RawRequest, TcpPeer, UdpPeer, ViaTransport};

mod cluster_support;

use cluster_support::*;

const WAIT: Duration = Duration::from_secs(3);
const SETTLE: Duration = Duration::from_secs(10);

fn message_to(alice: &UdpPeer, user: &str, text: &str) -> RawRequest {
    RawRequest::new(
        "MESSAGE",
        &format!("sip:{user}@{DOMAIN}"),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .body("text/plain", text)
}

/// bob receives `text` on `peer`, answers 200, and alice gets that 200.
fn bob_answers(alice: &UdpPeer, peer: &mut TcpPeer, text: &str) {
    let m = peer
        .recv(WAIT)
        .unwrap_or_else(|| panic!("bob never got {text:?}"));
    assert_eq!(m.method(), Some("MESSAGE"), "{m:?}");
    assert_eq!(m.body(), text.as_bytes());
    peer.send(&m.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = alice.recv_final(WAIT);
    assert_eq!(
        answer.as_ref().and_then(RawMessage::status),
        Some(200),
        "{answer:?}"
    );
}

#[test]
fn a_dead_holders_reused_tcp_connection_is_redialled_and_its_flows_get_480() {
    let mut c = Cluster::start("cluster-redial", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let mut bob = TcpPeer::connect(c.nodes[0].tcp_addr(), WAIT).unwrap_or_else(|e| panic!("{e}"));
    let bob_addr = bob.local_addr();
    let register = RawRequest::register(DOMAIN, "bob", bob_addr, "redial", 1)
        .set(
            "Via",
            format!("SIP/2.0/TCP {bob_addr};branch=z9hG4bK-reg-bob-1"),
        )
        .set("Contact", format!("<sip:bob@{bob_addr};transport=tcp>"));
    let ok = bob
        .request(&register, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}"
    );
    let _carol = register_tcp(&c, 0, "carol", 1, "redial", WAIT);
    // dave registers like bob but will not listen: his address cannot be dialled.
    let mut dave = TcpPeer::connect(c.nodes[0].tcp_addr(), WAIT).unwrap_or_else(|e| panic!("{e}"));
    let dave_addr = dave.local_addr();
    let register = RawRequest::register(DOMAIN, "dave", dave_addr, "redial", 1)
        .set(
            "Via",
            format!("SIP/2.0/TCP {dave_addr};branch=z9hG4bK-reg-dave-1"),
        )
        .set("Contact", format!("<sip:dave@{dave_addr};transport=tcp>"));
    let ok = dave
        .request(&register, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}"
    );

    // While node1 lives, node2 relays over bob's connection (no second connection).
    let alice = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    loop {
        alice
            .send(
                c.nodes[1].udp_addr(),
                &message_to(&alice, "bob", "relayed").to_bytes(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(m) = bob.recv(Duration::from_millis(1500)) {
            bob.send(&m.reply(200, "OK"))
                .unwrap_or_else(|e| panic!("{e}"));
            let answer = alice.recv_final(WAIT);
            assert_eq!(answer.as_ref().and_then(RawMessage::status), Some(200));
            break;
        }
        let _ = alice.recv_final(Duration::from_millis(200));
        assert!(start.elapsed() < SETTLE, "the relay never reached bob");
    }

    c.nodes[0].kill();
    let killed = Instant::now();
    assert!(bob.wait_closed(WAIT), "bob's connection died with node1");
    drop(bob);
    let listener =
        TcpListener::bind(bob_addr).unwrap_or_else(|e| panic!("bob listening on {bob_addr}: {e}"));

    alice
        .send(
            c.nodes[1].udp_addr(),
            &message_to(&alice, "bob", "redialled").to_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let sent = Instant::now();
    let mut dialled = TcpPeer::accept(&listener, WAIT)
        .unwrap_or_else(|e| panic!("node2 never dialled bob: {e}\n{}", c.nodes[1].log_tail()));
    bob_answers(&alice, &mut dialled, "redialled");
    eprintln!(
        "measured: MESSAGE to a non-flow TCP binding of a dead holder ({:?} after SIGKILL): \
         dialled and answered 200 in {:?}",
        sent.duration_since(killed),
        sent.elapsed()
    );

    // carol's flow died with node1: 480, not a dial, not a timeout.
    let answer = alice
        .request(
            c.nodes[1].udp_addr(),
            &message_to(&alice, "carol", "flow"),
            WAIT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answer.as_ref().and_then(RawMessage::status),
        Some(480),
        "{answer:?}"
    );

    // dave's address refuses the dial: 480 at once, not after Timer F.
    drop(dave);
    let asked = Instant::now();
    let answer = alice
        .request(
            c.nodes[1].udp_addr(),
            &message_to(&alice, "dave", "nobody listens"),
            WAIT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answer.as_ref().and_then(RawMessage::status),
        Some(480),
        "{answer:?}"
    );
    eprintln!(
        "measured: MESSAGE to a non-flow TCP binding whose address refuses the dial: 480 in {:?}",
        asked.elapsed()
    );

    // Once node1 is declared dead, bob's binding stays (not a flow) and node3 reaches him too
    // (over a connection of its own).
    c.wait(
        "node1 dead at node2 and node3",
        DETECTION_LIMIT + WAIT,
        |c| {
            [1, 2].iter().all(|&i| {
                c.view(i)
                    .is_some_and(|v| state(&v, "node1").as_deref() == Some("dead"))
            })
        },
    );
    let alice3 = UdpPeer::bind(c.nodes[2].ip()).unwrap_or_else(|e| panic!("{e}"));
    alice3
        .send(
            c.nodes[2].udp_addr(),
            &message_to(&alice3, "bob", "after the death").to_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut from3 = TcpPeer::accept(&listener, WAIT)
        .unwrap_or_else(|e| panic!("node3 never dialled bob: {e}\n{}", c.nodes[2].log_tail()));
    bob_answers(&alice3, &mut from3, "after the death");
}
