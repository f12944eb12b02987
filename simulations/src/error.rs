//! Why a chaos run could not be set up or an operation failed.

use std::path::PathBuf;

/// A setup error: the run did not start (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// `--transports` named something other than udp, tcp, ws.
    #[error("unknown transport {0:?} (udp, tcp, ws)")]
    UnknownTransport(String),
    /// `--capabilities` named something unknown.
    #[error(
        "unknown capability {0:?} (flow-relay, any-node-in-dialog, tcp-flow-in-dialog, dialog-failover, flow-480, all, none)"
    )]
    UnknownCapability(String),
    /// `--nodes` out of range.
    #[error("--nodes {0}: a chaos run needs 2 to 200 nodes")]
    BadNodeCount(u8),
    /// Too few agents for callers and callees at different nodes.
    #[error("--agents {0}: at least 4 are needed")]
    TooFewAgents(usize),
    /// UDP agents are the reference users of the service checks.
    #[error("--transports must include udp: the service checks call UDP users")]
    NeedUdp,
    /// The path of this executable is unknown.
    #[error("cannot find the chaos executable's own path: {0}")]
    CurrentExe(std::io::Error),
    /// The sipmesh binary is not there.
    #[error(
        "no sipmesh binary at {0}: build it with `cargo build -p sipmesh-node` or pass --sipmesh"
    )]
    SipmeshMissing(PathBuf),
    /// A node, Redis or a test directory could not be started.
    #[error("starting the cluster: {0}")]
    Harness(#[from] sipmesh_test_support::HarnessError),
    /// A socket could not be opened.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The nodes did not form a full live mesh.
    #[error("the cluster did not form a live mesh; node1 log tail:\n{0}")]
    MeshNotFormed(String),
    /// An agent could not open its socket or connection.
    #[error("agent {0} could not start: {1}")]
    AgentStart(usize, OpFailure),
    /// Kamailio (the benchmark's reference) did not bind its port.
    #[error("kamailio did not listen on {0} (exit status {1})")]
    KamailioNotListening(std::net::SocketAddr, String),
    /// The tokio runtime could not be built.
    #[error("tokio runtime: {0}")]
    Runtime(std::io::Error),
}

/// Why one SIP operation failed; the report counts them by [`OpFailure::label`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpFailure {
    /// No final response in time.
    #[error("timeout")]
    Timeout,
    /// A final response other than the expected one.
    #[error("status {0}")]
    Status(u16),
    /// The agent's connection is down (TCP/WS agents between a node's death and reconnect).
    #[error("no connection")]
    NoConnection,
    /// Sending failed.
    #[error("send failed")]
    Send,
    /// No live node to send to, or no suitable peer.
    #[error("no route")]
    NoRoute,
    /// The answer could not be used (no To tag, no Contact in a 200 to INVITE).
    #[error("malformed answer")]
    Malformed,
}

impl OpFailure {
    /// A short label for the report's failure histogram.
    pub fn label(&self) -> String {
        self.to_string()
    }
}
