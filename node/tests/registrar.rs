//! Registrar behaviour of the `sipmesh` binary driven by SIPp, over UDP and TCP
//! (RFC 3261 10): register, refresh, unregister one binding, `Contact: *`, and 423 below
//! min-expires. Each test starts its own node on its own loopback address.
//!
//! `SIPMESH_TEST_TARGET=kamailio` runs the same tests against the Kamailio reference.

use std::net::SocketAddr;

use sipmesh_test_support::{Harness, SippTransport, free_port};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// Starts a node for `test`, then runs `scenario` for alice with a contact on a free port.
fn registrar_case(test: &str, scenario: &str, transport: SippTransport) {
    let harness = Harness::start(SIPMESH, test);
    let contact = SocketAddr::new(harness.ip(), free_port(harness.ip()));
    harness.run_ok(
        harness
            .uac(scenario, transport)
            .inf("alice_to_bob.csv")
            .key("contact_host", contact.ip())
            .key("contact_port", contact.port()),
    );
}

#[test]
fn register_udp() {
    registrar_case("registrar-register-udp", "register.xml", SippTransport::Udp);
}

#[test]
fn register_tcp() {
    registrar_case("registrar-register-tcp", "register.xml", SippTransport::Tcp);
}

#[test]
fn refresh_udp() {
    registrar_case("registrar-refresh-udp", "refresh.xml", SippTransport::Udp);
}

#[test]
fn refresh_tcp() {
    registrar_case("registrar-refresh-tcp", "refresh.xml", SippTransport::Tcp);
}

#[test]
fn unregister_udp() {
    registrar_case(
        "registrar-unregister-udp",
        "unregister.xml",
        SippTransport::Udp,
    );
}

#[test]
fn unregister_tcp() {
    registrar_case(
        "registrar-unregister-tcp",
        "unregister.xml",
        SippTransport::Tcp,
    );
}

#[test]
fn unregister_star_udp() {
    registrar_case(
        "registrar-unregister-star-udp",
        "unregister_star.xml",
        SippTransport::Udp,
    );
}

#[test]
fn unregister_star_tcp() {
    registrar_case(
        "registrar-unregister-star-tcp",
        "unregister_star.xml",
        SippTransport::Tcp,
    );
}

#[test]
fn interval_too_brief_udp() {
    registrar_case("registrar-423-udp", "register_423.xml", SippTransport::Udp);
}

#[test]
fn interval_too_brief_tcp() {
    registrar_case("registrar-423-tcp", "register_423.xml", SippTransport::Tcp);
}

/// Twenty users registered at 20/s by one SIPp instance (concurrent transactions).
fn register_many(test: &str, transport: SippTransport) {
    let harness = Harness::start(SIPMESH, test);
    let contact = SocketAddr::new(harness.ip(), free_port(harness.ip()));
    harness.run_ok(
        harness
            .uac("register.xml", transport)
            .inf("users20.csv")
            .calls(20)
            .rate(20)
            .key("contact_host", contact.ip())
            .key("contact_port", contact.port()),
    );
}

#[test]
fn register_many_udp() {
    register_many("registrar-many-udp", SippTransport::Udp);
}

#[test]
fn register_many_tcp() {
    register_many("registrar-many-tcp", SippTransport::Tcp);
}
