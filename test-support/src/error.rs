//! The harness's error type: every way a test can fail before the behaviour under test is judged.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why the harness could not set up or run a test step.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `sipp` is not on `PATH`.
    #[error("SIPp (`sipp`) not found on PATH: run scripts/test.sh, which installs sip-tester")]
    SippMissing,
    /// The TLS-capable SIPp is not installed.
    #[error(
        "SIPp with TLS not found at {0}: run scripts/build-sipp-tls.sh (scripts/test.sh does) or set SIPMESH_SIPP_TLS"
    )]
    SippTlsMissing(PathBuf),
    /// `kamailio` is not on `PATH` although `SIPMESH_TEST_TARGET=kamailio` asked for it.
    #[error("kamailio not found on PATH: run scripts/test.sh, which installs kamailio")]
    KamailioMissing,
    /// The RFC corpus directory (with `send_corpus.py`) does not exist.
    #[error(
        "RFC corpus not found at {0}: set SIPMESH_CORPUS or put it at <workspace>/../shared/corpus"
    )]
    CorpusMissing(PathBuf),
    /// A scenario or injection file named by a test does not exist.
    #[error("test input file missing: {0}")]
    InputMissing(PathBuf),
    /// `SIPMESH_TEST_TARGET` holds an unknown value.
    #[error("SIPMESH_TEST_TARGET={0:?} is not one of `sipmesh`, `kamailio`")]
    UnknownTarget(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The node exited before answering the readiness probe.
    #[error("node exited early ({status}); its log {log}:\n{tail}")]
    NodeExited {
        /// The exit status, as text.
        status: String,
        /// The node's log file.
        log: PathBuf,
        /// The end of that log.
        tail: String,
    },
    /// The node never answered the `OPTIONS` readiness probe with 200.
    #[error("node did not answer OPTIONS with 200 within {waited:?}; its log {log}:\n{tail}")]
    NotReady {
        /// How long the probe was retried.
        waited: Duration,
        /// The node's log file.
        log: PathBuf,
        /// The end of that log.
        tail: String,
    },
    /// A helper command (such as `sipmesh dev-cert`) failed.
    #[error("{what} failed ({status}):\n{output}")]
    ToolFailed {
        /// The command, in words.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its stdout and stderr.
        output: String,
    },

    /// `node` or the JsSIP test client's packages are missing.
    #[error(
        "Node.js test client not installed ({0}): run scripts/test.sh (apt-get install nodejs npm; npm ci in tests/jssip)"
    )]
    NodeJsMissing(String),

    /// No loopback port pair (UDP and TCP) could be found free.
    #[error("no free UDP+TCP port pair on {0}")]
    NoFreePort(std::net::IpAddr),
    /// A child process did not finish in time and was killed.
    #[error("{what} still running after {after:?}; killed")]
    Timeout {
        /// Which process.
        what: String,
        /// The time it was given.
        after: Duration,
    },
}

impl HarnessError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
