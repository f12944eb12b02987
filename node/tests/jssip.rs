//! Browser-style clients against the node: JsSIP (`tests/jssip/client.js`, Node.js with the `ws`
//! package) over WS and WSS (RFC 7118), bridged to SIPp over UDP. Covers REGISTER over WS and
//! WSS (the development CA trusted by the client), MESSAGE between two JsSIP users and between
//! a JsSIP user and a SIPp UAS/UAC over UDP, calls JsSIP <-> SIPp over UDP both ways (double
//! Record-Route, BYE over the flow token), a SUBSCRIBE dialog whose NOTIFYs follow the
//! Record-Route flow token, un-REGISTER on close, re-REGISTER after a reconnect
//! (RFC 5626 flows: `+sip.instance` + `reg-id`), and an abrupt disconnect: the flow's binding
//! is gone within a second and a call to the user gets 480.
//!
//! A missing `node` or `npm ci` fails the test with what to run (scripts/test.sh); nothing skips.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sipmesh_test_support::{
    Harness, HarnessError, RawClient, SecureListeners, SippTransport, ViaTransport, workspace_root,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// Longest a client scenario may run.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// A running `node client.js SCENARIO`, killed on drop.
struct JsClient {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: PathBuf,
}

fn client_dir() -> PathBuf {
    workspace_root().join("tests").join("jssip")
}

/// Fails loudly (never skips) when Node.js or the client's packages are missing.
fn require_node() {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        panic!(
            "{}",
            HarnessError::NodeJsMissing("`node` not on PATH".into())
        );
    }
    for package in ["jssip", "ws"] {
        let dir = client_dir().join("node_modules").join(package);
        if !dir.is_dir() {
            panic!(
                "{}",
                HarnessError::NodeJsMissing(format!("{} missing", dir.display()))
            );
        }
    }
}

impl JsClient {
    fn spawn(harness: &Harness, scenario: &str, url: &str, ca: Option<&PathBuf>) -> Self {
        require_node();
        let stderr = harness.dir().file(&format!("jssip-{scenario}.stderr"));
        let err = std::fs::File::create(&stderr).expect("creating the client's stderr file");
        let mut command = Command::new("node");
        command
            .arg(client_dir().join("client.js"))
            .arg(scenario)
            .current_dir(client_dir())
            .env("SIPMESH_WS_URL", url)
            .env("SIPMESH_DOMAIN", harness.ip().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err);
        if let Some(ca) = ca {
            command.env("SIPMESH_CA", ca);
        }
        let mut child = command.spawn().expect("starting node");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn report(&self, harness: &Harness) -> String {
        format!(
            "client output: {:?}\nclient stderr ({}):\n{}\n--- node log ({}) ---\n{}",
            self.seen,
            self.stderr.display(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            harness.node().log_path().display(),
            harness.node().log_tail()
        )
    }

    /// Waits for a stdout line starting with `prefix`.
    fn expect_line(&mut self, harness: &Harness, prefix: &str) {
        let deadline = Instant::now() + CLIENT_LIMIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(prefix);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("client never printed {prefix:?}\n{}", self.report(harness));
    }

    /// Waits for the client to exit and requires success (its last line is `PASS`).
    fn finish(mut self, harness: &Harness) {
        let deadline = Instant::now() + CLIENT_LIMIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    panic!("client did not finish\n{}", self.report(harness));
                }
            }
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        assert!(
            status.success(),
            "client failed: {status}\n{}",
            self.report(harness)
        );
    }
}

impl Drop for JsClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(test: &str) -> (Harness, SecureListeners) {
    match Harness::try_start_secure(SIPMESH, test) {
        Ok(started) => started,
        Err(e) => panic!("cannot start the node for {test}: {e}"),
    }
}

fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

fn run_scenario(test: &str, scenario: &str, secure: bool) {
    let (harness, listeners) = start(test);
    let (url, ca) = if secure {
        (format!("wss://{}", listeners.wss), Some(&listeners.ca))
    } else {
        (ws_url(listeners.ws), None)
    };
    JsClient::spawn(&harness, scenario, &url, ca).finish(&harness);
}

#[test]
fn jssip_register_over_ws() {
    run_scenario("jssip-register-ws", "register", false);
}

#[test]
fn jssip_register_over_wss() {
    run_scenario("jssip-register-wss", "register", true);
}

#[test]
fn jssip_message_between_two_users() {
    run_scenario("jssip-message-pair", "pair", false);
}

