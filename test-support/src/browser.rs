//! A real browser for the end-to-end media tests: Debian's `chromium`, headless, driven by
//! `tests/browser/driver.mjs` (puppeteer-core) through JsSIP pages registered over WSS.
//!
//! [`Chromium`] is the browser process: the harness starts it (its own process group, killed
//! with the test process through `setpriv --pdeathsig`), with a fresh profile whose preference
//! `webrtc.ip_handling_policy = default_public_and_private_interfaces` keeps WebRTC on one
//! wildcard-bound UDP socket, so that the page can advertise it as 127.0.0.1 and no media ever
//! leaves loopback (see `tests/browser/page.js`). It is stopped on drop; [`Chromium::close`]
//! also proves that no process of its group is left.
//!
//! [`BrowserRun`] is one `node driver.mjs SCENARIO` connected to that browser over the DevTools
//! protocol; [`BrowserRun::finish`] parses the driver's final `REPORT` line into a
//! [`BrowserReport`] (registrations, call states, ICE/DTLS states, getStats RTP packet counts over
//! time, the selected candidate pair, the BYE result), which the test judges, for instance with
//! [`CallReport::check_media`].
//!
//! Nothing skips: a missing `chromium`, `node` or `npm ci` is a [`BrowserError`] that says what
//! to run (`scripts/test.sh`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::process::{self, wait_timeout};
use crate::{TestDir, workspace_root};

mod legacy;
mod report;

pub use legacy::{LegacyPhone, start_wss_node};
pub use report::{
    AgentReport, BrowserReport, ByeResult, CallReport, MEDIA_WITHIN, MIN_PACKETS, Mark, StatsSample,
};

/// Debian's Chromium (`apt-get install chromium`); `SIPMESH_CHROMIUM` overrides it.
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long Chromium gets to write its DevTools port.
const START_LIMIT: Duration = Duration::from_secs(15);

/// The flags `driver.mjs` uses too (`CHROMIUM_FLAGS`): headless, no sandbox (tests run as
/// root), fake camera/microphone and permission prompt, the node's development certificate
/// accepted, real addresses (no mDNS names) in ICE candidates.
const FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--ignore-certificate-errors",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

/// The profile preference that disables WebRTC adapter enumeration (one wildcard socket).
const PREFERENCES: &str =
    r#"{"webrtc":{"ip_handling_policy":"default_public_and_private_interfaces"}}"#;

