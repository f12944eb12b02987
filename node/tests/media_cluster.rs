//! The media chaos case of issue 6: a WebRTC-shaped call through a 3-node cluster (real
//! `redis-server`, three real `sipmesh` processes, all with `--rtpengine` to one real
//! rtpengine), set up through node1, which record-routes and does the rtpengine offer and
//! answer. node1 is then SIGKILLed, and the BYE enters at node2 with a Route that still names
//! node1: node2 takes that Route as its own, and its media hook sends an ng `delete` (node2
//! has no session for the call, so the delete goes to every configured instance), so
//! rtpengine's `list` ends empty. The session is checked to be still there after the kill.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sipmesh_test_support::{
    RawMessage, RawRequest, Rtpengine, TestDir, UdpPeer, free_port, test_ip,
};

mod cluster_support;

use cluster_support::*;

/// How long an answer may take.
const WAIT: Duration = Duration::from_secs(3);

/// How long the mesh may take to serve a WebSocket flow held by another node.
const SETTLE: Duration = Duration::from_secs(8);

/// How long a deleted session may take to leave rtpengine's `list`.
const LIST_EMPTY: Duration = Duration::from_secs(3);

use sipmesh_test_support::sdp::{BROWSER_ANSWER, BROWSER_OFFER};

/// A legacy phone's plain RTP/AVP SDP (offer or answer) for media at `ip:port`.
fn phone_sdp(ip: IpAddr, port: u16) -> String {
    format!(
        "v=0\r\no=- 42 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

mod ws {
    //! A hand-driven browser-like SIP client over WebSocket (RFC 7118).

    use std::io::ErrorKind;
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

    pub(super) struct WsClient(WebSocket<TcpStream>);

    impl WsClient {
        pub(super) fn connect(addr: SocketAddr) -> Self {
            let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
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

        /// The next SIP message within `wait`, `None` on timeout.
        pub(super) fn recv_within(&mut self, wait: Duration) -> Option<String> {
            self.0
                .get_ref()
                .set_read_timeout(Some(wait))
                .unwrap_or_else(|e| panic!("{e}"));
            loop {
                match self.0.read() {
                    Ok(Message::Text(t)) => return Some(t.to_string()),
                    Ok(Message::Binary(b)) => {
                        return Some(String::from_utf8_lossy(&b).into_owned());
                    }
                    Ok(_) => continue,
                    Err(tungstenite::Error::Io(e))
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                    {
                        return None;
                    }
                    Err(e) => panic!("WS read: {e}"),
                }
            }
        }

        /// The next SIP message (at most 5 s).
        pub(super) fn recv(&mut self) -> String {
            self.recv_within(Duration::from_secs(5))
                .unwrap_or_else(|| panic!("nothing on the WebSocket within 5 s"))
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

/// The three nodes' IPs and WebSocket listeners, the cluster and the rtpengine daemon.
struct MediaCluster {
    c: Cluster,
    ws: Vec<SocketAddr>,
    rtp: Rtpengine,
    _rtp_dir: TestDir,
}

impl MediaCluster {
    fn start(test: &str) -> Self {
        Self::start_with(test, &[])
    }

    /// Like [`Self::start`], with `args` added to every node's command line.
    fn start_with(test: &str, args: &[String]) -> Self {
        let rtp_dir = TestDir::new(&format!("{test}-rtpengine")).unwrap_or_else(|e| panic!("{e}"));
        // rtpengine on an address of its own, so that its media ports never meet another
        // test's daemon.
        let rtp = Rtpengine::start(&rtp_dir, test_ip(test));
        let ws: Vec<SocketAddr> = (0..3)
            .map(|i| {
                let ip = member_ip(test, i);
                SocketAddr::new(ip, free_port(ip))
            })
            .collect();
        let spec = format!("udp:{}", rtp.ng_addr());
        let c = Cluster::start_each(test, 3, |i, _| {
            vec![
                "--listen".to_owned(),
                format!("ws:{}", ws[i]),
                "--rtpengine".to_owned(),
                spec.clone(),
            ]
            .into_iter()
            .chain(args.iter().cloned())
            .collect()
        });
        c.wait("a full live mesh", Duration::from_secs(10), |c| {
            all_live(c, &IDS)
        });
        Self {
            c,
            ws,
            rtp,
            _rtp_dir: rtp_dir,
        }
    }

    fn logs(&self) -> String {
        let logs: Vec<String> = self.c.nodes.iter().map(|n| n.log_tail()).collect();
        logs.join("\n-----\n")
    }
}

/// Registers `user` over UDP from `phone` through node `i`.
fn register_udp(c: &Cluster, i: usize, phone: &UdpPeer, user: &str) {
    let ok = phone
        .request(
            c.nodes[i].udp_addr(),
            &RawRequest::register(DOMAIN, user, phone.local_addr(), "mchaos", 1),
            WAIT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}"
    );
}

/// A response to `req` ([`RawMessage::response`]).
fn respond(req: &RawMessage, code: u16, to_tag: &str, contact: &str, sdp: Option<&str>) -> String {
    req.response(code, to_tag, contact, sdp)
}

/// Every Record-Route value of `msg`, split at commas, in message order.
fn record_routes(msg: &RawMessage) -> Vec<String> {
    msg.header_all("Record-Route")
        .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()))
        .collect()
}

/// The URI in `msg`'s Contact.
fn contact_uri(msg: &RawMessage) -> String {
    msg.header("Contact")
        .and_then(|c| c.split_once('<'))
        .and_then(|(_, c)| c.split_once('>'))
        .map(|(u, _)| u.to_owned())
        .unwrap_or_else(|| panic!("no Contact in {msg:?}"))
}

fn parse(text: &str) -> RawMessage {
    RawMessage::parse(text.as_bytes()).unwrap_or_else(|| panic!("unparsable:\n{text}"))
}

/// An in-dialog request `method` from the side whose dialog view is (`from`, `to`), to
/// `target` through `routes`, with a Via of `via_transport` at `via_host`.
#[allow(clippy::too_many_arguments)]
fn in_dialog(
    method: &str,
    target: &str,
    routes: &[String],
    via: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
) -> String {
    let route_lines: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    format!(
        "{method} {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{route_lines}Content-Length: 0\r\n\r\n"
    )
}

/// (1) The browser calls the phone over WS into node1; node1 is killed; the phone's BYE
/// enters at node2. The browser's WebSocket died with node1, so node2 cannot reach it: the
/// BYE follows the flow token in node1's Record-Route to a connection of node1's incarnation,
/// the cluster shell finds its holder dead and the core answers 480 at once (RFC 5626 §5.4,
/// the flow failed). The media hook ran before that (the BYE reached `forward`), so the
/// rtpengine session is deleted all the same.
#[test]
fn phone_bye_through_a_surviving_node_deletes_the_session_of_a_killed_nodes_call() {
    let mut m = MediaCluster::start("media-cluster-phone-bye");
    let started = Instant::now();
    let phone = UdpPeer::bind(m.c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_udp(&m.c, 1, &phone, "bob");

    let mut browser = ws::WsClient::connect(m.ws[0]);
    let host = "df7jal23ls0d.invalid";
    let from = format!("<sip:alice@{DOMAIN}>;tag=webtag1");
    let call_id = "mchaos-browser-call-1";
    browser.send(&format!(
        "INVITE sip:bob@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/WS {host};branch=z9hG4bKmc-inv1\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:alice@{host};transport=ws>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{BROWSER_OFFER}",
        BROWSER_OFFER.len()
    ));
    let invite = phone
        .recv(WAIT)
        .unwrap_or_else(|| panic!("no INVITE at the phone\n{}", m.logs()));
    assert_eq!(invite.method(), Some("INVITE"), "{invite:?}");
    let offer = String::from_utf8_lossy(invite.body()).into_owned();
    assert!(
        offer.contains(" RTP/AVP ") && !offer.contains("a=fingerprint"),
        "the phone was not offered plain RTP/AVP:\n{offer}"
    );
    let phone_rr = record_routes(&invite);
    let node1 = m.c.nodes[0].ip().to_string();
    assert!(
        !phone_rr.is_empty() && phone_rr.iter().all(|r| r.contains(&node1)),
        "node1 did not record-route: {phone_rr:?}"
    );
    let phone_contact = format!("sip:bob@{}", phone.local_addr());
    let answer = phone_sdp(phone.local_addr().ip(), 40000);
    phone
        .send(
            invite_source(&invite, &m),
            respond(&invite, 200, "bob1", &phone_contact, Some(&answer)).as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let ok = parse(&browser.recv_final());
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    let sdp = String::from_utf8_lossy(ok.body()).into_owned();
    assert!(
        sdp.contains("UDP/TLS/RTP/SAVPF") && sdp.contains("a=setup:passive"),
        "the browser got no WebRTC answer:\n{sdp}"
    );
    let mut browser_routes = record_routes(&ok);
    browser_routes.reverse();
    let to = ok.header("To").unwrap_or_default().to_owned();
    browser.send(&in_dialog(
        "ACK",
        &contact_uri(&ok),
        &browser_routes,
        &format!("SIP/2.0/WS {host};branch=z9hG4bKmc-ack1"),
        &from,
        &to,
        call_id,
        1,
    ));
    let ack = phone
        .recv(WAIT)
        .unwrap_or_else(|| panic!("no ACK at the phone"));
    assert_eq!(ack.method(), Some("ACK"), "{ack:?}");

    m.c.nodes[0].kill();
    let killed = Instant::now();
    assert!(
        m.rtp
            .list_calls(WAIT)
            .is_some_and(|calls| calls.iter().any(|c| c == call_id)),
        "the session is not in rtpengine after node1's death"
    );
    // The phone's BYE: its Route set is the Record-Route in order (RFC 3261 §12.1.1), still
    // naming node1 only; it enters at node2.
    let bye = in_dialog(
        "BYE",
        &format!("sip:alice@{host};transport=ws"),
        &phone_rr,
        &format!(
            "SIP/2.0/UDP {};rport;branch=z9hG4bKmc-bye1",
            phone.local_addr()
        ),
        &format!("{};tag=bob1", invite.header("To").unwrap_or_default()),
        &from,
        call_id,
        1,
    );
    phone
        .send(m.c.nodes[1].udp_addr(), bye.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = phone.recv_final(Duration::from_secs(10));
    let status = answer.as_ref().and_then(RawMessage::status);
    eprintln!(
        "measured: phone's BYE via node2 after SIGKILL of node1 answered {status:?} {:?} after {:?}",
        answer.as_ref().map(RawMessage::reason),
        killed.elapsed()
    );
    assert!(
        matches!(status, Some(480 | 408)),
        "BYE via node2 to the browser whose WebSocket died with node1: {answer:?}\n{}",
        m.logs()
    );
    m.rtp.assert_no_calls(LIST_EMPTY);
    eprintln!(
        "measured: session gone {:?} after the kill; test took {:?}",
        killed.elapsed(),
        started.elapsed()
    );
}

/// Where the phone answers `invite`: its top Via's sent-by (the node that sent it).
fn invite_source(invite: &RawMessage, m: &MediaCluster) -> SocketAddr {
    let via = invite.header("Via").unwrap_or_default();
    m.c.nodes
        .iter()
        .map(|n| n.udp_addr())
        .find(|a| via.contains(&a.to_string()))
        .unwrap_or_else(|| panic!("the INVITE's top Via names no node: {via}"))
}

/// (2) The phone calls the browser, whose WebSocket is at node2, through node1 (node1
/// record-routes and does the offer and answer); node1 is killed; the browser's BYE enters
/// at node2 on its surviving connection: the phone answers 200 and the session is deleted.
#[test]
fn browser_bye_through_a_surviving_node_deletes_the_session_of_a_killed_nodes_call() {
    let mut m = MediaCluster::start("media-cluster-browser-bye");
    let started = Instant::now();
    let host = "b0b0b0.invalid";
    let mut browser = ws::WsClient::connect(m.ws[1]);
    browser.send(&format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/WS {host};branch=z9hG4bKmc-reg1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:web@{DOMAIN}>;tag=reg1\r\nTo: <sip:web@{DOMAIN}>\r\n\
         Call-ID: mchaos-reg-1\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:web@{host};transport=ws>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    ));
    let registered = browser.recv_final();
    assert!(registered.starts_with("SIP/2.0 200"), "{registered}");

    let phone = UdpPeer::bind(m.c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    let phone_contact = format!("sip:bob@{}", phone.local_addr());
    let offer = phone_sdp(phone.local_addr().ip(), 40010);
    // Until the mesh publishes node2's transport router, node1 may answer 480: try again with
    // a new call each time.
    let mut attempt = 0;
    let (invite, call_id, from) = loop {
        attempt += 1;
        let call_id = format!("mchaos-phone-call-{attempt}");
        let from = format!("<sip:bob@{DOMAIN}>;tag=phone{attempt}");
        let req = format!(
            "INVITE sip:web@{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {};rport;branch=z9hG4bKmc-pinv{attempt}\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:web@{DOMAIN}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <{phone_contact}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            phone.local_addr(),
            offer.len()
        );
        phone
            .send(m.c.nodes[0].udp_addr(), req.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(text) = browser.recv_within(Duration::from_millis(1500)) {
            let msg = parse(&text);
            assert_eq!(msg.method(), Some("INVITE"), "{text}");
            break (msg, call_id, from);
        }
        let answer = phone.recv_final(Duration::from_millis(200));
        assert!(
            started.elapsed() < SETTLE,
            "the INVITE via node1 never reached the browser at node2 (last {answer:?})\n{}",
            m.logs()
        );
    };
    let offered = String::from_utf8_lossy(invite.body()).into_owned();
    assert!(
        offered.contains("UDP/TLS/RTP/SAVPF") && offered.contains("a=fingerprint:"),
        "the browser was not offered WebRTC:\n{offered}"
    );
    let browser_rr = record_routes(&invite);
    let node1 = m.c.nodes[0].ip().to_string();
    assert!(
        !browser_rr.is_empty() && browser_rr.iter().all(|r| r.contains(&node1)),
        "node1 did not record-route: {browser_rr:?}"
    );
    browser.send(&respond(
        &invite,
        200,
        "brw1",
        &format!("sip:web@{host};transport=ws"),
        Some(BROWSER_ANSWER),
    ));
    let ok = loop {
        let r = phone
            .recv_final(WAIT)
            .unwrap_or_else(|| panic!("no 200 at the phone\n{}", m.logs()));
        if r.header("Call-ID") == Some(call_id.as_str()) {
            break r;
        }
    };
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    let sdp = String::from_utf8_lossy(ok.body()).into_owned();
    assert!(
        sdp.contains(" RTP/AVP ") && !sdp.contains("a=fingerprint"),
        "the phone got no plain RTP/AVP answer:\n{sdp}"
    );
    let mut phone_routes = record_routes(&ok);
    phone_routes.reverse();
    let to = ok.header("To").unwrap_or_default().to_owned();
    phone
        .send(
            m.c.nodes[0].udp_addr(),
            in_dialog(
                "ACK",
                &contact_uri(&ok),
                &phone_routes,
                &format!(
                    "SIP/2.0/UDP {};rport;branch=z9hG4bKmc-pack",
                    phone.local_addr()
                ),
                &from,
                &to,
                &call_id,
                1,
            )
            .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let ack = parse(&browser.recv());
    assert_eq!(ack.method(), Some("ACK"), "{ack:?}");

    m.c.nodes[0].kill();
    let killed = Instant::now();
    assert!(
        m.rtp
            .list_calls(WAIT)
            .is_some_and(|calls| calls.contains(&call_id)),
        "the session is not in rtpengine after node1's death"
    );
    // The browser's BYE on its connection at node2; its Route set is the INVITE's
    // Record-Route in order, naming node1 only.
    browser.send(&in_dialog(
        "BYE",
        &phone_contact,
        &browser_rr,
        &format!("SIP/2.0/WS {host};branch=z9hG4bKmc-bbye"),
        &to,
        &from,
        &call_id,
        1,
    ));
    let bye = phone
        .recv(WAIT)
        .unwrap_or_else(|| panic!("no BYE at the phone\n{}", m.logs()));
    assert_eq!(bye.method(), Some("BYE"), "{bye:?}");
    let via = bye.header("Via").unwrap_or_default();
    assert!(
        via.contains(&m.c.nodes[1].ip().to_string()),
        "the BYE did not come from node2: {via}"
    );
    phone
        .send(m.c.nodes[1].udp_addr(), &bye.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    let answered = parse(&browser.recv_final());
    assert_eq!(answered.status(), Some(200), "BYE answered {answered:?}");
    eprintln!(
        "measured: browser's BYE via node2 after SIGKILL of node1 answered 200 after {:?}",
        killed.elapsed()
    );
    m.rtp.assert_no_calls(LIST_EMPTY);
    eprintln!(
        "measured: session gone {:?} after the kill; test took {:?}",
        killed.elapsed(),
        started.elapsed()
    );
}

/// How long a survivor may take to act on a SIGKILLed member's calls: the failure detector
/// (about 2.4 s), the takeover tick and the pending-media sweep (each second, 1 s grace).
const TAKEOVER: Duration = Duration::from_secs(8);

/// An INVITE with a plain RTP/AVP offer from `caller` for bob, via `node`.
fn phone_invite(caller: &UdpPeer, call_id: &str, from: &str, sdp: &str) -> String {
    format!(
        "INVITE sip:bob@{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {};rport;branch=z9hG4bKmt-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:bob@{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        caller.local_addr(),
        caller.local_addr(),
        sdp.len()
    )
}

/// The next request `method` at `peer` within `wait` (other messages, such as INVITE
/// retransmissions, are skipped).
fn next_request(peer: &UdpPeer, method: &str, wait: Duration) -> Option<(RawMessage, SocketAddr)> {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let (msg, from) = peer.recv_from(left)?;
        if msg.method() == Some(method) {
            return Some((msg, from));
        }
    }
    None
}

/// (3) Issue 6, an orphaned offer: a call through node2 whose callee never answers (its
/// INVITE is offered to rtpengine, no dialog exists); node2 is SIGKILLed. The survivor that
/// owns the call finds it in node2's pending media log in Redis and deletes the session.
#[test]
fn unanswered_call_of_a_killed_node_leaves_no_session() {
    let mut m = MediaCluster::start("media-cluster-orphan-offer");
    let phone = UdpPeer::bind(m.c.nodes[2].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_udp(&m.c, 2, &phone, "bob");
    let caller = UdpPeer::bind(m.c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    let call_id = "mtake-orphan-offer-1";
    let offer = phone_sdp(caller.local_addr().ip(), 40020);
    caller
        .send(
            m.c.nodes[1].udp_addr(),
            phone_invite(
                &caller,
                call_id,
                &format!("<sip:alice@{DOMAIN}>;tag=orph1"),
                &offer,
            )
            .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let (invite, _) = next_request(&phone, "INVITE", WAIT)
        .unwrap_or_else(|| panic!("no INVITE at the phone\n{}", m.logs()));
    assert!(
        invite
            .header("Via")
            .is_some_and(|v| v.contains(&m.c.nodes[1].ip().to_string())),
        "the INVITE did not come through node2: {invite:?}"
    );
    assert!(
        m.rtp
            .list_calls(WAIT)
            .is_some_and(|calls| calls.iter().any(|c| c == call_id)),
        "no rtpengine session for the offered call"
    );
    // The pending log names the call (the survivor's only way to find it).
    let pending =
        m.c.redis
            .cli(&["HKEYS", "sipmesh:media:pending:sipmesh:node:node2"]);
    assert!(
        pending.lines().any(|l| l.trim() == call_id),
        "the call is not in node2's pending media log: {pending:?}"
    );
    m.c.nodes[1].kill();
    let killed = Instant::now();
    m.rtp.assert_no_calls(TAKEOVER);
    eprintln!(
        "measured: orphaned offer's session deleted {:?} after the SIGKILL",
        killed.elapsed()
    );
}

/// (4) Issue 6 and issue 5, an orphaned confirmed call: a call through node2 is answered and
/// ACKed, node2 is SIGKILLed. The survivor that adopts the dialog watches its media (the
/// record names the instance); no RTP flows, so after the media timeout it sends a BYE to
/// both ends and deletes the session.
#[test]
fn silent_call_of_a_killed_node_is_ended_by_its_adopter() {
    let dir =
        TestDir::new("media-cluster-adopted-timeout-config").unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("media.toml");
    std::fs::write(
        &config,
        "[media]\nmedia_timeout_ms = 3000\npoll_interval_ms = 250\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut m = MediaCluster::start_with(
        "media-cluster-adopted-timeout",
        &["--config".to_owned(), config.display().to_string()],
    );
    let phone = UdpPeer::bind(m.c.nodes[2].ip()).unwrap_or_else(|e| panic!("{e}"));
    register_udp(&m.c, 2, &phone, "bob");
    let caller = UdpPeer::bind(m.c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    let call_id = "mtake-adopted-1";
    let from = format!("<sip:alice@{DOMAIN}>;tag=adop1");
    let offer = phone_sdp(caller.local_addr().ip(), 40030);
    caller
        .send(
            m.c.nodes[1].udp_addr(),
            phone_invite(&caller, call_id, &from, &offer).as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let (invite, node2) = next_request(&phone, "INVITE", WAIT)
        .unwrap_or_else(|| panic!("no INVITE at the phone\n{}", m.logs()));
    let phone_contact = format!("sip:bob@{}", phone.local_addr());
    let answer = phone_sdp(phone.local_addr().ip(), 40040);
    phone
        .send(
            node2,
            respond(&invite, 200, "adopb", &phone_contact, Some(&answer)).as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let ok = loop {
        let r = caller
            .recv_final(WAIT)
            .unwrap_or_else(|| panic!("no 200 at the caller\n{}", m.logs()));
        if r.header("Call-ID") == Some(call_id) {
            break r;
        }
    };
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    let mut routes = record_routes(&ok);
    routes.reverse();
    let to = ok.header("To").unwrap_or_default().to_owned();
    caller
        .send(
            m.c.nodes[1].udp_addr(),
            in_dialog(
                "ACK",
                &contact_uri(&ok),
                &routes,
                &format!(
                    "SIP/2.0/UDP {};rport;branch=z9hG4bKmt-ack",
                    caller.local_addr()
                ),
                &from,
                &to,
                call_id,
                1,
            )
            .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    next_request(&phone, "ACK", WAIT).unwrap_or_else(|| panic!("no ACK at the phone"));
    // The record names the instance before node2 dies.
    let want = format!("udp:{}", m.rtp.ng_addr());
    let deadline = Instant::now() + WAIT;
    loop {
        let keys =
            m.c.redis
                .cli(&["--scan", "--pattern", &format!("sipmesh:dlg:{call_id}*")]);
        let recorded = keys
            .lines()
            .filter(|k| !k.trim().is_empty())
            .any(|k| m.c.redis.cli(&["HGET", k.trim(), "media_session"]).trim() == want);
        if recorded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no media_session in the record: {keys:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    m.c.nodes[1].kill();
    let killed = Instant::now();
    // Both ends get a BYE from a survivor (3 s media timeout after the adoption).
    let wait = TAKEOVER + Duration::from_secs(4);
    let (bye_phone, from_phone) = next_request(&phone, "BYE", wait)
        .unwrap_or_else(|| panic!("no BYE at the phone\n{}", m.logs()));
    phone
        .send(from_phone, &bye_phone.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (bye_caller, from_caller) = next_request(&caller, "BYE", WAIT)
        .unwrap_or_else(|| panic!("no BYE at the caller\n{}", m.logs()));
    caller
        .send(from_caller, &bye_caller.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "measured: BYEs from {from_phone} / {from_caller} {:?} after the SIGKILL",
        killed.elapsed()
    );
    assert_ne!(from_phone, node2, "the BYE came from the killed node");
    m.rtp.assert_no_calls(LIST_EMPTY);
}
