//! Process lifecycle of the `sipmesh` binary: it answers the `OPTIONS` readiness probe on both
//! listen addresses' UDP side and shuts down gracefully on SIGTERM.

use std::time::Duration;

use sipmesh_test_support::{Harness, options_ping};

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
