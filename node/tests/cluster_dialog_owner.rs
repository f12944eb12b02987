//! Per-dialog ownership (issue 5) with three real `sipmesh` processes and a real
//! `redis-server`:
//!
//! - a call whose placement owner is node1, set up through node2, moves to node1 right after
//!   the 2xx (node2 hands it over on node1's owner channel; the record's `claim` names node1,
//!   node1 runs the dialog timer, node2 none); a BYE through node3 stops node1's actor at once
//!   (the removal tells node1), `actors.dialogs` back to 0 well within 1 s;
//! - a stale owner: node2 is made to adopt a call node1 runs (an `adopt` notice on node2's
//!   channel, what a hand-over or a lagging view gives), so both run an owner actor. An
//!   in-dialog refresh through node1 is refused as node1's owner write (`STALE_OWNER`) and
//!   stored as a visitor's (the claim stays node2's, node1's actor stops timing it); at the
//!   dialog timeout exactly one BYE pair goes out (from node2, the claimant, or from node1 if
//!   a rebalance gave the dialog back to its placement owner meanwhile).

use std::time::{Duration, Instant};

use sipmesh_cluster::NodeId;
use sipmesh_cluster::placement::owner_of;
use sipmesh_test_support::UdpPeer;

mod cluster_support;

use cluster_support::calls::*;
use cluster_support::*;

const WAIT: Duration = Duration::from_secs(3);

