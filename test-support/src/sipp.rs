//! Running SIPp scenarios from `tests/sipp/` and collecting their outcome.
//!
//! Every run writes its artifacts next to the node's log in the test's [`TestDir`]:
//! `<label>.errors.log` (`-trace_err`), `<label>.stat.csv` (`-trace_stat`),
//! `<label>.messages.log` (`-trace_msg`) and `<label>.screen.log` (stdout).
//! Background runs are child processes (not `-bg`, which daemonizes and loses the exit status).

use std::fmt;
use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::process::{self, wait_timeout};
use crate::{HarnessError, SippStats, TestDir, free_port, sipp_binary, sipp_dir, sipp_tls_binary};

/// Extra time the harness gives SIPp beyond its own `-timeout` before killing it.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How much of each log goes into a failure message.
const LOG_TAIL: usize = 5000;

/// How much of SIPp's screen output goes into a failure message.
const SCREEN_TAIL: usize = 1500;

/// SIPp's transport mode (`-t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SippTransport {
    /// `u1`: one UDP socket.
    Udp,
    /// `t1`: one TCP connection (or one listening socket for a UAS).
    Tcp,
    /// `tn`: one TCP connection per call.
    TcpMulti,
    /// `l1`: one TLS connection (or one listening socket for a UAS). Runs the TLS-capable SIPp
    /// of [`crate::sipp_tls_binary`] (Debian 12's has no TLS), which presents
    /// `cacert.pem`/`cakey.pem` from the test directory (SIPp's default names;
    /// [`crate::Harness::try_start_secure`] writes the node's development pair there).
    Tls,
}

impl SippTransport {
    /// The `-t` value.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Udp => "u1",
            Self::Tcp => "t1",
            Self::TcpMulti => "tn",
            Self::Tls => "l1",
        }
    }

    /// Lower-case transport name, as in a SIP URI `transport=` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp | Self::TcpMulti => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// A SIPp command line under construction; [`Sipp::run`] or [`Sipp::spawn`] executes it.
#[derive(Debug, Clone)]
pub struct Sipp {
    /// Absolute path of the scenario XML.
    scenario: PathBuf,
    /// The peer (client mode); `None` for a pure UAS.
    remote: Option<SocketAddr>,
    /// `-i`.
    local_ip: IpAddr,
    /// `-p`.
    local_port: u16,
    /// `-t`.
    transport: SippTransport,
    /// `-m`.
    calls: u32,
    /// `-r`, when set.
    rate: Option<u32>,
    /// `-inf`, when set.
    inf: Option<PathBuf>,
    /// `-key NAME VALUE` pairs.
    keys: Vec<(String, String)>,
    /// `-d` (the default `<pause/>` length), when set.
    duration_ms: Option<u64>,
    /// SIPp's own `-timeout` (with `-timeout_error`); the harness kills it a bit later.
    timeout: Duration,
    /// Where the logs go.
    dir: PathBuf,
    /// Prefix of the log file names.
    label: String,
}

impl Sipp {
    /// A run of `scenario` (a file name in `tests/sipp/`, or a path) over `transport`, from a
    /// free port on `local_ip`, one call, 30 s timeout.
    pub fn new(scenario: &str, dir: &TestDir, local_ip: IpAddr, transport: SippTransport) -> Self {
        let scenario = resolve(scenario);
        let local_port = free_port(local_ip);
        let stem = scenario
            .file_stem()
            .map_or_else(|| "sipp".into(), |s| s.to_string_lossy());
        let label = format!("{stem}.{}.{local_port}", transport.name());
        Self {
            scenario,
            remote: None,
            local_ip,
            local_port,
            transport,
            calls: 1,
            rate: None,
            inf: None,
            keys: Vec::new(),
            duration_ms: None,
            timeout: Duration::from_secs(30),
            dir: dir.path().to_path_buf(),
            label,
        }
    }

    /// Sends to `remote` (client mode).
    pub fn remote(mut self, remote: SocketAddr) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Uses `port` locally (`-p`) instead of a free one.
    pub fn local_port(mut self, port: u16) -> Self {
        self.local_port = port;
        self
    }

    /// Number of calls before SIPp exits (`-m`).
    pub fn calls(mut self, calls: u32) -> Self {
        self.calls = calls;
        self
    }

    /// Call rate per second (`-r`).
    pub fn rate(mut self, rate: u32) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Injection CSV (`-inf`): a file name in `tests/sipp/`, or a path.
    pub fn inf(mut self, csv: &str) -> Self {
        self.inf = Some(resolve(csv));
        self
    }

    /// A `[name]` keyword substitution (`-key name value`).
    pub fn key(mut self, name: &str, value: impl ToString) -> Self {
        self.keys.push((name.to_owned(), value.to_string()));
        self
    }

    /// Length of `<pause/>` elements without their own duration (`-d`, milliseconds).
    pub fn duration_ms(mut self, ms: u64) -> Self {
        self.duration_ms = Some(ms);
        self
    }

