//! # sipmesh-simulations: chaos runs against real processes
//!
//! The `chaos` binary starts a real `redis-server` and N real `sipmesh` nodes on 127.0.0.11,
//! .12, … (through `sipmesh-test-support`), drives a swarm of simulated SIP agents over UDP,
//! TCP and WebSocket, and during the run SIGKILLs and restarts random nodes and freezes one
//! (SIGSTOP past its lease, then SIGCONT). After every phase it checks the invariants of
//! issue 5 and reports operations tried/succeeded/failed, registrations lost, dialogs that
//! could not be ended, and the time from a fault to full service through the survivors.
//!
//! # Layout
//!
//! ```text
//! bin/chaos.rs ─> runner (phases) ─┬─> cluster (redis-server + sipmesh processes)
//!                                  ├─> swarm (traffic loops) ─> agent ─> endpoint, link
//!                                  ├─> checks (invariants)
//!                                  └─> report (text / JSON)
//! ```
//!
//! Cluster capabilities that are still being built (cross-node flow delivery, dialogs that
//! survive their record-routing node, 480 for dead flows) are switched with
//! `--capabilities`; see [`config::Capability`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod bench;
pub mod checks;
pub mod cluster;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod kamailio;
pub mod link;
pub mod report;
pub mod routing;
pub mod runner;
pub mod sip;
pub mod stats;
pub mod swarm;
pub mod topology;

pub use config::{Capability, Cli, ReportFormat, Transport};
pub use error::{ChaosError, OpFailure};
pub use report::{PhaseReport, RunReport};
pub use runner::run;
