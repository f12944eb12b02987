//! The node with `--redis redis+sentinel://…` (issue 4): a real master, replica and sentinel
//! (test-support `RedisSentinelSetup`, failover after ~1 s of silence). Users register; the
//! master is SIGKILLed; REGISTERs get 503 + Retry-After (never silence) until the sentinel has
//! promoted the replica, then 200 again without restarting the node; a binding written before
//! the kill (with `--redis-wait-replicas 1`) is on the new master and a MESSAGE reaches it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipmesh_test_support::{
    Harness, RawMessage, RawRequest, RedisSentinelSetup, UdpPeer, ViaTransport,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

const DOMAIN: &str = "sentinel.example.com";

fn register(peer: &UdpPeer, node: SocketAddr, user: &str, cseq: u32) -> Option<RawMessage> {
    let req = RawRequest::register(DOMAIN, user, peer.local_addr(), "sentinel", cseq);
    peer.request(node, &req, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn registrations_survive_a_sentinel_failover() {
    let mut redis = RedisSentinelSetup::start("redis-sentinel-failover");
    let url = redis.url();
    let harness = Harness::try_start(SIPMESH, "redis-sentinel-failover", |o| {
        o.domains.push(DOMAIN.to_owned());
        o.extra_args.extend([
            "--redis".to_owned(),
            url,
            "--redis-wait-replicas".to_owned(),
            "1".to_owned(),
        ]);
        o.log_filter = "info".to_owned();
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let node = harness.node().udp_addr();
    let peer = || UdpPeer::bind(harness.ip()).unwrap_or_else(|e| panic!("{e}"));
    let (bob, carol, alice) = (peer(), peer(), peer());

    let ok = register(&bob, node, "bob", 1);
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}\n{}",
        harness.node().log_tail()
    );

    redis.kill_master();
    let killed = Instant::now();
    let mut cseq = 1;
    let mut refused = 0;
    let recovered = loop {
        cseq += 1;
        let asked = Instant::now();
        let answer = register(&carol, node, "carol", cseq);
        let took = asked.elapsed();
        match answer.as_ref().and_then(RawMessage::status) {
            Some(200) => break killed.elapsed(),
            Some(503) => {
                refused += 1;
                assert!(
                    answer
                        .as_ref()
                        .and_then(|m| m.header("Retry-After"))
                        .is_some(),
                    "503 without Retry-After: {answer:?}"
                );
                assert!(took < Duration::from_millis(1500), "503 took {took:?}");
            }
            _ => panic!(
                "REGISTER during the failover: {answer:?} after {took:?}\n{}",
                harness.node().log_tail()
            ),
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "no 200 within 20 s of the master's death\n{}",
            harness.node().log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "sentinel failover through the node: REGISTER 200 again {recovered:?} after SIGKILL \
         of the master ({refused} × 503 meanwhile)"
    );
    assert!(refused > 0, "the master's death went unnoticed");
    assert_eq!(
        redis.master_port_by_sentinel(),
        Some(redis.replica().port())
    );
    let keys = redis.replica().cli(&["KEYS", "sipmesh:loc:aor:*"]);
    assert!(
        keys.contains("bob@sentinel.example.com"),
        "bob's binding missing on the promoted replica: {keys:?}"
    );

    let message = RawRequest::new(
        "MESSAGE",
        &format!("sip:bob@{DOMAIN}"),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .body("text/plain", "after the failover");
    alice
        .send(node, &message.to_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let Some((delivered, from)) = bob.recv_from(Duration::from_secs(3)) else {
        panic!(
            "the MESSAGE never reached bob\n{}",
            harness.node().log_tail()
        );
    };
    assert_eq!(delivered.body(), b"after the failover");
    bob.send(from, &delivered.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = alice.recv_final(Duration::from_secs(3));
    assert_eq!(answer.as_ref().and_then(RawMessage::status), Some(200));
}