    /// SIPp's global timeout (`-timeout`, rounded up to seconds; failing the run when hit).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The local address SIPp uses (`-i`, `-p`).
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.local_ip, self.local_port)
    }

    /// The SIPp command line (without stdio set up).
    pub fn command(&self) -> Result<Command, HarnessError> {
        for input in std::iter::once(&self.scenario).chain(self.inf.as_ref()) {
            if !input.is_file() {
                return Err(HarnessError::InputMissing(input.clone()));
            }
        }
        let binary = match self.transport {
            SippTransport::Tls => sipp_tls_binary()?,
            SippTransport::Udp | SippTransport::Tcp | SippTransport::TcpMulti => sipp_binary()?,
        };
        let mut command = process::command(&binary);
        if let Some(remote) = self.remote {
            command.arg(remote.to_string());
        }
        let timeout_s = self.timeout.as_secs() + u64::from(self.timeout.subsec_nanos() > 0);
        command
            .arg("-sf")
            .arg(&self.scenario)
            .args(["-i", &self.local_ip.to_string()])
            .args(["-p", &self.local_port.to_string()])
            .args(["-t", self.transport.flag()])
            .args(["-m", &self.calls.to_string()])
            .args(["-timeout", &format!("{timeout_s}s"), "-timeout_error"])
            .arg("-nostdin")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(self.artifact("errors.log"))
            .arg("-trace_stat")
            .arg("-stf")
            .arg(self.artifact("stat.csv"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(self.artifact("messages.log"));
        if let Some(rate) = self.rate {
            command.args(["-r", &rate.to_string()]);
        }
        if let Some(inf) = &self.inf {
            command.arg("-inf").arg(inf);
        }
        if let Some(ms) = self.duration_ms {
            command.args(["-d", &ms.to_string()]);
        }
        for (name, value) in &self.keys {
            command.args(["-key", name, value]);
        }
        command.current_dir(&self.dir);
        Ok(command)
    }

    /// Runs SIPp to completion (or timeout) and returns its outcome.
    pub fn run(self) -> Result<SippOutcome, HarnessError> {
        self.spawn()?.wait()
    }

    /// Starts SIPp in the background (e.g. a UAS that must listen before the UAC starts).
    pub fn spawn(self) -> Result<SippRunning, HarnessError> {
        let mut command = self.command()?;
        let screen = self.artifact("screen.log");
        let out = File::create(&screen)
            .map_err(|e| HarnessError::io(format!("creating {}", screen.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::io("duplicating log handle", e))?;
        let command_line = format!("{command:?}");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| HarnessError::io(format!("spawning {command_line}"), e))?;
        Ok(SippRunning {
            child: Some(child),
            sipp: self,
            command_line,
        })
    }

    /// `<dir>/<label>.<suffix>`.
    fn artifact(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}.{suffix}", self.label))
    }
}

/// A scenario or CSV name relative to `tests/sipp/`, or a path as given.
fn resolve(name: &str) -> PathBuf {
    let path = Path::new(name);
    if path.is_absolute() || path.components().count() > 1 {
        path.to_path_buf()
    } else {
        sipp_dir().join(path)
    }
}

/// A SIPp process started with [`Sipp::spawn`]; killed on drop if not waited for.
#[derive(Debug)]
pub struct SippRunning {
    /// The process; `None` once reaped.
    child: Option<Child>,
    /// The run's settings (for file names and the report).
    sipp: Sipp,
    /// The command line, for the report.
    command_line: String,
}

impl SippRunning {
    /// The local address this SIPp instance listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.sipp.local_addr()
    }

    /// Waits (up to 5 s) until the instance has bound its UDP socket or TCP listener, so a
    /// request routed to it cannot arrive before it listens.
    pub fn wait_listening(&self) -> Result<(), HarnessError> {
        let tcp = self.sipp.transport != SippTransport::Udp;
        let limit = Duration::from_secs(5);
        if crate::wait_bound(self.local_addr(), tcp, limit) {
            Ok(())
        } else {
            Err(HarnessError::Timeout {
                what: format!("binding of {}", self.sipp.label),
                after: limit,
            })
        }
    }

    /// Waits for SIPp to exit (killing it after its timeout plus a grace period).
    pub fn wait(mut self) -> Result<SippOutcome, HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Err(HarnessError::io(
                "waiting for SIPp",
                std::io::ErrorKind::Other.into(),
            ));
        };
        let status = wait_timeout(&mut child, self.sipp.timeout + KILL_GRACE);
        let killed = status.is_none();
        let status = match status {
            Some(status) => status,
            None => {
                process::stop(&mut child);
                child
                    .wait()
                    .map_err(|e| HarnessError::io("reaping SIPp", e))?
            }
        };
        let stats = fs::read_to_string(self.sipp.artifact("stat.csv"))
            .ok()
            .and_then(|text| SippStats::parse(&text));
        Ok(SippOutcome {
            label: self.sipp.label.clone(),
            command_line: self.command_line.clone(),
            status,
            killed,
            expected_calls: self.sipp.calls,
            stats,
            errors: process::tail(&self.sipp.artifact("errors.log"), LOG_TAIL),
            messages: process::tail(&self.sipp.artifact("messages.log"), LOG_TAIL),
            screen: process::tail(&self.sipp.artifact("screen.log"), SCREEN_TAIL),
        })
    }
}

