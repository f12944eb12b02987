//! SIPp over TLS (`-t l1`) through the node: REGISTER over TLS, and calls bridged between TLS and
//! UDP in both directions (double Record-Route, RFC 5658 §4: each side gets a route it can use;
//! the ACK and BYE cross the proxy). The node's certificate comes from `sipmesh dev-cert`; SIPp
//! presents the same pair, and the node trusts its CA when it dials the TLS UAS.

use sipmesh_test_support::{Harness, SippRunning, SippTransport};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

fn start(test: &str) -> Harness {
    match Harness::try_start_secure(SIPMESH, test) {
        Ok((harness, _)) => harness,
        Err(e) => panic!("cannot start the node for {test}: {e}"),
    }
}

/// A `uas_call.xml` UAS over `transport`, registered as bob over the same transport.
fn registered_uas(harness: &Harness, transport: SippTransport) -> SippRunning {
    let uas = match harness.uas("uas_call.xml", transport).spawn() {
        Ok(uas) => uas,
        Err(e) => panic!("cannot start the UAS: {e}"),
    };
    if let Err(e) = uas.wait_listening() {
        panic!("UAS did not bind: {e}");
    }
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), transport));
    uas
}

fn call(harness: &Harness, uas: SippRunning, uac_transport: SippTransport) {
    harness.run_ok(
        harness
            .uac("uac_call.xml", uac_transport)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    match uas.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
}

#[test]
fn tls_register() {
    let harness = start("tls-sipp-register");
    let contact = std::net::SocketAddr::new(harness.ip(), 5999);
    harness.run_ok(harness.register("bob.csv", contact, SippTransport::Tls));
}

#[test]
fn tls_caller_to_udp_callee() {
    let harness = start("tls-sipp-call-tls-udp");
    let uas = registered_uas(&harness, SippTransport::Udp);
    call(&harness, uas, SippTransport::Tls);
}

#[test]
fn udp_caller_to_tls_callee() {
    let harness = start("tls-sipp-call-udp-tls");
    let uas = registered_uas(&harness, SippTransport::Tls);
    call(&harness, uas, SippTransport::Udp);
}
