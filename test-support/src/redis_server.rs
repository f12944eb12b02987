//! A real `redis-server` (Debian package `redis-server`) on a free loopback port, started for
//! one test with persistence off and killed when dropped. A missing binary fails the test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped, after [`RedisServer::stop`]) server on a fixed port.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// Arguments after the defaults (for example `--replicaof`).
    extra: Vec<String>,
    child: Option<Child>,
}

/// A 127.0.0.1 port nobody listens on right now (see [`crate::free_port`]).
pub(crate) fn free_port() -> u16 {
    crate::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// How many ports [`RedisServer::start_with`] tries when another process took the port
/// between the pick and the server's bind.
const START_ATTEMPTS: usize = 5;

impl RedisServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with `args` after the defaults (`--replicaof 127.0.0.1 6379`, …) and
    /// waits until it accepts connections.
    pub fn start_with(args: &[&str]) -> Self {
        let mut server = Self {
            port: free_port(),
            extra: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => {
                    failures.push(e);
                    server.port = free_port();
                }
            }
        }
        panic!("redis-server did not start: {}", failures.join("; "));
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (the port stays reserved for [`RedisServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: it keeps its connections open but
    /// answers nothing, the way a hung or swapping Redis behaves.
    pub fn freeze(&self, frozen: bool) {
        let Some(child) = &self.child else {
            panic!("redis-server is not running");
        };
        let status = Command::new("kill")
            .arg(if frozen { "-STOP" } else { "-CONT" })
            .arg(child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success(), "kill failed: {status}");
        if frozen {
            assert!(
                crate::process::wait_stopped(child.id(), Duration::from_secs(5)),
                "redis-server did not stop within 5 s of SIGSTOP"
            );
        }
    }

    /// Starts the server again on the same port (empty: persistence is off).
    ///
    /// # Panics
    ///
    /// When the server does not come up on its port (or another process's server answers
    /// there).
    pub fn restart(&mut self) {
        if let Err(e) = self.spawn() {
            panic!("redis-server did not restart: {e}");
        }
    }

    /// Kills the current server, starts one on `self.port` and waits until it is the one
    /// answering there (its `process_id` is the child's).
    fn spawn(&mut self) -> Result<(), String> {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need a real Redis; \
                     install the Debian package with `apt-get install redis-server`"
                )
            });
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "port {}: redis-server exited ({status})",
                    self.port
                ));
            }
            let info = redis_cli(self.port, &["INFO", "server"]);
            if let Some(answering) = info
                .lines()
                .find_map(|l| l.strip_prefix("process_id:"))
                .map(str::trim)
            {
                if answering == pid.to_string() {
                    return Ok(());
                }
                self.stop();
                return Err(format!(
                    "port {}: another redis-server (pid {answering}) answers there",
                    self.port
                ));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("port {}: not listening within 5 s", self.port));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits (at most 5 s) until something accepts connections on loopback `port`.
pub(crate) fn wait_listening(port: u16) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on port {port} within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `redis-cli -p port ARGS…` and returns its output (`--raw`: one value per line).
pub(crate) fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run redis-cli ({e}): install the Debian package with \
                 `apt-get install redis-tools`"
            )
        });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisServer {
    /// Runs a command on this server with `redis-cli` and returns the raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
