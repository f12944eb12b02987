//! Process lifecycle of the `sipmesh` binary: it answers the `OPTIONS` readiness probe on both
//! listen addresses' UDP side and shuts down gracefully on SIGTERM, letting a ringing call
//! complete within the grace period while new requests are turned away.

use std::time::{Duration, Instant};

use sipmesh_test_support::{
    Harness, RawClient, RawMessage, RawRequest, SippTransport, UdpPeer, ViaTransport, options_ping,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

#[test]
fn answers_options_then_exits_on_sigterm() {
    let mut harness = Harness::start(SIPMESH, "lifecycle-sigterm");
    let addr = harness.node().udp_addr();
    assert!(
        options_ping(harness.ip(), addr, Duration::from_secs(2)),
        "no 200 to OPTIONS"
    );
    harness.node().sigterm();
    let status = match harness.node_mut().wait_exit(Duration::from_secs(10)) {
        Ok(status) => status,
        Err(e) => panic!("{e}\n--- node log ---\n{}", harness.node().log_tail()),
    };
    assert!(
        status.success(),
        "exit status {status}\n--- node log ---\n{}",
        harness.node().log_tail()
    );
}

/// The default grace period (`shutdown_grace`, 5 s).
const GRACE: Duration = Duration::from_secs(5);

/// How many new requests are sent while the node drains.
const DRAIN_PROBES: usize = 8;

/// Slack on top of the grace period for process exit and polling.
const EXIT_SLACK: Duration = Duration::from_millis(1500);

/// SIGTERM while a call rings: the INVITE transaction still completes (the UAS answers after
/// 3 s and the 200 reaches the UAC), a new request during the drain gets 503 (or no answer:
/// printed for the report), and the node exits 0 within the grace period. The call runs over
/// `transport`; the late requests use UDP.
fn sigterm_during_ringing(test: &str, transport: SippTransport) {
    let mut harness = Harness::start(SIPMESH, test);
    let uas = match harness
        .uas("uas_call.xml", transport)
        .duration_ms(3000)
        .spawn()
    {
        Ok(uas) => uas,
        Err(e) => panic!("cannot start the UAS: {e}"),
    };
    if let Err(e) = uas.wait_listening() {
        panic!("UAS did not bind: {e}");
    }
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), transport));

    let raw_transport = match transport {
        SippTransport::Udp => ViaTransport::Udp,
        SippTransport::Tcp | SippTransport::TcpMulti => ViaTransport::Tcp,
        SippTransport::Tls => panic!("the raw client speaks no TLS"),
    };
    let mut uac = match RawClient::connect(raw_transport, harness.ip(), harness.node()) {
        Ok(c) => c,
        Err(e) => panic!("cannot open the UAC: {e}"),
    };
    let node_for_call = harness.node().addr(transport);
    let invite = uac
        .new_request("INVITE", &format!("sip:bob@{node_for_call}"))
        .header(
            "Contact",
            format!(
                "<sip:alice@{};transport={}>",
                uac.local_addr(),
                raw_transport.param()
            ),
        )
        .body("application/sdp", SDP);
    if let Err(e) = uac.send(&invite.to_bytes()) {
        panic!("cannot send the INVITE: {e}");
    }
    let ringing = Instant::now() + Duration::from_secs(3);
    loop {
        let left = ringing.saturating_duration_since(Instant::now());
        match uac.recv(left) {
            Some(m) if m.status() == Some(180) => break,
            Some(m) if m.is_provisional() => {}
            other => drain_fail(&harness, "expected 180 Ringing", other.as_ref()),
        }
    }

    harness.node().sigterm();
    let term = Instant::now();
    let node = harness.node().udp_addr();

    // New requests while draining: each gets 503 or no answer, never service. Several, with
    // distinct branches, so that both kinds of shard (still busy, already drained) are hit.
    std::thread::sleep(Duration::from_millis(200));
    let late = bind(harness.ip());
    let mut refused = 0;
    for _ in 0..DRAIN_PROBES {
        let options = RawRequest::new(
            "OPTIONS",
            &format!("sip:{node}"),
            ViaTransport::Udp,
            late.local_addr(),
        );
        send(&late, node, &options.to_bytes());
    }
    let probes_sent = Instant::now();
    while let Some(left) = Duration::from_millis(800).checked_sub(probes_sent.elapsed()) {
        match late.recv_final(left) {
            Some(m) if m.status() == Some(503) => refused += 1,
            None => break,
            Some(other) => drain_fail(
                &harness,
                "expected 503 or silence while draining",
                Some(&other),
            ),
        }
    }
    let silent = DRAIN_PROBES - refused;
    eprintln!("new requests while draining: {refused} got 503, {silent} got no answer");

    // The running INVITE transaction completes.
    let answer = uac.recv_final(GRACE.saturating_sub(term.elapsed()));
    let answered = term.elapsed();
    match &answer {
        Some(m) if m.status() == Some(200) && m.header("CSeq") == Some("1 INVITE") => {
            eprintln!("200 reached the UAC {answered:?} after SIGTERM");
        }
        other => drain_fail(&harness, "the UAC did not get the 200", other.as_ref()),
    }
    if let Some(ok) = &answer {
        let ack = ack_for(ok, &invite, raw_transport, uac.local_addr());
        // Best effort: the node may already refuse new work.
        let _ = uac.send(&ack);
    }

    let limit = (GRACE + EXIT_SLACK).saturating_sub(term.elapsed());
    let status = match harness.node_mut().wait_exit(limit) {
        Ok(status) => status,
        Err(e) => panic!("{e}\n--- node log ---\n{}", harness.node().log_tail()),
    };
    eprintln!("node exited {:?} after SIGTERM", term.elapsed());
    assert!(
        status.success(),
        "exit status {status}\n--- node log ---\n{}",
        harness.node().log_tail()
    );
    assert!(
        !harness.node().log_text().contains("panicked"),
        "the node panicked\n{}",
        harness.node().log_tail()
    );
    drop(uas);
}

