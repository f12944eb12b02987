//! The node under test: a `sipmesh` process, or Kamailio as a reference when
//! `SIPMESH_TEST_TARGET=kamailio`.

use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::paths::kamailio_binary;
use crate::process::{self, signal_group, wait_timeout};
use crate::{HarnessError, SippTransport, TestDir, kamailio_config, options_ping};

/// How long a node gets to answer the readiness `OPTIONS`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of the node's log goes into a failure message.
const LOG_TAIL: usize = 6000;

/// Which implementation the integration tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The `sipmesh` binary built by Cargo (the default).
    Sipmesh,
    /// Kamailio with `tests/kamailio/proxy.cfg`: proves the scenarios are right.
    Kamailio,
}

impl Target {
    /// Reads `SIPMESH_TEST_TARGET` (`sipmesh` when unset or empty).
    pub fn from_env() -> Result<Self, HarnessError> {
        match std::env::var("SIPMESH_TEST_TARGET")
            .unwrap_or_default()
            .as_str()
        {
            "" | "sipmesh" => Ok(Self::Sipmesh),
            "kamailio" => Ok(Self::Kamailio),
            other => Err(HarnessError::UnknownTarget(other.to_owned())),
        }
    }
}

/// How to start a node: its loopback address, ports and extra settings.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The loopback address the node listens on.
    pub ip: IpAddr,
    /// UDP listening port.
    pub udp_port: u16,
    /// TCP listening port.
    pub tcp_port: u16,
    /// TLS listening port (`--listen tls:`), when the test gives the node a certificate
    /// through `extra_args`.
    pub tls_port: Option<u16>,
    /// Extra local domains (`--domain`); the listen addresses are local domains anyway.
    pub domains: Vec<String>,
    /// A config file (`--config`); ignored for Kamailio.
    pub config: Option<PathBuf>,
    /// `--log-filter` value.
    pub log_filter: String,
    /// Admin endpoint port on `ip` (`--admin`), sipmesh only.
    pub admin_port: Option<u16>,
    /// Enable the fault-injection endpoints (`--test-hooks`); needs `admin_port`.
    pub test_hooks: bool,
    /// Further arguments appended verbatim (sipmesh only).
    pub extra_args: Vec<String>,
    /// Cluster membership (`--cluster-*`, `--node-id`), sipmesh only.
    pub cluster: Option<ClusterOptions>,
}

/// How a node under test joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Cluster port on the node's `ip` (TCP for ractor_cluster, UDP for heartbeats).
    pub port: u16,
    /// `--node-id`.
    pub node_id: String,
    /// `--cluster-seed` addresses.
    pub seeds: Vec<SocketAddr>,
    /// `--cluster-cookie`.
    pub cookie: String,
}

impl NodeOptions {
    /// Listens on `ip` with one free port shared by UDP and TCP, log filter `debug`.
    pub fn on(ip: IpAddr) -> Self {
        let port = crate::free_port(ip);
        Self {
            ip,
            udp_port: port,
            tcp_port: port,
            tls_port: None,
            domains: Vec::new(),
            config: None,
            log_filter: "debug".to_owned(),
            admin_port: None,
            test_hooks: false,
            extra_args: Vec::new(),
            cluster: None,
        }
    }

    /// Adds an admin endpoint on a free port (no test hooks).
    pub fn with_admin(mut self) -> Self {
        self.admin_port = Some(crate::free_port(self.ip));
        self
    }

    /// Makes the node a cluster member `node_id` on a free cluster port, dialing `seeds`, with
    /// the test cookie. The node also needs `--redis` (in `extra_args`).
    pub fn with_cluster(mut self, node_id: &str, seeds: Vec<SocketAddr>) -> Self {
        self.cluster = Some(ClusterOptions {
            port: crate::free_port(self.ip),
            node_id: node_id.to_owned(),
            seeds,
            cookie: "sipmesh-test-cookie".to_owned(),
        });
        self
    }

