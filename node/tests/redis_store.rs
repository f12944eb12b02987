//! The node with `--redis`: registrations live in a real `redis-server` or a real 3-master
//! Redis Cluster (`redis+cluster://…`), both started by the test, so they survive a node
//! restart (a MESSAGE, and a SIPp call whose UAS registered before the node was killed), and a
//! Redis outage gives 503 + Retry-After within 1 s, with service back once Redis returns
//! (issue 4).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipmesh_test_support::{
    Harness, RawMessage, RawRequest, RedisCluster, RedisServer, SippTransport, UdpPeer,
    ViaTransport,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

const DOMAIN: &str = "redis.example.com";

fn node(test: &str, url: String) -> Harness {
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
    let req = RawRequest::register(DOMAIN, user, peer.local_addr(), "redis", cseq);
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

/// bob registers through a node on `url` (`test`: names of the two nodes' test dirs); the node
/// is killed and a second one on the same store routes a MESSAGE to bob. `stored` checks the
/// store between the two.
fn a_registration_survives_a_restart_on(test: &str, url: &str, stored: impl FnOnce()) {
    let first = node(&format!("{test}-1"), url.to_owned());
    let bob = bind(&first);
    let ok = register(&bob, first.node().udp_addr(), "bob", 1);
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}\n{}",
        first.node().log_tail()
    );
    stored();
    message_reaches_bob(&first, &bob, "hello before a restart");
    drop(first); // the node process is killed

    let second = node(&format!("{test}-2"), url.to_owned());
    message_reaches_bob(&second, &bob, "hello after a restart");
}

/// SIPp UAS registers as bob, the node on `url` is killed (SIGKILL) and started again on the
/// same ports against the same store; a SIPp call (INVITE/180/200/ACK, BYE along the recorded
/// route) then reaches bob's binding. With the in-memory store the binding would be gone (404).
fn a_call_reaches_a_binding_registered_before_a_crash_on(test: &str, url: String) {
    let mut harness = node(test, url);
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

#[test]
fn a_registration_survives_a_node_restart() {
    let redis = RedisServer::start();
    a_registration_survives_a_restart_on("redis-restart", &redis.url(), || {
        let stored = redis.cli(&["EXISTS", &format!("sipmesh:loc:aor:sip:bob@{DOMAIN}")]);
        assert_eq!(stored.trim(), "1", "AOR key in Redis");
    });
}

#[test]
fn a_registration_on_a_redis_cluster_is_routed_and_survives_a_restart() {
    let cluster = RedisCluster::start("rcluster-node-restart", 3);
    a_registration_survives_a_restart_on("rcluster-restart", &cluster.url(), || {
        // Under the hash-tagged AOR key.
        let stored = cluster.cli(&["EXISTS", &format!("sipmesh:loc:{{sip:bob@{DOMAIN}}}aor")]);
        assert_eq!(stored.trim(), "1", "AOR key in the cluster");
    });
}

#[test]
fn a_call_reaches_a_binding_registered_before_a_crash() {
    let redis = RedisServer::start();
    a_call_reaches_a_binding_registered_before_a_crash_on("redis-restart-call", redis.url());
}

#[test]
fn a_call_over_a_redis_cluster_reaches_a_binding_registered_before_a_crash() {
    let cluster = RedisCluster::start("rcluster-node-call", 3);
    a_call_reaches_a_binding_registered_before_a_crash_on("rcluster-restart-call", cluster.url());
}

#[test]
fn redis_outage_gives_503_fast_and_service_returns() {
    let mut redis = RedisServer::start();
    let harness = node("redis-outage", redis.url());
    let carol = bind(&harness);
    let node_addr = harness.node().udp_addr();
    let ok = register(&carol, node_addr, "carol", 1);
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}"
    );

    redis.stop();
    let asked = Instant::now();
    let refused = register(&carol, node_addr, "carol", 2);
    let took = asked.elapsed();
    assert_eq!(
        refused.as_ref().and_then(RawMessage::status),
        Some(503),
        "{refused:?}"
    );
    assert!(took < Duration::from_secs(1), "503 took {took:?}");
    assert!(
        refused
            .as_ref()
            .and_then(|m| m.header("Retry-After"))
            .is_some(),
        "503 without Retry-After: {refused:?}"
    );

    redis.restart();
    let back = Instant::now();
    let mut cseq = 3;
    loop {
        let answer = register(&carol, node_addr, "carol", cseq);
        if answer.as_ref().and_then(RawMessage::status) == Some(200) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "no 200 within 2 s of Redis returning: {answer:?}\n{}",
            harness.node().log_tail()
        );
        cseq += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
}