/// Why the browser could not be run (the behaviour under test is judged from the report).
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// The Chromium binary is not installed.
    #[error("Chromium not found at {0}: run scripts/test.sh (apt-get install chromium)")]
    ChromiumMissing(PathBuf),
    /// `node` or the packages of `tests/browser` are missing.
    #[error("browser driver not installed ({0}): run scripts/test.sh (npm ci in tests/browser)")]
    DriverMissing(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Chromium exited before it published its DevTools endpoint.
    #[error("Chromium exited at start ({status}); its log {log}:\n{tail}")]
    ChromiumExited {
        /// Exit status, as text.
        status: String,
        /// Chromium's log file.
        log: PathBuf,
        /// The end of that log.
        tail: String,
    },
    /// Chromium did not publish its DevTools endpoint in time.
    #[error("Chromium wrote no DevToolsActivePort within {0:?}")]
    ChromiumSilent(Duration),
    /// Processes of Chromium's group outlived [`Chromium::close`].
    #[error("Chromium left processes behind: {0:?}")]
    Leftovers(Vec<u32>),
    /// The driver did not print an expected `EVENT` line in time.
    #[error("the driver never printed `EVENT {expected}` within {limit:?}\n{output}")]
    NoEvent {
        /// The prefix waited for.
        expected: String,
        /// How long it was given.
        limit: Duration,
        /// What it printed, and its stderr.
        output: String,
    },
    /// The driver did not finish in time and was killed.
    #[error("the driver still ran after {limit:?}; killed\n{output}")]
    DriverTimeout {
        /// How long it was given.
        limit: Duration,
        /// What it printed, and its stderr.
        output: String,
    },
    /// The driver failed or printed no `REPORT` line.
    #[error("the driver failed ({status}) or printed no REPORT\n{output}")]
    DriverFailed {
        /// Its exit status, as text.
        status: String,
        /// What it printed, and its stderr.
        output: String,
    },
    /// The `REPORT` line is not the JSON the harness expects.
    #[error("unreadable REPORT: {source}\n{line}")]
    BadReport {
        /// The line.
        line: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl BrowserError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// `tests/browser/`: the page, the driver and their `package.json`.
pub fn browser_dir() -> PathBuf {
    workspace_root().join("tests").join("browser")
}

/// A headless Chromium for one test; stopped (with every process of its group) on drop.
#[derive(Debug)]
pub struct Chromium {
    child: Child,
    endpoint: String,
    log: PathBuf,
    profile: PathBuf,
}

impl Chromium {
    /// Starts Chromium with a fresh profile in `dir` and waits for its DevTools endpoint.
    pub fn launch(dir: &TestDir) -> Result<Self, BrowserError> {
        let binary = std::env::var_os("SIPMESH_CHROMIUM")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
        if !binary.is_file() {
            return Err(BrowserError::ChromiumMissing(binary));
        }
        let profile = dir.file("chromium-profile");
        let default = profile.join("Default");
        fs::create_dir_all(&default)
            .map_err(|e| BrowserError::io(format!("creating {}", default.display()), e))?;
        let prefs = default.join("Preferences");
        fs::write(&prefs, PREFERENCES)
            .map_err(|e| BrowserError::io(format!("writing {}", prefs.display()), e))?;
        let port_file = profile.join("DevToolsActivePort");
        let _ = fs::remove_file(&port_file);
        let log = dir.file("chromium.log");
        let out = fs::File::create(&log)
            .map_err(|e| BrowserError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| BrowserError::io("duplicating a log handle", e))?;
        let mut command = process::command(&binary);
        command
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .map_err(|e| BrowserError::io(format!("starting {}", binary.display()), e))?;
        let mut chromium = Self {
            child,
            endpoint: String::new(),
            log,
            profile,
        };
        chromium.endpoint = chromium.wait_endpoint(&port_file)?;
        Ok(chromium)
    }

    /// Polls `DevToolsActivePort` (line 1: port, line 2: browser path) until it is complete.
    fn wait_endpoint(&mut self, port_file: &Path) -> Result<String, BrowserError> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BrowserError::ChromiumExited {
                    status: status.to_string(),
                    log: self.log.clone(),
                    tail: process::tail(&self.log, 4000),
                });
            }
            if let Ok(text) = fs::read_to_string(port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next())
                    && let Ok(port) = port.trim().parse::<u16>()
                    && path.starts_with("/devtools/browser/")
                {
                    return Ok(format!("ws://127.0.0.1:{port}{}", path.trim()));
                }
            }
            if Instant::now() > deadline {
                return Err(BrowserError::ChromiumSilent(START_LIMIT));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The browser's DevTools WebSocket (`ws://127.0.0.1:PORT/devtools/browser/ID`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The process group id (Chromium's pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Chromium's own log (`chromium.log` in the test directory).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Live processes of this browser: its process group, plus any process whose command line
    /// names its profile directory (the crashpad handlers start their own sessions).
    pub fn processes(&self) -> Vec<u32> {
        let mut pids = live_group_members(self.child.id());
        for pid in processes_naming(&self.profile) {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Stops Chromium (SIGTERM, then SIGKILL) and fails if any of its processes survives.
    pub fn close(mut self) -> Result<(), BrowserError> {
        process::stop(&mut self.child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.processes();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BrowserError::Leftovers(left));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        process::stop(&mut self.child);
        // Helpers outside the group (crashpad) normally follow the browser; make sure.
        for pid in processes_naming(&self.profile) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The state letter of `/proc/PID/stat` and the fields after it.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let after = stat.rfind(')').and_then(|i| stat.get(i + 1..))?;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// Whether process `pid` exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| is_live(&f))
}

fn is_live(fields: &[String]) -> bool {
    !matches!(fields.first().map(String::as_str), Some("Z" | "X") | None)
}

fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes whose command line contains `path` (a unique per-test directory).
fn processes_naming(path: &Path) -> Vec<u32> {
    let needle = path.as_os_str().as_encoded_bytes();
    if needle.is_empty() {
        return Vec::new();
    }
    pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.windows(needle.len()).any(|w| w == needle))
                && stat_fields(*pid).is_some_and(|f| is_live(&f))
        })
        .collect()
}

/// Processes (not zombies) whose process group is `group`, from `/proc/PID/stat`.
pub fn live_group_members(group: u32) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|pid| {
            stat_fields(*pid).is_some_and(|f| {
                is_live(&f) && f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(group)
            })
        })
        .collect()
}