/// SUBSCRIBE/NOTIFY between two browsers on one WS listener: the NOTIFYs reach the subscriber's
/// `.invalid` Contact through the Record-Route flow token.
#[test]
fn jssip_subscribe_dialog_notifies_over_the_flow_token() {
    run_scenario("jssip-dialog", "dialog", false);
}

#[test]
fn jssip_unregister_on_close_and_reregister_after_reconnect() {
    run_scenario("jssip-reconnect", "reconnect", false);
}

/// JsSIP (WS) -> proxy -> SIPp UAS (UDP), then SIPp UAC (UDP) -> proxy -> JsSIP (WS).
#[test]
fn jssip_message_to_sipp_over_udp_and_back() {
    let (harness, listeners) = start("jssip-message-sipp");
    let uas = harness
        .uas("uas_message.xml", SippTransport::Udp)
        .spawn()
        .expect("starting the SIPp UAS");
    uas.wait_listening().expect("SIPp UAS binds");
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));
    let mut client = JsClient::spawn(&harness, "sipp", &ws_url(listeners.ws), None);
    client.expect_line(&harness, "SENT");
    harness.run_ok(
        harness
            .uac("uac_message.xml", SippTransport::Udp)
            .inf("alice_to_web.csv"),
    );
    client.finish(&harness);
    let outcome = uas.wait().expect("collecting the SIPp UAS");
    harness.check(&outcome);
}

/// Calls bridged WS <-> UDP through the double Record-Route: JsSIP calls a SIPp UAS and hangs up
/// (its BYE goes out by the callee's Contact), then a SIPp UAC calls JsSIP and hangs up (its BYE
/// reaches the browser's `.invalid` Contact only through the flow token). JsSIP's media stack is
/// replaced by `tests/jssip/media_stub.js` (Node.js has no WebRTC); all SIP is JsSIP's own.
#[test]
fn jssip_calls_to_and_from_sipp_over_udp() {
    let (harness, listeners) = start("jssip-calls-sipp");
    let uas = harness
        .uas("uas_call.xml", SippTransport::Udp)
        .spawn()
        .expect("starting the SIPp UAS");
    uas.wait_listening().expect("SIPp UAS binds");
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));
    let mut client = JsClient::spawn(&harness, "calls", &ws_url(listeners.ws), None);
    client.expect_line(&harness, "READY");
    let outcome = uas.wait().expect("collecting the SIPp UAS");
    harness.check(&outcome);
    harness.run_ok(
        harness
            .uac("uac_call.xml", SippTransport::Udp)
            .inf("alice_to_web.csv")
            .duration_ms(200),
    );
    client.finish(&harness);
}

/// A WebSocket client that vanishes without closing: its binding goes within a second (not at
/// its expiry), and a call to it is answered 480, not left to time out.
#[test]
fn jssip_abrupt_disconnect_removes_binding_and_call_gets_480() {
    let (harness, listeners) = start("jssip-abrupt");
    let mut client = JsClient::spawn(&harness, "abrupt", &ws_url(listeners.ws), None);
    client.expect_line(&harness, "RESET");
    let reset_at = Instant::now();
    client.finish(&harness);
    let mut raw = RawClient::connect(ViaTransport::Udp, harness.ip(), harness.node())
        .expect("raw UDP client");
    let aor = format!("sip:dave@{}", harness.ip());
    let mut attempt = 0;
    let gone_after = loop {
        attempt += 1;
        let query = raw
            .new_request("REGISTER", &format!("sip:{}", harness.ip()))
            .set("To", format!("<{aor}>"))
            .set("From", format!("<{aor}>;tag=q{attempt}"))
            .set("Call-ID", format!("abrupt-query-{attempt}"))
            .without("Contact");
        let answer = raw
            .request(&query, Duration::from_secs(1))
            .expect("sending the query")
            .expect("the query is answered");
        assert_eq!(answer.status(), Some(200), "{}", answer.start_line());
        if answer.header("Contact").is_none() {
            break reset_at.elapsed();
        }
        assert!(
            reset_at.elapsed() < Duration::from_secs(1),
            "dave's binding still there {:?} after the reset\n--- node log ---\n{}",
            reset_at.elapsed(),
            harness.node().log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(gone_after < Duration::from_secs(1), "{gone_after:?}");
    harness.run_ok(
        harness
            .uac("uac_480.xml", SippTransport::Udp)
            .inf("alice_to_dave.csv"),
    );
}
