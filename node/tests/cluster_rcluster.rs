//! A sipmesh cluster on a Redis Cluster (issues 4/5): three real `sipmesh` processes with
//! `--redis redis+cluster://…` on a real 3-master Redis Cluster (test-support `RedisCluster`).
//!
//! - Dialog takeover (docs/REDIS.md "Dialog owner index on a Cluster"): calls set up through
//!   node2, node2 SIGKILLed; the survivors adopt its dialogs from its owner index
//!   (`sipmesh:dlg:{by-owner:sipmesh:node:node2}`), a BYE entering at a survivor gets 200 and
//!   removes the record, and an adopted dialog's timer still ends it with BYEs to both sides.
//! - Dead-node flow sweep: bob registered over TCP at node1, node1 SIGKILLed; the survivor that
//!   owns the cleanup walks every master for node1's connection sets, removes bob's flow binding
//!   and leaves the closed-flows marker; requests for bob get 480 through either survivor.
//! - The location index repair scan runs once, on one node.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::calls::*;
use cluster_support::{Cluster, DETECTION_LIMIT, IDS, all_live, message};
use sipmesh_test_support::{RawMessage, UdpPeer};

const WAIT: Duration = Duration::from_secs(3);

/// The dialog actors node `i` says it runs (`actors.dialogs` of its own `GET /cluster` entry).
fn own_count(c: &Cluster, i: usize) -> Option<u64> {
    let v = c.view(i)?;
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["is_self"] == true)?["actors"]["dialogs"]
        .as_u64()
}

