//! Dialog failover between real `sipmesh` processes (issue 5, points 4 and 5): calls set up
//! through node2 of three, node2 SIGKILLed: the survivors re-create its dialog actors from the
//! Redis owner index within the detection limit plus one rebalance (admin `actors.dialogs`), a BYE
//! entering at a survivor is answered 200 and removes the record; node2 restarted takes its
//! share back without any dialog running twice, and a BYE during the move still works.
//!
//! The UAs are raw UDP peers, so every Call-ID and tag (hence the Redis key) is known.

mod cluster_support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_support::{Cluster, DOMAIN, IDS, all_live};
use sipmesh_test_support::{RawMessage, RawRequest, UdpPeer, ViaTransport};

const WAIT: Duration = Duration::from_secs(3);
/// Dialogs set up through node2.
const CALLS: usize = 30;

fn redis_cli(c: &Cluster, args: &[&str]) -> Vec<String> {
    let url = c.redis.url();
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let out = Command::new("redis-cli")
        .args(["-p", &port, "--raw"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli (Debian package redis-tools) is needed: {e}"));
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The dialog actors node `i` says it runs (its own entry of `GET /cluster`, `actors.dialogs`).
fn own_count(c: &Cluster, i: usize) -> Option<u64> {
    let v = c.view(i)?;
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["is_self"] == true)?["actors"]["dialogs"]
        .as_u64()
}

fn next_request(peer: &UdpPeer, method: &str) -> Option<(RawMessage, SocketAddr)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (msg, from) = peer.recv_from(left)?;
        if msg.method() == Some(method) {
            return Some((msg, from));
        }
    }
}

fn uas_reply(req: &RawMessage, code: u16, tag: &str, contact: SocketAddr) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} Whatever\r\n");
    for via in req.header_all("Via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    for rr in req.header_all("Record-Route") {
        out.push_str(&format!("Record-Route: {rr}\r\n"));
    }
    for name in ["From", "Call-ID", "CSeq"] {
        out.push_str(&format!(
            "{name}: {}\r\n",
            req.header(name).unwrap_or_default()
        ));
    }
    let to = req.header("To").unwrap_or_default();
    out.push_str(&format!("To: {to};tag={tag}\r\n"));
    out.push_str(&format!(
        "Contact: <sip:bob@{contact}>\r\nContent-Length: 0\r\n\r\n"
    ));
    out.into_bytes()
}

struct Call {
    call_id: String,
    alice_tag: String,
    bob_tag: String,
    route: String,
}

impl Call {
    fn key(&self) -> String {
        format!(
            "sipmesh:dlg:{};{};{}",
            self.call_id, self.alice_tag, self.bob_tag
        )
    }
}

fn register_bob(c: &Cluster, node: usize, bob: &UdpPeer) {
    let contact = bob.local_addr();
    let req = RawRequest::new(
        "REGISTER",
        &format!("sip:{DOMAIN}"),
        ViaTransport::Udp,
        contact,
    )
    .set("To", format!("<sip:bob@{DOMAIN}>"))
    .set("From", format!("<sip:bob@{DOMAIN}>;tag=reg"))
    .header("Contact", format!("<sip:bob@{contact}>"))
    .header("Expires", "600");
    let ok = bob
        .request(c.nodes[node].udp_addr(), &req, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}"
    );
}

/// INVITE alice → node → bob, 200, ACK.
fn place_call(c: &Cluster, node: usize, alice: &UdpPeer, bob: &UdpPeer, n: usize) -> Call {
    let node_addr = c.nodes[node].udp_addr();
    let call_id = format!("fo-{n}@{}", alice.local_addr().ip());
    let invite = RawRequest::new(
        "INVITE",
        &format!("sip:bob@{DOMAIN}"),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .set("From", format!("<sip:alice@{DOMAIN}>;tag=alice-{n}"))
    .set("Call-ID", call_id.clone())
    .header("Contact", format!("<sip:alice@{}>", alice.local_addr()));
    alice.send(node_addr, &invite.to_bytes()).unwrap();
    let Some((inv, from)) = next_request(bob, "INVITE") else {
        panic!("bob got no INVITE\n{}", c.nodes[node].log_tail());
    };
    let route = inv.header("Record-Route").unwrap_or_default().to_owned();
    let bob_tag = format!("bob-{n}");
    bob.send(from, &uas_reply(&inv, 200, &bob_tag, bob.local_addr()))
        .unwrap();
    let fin = alice.recv_final(WAIT).and_then(|m| m.status());
    assert_eq!(fin, Some(200), "call {n}");
    let call = Call {
        call_id,
        alice_tag: format!("alice-{n}"),
        bob_tag,
        route,
    };
    let ack = RawRequest::new(
        "ACK",
        &format!("sip:bob@{}", bob.local_addr()),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .set("Route", call.route.clone())
    .set(
        "From",
        format!("<sip:alice@{DOMAIN}>;tag={}", call.alice_tag),
    )
    .set("To", format!("<sip:bob@{DOMAIN}>;tag={}", call.bob_tag))
    .set("Call-ID", call.call_id.clone())
    .set("CSeq", "1 ACK");
    alice.send(node_addr, &ack.to_bytes()).unwrap();
    assert!(next_request(bob, "ACK").is_some(), "the ACK reached bob");
    call
}

/// Bob hangs up through node `node` (the route set names node2): returns bob's final status.
fn bob_hangs_up(
    c: &Cluster,
    node: usize,
    alice: &UdpPeer,
    bob: &UdpPeer,
    call: &Call,
) -> Option<u16> {
    let bye = RawRequest::new(
        "BYE",
        &format!("sip:alice@{}", alice.local_addr()),
        ViaTransport::Udp,
        bob.local_addr(),
    )
    .set("Route", call.route.clone())
    .set("From", format!("<sip:bob@{DOMAIN}>;tag={}", call.bob_tag))
    .set("To", format!("<sip:alice@{DOMAIN}>;tag={}", call.alice_tag))
    .set("Call-ID", call.call_id.clone())
    .set("CSeq", "2 BYE");
    bob.send(c.nodes[node].udp_addr(), &bye.to_bytes()).unwrap();
    let (got, from) = next_request(alice, "BYE")?;
    alice.send(from, &got.reply(200, "OK")).unwrap();
    bob.recv_final(WAIT).and_then(|m| m.status())
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

fn exists(c: &Cluster, key: &str) -> bool {
    redis_cli(c, &["EXISTS", key]) == ["1"]
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

/// The next request `method` reaching `peer` within `limit`.
fn request_within(peer: &UdpPeer, method: &str, limit: Duration) -> Option<RawMessage> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (msg, from) = peer.recv_from(left)?;
        if msg.method() == Some(method) {
            peer.send(from, &msg.reply(200, "OK")).ok()?;
            return Some(msg);
        }
    }
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
