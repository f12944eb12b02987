//! The `sipmesh` binary on IPv6 loopback (`--listen udp:[::1]:PORT --listen tcp:[::1]:PORT`):
//! OPTIONS over both transports gets 200, and a REGISTER then a MESSAGE routed between two
//! IPv6 user agents works over UDP and over TCP (RFC 3261 §19.1.1 bracketed IPv6 references in
//! URIs and Via, RFC 5118).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sipmesh_test_support::{
    Harness, RawClient, RawMessage, RawRequest, SipmeshNode, ViaTransport, free_port,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// How long an answer may take.
const WAIT: Duration = Duration::from_secs(3);

/// `::1`.
const LOOPBACK6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Starts a node listening on `[::1]` only (UDP and TCP on one free port), with no shutdown
/// grace so teardown is quick.
fn start(test: &str) -> Harness {
    let started = Harness::try_start_with_config(SIPMESH, test, "shutdown_grace = 0\n", |o| {
        o.ip = LOOPBACK6;
        let port = free_port(LOOPBACK6);
        o.udp_port = port;
        o.tcp_port = port;
    });
    match started {
        Ok(harness) => harness,
        Err(e) => panic!("cannot start an IPv6 node for {test}: {e}"),
    }
}

/// A raw IPv6 client of `node`.
fn client(node: &SipmeshNode, transport: ViaTransport) -> RawClient {
    match RawClient::connect(transport, LOOPBACK6, node) {
        Ok(c) => c,
        Err(e) => panic!("cannot open an IPv6 {transport:?} client: {e}"),
    }
}

/// The node's address for `transport`.
fn node_addr(node: &SipmeshNode, transport: ViaTransport) -> SocketAddr {
    match transport {
        ViaTransport::Udp => node.udp_addr(),
        ViaTransport::Tcp => node.tcp_addr(),
    }
}

/// Fails with the request, the answer and the node's log.
fn fail(harness: &Harness, what: &str, request: &RawRequest, got: Option<&RawMessage>) -> ! {
    let got = got.map_or_else(|| "<no answer>".to_owned(), ToString::to_string);
    panic!(
        "{what}\n--- sent ---\n{}\n--- got ---\n{got}\n--- node log ({}) ---\n{}",
        String::from_utf8_lossy(&request.to_bytes()),
        harness.node().log_path().display(),
        harness.node().log_tail()
    );
}

/// Sends `request` from `c` and checks the final answer is `code`.
fn expect_status(harness: &Harness, c: &mut RawClient, request: &RawRequest, code: u16) {
    match c.request(request, WAIT) {
        Ok(Some(answer)) if answer.status() == Some(code) => {}
        Ok(other) => fail(
            harness,
            &format!("expected {code}"),
            request,
            other.as_ref(),
        ),
        Err(e) => fail(harness, &format!("cannot send: {e}"), request, None),
    }
}

#[test]
fn options_over_udp_and_tcp() {
    let harness = start("ipv6-options");
    for transport in [ViaTransport::Udp, ViaTransport::Tcp] {
        let mut c = client(harness.node(), transport);
        assert!(c.local_addr().is_ipv6());
        let node_uri = format!("sip:{}", node_addr(harness.node(), transport));
        assert!(node_uri.starts_with("sip:[::1]:"), "{node_uri}");
        let request = c.new_request("OPTIONS", &node_uri);
        expect_status(&harness, &mut c, &request, 200);
    }
}

/// bob registers `sip:bob@[::1]:port` over `transport`; alice's MESSAGE to bob's AOR is
/// delivered to bob's IPv6 address, and bob's 200 reaches alice.
fn register_then_message(test: &str, transport: ViaTransport) {
    let harness = start(test);
    let node = node_addr(harness.node(), transport);
    let aor = format!("sip:bob@{node}");

    let mut bob = client(harness.node(), transport);
    let contact = format!(
        "sip:bob@{};transport={}",
        bob.local_addr(),
        transport.param()
    );
    let registration = bob
        .new_request("REGISTER", &format!("sip:{node}"))
        .set("To", format!("<{aor}>"))
        .set("From", format!("<{aor}>;tag=bob6"))
        .header("Contact", format!("<{contact}>"))
        .header("Expires", "3600");
    expect_status(&harness, &mut bob, &registration, 200);

    let mut alice = client(harness.node(), transport);
    let message = alice
        .new_request("MESSAGE", &aor)
        .body("text/plain", "hello over IPv6");
    if let Err(e) = alice.send(&message.to_bytes()) {
        panic!("cannot send: {e}");
    }
    let Some(delivered) = bob.recv(WAIT) else {
        fail(&harness, "nothing reached bob", &message, None);
    };
    if delivered.method() != Some("MESSAGE") || delivered.body() != b"hello over IPv6" {
        fail(
            &harness,
            "bob got something else",
            &message,
            Some(&delivered),
        );
    }
    // The node's own Via names its IPv6 address in brackets (RFC 5118 §4.5).
    let top_via = delivered.header("Via").unwrap_or_default();
    if !top_via.contains("[::1]") {
        fail(
            &harness,
            "the node's Via has no [::1]",
            &message,
            Some(&delivered),
        );
    }
    if let Err(e) = bob.send(&delivered.reply(200, "OK")) {
        panic!("bob cannot answer: {e}");
    }
    match alice.recv_final(WAIT) {
        Some(answer) if answer.status() == Some(200) => {}
        other => fail(
            &harness,
            "alice did not get bob's 200",
            &message,
            other.as_ref(),
        ),
    }
}

#[test]
fn register_then_message_udp() {
    register_then_message("ipv6-message-udp", ViaTransport::Udp);
}

#[test]
fn register_then_message_tcp() {
    register_then_message("ipv6-message-tcp", ViaTransport::Tcp);
}
