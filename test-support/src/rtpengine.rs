//! A real `rtpengine` (Debian package `rtpengine-daemon`) for one test, in userspace mode on a
//! loopback address, killed when dropped. A missing binary fails the test loudly.
//!
//! The daemon runs with `--config-file=none` (the package's `/etc/rtpengine/rtpengine.conf`
//! would add HTTP and CLI listeners on fixed ports), `--table=-1` (no kernel forwarding, so no
//! privileges needed), `--interface` and `--listen-ng` on the test's address, `--dtls-passive`
//! (see issue 6: in the active role the browser's DTLS handshake stalls) and
//! `--delete-delay=0` (a deleted call leaves `list` at once). Its log goes to
//! `rtpengine.log` in the test directory.

use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestDir, free_port};

/// A running (or, after [`Rtpengine::stop`], stopped) rtpengine daemon.
#[derive(Debug)]
pub struct Rtpengine {
    ng: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Rtpengine {
    /// Starts a daemon with its media interface and ng port on `ip` (a loopback address, for
    /// instance [`crate::test_ip`]), logging into `dir`, and waits until it answers a ping.
    pub fn start(dir: &TestDir, ip: IpAddr) -> Self {
        let mut daemon = Self {
            ng: SocketAddr::new(ip, free_port(ip)),
            log: dir.file("rtpengine.log"),
            child: None,
        };
        daemon.restart();
        daemon
    }

    /// Like [`Rtpengine::start`], with its own log file name (several daemons in one test).
    pub fn start_named(dir: &TestDir, ip: IpAddr, name: &str) -> Self {
        let mut daemon = Self {
            ng: SocketAddr::new(ip, free_port(ip)),
            log: dir.file(&format!("{name}.log")),
            child: None,
        };
        daemon.restart();
        daemon
    }

    /// The ng control address (`--listen-ng`).
    pub fn ng_addr(&self) -> SocketAddr {
        self.ng
    }

    /// The media interface address (`--interface`).
    pub fn media_ip(&self) -> IpAddr {
        self.ng.ip()
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the daemon; the ng address stays reserved for [`Rtpengine::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the daemon: requests queue in its socket
    /// unanswered, the way an overloaded or swapping rtpengine behaves.
    ///
    /// # Panics
    ///
    /// When the daemon is not running or `kill` fails.
    pub fn freeze(&self, frozen: bool) {
        let Some(child) = &self.child else {
            panic!("rtpengine is not running");
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
                "rtpengine did not stop within 5 s of SIGSTOP"
            );
        }
    }

    /// Starts the daemon again on the same address (with no calls) and waits for a pong.
    ///
    /// # Panics
    ///
    /// When `rtpengine` is not installed, exits, or does not answer a ping within 10 s.
    pub fn restart(&mut self) {
        self.stop();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone a log handle: {e}"));
        let ip = self.ng.ip();
        let child = Command::new("rtpengine")
            .arg("--config-file=none")
            .arg("--table=-1")
            .arg(format!("--interface={ip}"))
            .arg(format!("--listen-ng={}", self.ng))
            .args(["--foreground", "--log-stderr", "--dtls-passive"])
            .args(["--delete-delay=0", "--port-min=30000", "--port-max=39999"])
            .arg("--log-level=6")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start rtpengine ({e}): these tests need a real rtpengine; run \
                     scripts/test.sh or `apt-get install rtpengine-daemon`"
                )
            });
        self.child = Some(child);
        self.wait_pong();
    }

    /// One synchronous ng `ping`: true when `pong` came back within `wait`.
    pub fn ping(&self, wait: Duration) -> bool {
        let Ok(sock) = UdpSocket::bind(SocketAddr::new(self.ng.ip(), 0)) else {
            return false;
        };
        if sock.set_read_timeout(Some(wait)).is_err()
            || sock.send_to(b"h1 d7:command4:pinge", self.ng).is_err()
        {
            return false;
        }
        let mut buf = [0u8; 256];
        matches!(sock.recv(&mut buf), Ok(n) if buf.get(..n) == Some(&b"h1 d6:result4:ponge"[..]))
    }

    /// The Call-IDs rtpengine holds (`list` with a limit of 1000), or `None` when it did not
    /// answer within `wait`.
    pub fn list_calls(&self, wait: Duration) -> Option<Vec<String>> {
        let sock = UdpSocket::bind(SocketAddr::new(self.ng.ip(), 0)).ok()?;
        sock.set_read_timeout(Some(wait)).ok()?;
        // A fresh cookie per request: rtpengine answers a repeated cookie from its cache of
        // recent replies (it takes it for a retransmission), which would replay an old list.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = format!("l{}-{n} d7:command4:list5:limiti1000ee", std::process::id());
        sock.send_to(request.as_bytes(), self.ng).ok()?;
        let mut buf = vec![0u8; 65_535];
        let n = sock.recv(&mut buf).ok()?;
        parse_calls(buf.get(..n)?)
    }

    /// Polls [`Rtpengine::list_calls`] until rtpengine holds no call, at most `limit`.
    ///
    /// # Panics
    ///
    /// When calls are still listed at the deadline (a leaked session), with their Call-IDs.
    pub fn assert_no_calls(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let calls = self.list_calls(Duration::from_millis(500));
            if calls.as_ref().is_some_and(Vec::is_empty) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rtpengine on {} still holds calls after {limit:?}: {calls:?}",
                self.ng
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_pong(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("rtpengine exited at start ({status}); log:\n{}", self.log());
            }
            if self.ping(Duration::from_millis(100)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rtpengine did not answer a ping on {} within 10 s; log:\n{}",
                self.ng,
                self.log()
            );
        }
    }
}

/// The `calls` list of a `list` reply (`<cookie> d5:callsl<len>:<id>…e…e`).
fn parse_calls(reply: &[u8]) -> Option<Vec<String>> {
    const KEY: &[u8] = b"5:callsl";
    let start = reply.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let mut rest = reply.get(start..)?;
    let mut calls = Vec::new();
    while rest.first() != Some(&b'e') {
        let colon = rest.iter().position(|b| *b == b':')?;
        let len: usize = std::str::from_utf8(rest.get(..colon)?).ok()?.parse().ok()?;
        let id = rest.get(colon + 1..colon + 1 + len)?;
        calls.push(String::from_utf8_lossy(id).into_owned());
        rest = rest.get(colon + 1 + len..)?;
    }
    Some(calls)
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_calls;

    #[test]
    fn parses_list_replies() {
        assert_eq!(parse_calls(b"l1 d5:callsle6:result2:oke"), Some(Vec::new()));
        assert_eq!(
            parse_calls(b"l1 d5:callsl3:abc2:xye6:result2:oke"),
            Some(vec!["abc".to_owned(), "xy".to_owned()])
        );
        assert_eq!(parse_calls(b"l1 d6:result5:errore"), None);
    }
}