    /// The cluster address, when clustered.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster
            .as_ref()
            .map(|c| SocketAddr::new(self.ip, c.port))
    }

    /// Adds an admin endpoint on a free port with the test hooks enabled.
    pub fn with_test_hooks(mut self) -> Self {
        self.admin_port = Some(crate::free_port(self.ip));
        self.test_hooks = true;
        self
    }

    /// The `sipmesh` command-line arguments for these options.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--listen".to_owned(),
            format!("udp:{}", SocketAddr::new(self.ip, self.udp_port)),
            "--listen".to_owned(),
            format!("tcp:{}", SocketAddr::new(self.ip, self.tcp_port)),
        ];
        if let Some(port) = self.tls_port {
            args.extend([
                "--listen".to_owned(),
                format!("tls:{}", SocketAddr::new(self.ip, port)),
            ]);
        }
        for domain in &self.domains {
            args.extend(["--domain".to_owned(), domain.clone()]);
        }
        if let Some(config) = &self.config {
            args.extend(["--config".to_owned(), config.display().to_string()]);
        }
        args.extend(["--log-filter".to_owned(), self.log_filter.clone()]);
        if let Some(port) = self.admin_port {
            args.extend([
                "--admin".to_owned(),
                SocketAddr::new(self.ip, port).to_string(),
            ]);
        }
        if self.test_hooks {
            args.push("--test-hooks".to_owned());
        }
        if let Some(cluster) = &self.cluster {
            args.extend([
                "--cluster-listen".to_owned(),
                SocketAddr::new(self.ip, cluster.port).to_string(),
                "--node-id".to_owned(),
                cluster.node_id.clone(),
                "--cluster-cookie".to_owned(),
                cluster.cookie.clone(),
            ]);
            for seed in &cluster.seeds {
                args.extend(["--cluster-seed".to_owned(), seed.to_string()]);
            }
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A running node; killed (with its process group) on drop.
#[derive(Debug)]
pub struct SipmeshNode {
    /// The process (group leader).
    child: Child,
    /// What was started.
    target: Target,
    /// The options it was started with.
    options: NodeOptions,
    /// stdout+stderr of the node.
    log: PathBuf,
    /// The `sipmesh` binary, for [`Self::restart`].
    binary: PathBuf,
}

impl SipmeshNode {
    /// Starts the node for `target` (`binary` is `env!("CARGO_BIN_EXE_sipmesh")`, unused for
    /// Kamailio), logging into `dir`, and waits until it answers `OPTIONS` with 200.
    pub fn start(
        binary: &Path,
        target: Target,
        dir: &TestDir,
        options: NodeOptions,
    ) -> Result<Self, HarnessError> {
        let log = dir.file(match target {
            Target::Sipmesh => "sipmesh.log",
            Target::Kamailio => "kamailio.log",
        });
        let command = match target {
            Target::Sipmesh => sipmesh_command(binary, &options),
            Target::Kamailio => kamailio_command(dir, &options)?,
        };
        let out = File::create(&log)
            .map_err(|e| HarnessError::io(format!("creating {}", log.display()), e))?;
        let child = spawn_logged(command, out)?;
        let mut node = Self {
            child,
            target,
            options,
            log,
            binary: binary.to_path_buf(),
        };
        node.wait_ready()?;
        Ok(node)
    }

    /// Kills the process (SIGKILL: a crash, no graceful shutdown) and starts it again with the
    /// same options and ports, appending to the same log; returns once it answers `OPTIONS`.
    /// sipmesh only.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        if self.target != Target::Sipmesh {
            return Err(HarnessError::UnknownTarget(
                "restart is only supported for sipmesh".to_owned(),
            ));
        }
        process::stop(&mut self.child);
        let out = fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .map_err(|e| HarnessError::io(format!("opening {}", self.log.display()), e))?;
        self.child = spawn_logged(sipmesh_command(&self.binary, &self.options), out)?;
        self.wait_ready()
    }

    /// Kills the process with SIGKILL (a crash) and reaps it; [`Self::restart`] starts it again.
    pub fn kill(&mut self) {
        signal_group(&self.child, "KILL");
        let _ = wait_timeout(&mut self.child, Duration::from_secs(5));
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the process: it keeps its sockets but runs
    /// nothing, like a node stuck in a long GC pause or a swap storm.
    pub fn freeze(&self, frozen: bool) {
        signal_group(&self.child, if frozen { "STOP" } else { "CONT" });
        if frozen {
            assert!(
                process::wait_stopped(self.child.id(), Duration::from_secs(5)),
                "the node did not stop within 5 s of SIGSTOP"
            );
        }
    }

    /// The options the node was started with.
    pub fn options(&self) -> &NodeOptions {
        &self.options
    }

    /// Polls with `OPTIONS` until a 200, the process exits, or [`READY_TIMEOUT`] passes.
    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(HarnessError::NodeExited {
                    status: status.to_string(),
                    log: self.log.clone(),
                    tail: self.log_tail(),
                });
            }
            if options_ping(self.options.ip, self.udp_addr(), Duration::from_millis(200)) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(HarnessError::NotReady {
                    waited: READY_TIMEOUT,
                    log: self.log.clone(),
                    tail: self.log_tail(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one request to the node's admin endpoint (`method` `path`) and returns the HTTP
    /// status and body. Needs [`NodeOptions::admin_port`].
    pub fn admin(&self, method: &str, path: &str) -> Result<(u16, String), HarnessError> {
        let port = self.options.admin_port.ok_or_else(|| {
            HarnessError::io(
                "admin request",
                std::io::Error::other("the node has no admin port"),
            )
        })?;
        crate::admin::request(SocketAddr::new(self.options.ip, port), method, path)
    }

    /// What this node is.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The node's address for UDP.
    pub fn udp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.options.ip, self.options.udp_port)
    }

    /// The node's address for TCP.
    pub fn tcp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.options.ip, self.options.tcp_port)
    }

    /// The node's address for a SIPp transport.
    pub fn addr(&self, transport: SippTransport) -> SocketAddr {
        match transport {
            SippTransport::Udp => self.udp_addr(),
            SippTransport::Tcp | SippTransport::TcpMulti => self.tcp_addr(),
            // Port 0 (no TLS listener configured) makes the run fail loudly.
            SippTransport::Tls => {
                SocketAddr::new(self.options.ip, self.options.tls_port.unwrap_or(0))
            }
        }
    }

    /// The loopback address the node listens on.
    pub fn ip(&self) -> IpAddr {
        self.options.ip
    }

    /// The node's log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The end of the node's log, for failure messages.
    pub fn log_tail(&self) -> String {
        process::tail(&self.log, LOG_TAIL)
    }

    /// The whole log so far (lossy UTF-8; empty when it cannot be read).
    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM (graceful shutdown) to the node's process group.
    pub fn sigterm(&self) {
        signal_group(&self.child, "TERM");
    }

    /// Waits up to `limit` for the node to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, HarnessError> {
        wait_timeout(&mut self.child, limit).ok_or_else(|| HarnessError::Timeout {
            what: format!("{:?} node", self.target),
            after: limit,
        })
    }
}

