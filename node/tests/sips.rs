//! `sips:` with real peers (RFC 3261 §26.2.2, RFC 5630): a `sips:` request must travel over TLS
//! on every hop the node controls.
//!
//! - A `sips:` AOR registered over TLS with a `sips:` Contact is reached by a `sips:` INVITE
//!   over TLS: the node forwards it over TLS, and the call completes (ACK, BYE).
//! - A `sips:` INVITE that arrives over UDP is refused with 403.
//! - A `sips:` INVITE over TLS to a user whose only binding is plain UDP gets 480 (no TLS path).
//!
//! SIPp speaks TCP behind `stunnel` (see `tls_sipp.rs` for why), so the node sees TLS
//! connections while SIPp's own Via says TCP; the node judges a hop by its connection.

use std::net::SocketAddr;

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

/// A started stunnel.
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

/// REGISTERs the `sips:` AOR of `bob` over TLS (through `entry`) with `contact`.
fn register_sips(harness: &Harness, entry: SocketAddr, contact: &str) {
    harness.run_ok(
        harness
            .uac("register_sips.xml", SippTransport::Tcp)
            .remote(entry)
            .inf("bob.csv")
            .key("contact", contact),
    );
}

#[test]
fn sips_call_over_tls_end_to_end() {
    let (harness, listeners) = start("sips-call-tls");
    // Callee: a SIPp UAS behind a TLS front end, registered as sips:bob over TLS.
    let uas = spawn_uas(&harness, SippTransport::Tcp);
    let callee_tls = tunnel(Stunnel::server(&harness, uas.local_addr()));
    let caller_tls = tunnel(Stunnel::client(&harness, &listeners));
    register_sips(
        &harness,
        caller_tls.accept_addr(),
        &format!("sips:bob@{}", callee_tls.accept_addr()),
    );
    // Caller: sips:alice -> sips:bob, over TLS.
    harness.run_ok(
        harness
            .uac("uac_call_sips.xml", SippTransport::Tcp)
            .remote(caller_tls.accept_addr())
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    let outcome = match uas.wait() {
        Ok(outcome) => outcome,
        Err(e) => panic!("cannot collect the UAS: {e}"),
    };
    harness.check(&outcome);
    // The INVITE reached the callee through its TLS front end, addressed to its sips: Contact.
    assert!(
        outcome.messages.contains(&format!(
            "INVITE sips:bob@{} SIP/2.0",
            callee_tls.accept_addr()
        )),
        "the callee got no INVITE for its sips: Contact:\n{}",
        outcome.messages
    );
}

#[test]
fn sips_request_over_udp_is_refused_with_403() {
    let (harness, _listeners) = start("sips-over-udp-403");
    let outcome = harness.run_ok(
        harness
            .uac("uac_sips_403.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv"),
    );
    assert!(
        outcome.messages.contains("SIP/2.0 403 "),
        "{}",
        outcome.messages
    );
}

#[test]
fn sips_request_to_a_udp_only_binding_gets_480() {
    let (harness, listeners) = start("sips-udp-binding-480");
    // bob's only binding is plain UDP (a SIPp UAS that never gets the call).
    let uas = spawn_uas(&harness, SippTransport::Udp);
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));
    let caller_tls = tunnel(Stunnel::client(&harness, &listeners));
    let outcome = harness.run_ok(
        harness
            .uac("uac_sips_480.xml", SippTransport::Tcp)
            .remote(caller_tls.accept_addr())
            .inf("alice_to_bob.csv"),
    );
    assert!(
        outcome.messages.contains("SIP/2.0 480 "),
        "{}",
        outcome.messages
    );
    // The same user is reachable by a plain sip: call (the binding itself is fine).
    harness.run_ok(
        harness
            .uac("uac_call.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .duration_ms(100),
    );
    match uas.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
}
