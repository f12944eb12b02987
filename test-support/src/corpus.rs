//! The RFC 4475/5118 robustness corpus driver (`send_corpus.py`) as a test step.

use std::fmt;
use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::process::{self, wait_timeout};
use crate::{HarnessError, TestDir, corpus_dir};

/// The driver gets this long (42 records at up to a few seconds each) before it is killed.
const CORPUS_TIMEOUT: Duration = Duration::from_secs(400);

/// The transports the integration tests replay the corpus over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorpusTransport {
    /// `--transport udp`.
    Udp,
    /// `--transport tcp`.
    Tcp,
    /// `--transport ws` (RFC 7118 WebSocket).
    Ws,
    /// `--transport wss` (the driver does not verify the certificate).
    Wss,
    /// `--transport tls` (the driver does not verify the certificate).
    Tls,
}

impl CorpusTransport {
    /// The driver's `--transport` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Ws => "ws",
            Self::Wss => "wss",
            Self::Tls => "tls",
        }
    }
}

/// The driver's exit status and full output.
#[derive(Debug)]
pub struct CorpusOutcome {
    /// Exit 0 only when no record failed.
    pub status: ExitStatus,
    /// Whether the harness had to kill the driver.
    pub killed: bool,
    /// stdout and stderr (ends with `N passed, N failed`).
    pub output: String,
}

impl fmt::Display for CorpusOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "send_corpus.py exited with {}{}",
            self.status,
            if self.killed { " (killed)" } else { "" }
        )?;
        write!(f, "{}", self.output)
    }
}

/// Runs `python3 <corpus>/send_corpus.py IP PORT --transport T --source-ip SRC -v` against
/// `target`. Responses to the corpus's fixed Via ports come back to `source_ip`, so give each
/// concurrent run its own source address. Output goes to `corpus.<transport>.log` in `dir`.
pub fn run_corpus(
    target: SocketAddr,
    transport: CorpusTransport,
    source_ip: IpAddr,
    dir: &TestDir,
) -> Result<CorpusOutcome, HarnessError> {
    let corpus = corpus_dir()?;
    let log = dir.file(&format!("corpus.{}.log", transport.name()));
    let out = File::create(&log)
        .map_err(|e| HarnessError::io(format!("creating {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| HarnessError::io("duplicating log handle", e))?;
    let mut child = process::command(Path::new("python3"))
        .arg(corpus.join("send_corpus.py"))
        .arg(target.ip().to_string())
        .arg(target.port().to_string())
        .args(["--transport", transport.name()])
        .args(["--source-ip", &source_ip.to_string()])
        .arg("--json")
        .arg(dir.file(&format!("corpus.{}.json", transport.name())))
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| HarnessError::io("spawning python3 send_corpus.py", e))?;
    let status = wait_timeout(&mut child, CORPUS_TIMEOUT);
    let killed = status.is_none();
    let status = match status {
        Some(status) => status,
        None => {
            process::stop(&mut child);
            child
                .wait()
                .map_err(|e| HarnessError::io("reaping send_corpus.py", e))?
        }
    };
    let output = fs::read_to_string(&log)
        .map_err(|e| HarnessError::io(format!("reading {}", log.display()), e))?;
    Ok(CorpusOutcome {
        status,
        killed,
        output,
    })
}
