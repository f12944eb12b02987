//! TLS through the node with SIPp speaking TLS itself (`-t l1`): REGISTER over TLS, and calls
//! bridged between TLS and UDP in both directions (double Record-Route, RFC 5658 §4: each side
//! gets a route it can use; ACK and BYE cross the proxy, over TLS on the TLS side).
//!
//! SIPp is the TLS-capable one installed by `scripts/build-sipp-tls.sh` (Debian 12's has no
//! TLS); a missing one fails the test with what to run, nothing skips. SIPp presents the
//! development pair that `sipmesh dev-cert` wrote for the test's address, which the node trusts
//! (`--tls-ca`) when it dials a TLS Contact.

use sipmesh_test_support::{Harness, SecureListeners, SippRunning, SippTransport};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

fn start(test: &str) -> (Harness, SecureListeners) {
    match Harness::try_start_secure(SIPMESH, test) {
        Ok(started) => started,
        Err(e) => panic!("cannot start the node for {test}: {e}"),
    }
}

/// Waits for the UAS, checks it, and returns its message log.
fn finish(harness: &Harness, uas: SippRunning) -> String {
    match uas.wait() {
        Ok(outcome) => {
            harness.check(&outcome);
            outcome.messages
        }
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
}

/// The methods of the requests in a SIPp `-trace_msg` log, in order.
fn request_methods(messages: &str) -> Vec<&str> {
    messages
        .lines()
        .filter(|line| line.ends_with(" SIP/2.0"))
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

fn assert_dialog_requests(messages: &str, side: &str) {
    let methods = request_methods(messages);
    for method in ["INVITE", "ACK", "BYE"] {
        assert!(
            methods.contains(&method),
            "{side}: no {method} in {methods:?}\n{messages}"
        );
    }
}

#[test]
fn tls_register() {
    let (harness, listeners) = start("tls-sipp-register");
    let outcome = harness.run_ok(
        harness
            .uac("register.xml", SippTransport::Tls)
            .remote(listeners.tls)
            .inf("bob.csv")
            .key("contact_host", harness.ip())
            .key("contact_port", 5999),
    );
    // SIPp's own Via and Contact say TLS (no TCP-speaking SIPp behind a tunnel any more).
    assert!(
        outcome.messages.contains("Via: SIP/2.0/TLS "),
        "{}",
        outcome.messages
    );
    assert!(
        outcome.messages.contains(";transport=TLS>"),
        "{}",
        outcome.messages
    );
}

#[test]
fn tls_caller_to_udp_callee() {
    let (harness, listeners) = start("tls-sipp-call-tls-udp");
    let uas = harness.spawn_uas("uas_call.xml", SippTransport::Udp);
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));
    // uac_call.xml sends ACK and BYE along the Record-Route set, whose caller-facing entry is
    // the node's TLS listener: they go out on SIPp's TLS connection (`-t l1` has no other).
    let caller = harness.run_ok(
        harness
            .uac("uac_call.xml", SippTransport::Tls)
            .remote(listeners.tls)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    assert_dialog_requests(&caller.messages, "TLS caller");
    assert!(
        caller.messages.contains(";transport=tls;lr"),
        "the caller's Record-Route names no TLS hop:\n{}",
        caller.messages
    );
    assert_dialog_requests(&finish(&harness, uas), "UDP callee");
}

#[test]
fn udp_caller_to_tls_callee() {
    let (harness, _listeners) = start("tls-sipp-call-udp-tls");
    // The UAS listens on TLS only: whatever reaches it came over TLS from the node.
    let uas = harness.spawn_uas("uas_call.xml", SippTransport::Tls);
    harness.run_ok(
        harness
            .uac("register_tls_contact.xml", SippTransport::Udp)
            .inf("bob.csv")
            .key("contact_host", uas.local_addr().ip())
            .key("contact_port", uas.local_addr().port()),
    );
    harness.run_ok(
        harness
            .uac("uac_call.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    let callee = finish(&harness, uas);
    assert_dialog_requests(&callee, "TLS callee");
    assert!(callee.contains("Via: SIP/2.0/TLS "), "{callee}");
}