#[test]
fn sigterm_during_ringing_udp() {
    sigterm_during_ringing("lifecycle-drain-call-udp", SippTransport::Udp);
}

#[test]
fn sigterm_during_ringing_tcp() {
    sigterm_during_ringing("lifecycle-drain-call-tcp", SippTransport::Tcp);
}

/// A minimal SDP offer.
const SDP: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                   t=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// A UDP peer on `ip`.
fn bind(ip: std::net::IpAddr) -> UdpPeer {
    match UdpPeer::bind(ip) {
        Ok(peer) => peer,
        Err(e) => panic!("{e}"),
    }
}

/// Sends a datagram or fails the test.
fn send(peer: &UdpPeer, to: std::net::SocketAddr, data: &[u8]) {
    if let Err(e) = peer.send(to, data) {
        panic!("{e}");
    }
}

/// Fails the drain test with what arrived and the node's log.
fn drain_fail(harness: &Harness, what: &str, got: Option<&RawMessage>) -> ! {
    let got = got.map_or_else(|| "<nothing>".to_owned(), ToString::to_string);
    panic!(
        "{what}\n--- got ---\n{got}\n--- node log ({}) ---\n{}",
        harness.node().log_path().display(),
        harness.node().log_tail()
    );
}

/// The ACK for a 2xx (RFC 3261 §13.2.2.4): to the 2xx's Contact, along its Record-Route set
/// reversed (§12.1.2), with the INVITE's CSeq number.
fn ack_for(
    ok: &RawMessage,
    invite: &RawRequest,
    transport: ViaTransport,
    local: std::net::SocketAddr,
) -> Vec<u8> {
    let target = ok
        .header("Contact")
        .map(|c| c.trim_start_matches('<').split('>').next().unwrap_or(c))
        .unwrap_or("sip:invalid")
        .to_owned();
    let routes: Vec<&str> = ok
        .header_all("Record-Route")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut ack = RawRequest::new("ACK", &target, transport, local)
        .set("From", invite.header_value("From").unwrap_or_default())
        .set("To", ok.header("To").unwrap_or_default())
        .set(
            "Call-ID",
            invite.header_value("Call-ID").unwrap_or_default(),
        )
        .set("CSeq", "1 ACK");
    for route in routes.iter().rev() {
        ack = ack.header("Route", *route);
    }
    ack.to_bytes()
}
