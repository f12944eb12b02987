//! Media relaying through real rtpengine daemons (issue 6): a real `sipmesh` started with
//! `--rtpengine`, SIPp as caller and callee. Every SDP must cross rtpengine (the scenarios
//! check that the media port is in rtpengine's range, 30000-39999, where SIPp's is not), and
//! after every test rtpengine's `list` must be empty: no leaked session.

mod ng_query;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sipmesh_test_support::{Harness, Rtpengine, SippRunning, SippTransport, TestDir, test_ip};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// How long a deleted session may take to leave rtpengine's `list`.
const LIST_EMPTY: Duration = Duration::from_secs(3);

/// rtpengine daemons on the test's address, in their own artifact directory.
fn daemons(test: &str, names: &[&str]) -> (TestDir, Vec<Rtpengine>) {
    let dir = match TestDir::new(&format!("{test}-rtpengine")) {
        Ok(d) => d,
        Err(e) => panic!("cannot create the rtpengine directory: {e}"),
    };
    let ip: IpAddr = test_ip(test);
    let list = names
        .iter()
        .map(|n| Rtpengine::start_named(&dir, ip, n))
        .collect();
    (dir, list)
}

/// A node with `--rtpengine` for each `udp:ADDR[=weight]` in `specs`.
fn node(test: &str, specs: &[String]) -> Harness {
    let result = Harness::try_start(SIPMESH, test, |o| {
        for s in specs {
            o.extra_args.extend(["--rtpengine".to_owned(), s.clone()]);
        }
    });
    match result {
        Ok(h) => h,
        Err(e) => panic!("cannot start the node for {test}: {e}"),
    }
}

/// Starts a UAS `scenario` (with `-d pause_ms`) and registers it as bob over UDP.
fn registered_uas(harness: &Harness, scenario: &str, pause_ms: u64, calls: u32) -> SippRunning {
    let uas = match harness
        .uas(scenario, SippTransport::Udp)
        .duration_ms(pause_ms)
        .calls(calls)
        .spawn()
    {
        Ok(uas) => uas,
        Err(e) => panic!("cannot start UAS {scenario}: {e}"),
    };
    if let Err(e) = uas.wait_listening() {
        panic!("UAS {scenario} did not bind: {e}");
    }
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));
    uas
}

fn finish(harness: &Harness, uas: SippRunning) {
    match uas.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
}

fn spec(r: &Rtpengine, weight: u32) -> String {
    format!("udp:{}={weight}", r.ng_addr())
}

/// One SIPp call (`uac` against a registered `uas`, both over UDP) through a node with one
/// rtpengine; the scenarios check the SDP and the end; rtpengine must hold no call afterwards.
fn sipp_call_leaves_no_session(test: &str, uas: &str, uac: &str, duration_ms: Option<u64>) {
    let (_dir, rtp) = daemons(test, &["rtpengine"]);
    let harness = node(test, &[spec(&rtp[0], 1)]);
    let callee = registered_uas(&harness, uas, 0, 1);
    let mut caller = harness.uac(uac, SippTransport::Udp).inf("alice_to_bob.csv");
    if let Some(ms) = duration_ms {
        caller = caller.duration_ms(ms);
    }
    harness.run_ok(caller);
    finish(&harness, callee);
    rtp[0].assert_no_calls(LIST_EMPTY);
}

#[test]
fn call_through_rtpengine_rewrites_offer_and_answer_and_bye_deletes() {
    sipp_call_leaves_no_session(
        "media::call_rewrites_and_bye_deletes",
        "uas_call_media.xml",
        "uac_call_media.xml",
        Some(300),
    );
}

#[test]
fn late_offer_sipp_call_rewrites_the_2xx_offer_and_the_ack_answer() {
    // INVITE without SDP; the UAS's 200 offers, the UAC's ACK answers: the UAC checks the
    // 200's SDP and the UAS the ACK's are rtpengine's; the BYE empties rtpengine's list.
    sipp_call_leaves_no_session(
        "media::late_offer_sipp",
        "uas_late_media.xml",
        "uac_late_media.xml",
        Some(200),
    );
}

