//! A Kamailio process for the cluster benchmark's reference column: the load benchmark's
//! configuration (`bench/load/kamailio.cfg`: in-memory usrloc registrar, record-routing `tm`
//! proxy) on one UDP and TCP port of 127.0.0.1, with the same memory as the load benchmark gives it
//! (`-m 2048`: with 512 MB of shared memory `tm` ran out at ~3,600 calls/s and answered 500),
//! killed on drop. Its log (stderr) goes to a
//! file that outlives the run, so failed calls can be traced to what Kamailio said.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::ChaosError;
use crate::topology::NodeAddrs;

/// How long Kamailio may take to bind its port.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running Kamailio.
#[derive(Debug)]
pub struct Kamailio {
    child: Child,
    addr: SocketAddr,
    /// Where its stderr goes.
    log: PathBuf,
    /// Its control socket's directory.
    _dir: sipmesh_test_support::TestDir,
}

impl Kamailio {
    /// Starts `kamailio` with `cfg` on 127.0.0.1:`port` (`-A BENCH_PORT`, the control socket
    /// in a test directory) and waits until it listens.
    pub fn start(cfg: &Path, port: u16) -> Result<Self, ChaosError> {
        let dir = sipmesh_test_support::TestDir::new(&format!("kamailio-{}", std::process::id()))?;
        let ctl = dir.path().join("kamailio.ctl");
        let log =
            std::env::temp_dir().join(format!("cluster-bench-kamailio-{}.log", std::process::id()));
        let stderr = std::fs::File::create(&log).map_err(|source| ChaosError::Io {
            context: format!("creating {}", log.display()),
            source,
        })?;
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(cfg)
            .args(["-DD", "-E", "-m", "2048", "-M", "16"])
            .args(["-A", &format!("BENCH_PORT={port}")])
            .args(["-A", &format!("BENCH_CTL=\"unix:{}\"", ctl.display())])
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|source| ChaosError::Io {
                context: "starting kamailio (Debian package kamailio)".to_owned(),
                source,
            })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut k = Self {
            child,
            addr,
            log,
            _dir: dir,
        };
        if !sipmesh_test_support::wait_bound(addr, false, START_LIMIT) {
            let status = k.child.try_wait().ok().flatten();
            return Err(ChaosError::KamailioNotListening(
                addr,
                format!("{status:?}"),
            ));
        }
        Ok(k)
    }

    /// Its address, as the agents' topology sees a node (one UDP/TCP port; no WebSocket).
    pub fn addrs(&self) -> NodeAddrs {
        NodeAddrs {
            udp: self.addr,
            tcp: self.addr,
            ws: self.addr,
        }
    }

    /// The file its log (stderr) is written to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log's lines at level ERROR or WARNING so far (at most `limit` of them) and how many
    /// there are in all.
    pub fn log_problems(&self, limit: usize) -> (Vec<String>, usize) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let problems: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARNING") || l.contains("CRITICAL"))
            .collect();
        let n = problems.len();
        (
            problems
                .into_iter()
                .take(limit)
                .map(str::to_owned)
                .collect(),
            n,
        )
    }

    /// The default configuration path in a source tree rooted at `root`.
    pub fn default_cfg(root: &Path) -> PathBuf {
        root.join("bench/load/kamailio.cfg")
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM: the main process stops its worker processes before it exits (SIGKILL would
        // leave them holding the port).
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
