//! Bad input and limits against the real `sipmesh` binary, with hand-made SIP from std sockets:
//! oversized messages (513, RFC 3261 §18.1.1/§21.5.14), missing or inconsistent mandatory
//! headers (400, §8.2.2/§16.3 step 1), Max-Forwards 0 (483, §16.3 step 3), unknown Require
//! and Proxy-Require (420, §8.2.2.3/§16.3 step 5), unknown URI schemes (416, §8.2.2.1), an
//! unknown SIP version (505, §8.2.2), malformed responses (silently dropped, §18.1.2 /
//! RFC 4475), truncated bodies over UDP (§18.3), loops (482, §16.3 step 4), foreign domains
//! (403), delivery over the TCP connection a user registered on (RFC 5626 §5.3 behaviour for
//! connection reuse), and a flood of garbage datagrams.
//!
//! Each case runs over UDP and TCP where the transport matters, on its own node.

use std::net::SocketAddr;
use std::time::Duration;

use sipmesh_test_support::{
    Harness, RawClient, RawMessage, RawRequest, TcpPeer, UdpPeer, ViaTransport,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// How long an answer may take.
const WAIT: Duration = Duration::from_secs(3);

/// How long silence must last to count as "no answer".
const QUIET: Duration = Duration::from_millis(1000);

/// The message-size limit configured for the oversize cases.
const MAX_MESSAGE_SIZE: usize = 2048;

/// Config of every node here: no grace period on SIGTERM, so tearing a test down does not wait
/// for the Completed-state timers of the transactions the test left behind.
const QUICK_STOP: &str = "shutdown_grace = 0\n";

/// Starts a node for `test` with [`QUICK_STOP`] and `extra` config lines (panics with the
/// reason when it cannot).
fn start_with(test: &str, extra: &str) -> Harness {
    let config = format!("{QUICK_STOP}{extra}");
    match Harness::try_start_with_config(SIPMESH, test, &config, |_| {}) {
        Ok(harness) => harness,
        Err(e) => panic!("cannot start the node for {test}: {e}"),
    }
}

/// Starts a node for `test` (panics with the reason when it cannot).
fn start(test: &str) -> Harness {
    start_with(test, "")
}

/// A raw client of the harness's node over `transport`.
fn client(harness: &Harness, transport: ViaTransport) -> RawClient {
    match RawClient::connect(transport, harness.ip(), harness.node()) {
        Ok(client) => client,
        Err(e) => panic!("cannot open a {transport:?} client: {e}"),
    }
}

/// The node's address for `transport`.
fn node_addr(harness: &Harness, transport: ViaTransport) -> SocketAddr {
    match transport {
        ViaTransport::Udp => harness.node().udp_addr(),
        ViaTransport::Tcp => harness.node().tcp_addr(),
    }
}

/// `sip:user@node` (or `sip:node` for an empty user) for the node's `transport` address.
fn uri(harness: &Harness, transport: ViaTransport, user: &str) -> String {
    let addr = node_addr(harness, transport);
    if user.is_empty() {
        format!("sip:{addr}")
    } else {
        format!("sip:{user}@{addr}")
    }
}

/// Fails the test with the request, what came back and the node's log.
fn fail(harness: &Harness, what: &str, request: &RawRequest, got: Option<&RawMessage>) -> ! {
    let got = got.map_or_else(|| "<no answer>".to_owned(), ToString::to_string);
    panic!(
        "{what}\n--- sent ---\n{}\n--- got ---\n{got}\n--- node log ({}) ---\n{}",
        String::from_utf8_lossy(&request.to_bytes()),
        harness.node().log_path().display(),
        harness.node().log_tail()
    );
}

/// Sends `request` and returns the final answer, failing the test when there is none.
fn exchange(harness: &Harness, client: &mut RawClient, request: &RawRequest) -> RawMessage {
    match client.request(request, WAIT) {
        Ok(Some(answer)) => answer,
        Ok(None) => fail(harness, "no final answer", request, None),
        Err(e) => fail(harness, &format!("cannot send: {e}"), request, None),
    }
}

/// Sends `request` and checks the final answer has status `code`; returns it.
fn expect_status(
    harness: &Harness,
    client: &mut RawClient,
    request: &RawRequest,
    code: u16,
) -> RawMessage {
    let answer = exchange(harness, client, request);
    if answer.status() != Some(code) {
        fail(harness, &format!("expected {code}"), request, Some(&answer));
    }
    answer
}

/// The node answers a fresh UDP OPTIONS with 200, is still running and has not panicked.
fn assert_alive(harness: &mut Harness) {
    let mut probe = client(harness, ViaTransport::Udp);
    let request = probe.new_request("OPTIONS", &uri(harness, ViaTransport::Udp, ""));
    // A few tries: after a flood the socket buffer may still be full of garbage.
    let mut answer = None;
    for _ in 0..5 {
        if let Ok(Some(got)) = probe.request(&request, Duration::from_secs(1)) {
            answer = Some(got);
            break;
        }
    }
    if answer.as_ref().and_then(RawMessage::status) != Some(200) {
        fail(
            harness,
            "the node no longer answers OPTIONS with 200",
            &request,
            answer.as_ref(),
        );
    }
    assert!(
        harness.node_mut().is_running(),
        "the node exited\n{}",
        harness.node().log_tail()
    );
    assert_no_panic(harness);
}

/// The node's log shows no panic.
fn assert_no_panic(harness: &Harness) {
    let log = harness.node().log_text();
    assert!(
        !log.contains("panicked"),
        "the node panicked; log {}:\n{}",
        harness.node().log_path().display(),
        harness.node().log_tail()
    );
}

/// Runs `case(test_name, transport)` as a `udp` and a `tcp` test in a module named `$name`.
macro_rules! over_udp_and_tcp {
    ($($name:ident => $case:expr;)*) => {$(
        mod $name {
            use super::*;

            #[test]
            fn udp() {
                ($case)(concat!("bad-", stringify!($name), "-udp"), ViaTransport::Udp);
            }

            #[test]
            fn tcp() {
                ($case)(concat!("bad-", stringify!($name), "-tcp"), ViaTransport::Tcp);
            }
        }
    )*};
}

over_udp_and_tcp! {
    missing_call_id => |test, t| missing_header(test, t, "Call-ID");
    missing_from => |test, t| missing_header(test, t, "From");
    missing_to => |test, t| missing_header(test, t, "To");
    missing_cseq => |test, t| missing_header(test, t, "CSeq");
    cseq_method_mismatch => cseq_method_mismatch;
    max_forwards_zero_to_user => max_forwards_zero_to_user;
    unknown_require_on_register => unknown_require_on_register;
    proxy_require_on_proxied_request => proxy_require_on_proxied_request;
    unknown_uri_scheme => unknown_uri_scheme;
    unknown_sip_version => unknown_sip_version;
    malformed_response_is_dropped => malformed_response_is_dropped;
    loop_is_detected => loop_is_detected;
    foreign_domain_is_refused => foreign_domain_is_refused;
    oversized_request => oversized_request;
}

/// A request without `header` gets 400 whose reason phrase names the header.
fn missing_header(test: &str, transport: ViaTransport, header: &str) {
    let harness = start(test);
    let mut c = client(&harness, transport);
    let request = c
        .new_request("OPTIONS", &uri(&harness, transport, ""))
        .without(header);
    let answer = expect_status(&harness, &mut c, &request, 400);
    if !answer.reason().contains(header) {
        fail(
            &harness,
            &format!("the reason phrase does not name {header}"),
            &request,
            Some(&answer),
        );
    }
}

/// `CSeq: 1 INVITE` on an OPTIONS: 400 naming CSeq (RFC 3261 §8.1.1.5).
fn cseq_method_mismatch(test: &str, transport: ViaTransport) {
    let harness = start(test);
    let mut c = client(&harness, transport);
    let request = c
        .new_request("OPTIONS", &uri(&harness, transport, ""))
        .set("CSeq", "1 INVITE");
    let answer = expect_status(&harness, &mut c, &request, 400);
    if !answer.reason().contains("CSeq") {
        fail(
            &harness,
            "the reason phrase does not name CSeq",
            &request,
            Some(&answer),
        );
    }
}

/// A MESSAGE for a user with Max-Forwards 0: 483 (RFC 3261 §16.3 step 3).
fn max_forwards_zero_to_user(test: &str, transport: ViaTransport) {
    let harness = start(test);
    let mut c = client(&harness, transport);
    let request = c
        .new_request("MESSAGE", &uri(&harness, transport, "bob"))
        .set("Max-Forwards", "0")
        .body("text/plain", "hop limit");
    expect_status(&harness, &mut c, &request, 483);
}

/// A REGISTER for alice from `c`, binding `contact`.
fn register(harness: &Harness, c: &RawClient, user: &str, contact: &str) -> RawRequest {
    let transport = c.transport();
    let aor = uri(harness, transport, user);
    c.new_request("REGISTER", &uri(harness, transport, ""))
        .set("To", format!("<{aor}>"))
        .set("From", format!("<{aor}>;tag=reg{}", c.local_addr().port()))
        .header("Contact", format!("<{contact}>"))
        .header("Expires", "3600")
}

/// REGISTER with `Require: path, <unknown>`: 420 with exactly the unknown tag in Unsupported
/// (RFC 3261 §8.2.2.3).
fn unknown_require_on_register(test: &str, transport: ViaTransport) {
    const TAG: &str = "x-sipmesh-no-such-extension";
    let harness = start(test);
    let mut c = client(&harness, transport);
    let contact = format!(
        "sip:alice@{};transport={}",
        c.local_addr(),
        transport.param()
    );
    // `path` (RFC 3327) is supported by the registrar: only the unknown tag may be listed.
    let request =
        register(&harness, &c, "alice", &contact).header("Require", format!("path, {TAG}"));
    let answer = expect_status(&harness, &mut c, &request, 420);
    let unsupported: Vec<&str> = answer
        .header_all("Unsupported")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if unsupported != [TAG] {
        fail(
            &harness,
            "Unsupported must list exactly the unknown tag",
            &request,
            Some(&answer),
        );
    }
}

/// A MESSAGE to a registered user with `Proxy-Require: <unknown>`: 420 listing the tag
/// (RFC 3261 §16.3 step 5), and nothing reaches the user.
fn proxy_require_on_proxied_request(test: &str, transport: ViaTransport) {
    const TAG: &str = "x-sipmesh-no-such-proxy-extension";
    let harness = start(test);
    let mut bob = client(&harness, transport);
    let contact = format!(
        "sip:bob@{};transport={}",
        bob.local_addr(),
        transport.param()
    );
    let registration = register(&harness, &bob, "bob", &contact);
    expect_status(&harness, &mut bob, &registration, 200);
    let mut c = client(&harness, transport);
    let request = c
        .new_request("MESSAGE", &uri(&harness, transport, "bob"))
        .header("Proxy-Require", TAG)
        .body("text/plain", "needs an extension");
    let answer = expect_status(&harness, &mut c, &request, 420);
    if !answer.header_all("Unsupported").any(|v| v.contains(TAG)) {
        fail(
            &harness,
            "Unsupported must list exactly the unknown tag",
            &request,
            Some(&answer),
        );
    }
    if let Some(leaked) = bob.recv(Duration::from_millis(300)) {
        fail(
            &harness,
            "the request was forwarded anyway",
            &request,
            Some(&leaked),
        );
    }
}

/// A Request-URI with a scheme the node does not handle: 416 (RFC 3261 §8.2.2.1).
fn unknown_uri_scheme(test: &str, transport: ViaTransport) {
    let harness = start(test);
    let mut c = client(&harness, transport);
    let request = c
        .new_request("MESSAGE", "xmpp:bob@example.com")
        .set("To", format!("<{}>", uri(&harness, transport, "bob")))
        .body("text/plain", "wrong scheme");
    expect_status(&harness, &mut c, &request, 416);
}

/// `SIP/7.0` in the Request-Line: 505 (RFC 3261 §8.2.2, RFC 4475 §3.1.2.18); 400 is the
/// tolerated alternative. Which one is printed for the report.
fn unknown_sip_version(test: &str, transport: ViaTransport) {
    let harness = start(test);
    let mut c = client(&harness, transport);
    let request = c
        .new_request("OPTIONS", &uri(&harness, transport, ""))
        .version("SIP/7.0");
    let answer = exchange(&harness, &mut c, &request);
    match answer.status() {
        Some(505) => eprintln!("SIP/7.0 over {transport:?}: 505 {}", answer.reason()),
        Some(400) => eprintln!("SIP/7.0 over {transport:?}: 400 {}", answer.reason()),
        _ => fail(&harness, "expected 505 (or 400)", &request, Some(&answer)),
    }
}

/// Garbage status lines are dropped without an answer, and the node keeps serving.
fn malformed_response_is_dropped(test: &str, transport: ViaTransport) {
    let mut harness = start(test);
    let mut c = client(&harness, transport);
    let local = c.local_addr();
    let probe = c.new_request("OPTIONS", &uri(&harness, transport, ""));
    for status_line in [
        "SIP/2.0 2x0 Garbage",
        "SIP/2.0 OK",
        "SIP/2.0 99999 Too Long",
        "SIP/2.0",
        "SIP/2.0 -200 Negative",
    ] {
        let garbage = format!(
            "{status_line}\r\nVia: SIP/2.0/{} {local};branch=z9hG4bK-garbage\r\n\
             From: <sip:a@{local}>;tag=1\r\nTo: <sip:b@{local}>;tag=2\r\n\
             Call-ID: garbage@{local}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            transport.token()
        );
        if let Err(e) = c.send(garbage.as_bytes()) {
            panic!("cannot send {status_line:?}: {e}");
        }
    }
    if let Some(answer) = c.recv(QUIET) {
        fail(
            &harness,
            "a malformed response was answered",
            &probe,
            Some(&answer),
        );
    }
    assert_alive(&mut harness);
}

/// bob's only binding points at the node itself: the MESSAGE comes back to the node carrying
/// the node's own Via with an unchanged loop hash, and the caller gets 482 (RFC 3261 §16.3
/// step 4).
fn loop_is_detected(test: &str, transport: ViaTransport) {
    let harness = start(test);
    let mut c = client(&harness, transport);
    let node = node_addr(&harness, transport);
    let contact = format!("sip:looper@{node};transport={}", transport.param());
    let registration = register(&harness, &c, "looper", &contact);
    expect_status(&harness, &mut c, &registration, 200);
    let request = c
        .new_request("MESSAGE", &contact)
        .body("text/plain", "round and round");
    expect_status(&harness, &mut c, &request, 482);
}

/// A request for a domain that is not the node's: 403 (no open relay).
fn foreign_domain_is_refused(test: &str, transport: ViaTransport) {
    let harness = start(test);
    let mut c = client(&harness, transport);
    let request = c
        .new_request("MESSAGE", "sip:bob@foreign.example.com")
        .body("text/plain", "relay me");
    expect_status(&harness, &mut c, &request, 403);
}

/// With `max_message_size = 2048`: a request just under the limit gets 200, one over it gets
/// 513 (on TCP the node then closes the connection), and the node keeps serving.
fn oversized_request(test: &str, transport: ViaTransport) {
    let mut harness = start_with(test, &format!("max_message_size = {MAX_MESSAGE_SIZE}\n"));
    let node_uri = uri(&harness, transport, "");
    let mut c = client(&harness, transport);
    let small = c
        .new_request("OPTIONS", &node_uri)
        .body("text/plain", vec![b'a'; 1024]);
    assert!(small.to_bytes().len() < MAX_MESSAGE_SIZE);
    expect_status(&harness, &mut c, &small, 200);
    let big = c
        .new_request("OPTIONS", &node_uri)
        .body("text/plain", vec![b'x'; 3 * MAX_MESSAGE_SIZE / 2]);
    assert!(big.to_bytes().len() > MAX_MESSAGE_SIZE);
    expect_status(&harness, &mut c, &big, 513);
    if let Some(tcp) = c.tcp() {
        if !tcp.wait_closed(WAIT) {
            fail(
                &harness,
                "the TCP connection stayed open after 513",
                &big,
                None,
            );
        }
        // A new connection is served.
        let mut again = client(&harness, transport);
        let request = again.new_request("OPTIONS", &node_uri);
        expect_status(&harness, &mut again, &request, 200);
    }
    assert_alive(&mut harness);
}

/// UDP: Content-Length larger than the datagram (RFC 3261 §18.3): 400 or silence, never a
/// crash. Which one is printed for the report.
#[test]
fn truncated_body_udp() {
    let mut harness = start("bad-truncated-body-udp");
    let mut c = client(&harness, ViaTransport::Udp);
    let request = c
        .new_request("OPTIONS", &uri(&harness, ViaTransport::Udp, ""))
        .body("text/plain", "only a few octets")
        .set("Content-Length", "500");
    if let Err(e) = c.send(&request.to_bytes()) {
        panic!("cannot send: {e}");
    }
    match c.recv_final(QUIET) {
        None => eprintln!("truncated body over UDP: silence"),
        Some(answer) if answer.status() == Some(400) => {
            eprintln!("truncated body over UDP: 400 {}", answer.reason());
        }
        Some(other) => fail(&harness, "expected 400 or silence", &request, Some(&other)),
    }
    assert_alive(&mut harness);
}

/// bob registers from a TCP connection whose Contact names that connection's own address
/// (nothing listens there); a MESSAGE from a UDP client reaches bob over that same connection,
/// and bob's 200 goes back to the caller.
#[test]
fn tcp_registered_user_is_reached_over_its_connection() {
    let harness = start("bad-tcp-registered-user");
    let mut bob = client(&harness, ViaTransport::Tcp);
    let contact = format!("sip:bob@{};transport=tcp", bob.local_addr());
    let registration = register(&harness, &bob, "bob", &contact);
    expect_status(&harness, &mut bob, &registration, 200);

    let caller = match UdpPeer::bind(harness.ip()) {
        Ok(peer) => peer,
        Err(e) => panic!("{e}"),
    };
    let request = RawRequest::new(
        "MESSAGE",
        &uri(&harness, ViaTransport::Udp, "bob"),
        ViaTransport::Udp,
        caller.local_addr(),
    )
    .body("text/plain", "hello over your own connection");
    if let Err(e) = caller.send(harness.node().udp_addr(), &request.to_bytes()) {
        panic!("cannot send: {e}");
    }
    let Some(delivered) = bob.recv(WAIT) else {
        fail(
            &harness,
            "nothing arrived on bob's TCP connection",
            &request,
            None,
        );
    };
    if delivered.method() != Some("MESSAGE")
        || delivered.body() != b"hello over your own connection"
    {
        fail(
            &harness,
            "bob got something else",
            &request,
            Some(&delivered),
        );
    }
    let Some(tcp) = bob.tcp() else {
        panic!("bob is a TCP client");
    };
    if let Err(e) = tcp.send(&delivered.reply(200, "OK")) {
        panic!("cannot answer: {e}");
    }
    match caller.recv_final(WAIT) {
        Some(answer) if answer.status() == Some(200) => {}
        other => fail(
            &harness,
            "the caller did not get bob's 200",
            &request,
            other.as_ref(),
        ),
    }
}

/// 2,000 datagrams of garbage (random octets, broken start lines, lying Content-Lengths,
/// header lines without colons, NULs), then the node still answers OPTIONS with 200, still
/// runs and never panicked.
#[test]
fn garbage_flood_udp() {
    let mut harness = start("bad-garbage-flood-udp");
    let sender = match UdpPeer::bind(harness.ip()) {
        Ok(peer) => peer,
        Err(e) => panic!("{e}"),
    };
    let target = harness.node().udp_addr();
    let local = sender.local_addr();
    let mut rng = Lcg(0x005e_ed0f_5193);
    for i in 0..2000u32 {
        let datagram = garbage(&mut rng, i, local);
        if let Err(e) = sender.send(target, &datagram) {
            panic!("cannot send garbage datagram {i}: {e}");
        }
        if i % 200 == 199 {
            // Let the node's reader keep up a little, so the flood is read rather than dropped
            // by the kernel.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The node really read the flood: the garbage requests whose Via still parses (the
    // negative Content-Length kind) are answered with 400 (RFC 3261 §21.4.1).
    let mut answered = 0;
    while let Some(answer) = sender.recv(Duration::from_millis(500)) {
        if answer.status() == Some(400) {
            answered += 1;
        }
    }
    eprintln!("garbage flood: {answered} answers with 400");
    assert!(
        answered > 0,
        "no garbage request was answered: did the node read the flood?\n{}",
        harness.node().log_tail()
    );
    assert_alive(&mut harness);
}

/// A small deterministic generator (Knuth's MMIX LCG) for the garbage.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next() % n.max(1)).unwrap_or(0)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next() & 0xff) as u8).collect()
    }
}

/// One garbage datagram; the kind cycles with `i`.
fn garbage(rng: &mut Lcg, i: u32, local: SocketAddr) -> Vec<u8> {
    let via = format!("Via: SIP/2.0/UDP {local};branch=z9hG4bK-flood-{i}\r\n");
    match i % 8 {
        0 => {
            let len = 1 + rng.below(1400);
            rng.bytes(len)
        }
        1 => {
            let mut d = b"INVITE sip:".to_vec();
            let len = rng.below(600);
            d.extend(rng.bytes(len));
            d
        }
        2 => format!(
            "SIP/2.0 {} Whatever\r\n{via}Content-Length: {}\r\n\r\n",
            rng.below(1000),
            rng.below(100_000)
        )
        .into_bytes(),
        3 => {
            format!("OPTIONS sip:x SIP/2.0\r\n{via}no colon here\r\n\0\0\0\r\nCSeq: x y z\r\n\r\n")
                .into_bytes()
        }
        4 => format!(
            "MESSAGE sip:bob@{local} SIP/2.0\r\n{via}Content-Length: -5\r\nCall-ID: {}\r\n\r\nbody",
            "x".repeat(rng.below(1200))
        )
        .into_bytes(),
        5 => {
            let mut d = format!("REGISTER sip:{local} SIP/2.0\r\n{via}").into_bytes();
            let len = rng.below(900);
            d.extend(rng.bytes(len));
            d.extend_from_slice(b"\r\n\r\n");
            d
        }
        6 => b"\r\n\r\n".to_vec(),
        _ => {
            let mut d = format!(
                "BYE sip:bob@{local} SIP/2.0\r\n{via}From: <sip:a@b>;tag=\r\nTo: <<<sip:\r\n\
                 Call-ID: \r\nCSeq: 99999999999999999999 BYE\r\nMax-Forwards: 300\r\n\
                 Content-Length: 4\r\n\r\n"
            )
            .into_bytes();
            let len = rng.below(8);
            d.extend(rng.bytes(len));
            d
        }
    }
}

/// Sanity of the raw TCP helper against the node: an OPTIONS over TCP gets 200 on the same
/// connection (the reference point for every TCP case above).
#[test]
fn options_over_tcp_gets_200() {
    let harness = start("bad-options-tcp");
    let mut peer = match TcpPeer::connect(harness.node().tcp_addr(), WAIT) {
        Ok(peer) => peer,
        Err(e) => panic!("{e}"),
    };
    let request = RawRequest::new(
        "OPTIONS",
        &uri(&harness, ViaTransport::Tcp, ""),
        ViaTransport::Tcp,
        peer.local_addr(),
    );
    match peer.request(&request, WAIT) {
        Ok(Some(answer)) if answer.status() == Some(200) => {}
        Ok(other) => fail(&harness, "expected 200", &request, other.as_ref()),
        Err(e) => panic!("{e}"),
    }
}

/// Like the MESSAGE case with an INVITE: bob (registered from a TCP connection) gets the INVITE
/// on that connection, answers 486, the caller gets the 486, and the node's ACK for that
/// non-2xx final response (RFC 3261 §17.1.1.3) comes back on the same connection.
#[test]
fn tcp_registered_user_gets_invite_and_ack_over_its_connection() {
    let harness = start("bad-tcp-registered-user-invite");
    let mut bob = client(&harness, ViaTransport::Tcp);
    let contact = format!("sip:bob@{};transport=tcp", bob.local_addr());
    let registration = register(&harness, &bob, "bob", &contact);
    expect_status(&harness, &mut bob, &registration, 200);

    let mut caller = client(&harness, ViaTransport::Udp);
    let invite = caller
        .new_request("INVITE", &uri(&harness, ViaTransport::Udp, "bob"))
        .header("Contact", format!("<sip:alice@{}>", caller.local_addr()))
        .body(
            "application/sdp",
            "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
        );
    if let Err(e) = caller.send(&invite.to_bytes()) {
        panic!("cannot send: {e}");
    }
    let Some(delivered) = bob.recv(WAIT) else {
        fail(&harness, "no INVITE on bob's TCP connection", &invite, None);
    };
    if delivered.method() != Some("INVITE") {
        fail(
            &harness,
            "bob got something else",
            &invite,
            Some(&delivered),
        );
    }
    if let Err(e) = bob.send(&delivered.reply(486, "Busy Here")) {
        panic!("cannot answer: {e}");
    }
    match caller.recv_final(WAIT) {
        Some(answer) if answer.status() == Some(486) => {}
        other => fail(
            &harness,
            "the caller did not get 486",
            &invite,
            other.as_ref(),
        ),
    }
    match bob.recv(WAIT) {
        Some(ack) if ack.method() == Some("ACK") => {}
        other => fail(
            &harness,
            "no ACK for the 486 on bob's connection",
            &invite,
            other.as_ref(),
        ),
    }
}

/// Garbage on one TCP connection (random octets, then an endless header line) affects only
/// that connection: another connection opened before it is still served, and so is UDP.
#[test]
fn garbage_over_tcp_spares_other_connections() {
    let mut harness = start("bad-garbage-tcp");
    let mut good = client(&harness, ViaTransport::Tcp);
    let mut bad = client(&harness, ViaTransport::Tcp);
    let mut rng = Lcg(0x00ba_d7c9);
    let mut junk = rng.bytes(4096);
    junk.extend_from_slice(b"\r\n\r\nOPTIONS sip:x SIP/2.0\r\nX-Endless: ");
    junk.extend(std::iter::repeat_n(b'y', 128 * 1024));
    // The node may close the connection part-way: a failed write is fine.
    let _ = bad.send(&junk);
    let request = good.new_request("OPTIONS", &uri(&harness, ViaTransport::Tcp, ""));
    expect_status(&harness, &mut good, &request, 200);
    assert_alive(&mut harness);
}
