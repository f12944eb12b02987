//! TLS through the node with SIPp as the peers: REGISTER over TLS, and calls bridged between TLS
//! and UDP in both directions (double Record-Route, RFC 5658 §4: each side gets a route it can
//! use; ACK and BYE cross the proxy).
//!
//! Debian 12's SIPp is built without OpenSSL, so SIPp speaks TCP and `stunnel` carries it over
//! real TLS ([`Stunnel`]). A missing `stunnel` fails the test with what to install; nothing
//! skips.
//!
//! Why not SIPp's own `-t l1`: (1) rebuilding Debian's `sip-tester` with TLS is impossible here:
//! `apt-get source sip-tester` gets the `.dsc` but the archive answers 404 for
//! `sip-tester_3.6.1.orig.tar.gz` and `sip-tester_3.6.1-1.debian.tar.xz` (bookworm; the same for
//! bullseye and for trixie's 3.7.3), and nothing else may be downloaded. (2) Debian 13's binary
//! `sip-tester` 1:3.7.3-2 does have TLS (wolfSSL 5.7.2) and runs on Debian 12 with its own
//! loader and libraries, but its TLS does not work: the handshake completes (against the node
//! and against `openssl s_server`), then every `SSL_write` fails ("Unable to send TLS message:
//! No error" with `-tls_version 1.2`; endless "Wrote -1 of 357 bytes" EWOULDBLOCK with 1.3), as
//! client and as server.

use sipmesh_test_support::{
    Harness, HarnessError, SecureListeners, SippRunning, SippTransport, Stunnel,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

fn start(test: &str) -> (Harness, SecureListeners) {
    match Harness::try_start_secure(SIPMESH, test) {
        Ok(started) => started,
        Err(e) => panic!("cannot start the node for {test}: {e}"),
    }
}

/// A started stunnel (see [`Stunnel`]).
fn tunnel(started: Result<Stunnel, HarnessError>) -> Stunnel {
    match started {
        Ok(tunnel) => tunnel,
        Err(e) => panic!("{e}"),
    }
}

fn spawn_uas(harness: &Harness, transport: SippTransport) -> SippRunning {
    let uas = match harness.uas("uas_call.xml", transport).spawn() {
        Ok(uas) => uas,
        Err(e) => panic!("cannot start the UAS: {e}"),
    };
    if let Err(e) = uas.wait_listening() {
        panic!("UAS did not bind: {e}");
    }
    uas
}

fn finish(harness: &Harness, uas: SippRunning) {
    match uas.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
}

#[test]
fn tls_register() {
    let (harness, listeners) = start("tls-sipp-register");
    let entry = tunnel(Stunnel::client(&harness, &listeners));
    harness.run_ok(
        harness
            .uac("register.xml", SippTransport::Tcp)
            .remote(entry.accept_addr())
            .inf("bob.csv")
            .key("contact_host", harness.ip())
            .key("contact_port", 5999),
    );
}

#[test]
fn tls_caller_to_udp_callee() {
    let (harness, listeners) = start("tls-sipp-call-tls-udp");
    let uas = spawn_uas(&harness, SippTransport::Udp);
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));
    let entry = tunnel(Stunnel::client(&harness, &listeners));
    harness.run_ok(
        harness
            .uac("uac_call.xml", SippTransport::Tcp)
            .remote(entry.accept_addr())
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    finish(&harness, uas);
}

#[test]
fn udp_caller_to_tls_callee() {
    let (harness, _listeners) = start("tls-sipp-call-udp-tls");
    let uas = spawn_uas(&harness, SippTransport::Tcp);
    let tls_entry = tunnel(Stunnel::server(&harness, uas.local_addr()));
    harness.run_ok(
        harness
            .uac("register_tls_contact.xml", SippTransport::Udp)
            .inf("bob.csv")
            .key("contact_host", tls_entry.accept_addr().ip())
            .key("contact_port", tls_entry.accept_addr().port()),
    );
    harness.run_ok(
        harness
            .uac("uac_call.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    finish(&harness, uas);
}
