//! A node frozen past its lease loses its flows (issue 5): three real `sipmesh` processes and
//! a real `redis-server`; bob registers over TCP (a flow, `;ob`) at node1, node1 is SIGSTOPped
//! until the others declare it dead and remove its flow bindings, then SIGCONTed. The thawed
//! node finds itself fenced and closes bob's connection, so bob recovers his flow (RFC 5626
//! §4.4.1): he reconnects to node2, registers again and is reachable through every node.

use std::time::{Duration, Instant};

use sipmesh_test_support::{RawMessage, UdpPeer};

mod cluster_support;

use cluster_support::*;

/// How long an answer may take.
const WAIT: Duration = Duration::from_secs(3);

/// How long the cluster may take to serve a flow across nodes (routers published, a thawed
/// node live again).
const SETTLE: Duration = Duration::from_secs(10);

/// How soon after SIGCONT the thawed node must close its connections.
const CLOSE_LIMIT: Duration = Duration::from_millis(1500);

#[test]
fn a_node_thawed_after_being_declared_dead_closes_its_flows_and_the_client_recovers() {
    let c = Cluster::start("cluster-freeze-flows", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let mut bob = register_tcp(&c, 0, "bob", 1, "freeze", WAIT);
    message_reaches(&c, 1, &mut bob, "before the freeze", SETTLE);

    c.nodes[0].freeze(true);
    c.wait(
        "node1 dead and its lease gone",
        Duration::from_secs(8),
        |c| {
            [1, 2].iter().all(|&i| {
                c.view(i).is_some_and(|v| {
                    state(&v, "node1").as_deref() == Some("dead") && epoch(&v, "node1").is_none()
                })
            })
        },
    );
    // While it is frozen its flows count as gone: 480 through the survivors.
    let alice = UdpPeer::bind(c.nodes[2].ip()).unwrap_or_else(|e| panic!("{e}"));
    let frozen = c.wait("480 for bob through node3", WAIT, |_| {
        let answer = alice
            .request(c.nodes[2].udp_addr(), &message(&alice, "frozen"), WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        answer.as_ref().and_then(RawMessage::status) == Some(480)
    });
    eprintln!("measured: 480 through node3 while node1 is frozen ({frozen:?})");
    assert!(!bob.is_closed(), "a frozen node cannot close anything");

    c.nodes[0].freeze(false);
    let thawed = Instant::now();
    assert!(
        bob.wait_closed(CLOSE_LIMIT),
        "node1 kept bob's connection open {CLOSE_LIMIT:?} after SIGCONT, though his flow was \
         removed while it was declared dead\n{}",
        c.nodes[0].log_tail()
    );
    let took = thawed.elapsed();
    eprintln!("measured: node1 closed bob's connection {took:?} after SIGCONT");
    assert!(took < CLOSE_LIMIT, "{took:?}");

    // Until bob registers again, 480 (not a timeout) through a survivor.
    let answer = alice
        .request(c.nodes[2].udp_addr(), &message(&alice, "gone"), WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answer.as_ref().and_then(RawMessage::status),
        Some(480),
        "{answer:?}"
    );

    // bob recovers his flow at node2; node1 rejoins; every node reaches him.
    let mut bob = register_tcp(&c, 1, "bob", 2, "freeze", WAIT);
    c.wait("node1 live again everywhere", SETTLE, |c| all_live(c, &IDS));
    for node in [2, 0, 1] {
        let took = message_reaches(
            &c,
            node,
            &mut bob,
            &format!("after via node{}", node + 1),
            SETTLE,
        );
        eprintln!(
            "measured: after re-registering at node2, MESSAGE via node{}: {took:?}",
            node + 1
        );
    }
}

/// The same when node1 is cut off from its peers (not from Redis): it fences itself as
/// isolated, the majority declares it dead and removes its flows, so node1 closes bob's
/// connection at once, before the majority even acts; after the heal bob registers again at
/// node1 and is reached through every node.
#[test]
fn an_isolated_node_closes_its_flows_and_the_client_recovers_after_the_heal() {
    let c = Cluster::start("cluster-isolated-flows", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let mut bob = register_tcp(&c, 0, "bob", 1, "freeze", WAIT);
    message_reaches(&c, 2, &mut bob, "before the partition", SETTLE);

    let (code, body) = c.nodes[0]
        .admin("POST", "/test/cluster/partition")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    let cut = Instant::now();
    // Isolated within suspect_after + a heartbeat (≤ 1.4 s), then closed within a poll.
    assert!(
        bob.wait_closed(DETECTION_LIMIT),
        "node1 kept bob's connection open {DETECTION_LIMIT:?} after it was cut off\n{}",
        c.nodes[0].log_tail()
    );
    eprintln!(
        "measured: isolated node1 closed bob's connection {:?} after the cut",
        cut.elapsed()
    );
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
    let alice = UdpPeer::bind(c.nodes[2].ip()).unwrap_or_else(|e| panic!("{e}"));
    let answer = alice
        .request(c.nodes[2].udp_addr(), &message(&alice, "cut off"), WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        answer.as_ref().and_then(RawMessage::status),
        Some(480),
        "{answer:?}"
    );

    let (code, body) = c.nodes[0]
        .admin("POST", "/test/cluster/heal")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    c.wait("the mesh healed", SETTLE, |c| all_live(c, &IDS));
    let mut bob = register_until_ok(&c, 0, "bob", 2, "freeze", SETTLE);
    for node in [1, 2, 0] {
        let took = message_reaches(
            &c,
            node,
            &mut bob,
            &format!("healed via node{}", node + 1),
            SETTLE,
        );
        eprintln!(
            "measured: after the heal and re-registering at node1, MESSAGE via node{}: {took:?}",
            node + 1
        );
    }
}