#[test]
fn busy_callee_deletes_the_session() {
    sipp_call_leaves_no_session(
        "media::busy_deletes",
        "uas_486_media.xml",
        "uac_486_media.xml",
        None,
    );
}

#[test]
fn cancel_deletes_the_session() {
    sipp_call_leaves_no_session(
        "media::cancel_deletes",
        "uas_ring_forever.xml",
        "uac_cancel.xml",
        None,
    );
}

#[test]
fn rtpengine_down_answers_503_quickly() {
    let test = "media::down_503";
    let (_dir, mut rtp) = daemons(test, &["rtpengine"]);
    rtp[0].stop();
    let harness = node(test, &[spec(&rtp[0], 1)]);
    let uas = registered_uas(&harness, "uas_call_media.xml", 0, 1);
    let started = Instant::now();
    harness.run_ok(
        harness
            .uac("uac_503_media.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv"),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "503 took {took:?}");
    eprintln!("INVITE with rtpengine down answered 503 after {took:?}");
    // The callee never saw the INVITE.
    drop(uas);
    // And once rtpengine is back, calls go through again.
    rtp[0].restart();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !harness
        .node()
        .log_text()
        .contains("rtpengine instance back")
    {
        assert!(
            Instant::now() < deadline,
            "instance not back within 3 s:\n{}",
            harness.node().log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let uas = registered_uas(&harness, "uas_call_media.xml", 0, 1);
    harness.run_ok(
        harness
            .uac("uac_call_media.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .duration_ms(100),
    );
    finish(&harness, uas);
    rtp[0].assert_no_calls(LIST_EMPTY);
}

/// Polls the node's `/status` until instance `addr` shows `healthy`; the time it took.
fn wait_health(harness: &Harness, addr: std::net::SocketAddr, healthy: bool) -> Duration {
    let started = Instant::now();
    let want = format!("\"addr\":\"{addr}\",\"healthy\":{healthy}");
    loop {
        let (code, body) = harness
            .node()
            .admin("GET", "/status")
            .unwrap_or_else(|e| panic!("GET /status: {e}"));
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        if code == 200 && compact.contains(&want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{addr} not healthy={healthy} within 5 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stopped_instance_is_out_within_two_seconds_and_back_when_it_answers() {
    let test = "media::failover";
    let (_dir, mut rtp) = daemons(test, &["rtpengine-a", "rtpengine-b"]);
    let specs = [spec(&rtp[0], 1), spec(&rtp[1], 3)];
    let harness = Harness::try_start(SIPMESH, test, |o| {
        *o = o.clone().with_admin();
        for s in &specs {
            o.extra_args.extend(["--rtpengine".to_owned(), s.clone()]);
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let a = rtp[0].ng_addr();
    wait_health(&harness, a, true);
    rtp[0].stop();
    let out = wait_health(&harness, a, false);
    assert!(out < Duration::from_secs(2), "instance out after {out:?}");
    let calls = 8;
    let uas = registered_uas(&harness, "uas_call_media.xml", 0, calls);
    let started = Instant::now();
    harness.run_ok(
        harness
            .uac("uac_call_media.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .calls(calls)
            .rate(20)
            .duration_ms(50),
    );
    finish(&harness, uas);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "calls were slowed by the dead instance: {:?}",
        started.elapsed()
    );
    rtp[1].assert_no_calls(LIST_EMPTY);
    rtp[0].restart();
    let back = wait_health(&harness, a, true);
    assert!(
        back < Duration::from_secs(2),
        "instance back after {back:?}"
    );
    eprintln!("rtpengine instance out after {out:?}, back after {back:?}");
    rtp[0].assert_no_calls(LIST_EMPTY);
}

use sipmesh_test_support::sdp::{BROWSER_ANSWER, BROWSER_OFFER};

mod ws {
    //! A hand-driven browser-like SIP client over WebSocket (RFC 7118).

    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

    pub(super) struct WsClient(WebSocket<TcpStream>);

    impl WsClient {
        pub(super) fn connect(addr: SocketAddr) -> Self {
            let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap_or_else(|e| panic!("{e}"));
            let mut request = format!("ws://{addr}/")
                .into_client_request()
                .unwrap_or_else(|e| panic!("{e}"));
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
            let (ws, _) =
                tungstenite::client(request, stream).unwrap_or_else(|e| panic!("WS upgrade: {e}"));
            Self(ws)
        }

        pub(super) fn send(&mut self, text: &str) {
            self.0
                .send(Message::text(text))
                .unwrap_or_else(|e| panic!("WS send: {e}"));
        }

        /// The next SIP message (read timeout 5 s).
        pub(super) fn recv(&mut self) -> String {
            loop {
                match self.0.read() {
                    Ok(Message::Text(t)) => return t.to_string(),
                    Ok(Message::Binary(b)) => return String::from_utf8_lossy(&b).into_owned(),
                    Ok(_) => continue,
                    Err(e) => panic!("WS read: {e}"),
                }
            }
        }

        /// The next response that is not provisional.
        pub(super) fn recv_final(&mut self) -> String {
            loop {
                let m = self.recv();
                if !m.starts_with("SIP/2.0 1") {
                    return m;
                }
            }
        }
    }
}

/// The values of every `name` header line of `msg`, split at commas.
fn header_values(msg: &str, name: &str) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Registers bob over the WebSocket `browser` with Contact `sip:bob@<host>.invalid;transport=ws`
/// and checks the 200.
fn register_ws_bob(browser: &mut ws::WsClient, ip: IpAddr, host: &str) {
    browser.send(&format!(
        "REGISTER sip:{ip} SIP/2.0\r\n\
         Via: SIP/2.0/WS {host}.invalid;branch=z9hG4bK{host}reg\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:bob@{ip}>;tag={host}\r\n\
         To: <sip:bob@{ip}>\r\n\
         Call-ID: {host}-reg-1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:bob@{host}.invalid;transport=ws>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    ));
    let registered = browser.recv_final();
    assert!(registered.starts_with("SIP/2.0 200"), "{registered}");
}

/// The next INVITE the WebSocket `browser` receives (anything before it is skipped).
fn next_invite(browser: &mut ws::WsClient) -> String {
    loop {
        let m = browser.recv();
        if m.starts_with("INVITE ") {
            return m;
        }
    }
}

#[test]
fn browser_over_ws_calls_a_legacy_phone_through_rtpengine() {
    let test = "media::browser_to_phone";
    let (_dir, rtp) = daemons(test, &["rtpengine"]);
    let (harness, ws_addr) = node_with_ws(test, &rtp[0]);
    // The legacy phone checks that it is offered plain RTP/AVP on rtpengine's ports.
    let uas = registered_uas(&harness, "uas_call_media.xml", 0, 1);
    let ip = harness.ip();
    let mut browser = ws::WsClient::connect(ws_addr);
    let host = "df7jal23ls0d.invalid";
    let common = |method: &str, cseq: u32, branch: &str, to_tag: &str| {
        format!(
            "Via: SIP/2.0/WS {host};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@{ip}>;tag=webtag1\r\n\
             To: <sip:bob@{ip}>{to_tag}\r\n\
             Call-ID: browser-call-1\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:alice@{host};transport=ws>\r\n"
        )
    };
    browser.send(&format!(
        "INVITE sip:bob@{ip} SIP/2.0\r\n{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{BROWSER_OFFER}",
        common("INVITE", 1, "inv1", ""),
        BROWSER_OFFER.len()
    ));
    let ok = browser.recv_final();
    assert!(ok.starts_with("SIP/2.0 200"), "INVITE answered:\n{ok}");
    let sdp = body(&ok);
    for needle in [
        "UDP/TLS/RTP/SAVPF",
        "a=candidate:",
        "a=ice-ufrag:",
        "a=fingerprint:",
        "a=setup:passive",
        "a=rtcp-mux",
    ] {
        assert!(
            sdp.contains(needle),
            "answer to the browser lacks {needle}:\n{sdp}"
        );
    }
    assert!(
        !sdp.contains(" RTP/AVP "),
        "answer to the browser still plain RTP/AVP:\n{sdp}"
    );
    let to_tag = header_values(&ok, "To")
        .first()
        .and_then(|t| t.split(";tag=").nth(1).map(str::to_owned))
        .unwrap_or_else(|| panic!("no To tag in:\n{ok}"));
    let mut routes = header_values(&ok, "Record-Route");
    routes.reverse();
    let target = header_values(&ok, "Contact")
        .first()
        .map(|c| {
            c.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_else(|| panic!("no Contact in:\n{ok}"));
    let route_lines: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    let tag = format!(";tag={to_tag}");
    browser.send(&format!(
        "ACK {target} SIP/2.0\r\n{}{route_lines}Content-Length: 0\r\n\r\n",
        common("ACK", 1, "ack1", &tag)
    ));
    browser.send(&format!(
        "BYE {target} SIP/2.0\r\n{}{route_lines}Content-Length: 0\r\n\r\n",
        common("BYE", 2, "bye1", &tag)
    ));
    let bye_ok = browser.recv_final();
    assert!(bye_ok.starts_with("SIP/2.0 200"), "BYE answered:\n{bye_ok}");
    finish(&harness, uas);
    rtp[0].assert_no_calls(LIST_EMPTY);
}

/// A call that the node ends from the middle (BYE to both ends): SIPp's `*_media_timeout`
/// scenarios wait for that BYE. `config` comes before the `[media]` section, whose
/// `media_extra` follows the instance. The call must end within `ends` and leave no session.
fn call_ended_by_the_node(
    test: &str,
    config: &str,
    media_extra: &str,
    ends: std::ops::Range<Duration>,
) {
    let (_dir, rtp) = daemons(test, &["rtpengine"]);
    let config = format!(
        "{config}[media]\nrtpengine = [\"{}\"]\n{media_extra}",
        spec(&rtp[0], 1)
    );
    let harness = Harness::try_start_with_config(SIPMESH, test, &config, |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    let uas = registered_uas(&harness, "uas_media_timeout.xml", 0, 1);
    let started = Instant::now();
    harness.run_ok(
        harness
            .uac("uac_media_timeout.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .timeout(Duration::from_secs(15)),
    );
    finish(&harness, uas);
    let took = started.elapsed();
    assert!(
        ends.contains(&took),
        "call ended after {took:?}, expected {ends:?}"
    );
    rtp[0].assert_no_calls(LIST_EMPTY);
}

#[test]
fn silent_call_is_ended_with_bye_to_both_sides() {
    call_ended_by_the_node(
        "media::timeout_bye",
        "",
        "media_timeout_ms = 1500\npoll_interval_ms = 250\n",
        Duration::from_millis(1500)..Duration::from_secs(8),
    );
}

#[test]
fn dialog_timeout_ends_the_call_and_deletes_its_session() {
    // Media keeps its 60 s timeout: the 2 s dialog timeout must end the call (BYE to both
    // ends) and delete the rtpengine session on its own.
    call_ended_by_the_node(
        "media::dialog_timeout",
        "dialog_timeout_s = 2\n",
        "media_timeout_ms = 60000\n",
        Duration::from_secs(2)..Duration::from_secs(10),
    );
}

#[test]
fn reinvite_is_re_offered_and_re_answered_through_the_same_instance() {
    let test = "media::reinvite";
    let (_dir, rtp) = daemons(test, &["rtpengine"]);
    let harness = node(test, &[spec(&rtp[0], 1)]);
    let uas = registered_uas(&harness, "uas_reinvite_media.xml", 0, 1);
    harness.run_ok(
        harness
            .uac("uac_reinvite_media.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv"),
    );
    finish(&harness, uas);
    rtp[0].assert_no_calls(LIST_EMPTY);
}

#[test]
fn the_instance_is_recorded_in_the_dialog_record_in_redis() {
    let test = "media::recorded_in_redis";
    let (_dir, rtp) = daemons(test, &["rtpengine"]);
    let redis = sipmesh_test_support::RedisServer::start();
    let rtp_spec = spec(&rtp[0], 1);
    let url = redis.url();
    let harness = Harness::try_start(SIPMESH, test, |o| {
        o.extra_args.extend([
            "--rtpengine".to_owned(),
            rtp_spec,
            "--redis".to_owned(),
            url,
        ]);
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let uas = registered_uas(&harness, "uas_call_media.xml", 0, 1);
    let uac = harness
        .uac("uac_call_media.xml", SippTransport::Udp)
        .inf("alice_to_bob.csv")
        .duration_ms(2000)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the UAC: {e}"));
    let want = format!("udp:{}", rtp[0].ng_addr());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let keys = redis.cli(&["--scan", "--pattern", "sipmesh:dlg:*"]);
        let recorded: Vec<String> = keys
            .lines()
            .filter(|k| !k.trim().is_empty())
            .map(|k| {
                redis
                    .cli(&["HGET", k.trim(), "media_session"])
                    .trim()
                    .to_owned()
            })
            .collect();
        if recorded.contains(&want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "media_session {want} not in the dialog record: keys {keys:?}, values {recorded:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    match uac.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAC: {e}"),
    }
    finish(&harness, uas);
    rtp[0].assert_no_calls(LIST_EMPTY);
}

/// A response to `req` (a request received as text): Vias, Record-Route, From, Call-ID and
/// CSeq copied, To with `to_tag` when it has none, a Contact and an optional SDP body.
fn respond(req: &str, code: u16, reason: &str, to_tag: &str, sdp: Option<&str>) -> String {
    let head = req.split("\r\n\r\n").next().unwrap_or_default();
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let n = name.trim().to_ascii_lowercase();
        if [
            "via",
            "v",
            "record-route",
            "from",
            "f",
            "call-id",
            "i",
            "cseq",
        ]
        .contains(&n.as_str())
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if n == "to" || n == "t" {
            if value.contains(";tag=") {
                out.push_str(&format!("To:{value}\r\n"));
            } else {
                out.push_str(&format!("To:{value};tag={to_tag}\r\n"));
            }
        }
    }
    out.push_str("Contact: <sip:bob@b0b0b0.invalid;transport=ws>\r\n");
    match sdp {
        Some(b) => out.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out
}

/// A node using `rtp` that also listens on WS (a free port); returns it with the WS address.
fn node_with_ws(test: &str, rtp: &Rtpengine) -> (Harness, std::net::SocketAddr) {
    let mut ws_addr = None;
    let harness = Harness::try_start(SIPMESH, test, |o| {
        let ws = std::net::SocketAddr::new(o.ip, sipmesh_test_support::free_port(o.ip));
        ws_addr = Some(ws);
        o.extra_args.extend([
            "--rtpengine".to_owned(),
            spec(rtp, 1),
            "--listen".to_owned(),
            format!("ws:{ws}"),
        ]);
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let ws_addr = ws_addr.unwrap_or_else(|| panic!("the option hook did not run"));
    (harness, ws_addr)
}

#[test]
fn legacy_phone_calls_a_browser_over_ws_through_rtpengine() {
    let test = "media::phone_to_browser";
    let (_dir, rtp) = daemons(test, &["rtpengine"]);
    let (harness, ws_addr) = node_with_ws(test, &rtp[0]);
    let ip = harness.ip();
    let mut browser = ws::WsClient::connect(ws_addr);
    register_ws_bob(&mut browser, ip, "b0b0b0");
    // The phone's scenario checks that the 200 it gets carries rtpengine's plain RTP/AVP.
    let uac = harness
        .uac("uac_call_media.xml", SippTransport::Udp)
        .inf("alice_to_bob.csv")
        .duration_ms(200)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the UAC: {e}"));
    let invite = next_invite(&mut browser);
    let offer = body(&invite);
    for needle in [
        "UDP/TLS/RTP/SAVPF",
        "a=candidate:",
        "a=ice-ufrag:",
        "a=fingerprint:",
        "a=rtcp-mux",
    ] {
        assert!(
            offer.contains(needle),
            "offer to the browser lacks {needle}:\n{offer}"
        );
    }
    assert!(
        !offer.contains(" RTP/AVP "),
        "offer to the browser still plain RTP/AVP:\n{offer}"
    );
    assert!(
        !offer.contains("a=crypto:"),
        "offer to the browser carries SDES keys next to DTLS (SDES-off):\n{offer}"
    );
    browser.send(&respond(&invite, 200, "OK", "brw1", Some(BROWSER_ANSWER)));
    let ack = browser.recv();
    assert!(ack.starts_with("ACK "), "ACK expected:\n{ack}");
    let bye = browser.recv();
    assert!(bye.starts_with("BYE "), "BYE expected:\n{bye}");
    browser.send(&respond(&bye, 200, "OK", "brw1", None));
    match uac.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAC: {e}"),
    }
    rtp[0].assert_no_calls(LIST_EMPTY);
}

#[test]
fn a_first_offer_to_a_frozen_instance_moves_the_call_to_another() {
    let test = "media::frozen_moves";
    let (_dir, rtp) = daemons(test, &["rtpengine-a", "rtpengine-b"]);
    // Most new calls pick A; it freezes before the pings notice.
    let harness = node(test, &[spec(&rtp[0], 20), spec(&rtp[1], 1)]);
    let uas = registered_uas(&harness, "uas_call_media.xml", 0, 3);
    rtp[0].freeze(true);
    let started = Instant::now();
    harness.run_ok(
        harness
            .uac("uac_call_media.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .calls(3)
            .rate(10)
            .duration_ms(50),
    );
    finish(&harness, uas);
    eprintln!("3 calls with A frozen took {:?}", started.elapsed());
    rtp[0].freeze(false);
    rtp[0].assert_no_calls(LIST_EMPTY);
    rtp[1].assert_no_calls(LIST_EMPTY);
}

/// One AOR with a browser binding over WS and a desk phone over UDP: the INVITE forks, each
/// branch gets an offer for its own kind (WebRTC to the browser, plain RTP/AVP to the phone,
/// rtpengine `via-branch` per kind), the phone's answer wins, the browser's branch is
/// cancelled, and the BYE leaves nothing in rtpengine (the losing branch included).
#[test]
fn forking_to_a_browser_and_a_phone_offers_each_its_own_kind() {
    let test = "media::fork_kinds";
    let (_dir, rtp) = daemons(test, &["rtpengine"]);
    let (harness, ws_addr) = node_with_ws(test, &rtp[0]);
    let ip = harness.ip();
    // The phone (SIPp) checks that its offer is plain RTP/AVP on rtpengine's ports; it answers
    // after 300 ms.
    let uas = registered_uas(&harness, "uas_call_media.xml", 300, 1);
    let mut browser = ws::WsClient::connect(ws_addr);
    register_ws_bob(&mut browser, ip, "f0f0f0");
    let uac = harness
        .uac("uac_call_media.xml", SippTransport::Udp)
        .inf("alice_to_bob.csv")
        .duration_ms(1500)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the UAC: {e}"));
    let invite = next_invite(&mut browser);
    let offer = body(&invite);
    for needle in [
        "UDP/TLS/RTP/SAVPF",
        "a=fingerprint:",
        "a=ice-ufrag:",
        "a=rtcp-mux",
    ] {
        assert!(
            offer.contains(needle),
            "the browser's branch lacks {needle}:\n{offer}"
        );
    }
    browser.send(&respond(&invite, 180, "Ringing", "brwfork", None));
    // The phone answers first: the browser's branch is cancelled.
    let cancel = loop {
        let m = browser.recv();
        if m.starts_with("CANCEL ") {
            break m;
        }
    };
    browser.send(&respond(&cancel, 200, "OK", "brwfork", None));
    browser.send(&respond(
        &invite,
        487,
        "Request Terminated",
        "brwfork",
        None,
    ));
    // The browser's branch ended: its via-branch offer is deleted (no ports left on it)
    // while the call goes on (the caller waits 1.5 s before its BYE).
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = None;
    while Instant::now() < deadline {
        let calls = rtp[0]
            .list_calls(Duration::from_secs(1))
            .unwrap_or_default();
        let Some(call_id) = calls.first() else {
            break;
        };
        last = ng_query::query_tags(rtp[0].ng_addr(), call_id);
        if last.as_ref().is_some_and(|t| {
            t.iter().any(|(_, ports)| *ports == 0) && t.iter().filter(|(_, p)| *p > 0).count() == 2
        }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        last.as_ref()
            .is_some_and(|t| t.iter().any(|(_, ports)| *ports == 0)),
        "the cancelled browser branch kept its ports: {last:?}"
    );
    match uac.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAC: {e}"),
    }
    finish(&harness, uas);
    rtp[0].assert_no_calls(LIST_EMPTY);
}
