//! A frozen (not dead) flow holder costs one delivery timeout, not one per request (issue 5):
//! three real `sipmesh` processes and a real `redis-server`; bob registers over TCP (a flow) at
//! node1 and node1 is SIGSTOPped. The first MESSAGE to bob through node2 may wait for the
//! delivery timeout (1.5 s) before its 480; node2 then holds node1 suspect, so the next ones
//! are answered 480 at once, before the cluster even declares node1 dead. After SIGCONT bob
//! re-registers at node1 and is reached through node2 again (the breaker was cleared).

use std::time::{Duration, Instant};

use sipmesh_test_support::{RawMessage, UdpPeer};

mod cluster_support;

use cluster_support::*;

/// How long an answer may take.
const WAIT: Duration = Duration::from_secs(3);
/// How long the cluster may take to serve a flow across nodes again.
const SETTLE: Duration = Duration::from_secs(10);
/// A fast 480: well under the delivery timeout (1.5 s), with room for a loaded machine.
const FAST: Duration = Duration::from_millis(1000);
/// How long the first request may take: the delivery timeout, plus a loaded machine.
const FIRST_WAIT: Duration = Duration::from_secs(6);

#[test]
fn requests_to_a_frozen_holders_flow_get_480_at_once_after_the_first_timeout() {
    let c = Cluster::start("cluster-suspect", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let mut bob = register_tcp(&c, 0, "bob", 1, "suspect", WAIT);
    message_reaches(&c, 1, &mut bob, "before the freeze", SETTLE);

    let alice = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let ask = |text: &str, wait: Duration| {
        let sent = Instant::now();
        let answer = alice
            .request(c.nodes[1].udp_addr(), &message(&alice, text), wait)
            .unwrap_or_else(|e| panic!("{e}"));
        (answer.as_ref().and_then(RawMessage::status), sent.elapsed())
    };

    c.nodes[0].freeze(true);
    let frozen = Instant::now();
    let (status, first) = ask("first while frozen", FIRST_WAIT);
    assert_eq!(
        status,
        Some(480),
        "first request while node1 is frozen ({first:?})\n{}",
        c.nodes[1].log_tail()
    );
    eprintln!("measured: first MESSAGE to a frozen holder's flow: 480 after {first:?}");
    for n in 0..3 {
        let dead_yet = c
            .view(1)
            .is_some_and(|v| state(&v, "node1").as_deref() == Some("dead"));
        let (status, took) = ask(&format!("next {n} while frozen"), WAIT);
        eprintln!(
            "measured: MESSAGE {} while frozen ({:?} after SIGSTOP, node1 dead at node2: {dead_yet}): {status:?} after {took:?}",
            n + 2,
            frozen.elapsed()
        );
        assert_eq!(status, Some(480));
        assert!(
            took < FAST,
            "request {} to the frozen holder's flow took {took:?}\n{}",
            n + 2,
            c.nodes[1].log_tail()
        );
    }

    c.nodes[0].freeze(false);
    assert!(
        bob.wait_closed(Duration::from_millis(1500)),
        "the thawed node1 keeps bob's connection"
    );
    let mut bob = register_until_ok(&c, 0, "bob", 2, "suspect", SETTLE);
    c.wait("node1 live again everywhere", SETTLE, |c| all_live(c, &IDS));
    let took = message_reaches(&c, 1, &mut bob, "after the thaw", SETTLE);
    eprintln!("measured: after SIGCONT and re-registering at node1, MESSAGE via node2: {took:?}");
    assert!(took < FAST, "delivery after the thaw took {took:?}");
}
