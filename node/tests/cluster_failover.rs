//! Dialog failover between real `sipmesh` processes (issue 5, points 4 and 5): calls set up
//! through node2 of three, node2 SIGKILLed: the survivors re-create its dialog actors from the
//! Redis owner index within the detection limit plus one rebalance (admin `actors.dialogs`), a BYE
//! entering at a survivor is answered 200 and removes the record; node2 restarted takes its
//! share back without any dialog running twice, and a BYE during the move still works.
//!
//! The UAs are raw UDP peers, so every Call-ID and tag (hence the Redis key) is known.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::calls::*;
use cluster_support::{Cluster, IDS, all_live};
use sipmesh_test_support::UdpPeer;

const WAIT: Duration = Duration::from_secs(3);
/// Dialogs set up through node2.
const CALLS: usize = 30;

/// The dialog actors node `i` says it runs (its own entry of `GET /cluster`, `actors.dialogs`).
fn own_count(c: &Cluster, i: usize) -> Option<u64> {
    let v = c.view(i)?;
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["is_self"] == true)?["actors"]["dialogs"]
        .as_u64()
}

/// The record keys in all three owner indexes.
fn indexed_total(c: &Cluster) -> u64 {
    IDS.iter()
        .map(|id| {
            redis_cli(
                c,
                &["SCARD", &format!("sipmesh:dlg:by-owner:sipmesh:node:{id}")],
            )
            .first()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
        })
        .sum()
}

#[test]
fn a_killed_nodes_dialogs_move_to_the_survivors_and_back_after_its_restart() {
    let mut c = Cluster::start("failover-dialogs", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let alice = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let bob = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_bob(&c, 1, &bob);
    let calls: Vec<Call> = (0..CALLS)
        .map(|n| place_call(&c, 1, &alice, &bob, n))
        .collect();
    let index = "sipmesh:dlg:by-owner:sipmesh:node:node2";
    // Every dialog runs on exactly one node (a node that finished settling just now may have
    // moved some to their placement owners already).
    c.wait("the dialog actors counted once each", WAIT, |c| {
        let sum: u64 = (0..3).filter_map(|i| own_count(c, i)).sum();
        sum == CALLS as u64
            && indexed_total(c) == CALLS as u64
            && (0..3).all(|i| own_count(c, i) == Some(index_len(c, IDS[i])))
    });
    let on_node2 = own_count(&c, 1).unwrap_or(0);
    assert!(on_node2 > 0, "node2 runs dialog actors");

    // SIGKILL node2: the survivors adopt its dialogs.
    c.nodes[1].kill();
    let killed = Instant::now();
    c.wait(
        "the survivors running node2's dialog actors",
        Duration::from_secs(6),
        |c| {
            let sum: u64 = [0, 2].iter().filter_map(|&i| own_count(c, i)).sum();
            sum == CALLS as u64
        },
    );
    let took = killed.elapsed();
    eprintln!(
        "measured: {on_node2} dialogs of a SIGKILLed node ({CALLS} in the cluster) all running on the survivors {took:?} after the kill"
    );
    assert!(took < Duration::from_secs(4), "takeover took {took:?}");
    assert_eq!(
        redis_cli(&c, &["SCARD", index]),
        ["0"],
        "node2's index emptied"
    );
    for call in &calls {
        assert!(exists(&c, &call.key()), "record of {} kept", call.call_id);
    }
    // The other views count the peers too (published counts).
    let view = c.view(0).expect("view");
    let node3 = cluster_support::member(&view, "node3").expect("node3");
    assert!(node3["actors"]["dialogs"].as_u64().is_some(), "{view}");
    assert!(node3["owned_actors"].as_u64().is_some(), "{view}");

    // A BYE through a survivor ends a dialog that was set up through node2.
    assert_eq!(bob_hangs_up(&c, 0, &alice, &bob, &calls[0]), Some(200));
    c.wait("the ended dialog's record gone", WAIT, |c| {
        !exists(c, &calls[0].key())
    });

    // Restart node2: its share moves back; a BYE during the move works.
    c.nodes[1]
        .restart()
        .unwrap_or_else(|e| panic!("restarting node2: {e}"));
    assert_eq!(bob_hangs_up(&c, 2, &alice, &bob, &calls[1]), Some(200));
    c.wait("node2 back in the mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let left = CALLS as u64 - 2;
    let back = c.wait(
        "node2 running its share again",
        Duration::from_secs(6),
        |c| own_count(c, 1).is_some_and(|n| n > 0),
    );
    eprintln!("measured: restarted node2 running its share {back:?} after the mesh was whole");
    // No dialog runs twice: the counts add up to the dialogs left (the actors of the two
    // ended dialogs may linger on a node that did not see their BYE until their timeout).
    c.wait("the counts adding up", Duration::from_secs(4), |c| {
        let sum: u64 = (0..3).filter_map(|i| own_count(c, i)).sum();
        (left..=left + 2).contains(&sum)
    });
    let indexed = indexed_total(&c);
    assert_eq!(
        indexed, left,
        "every live record in exactly one owner index"
    );
    for call in &calls[2..] {
        assert_eq!(bob_hangs_up(&c, 1, &alice, &bob, call), Some(200));
    }
    c.wait("every record gone", WAIT, |c| {
        calls.iter().all(|call| !exists(c, &call.key()))
    });
}

/// The record keys in the owner index of member `id`.
fn index_len(c: &Cluster, id: &str) -> u64 {
    redis_cli(
        c,
        &["SCARD", &format!("sipmesh:dlg:by-owner:sipmesh:node:{id}")],
    )
    .first()
    .and_then(|n| n.parse::<u64>().ok())
    .unwrap_or(0)
}

#[test]
fn a_member_without_a_lease_for_prune_after_leaves_the_registry_and_the_view() {
    let mut c = Cluster::start_with(
        "failover-prune",
        3,
        &["--cluster-prune-after".to_owned(), "2".to_owned()],
    );
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    c.nodes[2].kill();
    let killed = Instant::now();
    c.wait(
        "node3 pruned from both views",
        Duration::from_secs(10),
        |c| {
            (0..2).all(|i| {
                c.view(i)
                    .is_some_and(|v| cluster_support::member(&v, "node3").is_none())
            })
        },
    );
    eprintln!(
        "measured: SIGKILLed member pruned (prune_after 2 s) {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(
        redis_cli(&c, &["HEXISTS", "sipmesh:members", "node3"]),
        ["0"]
    );
    // A pruned member that comes back registers again.
    c.nodes[2]
        .restart()
        .unwrap_or_else(|e| panic!("restarting node3: {e}"));
    c.wait("node3 back", Duration::from_secs(10), |c| all_live(c, &IDS));
}

#[test]
fn an_adopted_dialog_still_times_out_with_a_bye_to_both_sides() {
    let mut c = Cluster::start_with(
        "failover-timeout",
        3,
        &["--dialog-timeout".to_owned(), "6".to_owned()],
    );
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let alice = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let bob = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_bob(&c, 1, &bob);
    let call = place_call(&c, 1, &alice, &bob, 0);
    let placed = Instant::now();
    c.wait("the record in Redis", WAIT, |c| exists(c, &call.key()));
    c.nodes[1].kill();
    c.wait(
        "a survivor running the dialog",
        Duration::from_secs(5),
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
        "measured: adopted dialog (timeout 6 s) ended with BYEs to both sides {at:?} after setup"
    );
    c.wait("the record gone", WAIT, |c| !exists(c, &call.key()));
}
