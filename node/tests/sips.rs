//! `sips:` with real peers (RFC 3261 §26.2.2, RFC 5630): a `sips:` request must travel over TLS
//! on every hop the node controls.
//!
//! - A `sips:` AOR registered over TLS with a `sips:` Contact is reached by a `sips:` INVITE
//!   over TLS: the node forwards it over TLS, and the call completes (ACK, BYE).
//! - A `sips:` INVITE that arrives in clear (UDP, TCP) is refused with 403.
//! - A `sips:` INVITE over TLS to a user whose only binding is plain UDP gets 480 (no TLS path).
//!
//! SIPp speaks TLS itself (`-t l1`, the build of `scripts/build-sipp-tls.sh`; see
//! `tls_sipp.rs`).

use std::net::SocketAddr;

use sipmesh_test_support::{Harness, SecureListeners, SippTransport};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

fn start(test: &str) -> (Harness, SecureListeners) {
    match Harness::try_start_secure(SIPMESH, test) {
        Ok(started) => started,
        Err(e) => panic!("cannot start the node for {test}: {e}"),
    }
}

/// REGISTERs the `sips:` AOR of `bob` over TLS (to the node's `tls` listener) with `contact`.
fn register_sips(harness: &Harness, tls: SocketAddr, contact: &str) {
    harness.run_ok(
        harness
            .uac("register_sips.xml", SippTransport::Tls)
            .remote(tls)
            .inf("bob.csv")
            .key("contact", contact),
    );
}

#[test]
fn sips_call_over_tls_end_to_end() {
    let (harness, listeners) = start("sips-call-tls");
    // Callee: a SIPp UAS listening on TLS only, registered as sips:bob over TLS.
    let uas = harness.spawn_uas("uas_call.xml", SippTransport::Tls);
    let callee = uas.local_addr();
    register_sips(&harness, listeners.tls, &format!("sips:bob@{callee}"));
    // Caller: sips:alice -> sips:bob, over TLS.
    let caller = harness.run_ok(
        harness
            .uac("uac_call_sips.xml", SippTransport::Tls)
            .remote(listeners.tls)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    let outcome = match uas.wait() {
        Ok(outcome) => outcome,
        Err(e) => panic!("cannot collect the UAS: {e}"),
    };
    harness.check(&outcome);
    // The INVITE reached the callee over TLS, addressed to its sips: Contact; ACK and BYE
    // followed on both sides.
    assert!(
        outcome
            .messages
            .contains(&format!("INVITE sips:bob@{callee} SIP/2.0")),
        "the callee got no INVITE for its sips: Contact:\n{}",
        outcome.messages
    );
    for (side, log) in [("caller", &caller.messages), ("callee", &outcome.messages)] {
        for method in ["ACK ", "BYE "] {
            assert!(
                log.lines().any(|l| l.starts_with(method)),
                "{side}: no {method}\n{log}"
            );
        }
    }
}

#[test]
fn sips_request_over_udp_or_tcp_is_refused_with_403() {
    let (harness, _listeners) = start("sips-in-clear-403");
    for transport in [SippTransport::Udp, SippTransport::Tcp] {
        let outcome = harness.run_ok(
            harness
                .uac("uac_sips_403.xml", transport)
                .inf("alice_to_bob.csv"),
        );
        assert!(
            outcome.messages.contains("SIP/2.0 403 "),
            "{transport:?}: {}",
            outcome.messages
        );
    }
}

#[test]
fn sips_request_to_a_udp_only_binding_gets_480() {
    let (harness, listeners) = start("sips-udp-binding-480");
    // bob's only binding is plain UDP (a SIPp UAS that never gets the call).
    let uas = harness.spawn_uas("uas_call.xml", SippTransport::Udp);
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));
    let outcome = harness.run_ok(
        harness
            .uac("uac_sips_480.xml", SippTransport::Tls)
            .remote(listeners.tls)
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
