//! The chaos run's settings: the `chaos` command line (`--nodes`, `--agents`, `--duration`,
//! `--kills`, `--seed`, `--transports`, `--report`) and the cluster capabilities the run may
//! rely on.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::error::ChaosError;

/// How an agent reaches the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Connectionless: any node can reach the agent at its Contact address.
    Udp,
    /// One TCP connection (an RFC 5626 flow) to one node.
    Tcp,
    /// One WebSocket connection (RFC 7118) to one node.
    Ws,
}

impl Transport {
    /// The Via transport token (RFC 3261 §18.2, RFC 7118 §5).
    pub fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Ws => "WS",
        }
    }

    /// Whether the agent is reachable only over the connection it opened.
    pub fn is_stream(self) -> bool {
        !matches!(self, Self::Udp)
    }
}

impl FromStr for Transport {
    type Err = ChaosError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "udp" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            "ws" => Ok(Self::Ws),
            other => Err(ChaosError::UnknownTransport(other.to_owned())),
        }
    }
}

/// A cluster capability from issue 5 that the run relies on. A capability that is off makes
/// the agents avoid the situations that need it, so a run against a build without it tests
/// the rest honestly instead of failing on the known gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// A request to a TCP/WS user may enter at any node; the node holding the flow delivers it
    /// over the cluster. Off: such requests enter at the node holding the flow.
    FlowRelay,
    /// In-dialog requests (ACK, BYE) may enter at any node, not only at the node that
    /// record-routed the dialog (a cluster-wide Record-Route identity). Off: they enter at the
    /// node the INVITE entered at.
    AnyNodeInDialog,
    /// In-dialog requests reach a user registered over a TCP flow (a `.invalid` Contact, RFC
    /// 5626): the Record-Route facing it must carry a flow token, as it does for WS. Off: TCP
    /// users are messaged but not called.
    TcpFlowInDialog,
    /// Established dialogs survive a node fault: in-dialog requests are routed from the dialog
    /// state by any survivor (a cluster-wide Record-Route identity). Off: calls are placed only
    /// while no fault is pending, so no dialog outlives the node that record-routed it.
    DialogFailover,
    /// After the node holding a TCP/WS user's flow dies, requests to that user get 480 from
    /// the survivors (not a timeout) until the user re-registers. Off: not checked.
    Flow480,
}

impl Capability {
    /// Every capability: the full target of issue 5.
    pub const ALL: [Self; 5] = [
        Self::FlowRelay,
        Self::AnyNodeInDialog,
        Self::TcpFlowInDialog,
        Self::DialogFailover,
        Self::Flow480,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::FlowRelay => "flow-relay",
            Self::AnyNodeInDialog => "any-node-in-dialog",
            Self::TcpFlowInDialog => "tcp-flow-in-dialog",
            Self::DialogFailover => "dialog-failover",
            Self::Flow480 => "flow-480",
        }
    }
}

impl FromStr for Capability {
    type Err = ChaosError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s.trim())
            .ok_or_else(|| ChaosError::UnknownCapability(s.to_owned()))
    }
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// One block per phase, for people.
    Text,
    /// One JSON document, for scripts and tests.
    Json,
}