impl Drop for SipmeshNode {
    fn drop(&mut self) {
        process::stop(&mut self.child);
    }
}

/// The command line of a `sipmesh` node with `options`.
fn sipmesh_command(binary: &Path, options: &NodeOptions) -> Command {
    let mut command = process::command(binary);
    command.args(options.args()).env("RUST_BACKTRACE", "1");
    command
}

/// Starts `command` in its own process group with stdout and stderr into `out`.
fn spawn_logged(mut command: Command, out: File) -> Result<Child, HarnessError> {
    let err = out
        .try_clone()
        .map_err(|e| HarnessError::io("duplicating log handle", e))?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| HarnessError::io(format!("spawning {command:?}"), e))
}

/// Writes the Kamailio config for `options` into `dir` and builds its command line.
fn kamailio_command(dir: &TestDir, options: &NodeOptions) -> Result<Command, HarnessError> {
    let template_path = kamailio_config();
    let template = fs::read_to_string(&template_path)
        .map_err(|e| HarnessError::io(format!("reading {}", template_path.display()), e))?;
    let aliases: String = options
        .domains
        .iter()
        .map(|domain| format!("alias=\"{domain}\"\n"))
        .collect();
    let config = template
        .replace("@@UDP_IP@@", &options.ip.to_string())
        .replace("@@TCP_IP@@", &options.ip.to_string())
        .replace("@@UDP_PORT@@", &options.udp_port.to_string())
        .replace("@@TCP_PORT@@", &options.tcp_port.to_string())
        .replace("# @@ALIASES@@\n", &aliases);
    let config_path = dir.file("kamailio.cfg");
    fs::write(&config_path, config)
        .map_err(|e| HarnessError::io(format!("writing {}", config_path.display()), e))?;
    let run_dir = dir.file("kamailio-run");
    fs::create_dir_all(&run_dir)
        .map_err(|e| HarnessError::io(format!("creating {}", run_dir.display()), e))?;
    let mut command = process::command(&kamailio_binary()?);
    command
        .arg("-f")
        .arg(&config_path)
        .args(["-DD", "-E", "-m", "32", "-M", "4"])
        .arg("-Y")
        .arg(&run_dir)
        .arg("-P")
        .arg(run_dir.join("kamailio.pid"));
    Ok(command)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn args_follow_the_cli() {
        let options = NodeOptions {
            ip: IpAddr::V4(Ipv4Addr::new(127, 3, 4, 5)),
            udp_port: 5070,
            tcp_port: 5071,
            tls_port: None,
            domains: vec!["example.test".to_owned()],
            config: Some(PathBuf::from("/etc/sipmesh.toml")),
            log_filter: "info".to_owned(),
            admin_port: None,
            test_hooks: false,
            extra_args: Vec::new(),
            cluster: None,
        };
        assert_eq!(
            options.args(),
            [
                "--listen",
                "udp:127.3.4.5:5070",
                "--listen",
                "tcp:127.3.4.5:5071",
                "--domain",
                "example.test",
                "--config",
                "/etc/sipmesh.toml",
                "--log-filter",
                "info",
            ]
        );
    }

    #[test]
    fn cluster_options_become_cluster_flags() {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12));
        let seed: SocketAddr = "127.0.0.11:7000".parse().expect("addr");
        let mut options = NodeOptions::on(ip).with_cluster("node2", vec![seed]);
        let port = options.cluster.as_ref().map(|c| c.port).expect("cluster");
        assert_eq!(options.cluster_addr(), Some(SocketAddr::new(ip, port)));
        options.extra_args.push("--redis".to_owned());
        let args = options.args().join(" ");
        assert!(
            args.contains(&format!(
                "--cluster-listen 127.0.0.12:{port} --node-id node2 --cluster-cookie sipmesh-test-cookie --cluster-seed 127.0.0.11:7000 --redis"
            )),
            "{args}"
        );
    }

    #[test]
    fn kamailio_config_gets_addresses_and_aliases() {
        let dir = TestDir::new("node-kamailio-config-unit").expect("test dir");
        let mut options = NodeOptions::on(IpAddr::V4(Ipv4Addr::new(127, 3, 4, 6)));
        options.udp_port = 5080;
        options.tcp_port = 5081;
        options.domains.push("example.test".to_owned());
        // Building the command needs kamailio on PATH only for the program name.
        if kamailio_command(&dir, &options).is_ok() {
            let config = fs::read_to_string(dir.file("kamailio.cfg")).expect("config written");
            assert!(config.contains("listen=udp:127.3.4.6:5080"));
            assert!(config.contains("listen=tcp:127.3.4.6:5081"));
            assert!(config.contains("alias=\"example.test\""));
            let unreplaced = config
                .lines()
                .filter(|l| !l.starts_with('#') && l.contains("@@"));
            assert_eq!(unreplaced.count(), 0);
        }
    }
}