/// A command through the Redis Cluster (`redis-cli -c`), output lines.
fn rcli(c: &Cluster, args: &[&str]) -> Vec<String> {
    let rc = c.rcluster.as_ref().expect("a Redis Cluster");
    rc.cli(args)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The record key of `call` on a Cluster (hash-tagged).
fn record_key(call: &Call) -> String {
    format!(
        "sipmesh:dlg:{{{};{};{}}}",
        call.call_id, call.alice_tag, call.bob_tag
    )
}

fn record_exists(c: &Cluster, call: &Call) -> bool {
    rcli(c, &["EXISTS", &record_key(call)]) == ["1"]
}

/// The keys in node `id`'s owner index.
fn index_len(c: &Cluster, id: &str) -> u64 {
    rcli(
        c,
        &[
            "SCARD",
            &format!("sipmesh:dlg:{{by-owner:sipmesh:node:{id}}}"),
        ],
    )
    .first()
    .and_then(|n| n.parse().ok())
    .unwrap_or(0)
}

/// Starts three nodes on a fresh Redis Cluster and waits for the full mesh.
fn start(test: &str, args: &[&str]) -> Cluster {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let c = Cluster::start_on_redis_cluster(test, 3, &args);
    c.wait("a full live mesh", Duration::from_secs(15), |c| {
        all_live(c, &IDS)
    });
    c
}

#[test]
fn a_killed_nodes_dialogs_are_adopted_by_the_survivors_on_a_redis_cluster() {
    const CALLS: usize = 12;
    let mut c = start("rcluster-dialogs", &[]);
    let alice = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let bob = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_bob(&c, 1, &bob);
    let calls: Vec<Call> = (0..CALLS)
        .map(|n| place_call(&c, 1, &alice, &bob, n))
        .collect();
    c.wait("every dialog counted once and indexed", WAIT, |c| {
        let sum: u64 = (0..3).filter_map(|i| own_count(c, i)).sum();
        let indexed: u64 = IDS.iter().map(|id| index_len(c, id)).sum();
        sum == CALLS as u64 && indexed == CALLS as u64
    });
    let on_node2 = own_count(&c, 1).unwrap_or(0);
    assert!(on_node2 > 0, "node2 runs dialog actors");
    assert!(index_len(&c, "node2") > 0, "node2's index lists them");

    c.nodes[1].kill();
    let killed = Instant::now();
    c.wait(
        "the survivors running node2's dialog actors",
        Duration::from_secs(8),
        |c| [0, 2].iter().filter_map(|&i| own_count(c, i)).sum::<u64>() == CALLS as u64,
    );
    let took = killed.elapsed();
    eprintln!(
        "measured (Redis Cluster): {on_node2} dialogs of a SIGKILLed node ({CALLS} in the cluster) running on the survivors {took:?} after the kill"
    );
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");
    c.wait("node2's index emptied by the adopters' writes", WAIT, |c| {
        index_len(c, "node2") == 0
    });
    for call in &calls {
        assert!(record_exists(&c, call), "record of {} kept", call.call_id);
    }

    // BYEs through a survivor end dialogs set up through node2.
    for (i, call) in calls.iter().enumerate() {
        let via = if i % 2 == 0 { 0 } else { 2 };
        assert_eq!(
            bob_hangs_up(&c, via, &alice, &bob, call),
            Some(200),
            "BYE of {} via node{}",
            call.call_id,
            via + 1
        );
    }
    c.wait("every record and index entry gone", WAIT, |c| {
        calls.iter().all(|call| !record_exists(c, call))
            && IDS.iter().map(|id| index_len(c, id)).sum::<u64>() == 0
    });
}

#[test]
fn an_adopted_dialog_times_out_with_a_bye_to_both_sides_on_a_redis_cluster() {
    let mut c = start("rcluster-timeout", &["--dialog-timeout", "6"]);
    let alice = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let bob = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_bob(&c, 1, &bob);
    let call = place_call(&c, 1, &alice, &bob, 0);
    let placed = Instant::now();
    c.wait("the record in Redis", WAIT, |c| record_exists(c, &call));
    c.nodes[1].kill();
    c.wait(
        "a survivor running the dialog",
        Duration::from_secs(6),
        |c| [0, 2].iter().filter_map(|&i| own_count(c, i)).sum::<u64>() == 1,
    );
    let to_alice = request_within(&alice, "BYE", Duration::from_secs(8));
    let to_bob = request_within(&bob, "BYE", Duration::from_secs(2));
    let at = placed.elapsed();
    assert!(
        to_alice.is_some() && to_bob.is_some(),
        "BYE to alice {to_alice:?}, to bob {to_bob:?}\n{}\n{}",
        c.nodes[0].log_tail(),
        c.nodes[2].log_tail()
    );
    eprintln!(
        "measured (Redis Cluster): adopted dialog (timeout 6 s) ended with BYEs to both sides {at:?} after setup"
    );
    c.wait("the record gone", WAIT, |c| !record_exists(c, &call));
}

#[test]
fn a_killed_nodes_tcp_flows_are_swept_on_a_redis_cluster_and_get_480() {
    let mut c = start("rcluster-flows", &[]);
    let _bob = cluster_support::register_tcp(&c, 0, "bob", 1, "rflows", WAIT);
    let aor_key = format!("sipmesh:loc:{{sip:bob@{}}}aor", cluster_support::DOMAIN);
    let closed_key = format!("sipmesh:loc:{{sip:bob@{}}}closed", cluster_support::DOMAIN);
    assert_eq!(
        rcli(&c, &["EXISTS", &aor_key]),
        ["1"],
        "bob's binding stored"
    );

    c.nodes[0].kill();
    let killed = Instant::now();
    c.wait("node1 declared dead", DETECTION_LIMIT + WAIT, |c| {
        [1, 2].iter().all(|&i| {
            c.view(i)
                .is_some_and(|v| cluster_support::state(&v, "node1").as_deref() == Some("dead"))
        })
    });
    let declared = killed.elapsed();
    let swept = c.wait("bob's flow binding removed", WAIT, |c| {
        rcli(c, &["EXISTS", &aor_key]) == ["0"]
    });
    assert_eq!(
        rcli(&c, &["EXISTS", &closed_key]),
        ["1"],
        "closed-flows marker left"
    );
    eprintln!(
        "measured (Redis Cluster): node1's flow binding removed {swept:?} after its death was declared ({declared:?} after the kill)"
    );
    for node in [1, 2] {
        let alice = UdpPeer::bind(c.nodes[node].ip()).unwrap_or_else(|e| panic!("{e}"));
        let sent = Instant::now();
        let answer = alice
            .request(c.nodes[node].udp_addr(), &message(&alice, "dead"), WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            answer.as_ref().and_then(RawMessage::status),
            Some(480),
            "via node{}: {answer:?}",
            node + 1
        );
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "{:?}",
            sent.elapsed()
        );
        eprintln!(
            "measured (Redis Cluster): MESSAGE to the swept user via node{}: 480 in {:?}",
            node + 1,
            sent.elapsed()
        );
    }
}