/// `chaos`: start redis-server and N sipmesh nodes, drive a swarm of SIP agents, kill and
/// freeze nodes, check the invariants, print a report per phase. Exits 1 when an invariant
/// breaks, 2 when the run could not be set up.
#[derive(Debug, Clone, Parser)]
#[command(name = "chaos", version)]
pub struct Cli {
    /// Number of sipmesh nodes (on 127.0.0.11, .12, …).
    #[arg(long, default_value_t = 3)]
    pub nodes: u8,
    /// Number of simulated agents (users), spread over the transports.
    #[arg(long, default_value_t = 30)]
    pub agents: usize,
    /// Total traffic time in seconds, split between the phases (faults add their own waits).
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Number of SIGKILL + restart phases.
    #[arg(long, default_value_t = 2)]
    pub kills: usize,
    /// Skip the SIGSTOP/SIGCONT (fencing) phase.
    #[arg(long)]
    pub no_freeze: bool,
    /// Seed of every random choice (agents' ops and targets, fault victims).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Agent transports, comma-separated: `udp,tcp,ws`.
    #[arg(long, default_value = "udp,tcp,ws", value_delimiter = ',')]
    pub transports: Vec<Transport>,
    /// Cluster capabilities the run relies on, comma-separated (`flow-relay`,
    /// `any-node-in-dialog`, `tcp-flow-in-dialog`, `dialog-failover`, `flow-480`), or `all` / `none`.
    #[arg(long, default_value = "all")]
    pub capabilities: String,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// The sipmesh binary (default: `sipmesh` next to this executable).
    #[arg(long)]
    pub sipmesh: Option<PathBuf>,
    /// Longest accepted time from a fault to full service through the survivors, ms.
    #[arg(long, default_value_t = 3000)]
    pub service_limit_ms: u64,
    /// Mean pause between two operations of one agent, ms.
    #[arg(long, default_value_t = 400)]
    pub think_ms: u64,
    /// Node log filter.
    #[arg(long, default_value = "warn,sipmesh_cluster=info")]
    pub log_filter: String,
}

impl Cli {
    /// The parsed capability list.
    pub fn capability_set(&self) -> Result<Vec<Capability>, ChaosError> {
        match self.capabilities.trim() {
            "all" => Ok(Capability::ALL.to_vec()),
            "none" | "" => Ok(Vec::new()),
            list => list.split(',').map(str::parse).collect(),
        }
    }

    /// The traffic time.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration)
    }

    /// The sipmesh binary to run.
    pub fn sipmesh_binary(&self) -> Result<PathBuf, ChaosError> {
        let path = match &self.sipmesh {
            Some(path) => path.clone(),
            None => std::env::current_exe()
                .map_err(ChaosError::CurrentExe)?
                .with_file_name("sipmesh"),
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(ChaosError::SipmeshMissing(path))
        }
    }

    /// Checks the values that clap cannot.
    pub fn validate(&self) -> Result<(), ChaosError> {
        if self.nodes < 2 || self.nodes > 200 {
            return Err(ChaosError::BadNodeCount(self.nodes));
        }
        if self.transports.is_empty() || !self.transports.contains(&Transport::Udp) {
            return Err(ChaosError::NeedUdp);
        }
        if self.agents < 4 {
            return Err(ChaosError::TooFewAgents(self.agents));
        }
        self.capability_set().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_flags() {
        let cli = Cli::try_parse_from([
            "chaos",
            "--nodes",
            "4",
            "--agents",
            "12",
            "--transports",
            "udp,ws",
            "--capabilities",
            "flow-relay,flow-480",
            "--report",
            "json",
        ])
        .expect("parses");
        assert_eq!(cli.nodes, 4);
        assert_eq!(cli.transports, [Transport::Udp, Transport::Ws]);
        assert_eq!(
            cli.capability_set().expect("capabilities"),
            [Capability::FlowRelay, Capability::Flow480]
        );
        assert_eq!(cli.report, ReportFormat::Json);
        assert!(cli.validate().is_ok());
    }

    #[test]
    fn refuses_unknown_names_and_runs_without_udp() {
        assert!(Cli::try_parse_from(["chaos", "--transports", "sctp"]).is_err());
        let cli = Cli::try_parse_from(["chaos", "--capabilities", "telepathy"]).expect("parses");
        assert!(matches!(
            cli.capability_set(),
            Err(ChaosError::UnknownCapability(_))
        ));
        let cli = Cli::try_parse_from(["chaos", "--transports", "tcp"]).expect("parses");
        assert!(matches!(cli.validate(), Err(ChaosError::NeedUdp)));
        let none = Cli::try_parse_from(["chaos", "--capabilities", "none"]).expect("parses");
        assert!(none.capability_set().expect("none").is_empty());
    }
}
