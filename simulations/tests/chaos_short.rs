//! The short chaos run of the suite: the real `chaos` binary against a real redis-server and
//! three real `sipmesh` nodes, with UDP, TCP and WS agents, one SIGKILL + restart and one
//! SIGSTOP/SIGCONT, with every cluster capability on (`--capabilities all`): requests to TCP/WS
//! users enter at any node and are relayed to the node holding the connection, in-dialog
//! requests enter at any node, TCP users are called, calls span the faults, and the users of a
//! killed or frozen node get 480 until they re-register. The run must pass and its JSON report
//! must show every invariant.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

/// The chaos binary under test.
const CHAOS: &str = env!("CARGO_BIN_EXE_chaos");

/// The `sipmesh` binary next to it (built by the workspace build).
fn sipmesh() -> PathBuf {
    let path = PathBuf::from(CHAOS).with_file_name("sipmesh");
    assert!(
        path.is_file(),
        "no sipmesh binary at {}: build it first with `cargo build -p sipmesh-node` \
         (the workspace test run builds it)",
        path.display()
    );
    path
}

#[test]
fn short_chaos_run_keeps_every_invariant() {
    let started = Instant::now();
    let out = Command::new(CHAOS)
        .args([
            "--nodes",
            "3",
            "--agents",
            "24",
            "--duration",
            "16",
            "--kills",
            "1",
        ])
        .args(["--transports", "udp,tcp,ws", "--capabilities", "all"])
        .args(["--seed", "7", "--report", "json"])
        .arg("--sipmesh")
        .arg(sipmesh())
        .output()
        .unwrap_or_else(|e| panic!("running {CHAOS}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("measured: short chaos run took {:?}", started.elapsed());
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); status {}\n{stdout}\n{stderr}",
            out.status
        )
    });
    assert!(
        out.status.success(),
        "chaos exited {}: {stderr}\n{stdout}",
        out.status
    );
    assert_eq!(report["passed"], true, "{stdout}");

    let phases = report["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["warmup", "kill-1", "freeze", "final"], "{stdout}");
    for p in phases {
        let name = p["name"].as_str().unwrap_or("?");
        assert_eq!(p["registrations_lost"], 0, "{name}: {p}");
        assert!(p["registrations_checked"].as_u64() > Some(0), "{name}: {p}");
        assert_eq!(p["dialogs_not_ended"], 0, "{name}: {p}");
        assert_eq!(
            p["violations"].as_array().map(Vec::len),
            Some(0),
            "{name}: {p}"
        );
        for kind in ["register", "message"] {
            let ok = p["ops"][kind]["succeeded"].as_u64().unwrap_or(0);
            assert!(ok > 0, "{name}: no successful {kind}: {p}");
        }
    }
    // Calls are placed and ended in every phase, faults included.
    for p in phases {
        assert!(p["ops"]["call"]["succeeded"].as_u64() > Some(0), "{p}");
        assert!(p["ops"]["bye"]["succeeded"].as_u64() > Some(0), "{p}");
    }
    for p in [&phases[1], &phases[2]] {
        let restored = p["service_restored_ms"].as_u64().expect("service restored");
        assert!(
            restored <= 3000,
            "full service {restored} ms after the fault: {p}"
        );
        eprintln!(
            "measured: {} — full service {restored} ms after the fault, rejoin {} ms",
            p["fault"], p["rejoin_ms"]
        );
    }
    let fence = &phases[2]["fence"];
    assert_eq!(fence["self_state_after_thaw"], "fenced", "{fence}");
    assert_eq!(fence["declared_dead_by_survivors"], true, "{fence}");
    assert_eq!(fence["stale_writes_landed"], 0, "{fence}");
    assert_eq!(fence["acknowledged_but_missing"], 0, "{fence}");
    assert_eq!(fence["rejoined"], true, "{fence}");
    assert_eq!(fence["orphans_still_connected"], 0, "{fence}");
    // The killed node's TCP/WS users get 480 until they re-register; so do the frozen node's
    // when it held any (null: no orphan to probe in this seed).
    assert_eq!(phases[1]["flow_480_seen"], true, "{}", phases[1]);
    assert_ne!(phases[2]["flow_480_seen"], false, "{}", phases[2]);
}
