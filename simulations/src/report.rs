//! The run's report: one block per phase (operations, invariants, fault timings) and the
//! verdict, printed as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{OpCounts, OpKind};

/// What the fencing check of a freeze phase saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FenceCheck {
    /// The frozen node's own state in its first `/cluster` answer after SIGCONT.
    pub self_state_after_thaw: Option<String>,
    /// Whether every survivor declared the frozen node dead before the thaw.
    pub declared_dead_by_survivors: bool,
    /// REGISTERs queued to the frozen node during the freeze.
    pub stale_writes_sent: u64,
    /// Of those, answered 200.
    pub stale_writes_acknowledged: u64,
    /// Of those, found in the store afterwards (must be 0 while it was fenced).
    pub stale_writes_landed: u64,
    /// Answered 200 but missing from the store (an acknowledged write lost).
    pub acknowledged_but_missing: u64,
    /// Whether the node was live on every member again at the phase's end.
    pub rejoined: bool,
    /// TCP/WS agents connected to the frozen node when it froze (their flows died with it).
    pub orphans: u64,
    /// Of those, still connected 1.5 s after SIGCONT: the node
    /// kept serving a flow the survivors had removed, so the client never re-registers.
    pub orphans_still_connected: u64,
}

/// One phase's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseReport {
    /// `warmup`, `kill-1`, `freeze`, `final`, …
    pub name: String,
    /// What happened (`SIGKILL node2, restarted`).
    pub fault: Option<String>,
    /// Wall time of the phase, ms.
    pub duration_ms: u64,
    /// Operations by kind.
    pub ops: BTreeMap<OpKind, OpCounts>,
    /// Acknowledged, unexpired registrations looked up at the phase's end.
    pub registrations_checked: u64,
    /// Of those, missing from the lookups through three nodes; must be 0.
    pub registrations_lost: u64,
    /// Dialogs established in the phase (2xx and ACK), including those held across its fault.
    pub dialogs_established: u64,
    /// Dialogs whose BYE failed (three tries) though both ends were reachable; must be 0.
    pub dialogs_not_ended: u64,
    /// Dialogs not checked because an end became unreachable (a TCP/WS callee whose
    /// connection died with its node).
    pub dialogs_unreachable: u64,
    /// Requests delivered to an agent other than the one they were addressed to; must be 0.
    pub misdelivered: u64,
    /// Time from the fault to the first full round of new calls and messages to UDP users
    /// through every survivor, ms; `None` when never reached.
    pub service_restored_ms: Option<u64>,
    /// For SIGKILL phases: whether requests to TCP/WS users whose node died got 480 (when the
    /// `flow-480` capability is on).
    pub flow_480_seen: Option<bool>,
    /// For freeze phases.
    pub fence: Option<FenceCheck>,
    /// Time from restart until every member sees every node live, ms.
    pub rejoin_ms: Option<u64>,
    /// Broken invariants, in words.
    pub violations: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: u8,
    /// Agents by transport.
    pub agents: BTreeMap<String, usize>,
    /// Capabilities relied on.
    pub capabilities: Vec<String>,
    /// Capabilities not relied on (their checks were not run).
    pub capabilities_off: Vec<String>,
    /// The nodes' log files (kept after the run).
    pub node_logs: Vec<String>,
    /// Phases in order.
    pub phases: Vec<PhaseReport>,
    /// Wall time, ms.
    pub duration_ms: u64,
    /// True when no invariant broke.
    pub passed: bool,
}

impl RunReport {
    /// Every violation, prefixed with its phase.
    pub fn violations(&self) -> Vec<String> {
        self.phases
            .iter()
            .flat_map(|p| p.violations.iter().map(move |v| format!("{}: {v}", p.name)))
            .collect()
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as text, a block per phase.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "chaos run: seed {}, {} nodes, agents {:?}, capabilities [{}] (off: [{}])",
            self.seed,
            self.nodes,
            self.agents,
            self.capabilities.join(","),
            self.capabilities_off.join(",")
        );
        for p in &self.phases {
            let _ = writeln!(
                out,
                "\n== phase {} ({} ms){}",
                p.name,
                p.duration_ms,
                p.fault
                    .as_ref()
                    .map(|f| format!(": {f}"))
                    .unwrap_or_default()
            );
            for (kind, c) in &p.ops {
                let failures: Vec<String> =
                    c.failures.iter().map(|(r, n)| format!("{r}×{n}")).collect();
                let _ = writeln!(
                    out,
                    "  {:<9} tried {:>6}  ok {:>6}  failed {:>5}  {}",
                    kind.name(),
                    c.tried,
                    c.succeeded,
                    c.failed,
                    failures.join(" ")
                );
            }
            let _ = writeln!(
                out,
                "  registrations lost {}/{} checked; dialogs established {}: not ended {}, unreachable end {}",
                p.registrations_lost,
                p.registrations_checked,
                p.dialogs_established,
                p.dialogs_not_ended,
                p.dialogs_unreachable
            );
            if p.misdelivered > 0 {
                let _ = writeln!(
                    out,
                    "  requests delivered to the wrong user: {}",
                    p.misdelivered
                );
            }
            if let Some(ms) = p.service_restored_ms {
                let _ = writeln!(out, "  full service {ms} ms after the fault");
            }
            if let Some(ms) = p.rejoin_ms {
                let _ = writeln!(
                    out,
                    "  rejoined (live on every member) {ms} ms after restart"
                );
            }
            if let Some(seen) = p.flow_480_seen {
                let _ = writeln!(out, "  480 for users of the dead node's flows: {seen}");
            }
            if let Some(f) = &p.fence {
                let _ = writeln!(out, "  fence: {f:?}");
            }
            for v in &p.violations {
                let _ = writeln!(out, "  VIOLATION: {v}");
            }
        }
        let _ = writeln!(out, "\nnode logs: {}", self.node_logs.join(" "));
        let _ = writeln!(
            out,
            "{} in {} ms",
            if self.passed { "PASSED" } else { "FAILED" },
            self.duration_ms
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_carry_the_violations() {
        let report = RunReport {
            seed: 3,
            nodes: 3,
            phases: vec![PhaseReport {
                name: "kill-1".to_owned(),
                registrations_lost: 2,
                violations: vec!["2 registrations lost".to_owned()],
                ..PhaseReport::default()
            }],
            ..RunReport::default()
        };
        assert_eq!(report.violations(), ["kill-1: 2 registrations lost"]);
        assert!(report.to_text().contains("VIOLATION: 2 registrations lost"));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("json");
        assert_eq!(json["phases"][0]["registrations_lost"], 2);
        assert_eq!(json["passed"], false);
    }
}
