//! The dialog timer lives with the dialog's owner and sees refreshes made through any node
//! (issue 5): three real `sipmesh` processes (`--dialog-timeout 4`) and a real
//! `redis-server`. A call whose placement owner is node1 is set up through node1, then
//! refreshed (UPDATE, 200) only through node2, every 1.5 s for 6 s: node2 applies them with a
//! visitor (no second timer), node1's timer reads the refreshed record and re-arms, so nobody
//! sends a BYE until 4 s after the last refresh. A second call owned by node1 is hung up
//! through node3: node1's actor finds the record gone at its timeout and sends no BYE.

use std::time::{Duration, Instant};

use sipmesh_cluster::NodeId;
use sipmesh_cluster::placement::owner_of;
use sipmesh_test_support::{RawMessage, UdpPeer};

mod cluster_support;

use cluster_support::calls::*;
use cluster_support::*;

const WAIT: Duration = Duration::from_secs(3);
/// `--dialog-timeout`.
const TIMEOUT: Duration = Duration::from_secs(4);
const REFRESH_EVERY: Duration = Duration::from_millis(1500);
const REFRESHES: u32 = 4;

/// The call number `n` whose dialog node1 owns among node1..3 (`place_call`'s Call-IDs).
fn owned_by_node1(alice: &UdpPeer, from: usize) -> usize {
    let members: Vec<NodeId> = IDS
        .iter()
        .map(|id| NodeId::new(id).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    (from..)
        .find(|n| {
            let key = format!("dlg:fo-{n}@{}", alice.local_addr().ip());
            owner_of(key.as_bytes(), &members).map(NodeId::as_str) == Some("node1")
        })
        .unwrap_or(from)
}

/// Alice refreshes the call with an UPDATE through node `node`; bob answers 200. Panics on a
/// BYE to either of them (the dialog must not have timed out).
fn refresh(c: &Cluster, node: usize, alice: &UdpPeer, bob: &UdpPeer, call: &Call, cseq: u32) {
    let update = call.update(alice, bob, cseq);
    alice
        .send(c.nodes[node].udp_addr(), &update.to_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let (got, from) = bob
        .recv_from(WAIT)
        .unwrap_or_else(|| panic!("bob got no UPDATE {cseq}"));
    assert_eq!(got.method(), Some("UPDATE"), "bob got {got:?} (timed out?)");
    bob.send(from, &got.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = alice
        .recv_from(WAIT)
        .map(|(m, _)| m)
        .unwrap_or_else(|| panic!("alice got no answer to UPDATE {cseq}"));
    assert_eq!(answer.status(), Some(200), "alice got {answer:?}");
}

/// The dialog actors (timers) node `i` runs.
fn timers(c: &Cluster, i: usize) -> Option<u64> {
    let v = c.view(i)?;
    member(&v, IDS[i])?["actors"]["dialogs"].as_u64()
}

#[test]
fn a_dialog_refreshed_only_through_another_node_does_not_time_out_at_its_owner() {
    let c = Cluster::start_with(
        "dialog-refresh",
        3,
        &["--dialog-timeout".to_owned(), "4".to_owned()],
    );
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let alice = UdpPeer::bind(c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    let bob = UdpPeer::bind(c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_bob(&c, 0, &bob);

    // Call 2 first: hung up through node3 at once; node1's timer must find it gone.
    let n2 = owned_by_node1(&alice, 100);
    let hung = place_call(&c, 0, &alice, &bob, n2);
    assert_eq!(bob_hangs_up(&c, 2, &alice, &bob, &hung), Some(200));
    c.wait("call 2's record gone", WAIT, |c| !exists(c, &hung.key()));

    let n1 = owned_by_node1(&alice, 0);
    let call = place_call(&c, 0, &alice, &bob, n1);
    let placed = Instant::now();
    c.wait("the record in Redis", WAIT, |c| exists(c, &call.key()));
    let mut last = placed;
    for i in 0..REFRESHES {
        let at = placed + REFRESH_EVERY * (i + 1);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        refresh(&c, 1, &alice, &bob, &call, 2 + i);
        last = Instant::now();
        assert_eq!(timers(&c, 1), Some(0), "node2 runs no dialog timer");
        assert_eq!(timers(&c, 2), Some(0), "node3 runs no dialog timer");
    }
    assert_eq!(timers(&c, 0), Some(1), "node1 runs call 1 only");
    eprintln!(
        "measured: refreshed through node2 for {:?} past setup, {:?} past node1's first timeout",
        last.duration_since(placed),
        last.duration_since(placed + TIMEOUT)
    );

    // No more refreshes: the dialog times out 4 s after the last one, with BYEs to both.
    let bye = alice
        .recv_from(TIMEOUT + WAIT)
        .unwrap_or_else(|| panic!("no BYE to alice\n{}", c.nodes[0].log_tail()));
    let after = last.elapsed();
    let (bye, from) = bye;
    assert_eq!(bye.method(), Some("BYE"), "{bye:?}");
    assert_eq!(
        bye.header("Call-ID"),
        Some(call.call_id.as_str()),
        "{bye:?}"
    );
    alice
        .send(from, &bye.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("measured: BYE {after:?} after the last refresh (timeout {TIMEOUT:?})");
    assert!(
        after >= TIMEOUT - Duration::from_millis(500),
        "BYE {after:?} after the last refresh: the refreshes were not seen"
    );
    let to_bob = bob.recv_from(WAIT).map(|(m, _)| m);
    assert_eq!(
        to_bob.as_ref().and_then(RawMessage::method),
        Some("BYE"),
        "{to_bob:?}"
    );
    c.wait("call 1's record gone", WAIT, |c| !exists(c, &call.key()));
    c.wait("no dialog timer left", WAIT, |c| timers(c, 0) == Some(0));
}
