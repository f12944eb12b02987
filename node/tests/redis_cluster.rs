//! The node with `--redis redis+cluster://…` against a real 3-master Redis Cluster started by
//! the test: a registration is routed (MESSAGE) and survives a node restart, and a SIPp call
//! reaches a binding registered before the node was killed.

use std::net::SocketAddr;
use std::time::Duration;

use sipmesh_test_support::{
    Harness, RawMessage, RawRequest, RedisCluster, SippTransport, UdpPeer, ViaTransport,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

const DOMAIN: &str = "rcluster.example.com";

fn node(test: &str, cluster: &RedisCluster) -> Harness {
    let url = cluster.url();
    Harness::try_start(SIPMESH, test, |o| {
        o.domains.push(DOMAIN.to_owned());
        o.extra_args.extend(["--redis".to_owned(), url]);
        o.log_filter = "info".to_owned();
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn bind(harness: &Harness) -> UdpPeer {
    UdpPeer::bind(harness.ip()).unwrap_or_else(|e| panic!("{e}"))
}

fn register(peer: &UdpPeer, node: SocketAddr, user: &str, cseq: u32) -> Option<RawMessage> {
    let req = RawRequest::register(DOMAIN, user, peer.local_addr(), "rcluster", cseq);
    peer.request(node, &req, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends a MESSAGE for bob through `harness` and checks that bob's peer gets it and the sender
/// the 200.
fn message_reaches_bob(harness: &Harness, bob: &UdpPeer, text: &str) {
    let alice = bind(harness);
    let message = RawRequest::new(
        "MESSAGE",
        &format!("sip:bob@{DOMAIN}"),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .body("text/plain", text);
    alice
        .send(harness.node().udp_addr(), &message.to_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let Some((delivered, from)) = bob.recv_from(Duration::from_secs(3)) else {
        panic!(
            "the MESSAGE never reached bob's binding\n{}",
            harness.node().log_tail()
        );
    };
    assert_eq!(delivered.method(), Some("MESSAGE"));
    assert_eq!(delivered.body(), text.as_bytes());
    bob.send(from, &delivered.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = alice.recv_final(Duration::from_secs(3));
    assert_eq!(
        answer.as_ref().and_then(RawMessage::status),
        Some(200),
        "{answer:?}"
    );
}

#[test]
fn a_registration_on_a_redis_cluster_is_routed_and_survives_a_restart() {
    let cluster = RedisCluster::start("rcluster-node-restart", 3);
    let first = node("rcluster-restart-1", &cluster);
    let bob = bind(&first);
    let ok = register(&bob, first.node().udp_addr(), "bob", 1);
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}\n{}",
        first.node().log_tail()
    );
    // The binding is in the cluster, under the hash-tagged AOR key.
    let stored = cluster.cli(&["EXISTS", &format!("sipmesh:loc:{{sip:bob@{DOMAIN}}}aor")]);
    assert_eq!(stored.trim(), "1", "AOR key in the cluster");
    message_reaches_bob(&first, &bob, "hello over a cluster");
    drop(first); // the node process is killed

    let second = node("rcluster-restart-2", &cluster);
    message_reaches_bob(&second, &bob, "hello after a restart");
}

/// SIPp UAS registers as bob, the node is killed and started again against the same cluster;
/// a SIPp call (INVITE/180/200/ACK, BYE) then reaches bob's binding.
#[test]
fn a_call_over_a_redis_cluster_reaches_a_binding_registered_before_a_crash() {
    let cluster = RedisCluster::start("rcluster-node-call", 3);
    let mut harness = node("rcluster-restart-call", &cluster);
    let transport = SippTransport::Udp;
    let uas = harness.spawn_uas("uas_call.xml", transport);
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), transport));
    if let Err(e) = harness.node_mut().restart() {
        panic!("restarting the node: {e}");
    }
    harness.run_ok(
        harness
            .uac("uac_call.xml", transport)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    match uas.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
}
