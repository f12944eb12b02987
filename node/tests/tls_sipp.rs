//! TLS through the node with SIPp as the peers: REGISTER over TLS, and calls bridged between TLS
//! and UDP in both directions (double Record-Route, RFC 5658 §4: each side gets a route it can
//! use; ACK and BYE cross the proxy).
//!
//! Debian's SIPp is built without OpenSSL (`-t l1` answers "To use a TLS transport you must
//! compile SIPp with OpenSSL"), so SIPp speaks TCP and `stunnel` carries it over real TLS:
//! - caller side: SIPp (TCP) -> stunnel client (verifies the node's certificate against the
//!   development CA) -> the node's TLS listener;
//! - callee side: the node dials a `transport=tls` Contact (trusting the CA, `--tls-ca`) ->
//!   stunnel server (the development certificate) -> SIPp UAS (TCP).
//!
//! A missing `stunnel` fails the test with what to install; nothing skips.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sipmesh_test_support::{
    Harness, SecureListeners, SippRunning, SippTransport, free_port, wait_bound,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

fn start(test: &str) -> (Harness, SecureListeners) {
    match Harness::try_start_secure(SIPMESH, test) {
        Ok(started) => started,
        Err(e) => panic!("cannot start the node for {test}: {e}"),
    }
}

/// A running `stunnel`, killed on drop.
struct Stunnel(Child);

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Stunnel {
    /// Starts stunnel with one service `body`, accepting on `accept`, and waits until it
    /// listens.
    fn start(harness: &Harness, name: &str, accept: SocketAddr, body: &str) -> Self {
        let conf = harness.dir().file(&format!("stunnel-{name}.conf"));
        let log = harness.dir().file(&format!("stunnel-{name}.log"));
        let text = format!(
            "foreground = yes\npid =\noutput = {}\ndebug = info\n[{name}]\naccept = {accept}\n{body}",
            log.display()
        );
        std::fs::write(&conf, text).expect("writing the stunnel configuration");
        let child = match Command::new("stunnel")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                panic!("cannot run stunnel ({e}): run scripts/test.sh, which installs stunnel4")
            }
        };
        let tunnel = Self(child);
        assert!(
            wait_bound(accept, true, Duration::from_secs(5)),
            "stunnel {name} did not listen on {accept}; see {}",
            log.display()
        );
        tunnel
    }

    /// Plain TCP in on a free port, TLS out to the node, the node's certificate verified.
    fn client(harness: &Harness, listeners: &SecureListeners) -> (Self, SocketAddr) {
        let accept = SocketAddr::new(harness.ip(), free_port(harness.ip()));
        let body = format!(
            "client = yes\nconnect = {}\nCAfile = {}\nverifyChain = yes\ncheckIP = {}\n",
            listeners.tls,
            listeners.ca.display(),
            harness.ip()
        );
        (Self::start(harness, "client", accept, &body), accept)
    }

    /// TLS in on a free port with the development certificate, plain TCP out to `to`.
    fn server(harness: &Harness, to: SocketAddr) -> (Self, SocketAddr) {
        let accept = SocketAddr::new(harness.ip(), free_port(harness.ip()));
        let dir = harness.dir();
        let (cert, key) = (dir.file("cacert.pem"), dir.file("cakey.pem"));
        let body = format!(
            "connect = {to}\ncert = {}\nkey = {}\n",
            Path::new(&cert).display(),
            Path::new(&key).display()
        );
        (Self::start(harness, "server", accept, &body), accept)
    }
}

fn spawn_uas(harness: &Harness, transport: SippTransport) -> SippRunning {
    let uas = match harness.uas("uas_call.xml", transport).spawn() {
        Ok(uas) => uas,
        Err(e) => panic!("cannot start the UAS: {e}"),
    };
    if let Err(e) = uas.wait_listening() {
        panic!("UAS did not bind: {e}");
    }
    uas
}

fn finish(harness: &Harness, uas: SippRunning) {
    match uas.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
}

#[test]
fn tls_register() {
    let (harness, listeners) = start("tls-sipp-register");
    let (_tunnel, entry) = Stunnel::client(&harness, &listeners);
    harness.run_ok(
        harness
            .uac("register.xml", SippTransport::Tcp)
            .remote(entry)
            .inf("bob.csv")
            .key("contact_host", harness.ip())
            .key("contact_port", 5999),
    );
}

#[test]
fn tls_caller_to_udp_callee() {
    let (harness, listeners) = start("tls-sipp-call-tls-udp");
    let uas = spawn_uas(&harness, SippTransport::Udp);
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));
    let (_tunnel, entry) = Stunnel::client(&harness, &listeners);
    harness.run_ok(
        harness
            .uac("uac_call.xml", SippTransport::Tcp)
            .remote(entry)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    finish(&harness, uas);
}

#[test]
fn udp_caller_to_tls_callee() {
    let (harness, _listeners) = start("tls-sipp-call-udp-tls");
    let uas = spawn_uas(&harness, SippTransport::Tcp);
    let (_tunnel, tls_entry) = Stunnel::server(&harness, uas.local_addr());
    harness.run_ok(
        harness
            .uac("register_tls_contact.xml", SippTransport::Udp)
            .inf("bob.csv")
            .key("contact_host", tls_entry.ip())
            .key("contact_port", tls_entry.port()),
    );
    harness.run_ok(
        harness
            .uac("uac_call.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .duration_ms(200),
    );
    finish(&harness, uas);
}