/// What `driver.mjs` does (its first argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserScenario {
    /// Pages `alice` and `bob`; alice calls bob, media peer to peer, alice hangs up.
    Pair,
    /// Page `web` calls `target` (a user at the node's domain), then hangs up.
    Call {
        /// The callee's user part.
        target: String,
    },
    /// Page `web` registers (`EVENT registered web`), answers the next call, then hangs up.
    Answer,
}

impl BrowserScenario {
    fn name(&self) -> &'static str {
        match self {
            Self::Pair => "pair",
            Self::Call { .. } => "call",
            Self::Answer => "answer",
        }
    }
}

/// One running `node tests/browser/driver.mjs SCENARIO`; killed on drop.
#[derive(Debug)]
pub struct BrowserRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: PathBuf,
}

/// Fails unless `node` runs and `npm ci` has installed the driver's packages.
pub fn require_driver() -> Result<(), BrowserError> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err(BrowserError::DriverMissing("`node` not on PATH".into()));
    }
    for package in ["puppeteer-core", "esbuild", "jssip"] {
        let dir = browser_dir().join("node_modules").join(package);
        if !dir.is_dir() {
            return Err(BrowserError::DriverMissing(format!(
                "{} missing",
                dir.display()
            )));
        }
    }
    Ok(())
}

impl BrowserRun {
    /// Runs `scenario` in `chromium` against the node's WSS listener `wss` (domain `domain`),
    /// with the page, bundle and logs in `dir`.
    pub fn spawn(
        chromium: &Chromium,
        dir: &TestDir,
        scenario: &BrowserScenario,
        wss: SocketAddr,
        domain: IpAddr,
    ) -> Result<Self, BrowserError> {
        require_driver()?;
        let name = scenario.name();
        let stderr = dir.file(&format!("browser-{name}.stderr"));
        let err = fs::File::create(&stderr)
            .map_err(|e| BrowserError::io(format!("creating {}", stderr.display()), e))?;
        let mut command = process::command(Path::new("node"));
        command
            .arg(browser_dir().join("driver.mjs"))
            .arg(name)
            .current_dir(browser_dir())
            .env("SIPMESH_CHROMIUM_WS", chromium.endpoint())
            .env("SIPMESH_WSS_URL", format!("wss://{wss}"))
            .env("SIPMESH_DOMAIN", domain.to_string())
            .env("SIPMESH_OUT", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0);
        if let BrowserScenario::Call { target } = scenario {
            command.env("SIPMESH_TARGET", target);
        }
        let mut child = command
            .spawn()
            .map_err(|e| BrowserError::io("starting node driver.mjs", e))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(BrowserError::io(
                "reading the driver's stdout",
                std::io::Error::other("no pipe"),
            ));
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        })
    }

    /// Everything the driver printed so far, and its stderr (for failure messages).
    pub fn output(&self) -> String {
        let shown: Vec<&str> = self
            .seen
            .iter()
            .map(|l| l.get(..2000).unwrap_or(l))
            .collect();
        format!(
            "driver stdout:\n{}\ndriver stderr ({}):\n{}",
            shown.join("\n"),
            self.stderr.display(),
            process::tail(&self.stderr, 6000)
        )
    }

    /// Waits for a line `EVENT <prefix>...`.
    pub fn wait_event(&mut self, prefix: &str, limit: Duration) -> Result<(), BrowserError> {
        let deadline = Instant::now() + limit;
        let wanted = format!("EVENT {prefix}");
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(&wanted);
                    self.seen.push(line);
                    if hit {
                        return Ok(());
                    }
                }
                Err(_) => break,
            }
        }
        Err(BrowserError::NoEvent {
            expected: prefix.to_owned(),
            limit,
            output: self.output(),
        })
    }

    /// Waits (at most `limit`) for the driver to exit and returns its report.
    pub fn finish(mut self, limit: Duration) -> Result<BrowserReport, BrowserError> {
        let status = wait_timeout(&mut self.child, limit);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        let Some(status) = status else {
            process::stop(&mut self.child);
            return Err(BrowserError::DriverTimeout {
                limit,
                output: self.output(),
            });
        };
        let report = self
            .seen
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("REPORT "));
        match report {
            Some(line) if status.success() => {
                serde_json::from_str(line).map_err(|source| BrowserError::BadReport {
                    line: line.to_owned(),
                    source,
                })
            }
            _ => Err(BrowserError::DriverFailed {
                status: status.to_string(),
                output: self.output(),
            }),
        }
    }
}

impl Drop for BrowserRun {
    fn drop(&mut self) {
        process::stop(&mut self.child);
    }
}
