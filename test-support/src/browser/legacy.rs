//! The other end of the browser calls that cross rtpengine: a SIPp "legacy phone" over UDP with
//! RTP echo, and a node with a WSS listener plus extra arguments (`--rtpengine`).

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::BrowserError;
use crate::TestDir;
use crate::process::{self, wait_timeout};

/// A legacy phone for the browser calls: a SIPp run over UDP with `-rtp_echo` (every RTP
/// packet it receives on its media port goes back to its sender), so a browser sees inbound
/// RTP as soon as its own outbound RTP reaches the phone. Killed on drop.
#[derive(Debug)]
pub struct LegacyPhone {
    child: Child,
    sip: SocketAddr,
    media: SocketAddr,
    screen: PathBuf,
}

impl LegacyPhone {
    /// Starts `sipp` (built by the harness: scenario, remote, keys) with RTP echo on a free
    /// media port of its address, its screen in `dir`; waits until it listens for SIP.
    pub fn spawn(sipp: crate::Sipp, dir: &TestDir) -> Result<Self, BrowserError> {
        let sip = sipp.local_addr();
        let media = SocketAddr::new(sip.ip(), crate::free_port(sip.ip()));
        let mut command = sipp
            .command()
            .map_err(|e| BrowserError::io("building the SIPp command", std::io::Error::other(e)))?;
        command
            .args(["-rtp_echo", "-mi", &media.ip().to_string()])
            .args(["-mp", &media.port().to_string()]);
        let screen = dir.file(&format!("legacy-phone.{}.screen.log", sip.port()));
        let out = fs::File::create(&screen)
            .map_err(|e| BrowserError::io(format!("creating {}", screen.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| BrowserError::io("duplicating a log handle", e))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| BrowserError::io("starting SIPp", e))?;
        let phone = Self {
            child,
            sip,
            media,
            screen,
        };
        if !crate::wait_bound(sip, false, Duration::from_secs(5)) {
            return Err(BrowserError::io(
                format!("SIPp did not bind {sip}"),
                std::io::Error::other(process::tail(&phone.screen, 2000)),
            ));
        }
        Ok(phone)
    }

    /// Its SIP address (UDP).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip
    }

    /// Its RTP echo address.
    pub fn media_addr(&self) -> SocketAddr {
        self.media
    }

    /// Waits (at most `limit`) for SIPp to exit; `Ok` when it passed, else its screen.
    pub fn wait(mut self, limit: Duration) -> Result<(), String> {
        match wait_timeout(&mut self.child, limit) {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!(
                "SIPp failed ({status}):\n{}",
                process::tail(&self.screen, 4000)
            )),
            None => Err(format!(
                "SIPp still running after {limit:?}:\n{}",
                process::tail(&self.screen, 4000)
            )),
        }
    }
}

impl Drop for LegacyPhone {
    fn drop(&mut self) {
        process::stop(&mut self.child);
    }
}

/// Starts the node for `test_name` with a WSS listener (a fresh development certificate for the
/// test's address) plus `extra_args` (for instance `--rtpengine udp:IP:PORT`); returns the WSS
/// address. Like [`crate::Harness::try_start_secure`], which has no hook for extra arguments.
pub fn start_wss_node(
    binary: &str,
    test_name: &str,
    extra_args: Vec<String>,
) -> Result<(crate::Harness, SocketAddr), crate::HarnessError> {
    let ip = crate::test_ip(test_name);
    let certs = TestDir::new(&format!("{test_name}-certs"))?;
    let output = Command::new(binary)
        .args(["dev-cert", "--out"])
        .arg(certs.path())
        .args(["--host", &ip.to_string()])
        .output()
        .map_err(|e| crate::HarnessError::io(format!("running {binary} dev-cert"), e))?;
    if !output.status.success() {
        return Err(crate::HarnessError::ToolFailed {
            what: format!("{binary} dev-cert"),
            status: output.status,
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let mut wss = SocketAddr::new(ip, 0);
    let harness = crate::Harness::try_start(binary, test_name, |options| {
        let mut port = crate::free_port(ip);
        while port == options.tcp_port {
            port = crate::free_port(ip);
        }
        wss.set_port(port);
        options.extra_args.extend([
            "--listen".to_owned(),
            format!("wss:{wss}"),
            "--tls-cert".to_owned(),
            certs.file("cert.pem").display().to_string(),
            "--tls-key".to_owned(),
            certs.file("key.pem").display().to_string(),
        ]);
        options.extra_args.extend(extra_args);
    })?;
    Ok((harness, wss))
}
