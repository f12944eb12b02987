//! `stunnel` in front of SIPp, for the TLS and `sips:` tests.
//!
//! Debian 12's SIPp is built without TLS (`-t l1` answers "To use a TLS transport you must
//! compile SIPp with OpenSSL"), so SIPp speaks TCP and stunnel carries it over real TLS:
//! - caller side ([`Stunnel::client`]): SIPp (TCP) -> stunnel (verifies the node's certificate
//!   against the development CA) -> the node's TLS listener;
//! - callee side ([`Stunnel::server`]): the node dials a TLS Contact (trusting the CA,
//!   `--tls-ca`) -> stunnel (the development certificate) -> a SIPp UAS (TCP).
//!
//! SIPp's own Via and Contact then say TCP; the node judges the hop by the connection it came
//! on, which is TLS. Why not a SIPp with TLS: see `node/tests/tls_sipp.rs`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Harness, HarnessError, SecureListeners, free_port, wait_bound};

/// How long stunnel may take to listen.
const LISTEN_LIMIT: Duration = Duration::from_secs(5);

/// A running `stunnel`, killed on drop.
#[derive(Debug)]
pub struct Stunnel {
    /// The process.
    child: Child,
    /// Where it accepts.
    accept: SocketAddr,
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stunnel {
    /// Plain TCP in on a free port of the test's address, TLS out to the node's TLS listener,
    /// the node's certificate verified against the development CA.
    pub fn client(harness: &Harness, listeners: &SecureListeners) -> Result<Self, HarnessError> {
        let accept = SocketAddr::new(harness.ip(), free_port(harness.ip()));
        let body = format!(
            "client = yes\nconnect = {}\nCAfile = {}\nverifyChain = yes\ncheckIP = {}\n",
            listeners.tls,
            listeners.ca.display(),
            harness.ip()
        );
        Self::start(harness, "client", accept, &body)
    }

    /// TLS in on a free port of the test's address with the development certificate (the
    /// `cacert.pem`/`cakey.pem` pair in the test's directory), plain TCP out to `to`.
    pub fn server(harness: &Harness, to: SocketAddr) -> Result<Self, HarnessError> {
        let accept = SocketAddr::new(harness.ip(), free_port(harness.ip()));
        let dir = harness.dir();
        let body = format!(
            "connect = {to}\ncert = {}\nkey = {}\n",
            dir.file("cacert.pem").display(),
            dir.file("cakey.pem").display()
        );
        Self::start(harness, "server", accept, &body)
    }

    /// Where this tunnel accepts connections.
    pub fn accept_addr(&self) -> SocketAddr {
        self.accept
    }

    /// Starts stunnel with one service `body` accepting on `accept`, and waits until it
    /// listens.
    fn start(
        harness: &Harness,
        name: &str,
        accept: SocketAddr,
        body: &str,
    ) -> Result<Self, HarnessError> {
        let label = format!("{name}-{}", accept.port());
        let conf = harness.dir().file(&format!("stunnel-{label}.conf"));
        let log = harness.dir().file(&format!("stunnel-{label}.log"));
        let text = format!(
            "foreground = yes\npid =\noutput = {}\ndebug = info\n[{name}]\naccept = {accept}\n{body}",
            log.display()
        );
        std::fs::write(&conf, text)
            .map_err(|e| HarnessError::io(format!("writing {}", conf.display()), e))?;
        let child = Command::new("stunnel")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| HarnessError::StunnelMissing(e.to_string()))?;
        let tunnel = Self { child, accept };
        if wait_bound(accept, true, LISTEN_LIMIT) {
            Ok(tunnel)
        } else {
            Err(HarnessError::Timeout {
                what: format!(
                    "stunnel {name} listening on {accept} (log {})",
                    log.display()
                ),
                after: LISTEN_LIMIT,
            })
        }
    }
}
