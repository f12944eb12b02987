//! The admin endpoint of a running `sipmesh` process: `GET /status` reports listeners and the
//! store's sizes, the fault-injection paths answer only with `--test-hooks`, and bad requests
//! get clear HTTP errors.

use sipmesh_test_support::{Harness, SippTransport};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

fn start(test: &str, hooks: bool) -> Harness {
    let started = Harness::try_start(SIPMESH, test, |options| {
        options.admin_port = Some(sipmesh_test_support::free_port(options.ip));
        options.test_hooks = hooks;
    });
    match started {
        Ok(harness) => harness,
        Err(e) => panic!("cannot start the node: {e}"),
    }
}

fn admin(harness: &Harness, method: &str, path: &str) -> (u16, String) {
    match harness.node().admin(method, path) {
        Ok(reply) => reply,
        Err(e) => panic!("admin {method} {path}: {e}\n{}", harness.node().log_tail()),
    }
}

#[test]
fn status_reports_listeners_and_registrations() {
    let harness = start("admin-status", false);
    let (code, body) = admin(&harness, "GET", "/status");
    assert_eq!(code, 200, "{body}");
    let udp = format!("udp:{}", harness.node().udp_addr());
    assert!(body.contains(&udp), "{udp} missing from {body}");
    assert!(body.contains("\"store\": \"memory\""), "{body}");
    assert!(body.contains("\"bindings\": 0"), "{body}");

    let contact = "127.0.0.1:5999".parse().expect("address");
    harness.run_ok(harness.register("bob.csv", contact, SippTransport::Udp));
    let (code, body) = admin(&harness, "GET", "/status");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"bindings\": 1"), "{body}");
}

#[test]
fn test_hooks_are_off_unless_asked_for() {
    let harness = start("admin-hooks-off", false);
    let (code, body) = admin(&harness, "POST", "/test/panic/aor/sip%3Abob%40x");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("--test-hooks"), "{body}");
    let (code, _) = admin(&harness, "PUT", "/status");
    assert_eq!(code, 405);
    let (code, _) = admin(&harness, "GET", "/nothing");
    assert_eq!(code, 404);
}
