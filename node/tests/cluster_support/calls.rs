//! Calls between raw UDP UAs through a cluster, for the dialog tests: alice calls bob through
//! a node (INVITE, 200, ACK), every Call-ID and tag known, so the Redis key of the record is
//! too; and `redis-cli` on the cluster's Redis.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use sipmesh_test_support::{RawMessage, RawRequest, UdpPeer, ViaTransport};

use super::{Cluster, DOMAIN};

const WAIT: Duration = Duration::from_secs(3);

pub(crate) fn redis_cli(c: &Cluster, args: &[&str]) -> Vec<String> {
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

pub(crate) fn next_request(peer: &UdpPeer, method: &str) -> Option<(RawMessage, SocketAddr)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (msg, from) = peer.recv_from(left)?;
        if msg.method() == Some(method) {
            return Some((msg, from));
        }
    }
}

pub(crate) fn uas_reply(req: &RawMessage, code: u16, tag: &str, contact: SocketAddr) -> Vec<u8> {
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

pub(crate) struct Call {
    pub(crate) call_id: String,
    pub(crate) alice_tag: String,
    pub(crate) bob_tag: String,
    pub(crate) route: String,
}

impl Call {
    /// An in-dialog UPDATE from `alice` to `bob` (a dialog refresh), CSeq `cseq`.
    pub(crate) fn update(&self, alice: &UdpPeer, bob: &UdpPeer, cseq: u32) -> RawRequest {
        RawRequest::new(
            "UPDATE",
            &format!("sip:bob@{}", bob.local_addr()),
            ViaTransport::Udp,
            alice.local_addr(),
        )
        .set("Route", self.route.clone())
        .set(
            "From",
            format!("<sip:alice@{DOMAIN}>;tag={}", self.alice_tag),
        )
        .set("To", format!("<sip:bob@{DOMAIN}>;tag={}", self.bob_tag))
        .set("Call-ID", self.call_id.clone())
        .set("CSeq", format!("{cseq} UPDATE"))
        .header("Contact", format!("<sip:alice@{}>", alice.local_addr()))
    }

    pub(crate) fn key(&self) -> String {
        format!(
            "sipmesh:dlg:{};{};{}",
            self.call_id, self.alice_tag, self.bob_tag
        )
    }
}

pub(crate) fn register_bob(c: &Cluster, node: usize, bob: &UdpPeer) {
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
pub(crate) fn place_call(
    c: &Cluster,
    node: usize,
    alice: &UdpPeer,
    bob: &UdpPeer,
    n: usize,
) -> Call {
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
pub(crate) fn bob_hangs_up(
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

pub(crate) fn exists(c: &Cluster, key: &str) -> bool {
    redis_cli(c, &["EXISTS", key]) == ["1"]
}

/// The next request `method` reaching `peer` within `limit`.
pub(crate) fn request_within(peer: &UdpPeer, method: &str, limit: Duration) -> Option<RawMessage> {
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
