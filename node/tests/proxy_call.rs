//! Proxy behaviour of the `sipmesh` binary driven by SIPp, over UDP and TCP: a call from a UAC
//! to a registered UAS with Record-Route so the ACK and BYE cross the proxy (RFC 3261 16.6
//! step 4, 16.12), CANCEL before answer (487, 9.1/16.10), MESSAGE (RFC 3428), 404 for an
//! unknown user, and parallel forking to two bindings where the loser gets a CANCEL (16.7
//! step 10). Each test starts its own node on its own loopback address.
//!
//! `SIPMESH_TEST_TARGET=kamailio` runs the same tests against the Kamailio reference.

use sipmesh_test_support::{Harness, SippRunning, SippTransport};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// Starts a UAS `scenario` (with `-d pause_ms`) and registers it as bob.
fn registered_uas(
    harness: &Harness,
    scenario: &str,
    transport: SippTransport,
    pause_ms: u64,
) -> SippRunning {
    let uas = match harness
        .uas(scenario, transport)
        .duration_ms(pause_ms)
        .spawn()
    {
        Ok(uas) => uas,
        Err(e) => panic!("cannot start UAS {scenario}: {e}"),
    };
    if let Err(e) = uas.wait_listening() {
        panic!("UAS {scenario} did not bind: {e}");
    }
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), transport));
    uas
}

/// Waits for a background UAS and checks it completed its scenario.
fn finish(harness: &Harness, uas: SippRunning) {
    match uas.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
}

/// UAC -> proxy -> UAS: INVITE/180/200/ACK, then BYE along the recorded route.
fn call(test: &str, transport: SippTransport) {
    let harness = Harness::start(SIPMESH, test);
    let uas = registered_uas(&harness, "uas_call.xml", transport, 0);
    harness.run_ok(
        harness
            .uac("uac_call.xml", transport)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    finish(&harness, uas);
}

/// INVITE, 180, CANCEL: 200 for the CANCEL, 487 for the INVITE, on both sides.
fn cancel(test: &str, transport: SippTransport) {
    let harness = Harness::start(SIPMESH, test);
    let uas = registered_uas(&harness, "uas_ring_forever.xml", transport, 0);
    harness.run_ok(
        harness
            .uac("uac_cancel.xml", transport)
            .inf("alice_to_bob.csv"),
    );
    finish(&harness, uas);
}

/// MESSAGE through the proxy to a registered UAS, 200 back.
fn message(test: &str, transport: SippTransport) {
    let harness = Harness::start(SIPMESH, test);
    let uas = registered_uas(&harness, "uas_message.xml", transport, 0);
    harness.run_ok(
        harness
            .uac("uac_message.xml", transport)
            .inf("alice_to_bob.csv"),
    );
    finish(&harness, uas);
}

/// INVITE to a user without bindings: 404, ACKed.
fn unknown_user(test: &str, transport: SippTransport) {
    let harness = Harness::start(SIPMESH, test);
    harness.run_ok(
        harness
            .uac("uac_404.xml", transport)
            .inf("alice_to_nobody.csv"),
    );
}

/// Two bindings for bob: one rings and answers after 1 s, the other rings until CANCELled.
fn fork(test: &str, transport: SippTransport) {
    let harness = Harness::start(SIPMESH, test);
    let answers = registered_uas(&harness, "uas_call.xml", transport, 1000);
    let loses = registered_uas(&harness, "uas_ring_forever.xml", transport, 0);
    harness.run_ok(
        harness
            .uac("uac_call.xml", transport)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    finish(&harness, answers);
    finish(&harness, loses);
}

/// Ten calls at 10/s through the proxy to one UAS (concurrent dialogs and transactions).
fn calls_in_parallel(test: &str, transport: SippTransport) {
    let harness = Harness::start(SIPMESH, test);
    let uas = match harness.uas("uas_call.xml", transport).calls(10).spawn() {
        Ok(uas) => uas,
        Err(e) => panic!("cannot start the UAS: {e}"),
    };
    if let Err(e) = uas.wait_listening() {
        panic!("UAS did not bind: {e}");
    }
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), transport));
    harness.run_ok(
        harness
            .uac("uac_call.xml", transport)
            .inf("alice_to_bob.csv")
            .calls(10)
            .rate(10)
            .duration_ms(500),
    );
    finish(&harness, uas);
}

#[test]
fn calls_in_parallel_udp() {
    calls_in_parallel("proxy-parallel-udp", SippTransport::Udp);
}

#[test]
fn calls_in_parallel_tcp() {
    calls_in_parallel("proxy-parallel-tcp", SippTransport::Tcp);
}

#[test]
fn call_udp() {
    call("proxy-call-udp", SippTransport::Udp);
}

#[test]
fn call_tcp() {
    call("proxy-call-tcp", SippTransport::Tcp);
}

#[test]
fn cancel_udp() {
    cancel("proxy-cancel-udp", SippTransport::Udp);
}

#[test]
fn cancel_tcp() {
    cancel("proxy-cancel-tcp", SippTransport::Tcp);
}

#[test]
fn message_udp() {
    message("proxy-message-udp", SippTransport::Udp);
}

#[test]
fn message_tcp() {
    message("proxy-message-tcp", SippTransport::Tcp);
}

#[test]
fn unknown_user_udp() {
    unknown_user("proxy-404-udp", SippTransport::Udp);
}

#[test]
fn unknown_user_tcp() {
    unknown_user("proxy-404-tcp", SippTransport::Tcp);
}

#[test]
fn fork_udp() {
    fork("proxy-fork-udp", SippTransport::Udp);
}

#[test]
fn fork_tcp() {
    fork("proxy-fork-tcp", SippTransport::Tcp);
}
