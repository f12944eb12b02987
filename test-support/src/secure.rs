//! A node with the secure and browser transports: WS, WSS and TLS listeners on the test's
//! address, with a development CA and certificate from `sipmesh dev-cert`.
//!
//! The server pair is also copied into the test's directory as `cacert.pem` and `cakey.pem`
//! (the names SIPp's `-t l1` looks for; the TLS SIPp of `scripts/build-sipp-tls.sh` presents it
//! in front of it with that pair).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

use crate::{Harness, HarnessError, TestDir, free_port, test_ip};

/// The extra listeners of a node started by [`Harness::try_start_secure`].
#[derive(Debug, Clone)]
pub struct SecureListeners {
    /// `ws:` listener.
    pub ws: SocketAddr,
    /// `wss:` listener.
    pub wss: SocketAddr,
    /// `tls:` listener.
    pub tls: SocketAddr,
    /// The CA certificate (PEM) that signed the node's certificate: what clients trust.
    pub ca: PathBuf,
}

/// Ports on `ip`, distinct from each other and from `taken`.
fn distinct_ports(ip: IpAddr, taken: u16, n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let p = free_port(ip);
        if p != taken && !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

impl Harness {
    /// Like [`Harness::try_start`], plus WS, WSS and TLS listeners with a fresh development
    /// certificate for the test's address (`binary dev-cert --host IP`).
    pub fn try_start_secure(
        binary: &str,
        test_name: &str,
    ) -> Result<(Self, SecureListeners), HarnessError> {
        let ip = test_ip(test_name);
        let certs = TestDir::new(&format!("{test_name}-certs"))?;
        let output = Command::new(binary)
            .args(["dev-cert", "--out"])
            .arg(certs.path())
            .args(["--host", &ip.to_string()])
            .output()
            .map_err(|e| HarnessError::io(format!("running {binary} dev-cert"), e))?;
        if !output.status.success() {
            return Err(HarnessError::ToolFailed {
                what: format!("{binary} dev-cert"),
                status: output.status,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        let (cert, key) = (certs.file("cert.pem"), certs.file("key.pem"));
        let mut listeners = None;
        let harness = Self::try_start(binary, test_name, |options| {
            let ports = distinct_ports(ip, options.tcp_port, 3);
            let addr = |i: usize| SocketAddr::new(ip, ports.get(i).copied().unwrap_or(0));
            let (ws, wss, tls) = (addr(0), addr(1), addr(2));
            options.tls_port = Some(tls.port());
            options.extra_args.extend([
                "--listen".to_owned(),
                format!("ws:{ws}"),
                "--listen".to_owned(),
                format!("wss:{wss}"),
                "--tls-cert".to_owned(),
                cert.display().to_string(),
                "--tls-key".to_owned(),
                key.display().to_string(),
                // Outgoing TLS (to a SIPp UAS presenting the same certificate) trusts the CA.
                "--tls-ca".to_owned(),
                certs.file("ca.pem").display().to_string(),
            ]);
            listeners = Some(SecureListeners {
                ws,
                wss,
                tls,
                ca: certs.file("ca.pem"),
            });
        })?;
        for (from, to) in [(&cert, "cacert.pem"), (&key, "cakey.pem")] {
            let dest = harness.dir().file(to);
            std::fs::copy(from, &dest)
                .map_err(|e| HarnessError::io(format!("copying to {}", dest.display()), e))?;
        }
        let listeners = listeners.ok_or_else(|| {
            HarnessError::io(
                "configuring the secure listeners",
                std::io::Error::other("the option hook did not run"),
            )
        })?;
        Ok((harness, listeners))
    }
}