/// The first call number from `from` whose dialog `node` owns among node1..3.
fn owned_by(alice: &UdpPeer, node: &str, from: usize) -> usize {
    let members: Vec<NodeId> = IDS
        .iter()
        .map(|id| NodeId::new(id).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    (from..)
        .find(|n| {
            let key = format!("dlg:fo-{n}@{}", alice.local_addr().ip());
            owner_of(key.as_bytes(), &members).map(NodeId::as_str) == Some(node)
        })
        .unwrap_or(from)
}

/// The dialog actors (timers) node `i` runs, from its own view (read live).
fn timers(c: &Cluster, i: usize) -> Option<u64> {
    let v = c.view(i)?;
    member(&v, IDS[i])?["actors"]["dialogs"].as_u64()
}

/// The record's owner claim (`<lease key>/<epoch>`), empty when none.
fn claim(c: &Cluster, call: &Call) -> String {
    redis_cli(c, &["HGET", &call.key(), "claim"])
        .first()
        .cloned()
        .unwrap_or_default()
}

fn claimed_by(c: &Cluster, call: &Call, node: &str) -> bool {
    claim(c, call).starts_with(&format!("sipmesh:node:{node}/"))
}

#[test]
fn a_dialog_confirmed_at_a_non_owner_moves_to_its_owner_and_a_bye_elsewhere_stops_it() {
    let c = Cluster::start("dialog-owner", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let alice = UdpPeer::bind(c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    let bob = UdpPeer::bind(c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_bob(&c, 0, &bob);

    // Setup cost: calls through their owner vs through a non-owner (INVITE … 200, ACK).
    let mut n = 0;
    let mut through_owner = Vec::new();
    let mut through_other = Vec::new();
    for _ in 0..3 {
        n = owned_by(&alice, "node1", n + 1);
        let start = Instant::now();
        let call = place_call(&c, 0, &alice, &bob, n);
        through_owner.push(start.elapsed());
        assert_eq!(bob_hangs_up(&c, 0, &alice, &bob, &call), Some(200));
        n = owned_by(&alice, "node1", n + 1);
        let start = Instant::now();
        let call = place_call(&c, 1, &alice, &bob, n);
        through_other.push(start.elapsed());
        c.wait("the hand-over", WAIT, |c| claimed_by(c, &call, "node1"));
        assert_eq!(bob_hangs_up(&c, 1, &alice, &bob, &call), Some(200));
    }
    eprintln!(
        "measured: call setup through the owner {through_owner:?}, through node2 {through_other:?}"
    );
    c.wait("no dialog actors left", WAIT, |c| {
        (0..3).all(|i| timers(c, i) == Some(0))
    });

    // A call owned by node1, set up through node2: node1 runs it right after the 2xx.
    n = owned_by(&alice, "node1", n + 1);
    let call = place_call(&c, 1, &alice, &bob, n);
    let answered = Instant::now();
    let moved = c.wait("the record claimed by node1", WAIT, |c| {
        claimed_by(c, &call, "node1")
    });
    eprintln!("measured: claim moved to the owner {moved:?} after the 200/ACK");
    let index = redis_cli(
        &c,
        &[
            "SISMEMBER",
            "sipmesh:dlg:by-owner:sipmesh:node:node1",
            &call.key(),
        ],
    );
    assert_eq!(index, ["1"], "the record is in node1's owner index");
    c.wait("node1 runs the dialog, node2 does not", WAIT, |c| {
        timers(c, 0) == Some(1) && timers(c, 1) == Some(0) && timers(c, 2) == Some(0)
    });
    eprintln!(
        "measured: node1 runs the dialog, node2 none, {:?} after the 200/ACK",
        answered.elapsed()
    );

    // BYE through node3: the record goes and node1's actor stops at once.
    assert_eq!(bob_hangs_up(&c, 2, &alice, &bob, &call), Some(200));
    let bye_done = Instant::now();
    c.wait("the BYE's removal of the record", WAIT, |c| {
        !exists(c, &call.key())
    });
    c.wait("node1's actor stopped", Duration::from_secs(1), |c| {
        timers(c, 0) == Some(0)
    });
    eprintln!(
        "measured: node1's dialog count back to 0 {:?} after the BYE through node3",
        bye_done.elapsed()
    );
}

/// An UPDATE from alice through node `node`, answered 200 by bob.
fn refresh(c: &Cluster, node: usize, alice: &UdpPeer, bob: &UdpPeer, call: &Call, cseq: u32) {
    let update = call.update(alice, bob, cseq);
    alice
        .send(c.nodes[node].udp_addr(), &update.to_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let (got, from) = next_request(bob, "UPDATE").unwrap_or_else(|| panic!("bob got no UPDATE"));
    bob.send(from, &got.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = alice.recv_final(WAIT).and_then(|m| m.status());
    assert_eq!(answer, Some(200), "UPDATE {cseq}");
}

/// The dialog lines of every node's log.
fn dialog_logs(c: &Cluster) -> String {
    c.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let text = n.log_text();
            let lines: Vec<&str> = text.lines().filter(|l| l.contains("dialog")).collect();
            format!("node{}:\n{}", i + 1, lines.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n-----\n")
}

/// Makes node2 adopt `call` (the notice a hand-over sends), and waits for its claim.
fn node2_adopts(c: &Cluster, call: &Call) {
    let notice = format!("adopt {}", call.key());
    redis_cli(
        c,
        &[
            "PUBLISH",
            "sipmesh:dlg:by-owner:sipmesh:node:node2",
            &notice,
        ],
    );
    c.wait("node2's claim", WAIT, |c| claimed_by(c, call, "node2"));
}

#[test]
fn a_stale_owner_of_one_dialog_writes_nothing_as_owner_and_sends_no_bye() {
    let c = Cluster::start_with(
        "dialog-stale",
        3,
        &["--dialog-timeout".to_owned(), "3".to_owned()],
    );
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let alice = UdpPeer::bind(c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    let bob = UdpPeer::bind(c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_bob(&c, 0, &bob);

    // Call A: node1 owns and runs it; node2 adopts it too (two acting owners).
    let n = owned_by(&alice, "node1", 0);
    let call = place_call(&c, 0, &alice, &bob, n);
    c.wait("node1's claim", WAIT, |c| claimed_by(c, &call, "node1"));
    node2_adopts(&c, &call);
    c.wait("two owner actors", WAIT, |c| {
        timers(c, 0) == Some(1) && timers(c, 1) == Some(1)
    });
    // A refresh through node1: its owner write is refused; it is stored as a visitor's.
    let before = claim(&c, &call);
    refresh(&c, 0, &alice, &bob, &call, 2);
    c.wait("node1 stops timing the dialog", WAIT, |c| {
        timers(c, 0) == Some(0)
    });
    assert_eq!(claim(&c, &call), before, "the claim stays node2's");
    assert_eq!(
        redis_cli(&c, &["HGET", &call.key(), "caller_cseq"]),
        ["2"],
        "the refresh was stored (as a visitor's)"
    );
    assert!(
        c.nodes[0]
            .log_tail()
            .contains("another node owns the dialog now"),
        "node1 says why\n{}",
        c.nodes[0].log_tail()
    );

    // At the timeout one node ends the call: one BYE to each end.
    let bye = request_within(&alice, "BYE", Duration::from_secs(3) + WAIT)
        .unwrap_or_else(|| panic!("no BYE to alice\n{}", dialog_logs(&c)));
    assert_eq!(bye.header("Call-ID"), Some(call.call_id.as_str()));
    assert!(request_within(&bob, "BYE", WAIT).is_some(), "BYE to bob");
    assert!(
        request_within(&alice, "BYE", Duration::from_secs(1)).is_none(),
        "a second BYE to alice: two owners ended the call"
    );
    assert!(!exists(&c, &call.key()));
    c.wait("no dialog actors left", WAIT, |c| {
        timers(c, 0) == Some(0) && timers(c, 1) == Some(0)
    });
}
