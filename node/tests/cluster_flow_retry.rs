//! A flow removal the store refuses is queued and done once it takes writes again (issue 5):
//! three real `sipmesh` processes and a real `redis-server`. bob registers over TCP (a flow)
//! at node1; Redis is frozen (SIGSTOP) for about a second, too short for any lease to lapse,
//! and bob's connection closes meanwhile, so node1's removal of his binding times out. Once
//! Redis is back, node1's retry removes it: a binding query through node2 lists none. The same
//! when node1 is fenced (cut off from its peers): the removal refused while fenced is retried
//! once it holds a lease again.

use std::time::{Duration, Instant};

use sipmesh_test_support::{RawRequest, UdpPeer, ViaTransport};

mod cluster_support;

use cluster_support::*;

const WAIT: Duration = Duration::from_secs(3);

/// bob's Contacts as a binding query (REGISTER without Contact) through node `i` lists them.
fn bob_contacts(c: &Cluster, i: usize, peer: &UdpPeer, cseq: u32) -> Option<Vec<String>> {
    let query = RawRequest::new(
        "REGISTER",
        &format!("sip:{DOMAIN}"),
        ViaTransport::Udp,
        peer.local_addr(),
    )
    .set("To", format!("<sip:bob@{DOMAIN}>"))
    .set("From", format!("<sip:bob@{DOMAIN}>;tag=query"))
    .set("Call-ID", "flow-retry-query")
    .set("CSeq", format!("{cseq} REGISTER"));
    let answer = peer
        .request(c.nodes[i].udp_addr(), &query, WAIT)
        .unwrap_or_else(|e| panic!("{e}"))?;
    (answer.status() == Some(200))
        .then(|| answer.header_all("Contact").map(str::to_owned).collect())
}

#[test]
fn a_flow_removal_refused_while_redis_is_frozen_is_done_when_it_is_back() {
    let c = Cluster::start("cluster-flow-retry", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let bob = register_tcp(&c, 0, "bob", 1, "flow-retry", WAIT);
    let peer = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let listed = bob_contacts(&c, 1, &peer, 1).unwrap_or_default();
    assert_eq!(listed.len(), 1, "bob registered: {listed:?}");

    c.redis.freeze(true);
    let frozen = Instant::now();
    drop(bob);
    std::thread::sleep(Duration::from_millis(1100));
    c.redis.freeze(false);
    let thawed = Instant::now();
    eprintln!("Redis frozen for {:?}", thawed.duration_since(frozen));

    let mut cseq = 2;
    let took = c.wait("bob's binding removed by the retry", WAIT, |c| {
        cseq += 1;
        bob_contacts(c, 1, &peer, cseq).is_some_and(|l| l.is_empty())
    });
    eprintln!("measured: refused flow removal done {took:?} after Redis thawed");
    let log = c.nodes[0].log_text();
    assert!(
        log.contains("queued for a retry") && log.contains("queued flow removals done"),
        "node1 queued and retried the removal\n{}",
        c.nodes[0].log_tail()
    );
    for i in 0..3 {
        let v = c.view(i).expect("view");
        assert!(
            v["members"][0]["times_fenced"].as_u64() == Some(0),
            "no node lost its lease: {v}"
        );
    }
}

#[test]
fn a_flow_removal_refused_while_fenced_is_retried_once_the_lease_is_back() {
    let c = Cluster::start("cluster-flow-retry-fenced", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let mut bob = register_tcp(&c, 0, "bob", 1, "flow-retry", WAIT);
    let (code, body) = c.nodes[0]
        .admin("POST", "/test/cluster/partition")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    // Isolated, node1 fences itself and closes bob's connection; the removal is refused.
    assert!(
        bob.wait_closed(DETECTION_LIMIT),
        "node1 kept bob's connection"
    );
    c.wait("the refused removal queued", WAIT, |c| {
        c.nodes[0].log_text().contains("queued for a retry")
    });
    let (code, body) = c.nodes[0]
        .admin("POST", "/test/cluster/heal")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    let healed = Instant::now();
    c.wait("the queued removal done", Duration::from_secs(10), |c| {
        c.nodes[0].log_text().contains("queued flow removals done")
    });
    eprintln!(
        "measured: removal refused while fenced done {:?} after the heal",
        healed.elapsed()
    );
    let peer = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let listed = bob_contacts(&c, 1, &peer, 1);
    assert_eq!(listed, Some(Vec::new()), "bob's dead flow is gone");
}
