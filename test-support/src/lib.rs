//! Integration-test harness for the `sipmesh` binary.
//!
//! The integration tests in `node/tests/` drive a real `sipmesh` process with real SIPp
//! instances over loopback UDP and TCP. This crate holds everything they share:
//!
//! * [`free_port`] and [`test_ip`]: a loopback address and ports that no other test uses, so the
//!   tests can run in parallel under nextest;
//! * [`TestDir`]: a per-test directory under `target/sipmesh-tests/` for logs and SIPp traces,
//!   kept after the run so a failure can be inspected;
//! * [`SipmeshNode`]: the node under test, started and probed for readiness with an `OPTIONS`,
//!   killed on drop. With `SIPMESH_TEST_TARGET=kamailio` it starts Kamailio with
//!   `tests/kamailio/proxy.cfg` instead, which proves the scenarios against a reference proxy;
//! * [`Sipp`]: a SIPp command-line builder that runs a scenario from `tests/sipp/` with a
//!   timeout and returns the exit status, call statistics and error log ([`SippOutcome`]);
//! * [`run_corpus`]: the RFC 4475/5118 corpus driver (`send_corpus.py`);
//! * [`Harness`]: one test's directory, address and node, with shortcuts for SIPp runs;
//! * [`RawClient`] (over [`UdpPeer`] or [`TcpPeer`]), [`RawRequest`] and [`RawMessage`]: hand-made SIP over std sockets
//!   for the bad-input, limit and IPv6 tests, which must send what no SIP stack would.
//!
//! # Layout
//!
//! ```text
//! Harness ──owns──> TestDir, SipmeshNode ──spawns──> sipmesh | kamailio
//!    └──builds──> Sipp ──spawns──> sipp ──> SippOutcome
//! ```
//!
//! Missing tools never skip a test: [`HarnessError::SippMissing`] and
//! [`HarnessError::CorpusMissing`] tell the reader to run `scripts/test.sh`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod corpus;
mod dir;
mod error;
mod harness;
mod listen;
mod node;
mod paths;
mod port;
mod probe;
mod process;
mod raw_client;
mod raw_message;
mod raw_request;
mod redis_cluster;
mod redis_sentinel;
mod redis_server;
mod rtpengine;
pub mod sdp;
mod secure;
mod sipp;
mod stats;
mod tcp_peer;
mod udp_peer;

pub mod admin;
pub mod browser;
pub use corpus::{CorpusOutcome, CorpusTransport, run_corpus};
pub use dir::TestDir;
pub use error::HarnessError;
pub use harness::Harness;
pub use listen::{is_bound, wait_bound};
pub use node::{ClusterOptions, NodeOptions, SipmeshNode, Target};
pub use paths::{
    corpus_dir, kamailio_config, sipp_binary, sipp_dir, sipp_tls_binary, workspace_root,
};
pub use port::{free_port, test_ip};
pub use probe::options_ping;
pub use raw_client::RawClient;
pub use raw_message::RawMessage;
pub use raw_request::{RawRequest, ViaTransport};
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::{RedisSentinelSetup, SENTINEL_SERVICE};
pub use redis_server::RedisServer;
pub use rtpengine::Rtpengine;
pub use secure::SecureListeners;
pub use sipp::{Sipp, SippOutcome, SippRunning, SippTransport};
pub use stats::SippStats;
pub use tcp_peer::TcpPeer;
pub use udp_peer::UdpPeer;