impl Drop for SippRunning {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            process::stop(child);
        }
    }
}

/// What a SIPp run did.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    /// The log-file prefix of this run.
    pub label: String,
    /// The command line that ran.
    pub command_line: String,
    /// SIPp's exit status (0: all calls succeeded; 1: some failed; 97/99/255: other).
    pub status: ExitStatus,
    /// Whether the harness had to kill SIPp.
    pub killed: bool,
    /// `-m`: how many calls should have succeeded.
    pub expected_calls: u32,
    /// The final counters, when the statistics file could be read.
    pub stats: Option<SippStats>,
    /// The end of the `-trace_err` log (unexpected messages, failed checks).
    pub errors: String,
    /// The end of the `-trace_msg` log (every message sent and received).
    pub messages: String,
    /// The end of SIPp's stdout/stderr (final statistics screen, startup errors).
    pub screen: String,
}

impl SippOutcome {
    /// Exit 0, not killed, no failed call, and `-m` successful calls.
    pub fn is_success(&self) -> bool {
        !self.killed
            && self.status.success()
            && self.stats.is_some_and(|s| {
                s.failed_calls == 0 && s.successful_calls >= u64::from(self.expected_calls)
            })
    }

    /// Panics with the full report unless [`Self::is_success`]; `context` (e.g. the node's log
    /// tail) is appended.
    pub fn assert_success(&self, context: &str) {
        assert!(
            self.is_success(),
            "SIPp run failed: {self}\n--- context ---\n{context}"
        );
    }
}

impl fmt::Display for SippOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} exited with {}{}",
            self.label,
            self.status,
            if self.killed { " (killed)" } else { "" }
        )?;
        match self.stats {
            Some(s) => writeln!(
                f,
                "calls: {} successful, {} failed, {} created (expected {})",
                s.successful_calls, s.failed_calls, s.created_calls, self.expected_calls
            )?,
            None => writeln!(f, "no statistics file")?,
        }
        writeln!(f, "command: {}", self.command_line)?;
        writeln!(f, "--- errors log ---\n{}", self.errors)?;
        writeln!(f, "--- messages log ---\n{}", self.messages)?;
        write!(f, "--- screen ---\n{}", self.screen)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn command_line_has_the_requested_options() {
        let dir = TestDir::new("sipp-command-line-unit").expect("test dir");
        let ip = IpAddr::V4(Ipv4Addr::new(127, 3, 4, 7));
        let sipp = Sipp::new("register.xml", &dir, ip, SippTransport::Tcp)
            .remote(SocketAddr::new(ip, 5060))
            .local_port(6000)
            .calls(5)
            .rate(2)
            .inf("bob.csv")
            .key("contact_port", 7000)
            .duration_ms(250);
        let Ok(command) = sipp.command() else { return }; // SIPp missing: nothing to check.
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        for expected in [
            "127.3.4.7:5060",
            "-i 127.3.4.7",
            "-p 6000",
            "-t t1",
            "-m 5",
            "-r 2",
            "-d 250",
            "-key contact_port 7000",
            "-timeout 30s -timeout_error",
            "-trace_err",
            "-trace_stat",
        ] {
            assert!(
                joined.contains(expected),
                "{expected:?} missing from {joined}"
            );
        }
        assert!(joined.contains("tests/sipp/register.xml"));
        assert!(joined.contains("tests/sipp/bob.csv"));
    }

    #[test]
    fn tls_runs_the_tls_capable_sipp() {
        let dir = TestDir::new("sipp-tls-command-line-unit").expect("test dir");
        let ip = IpAddr::V4(Ipv4Addr::new(127, 3, 4, 9));
        let sipp = Sipp::new("register.xml", &dir, ip, SippTransport::Tls);
        match sipp.command() {
            Ok(command) => {
                let expected = sipp_tls_binary().expect("found once already");
                // The program itself, or the argument of `setpriv`.
                let args: Vec<String> = std::iter::once(command.get_program())
                    .chain(command.get_args())
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                assert!(
                    args.iter().any(|a| a == &expected.to_string_lossy()),
                    "{expected:?} not run: {args:?}"
                );
                assert!(args.join(" ").contains("-t l1"), "{args:?}");
            }
            Err(e) => {
                assert!(matches!(e, HarnessError::SippTlsMissing(_)), "{e}");
                assert!(e.to_string().contains("build-sipp-tls.sh"), "{e}");
            }
        }
    }

    #[test]
    fn missing_scenario_is_reported() {
        let dir = TestDir::new("sipp-missing-scenario-unit").expect("test dir");
        let ip = IpAddr::V4(Ipv4Addr::new(127, 3, 4, 8));
        let sipp = Sipp::new("no_such_scenario.xml", &dir, ip, SippTransport::Udp);
        assert!(matches!(sipp.command(), Err(HarnessError::InputMissing(_))));
    }
}
