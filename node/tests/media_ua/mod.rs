//! A hand-driven UDP phone for the media tests: exact tags, bodies and timing that SIPp
//! scenarios cannot give (shared Call-IDs, late offers, ignoring a BYE).

#![allow(dead_code)] // each test binary uses a part

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sipmesh_test_support::{Harness, RawMessage, RawRequest, Rtpengine, TestDir, UdpPeer, test_ip};

/// The binary under test.
pub(crate) const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// How long a deleted session may take to leave rtpengine's `list`.
pub(crate) const LIST_EMPTY: Duration = Duration::from_secs(3);

/// How long a phone waits for a message it expects.
const WAIT: Duration = Duration::from_secs(5);

/// One rtpengine and one node using it.
pub(crate) struct Setup {
    /// The node.
    pub(crate) harness: Harness,
    /// The daemon.
    pub(crate) rtp: Rtpengine,
    _dir: TestDir,
}

impl Setup {
    /// rtpengine and a node whose `[media]` section gets `media_extra` after the instance,
    /// and `after` after the section (for `[[media.route]]` tables).
    pub(crate) fn start(test: &str, media_extra: &str) -> Self {
        Self::start_with(test, media_extra, "")
    }

    /// [`Setup::start`] with TOML `after` the `[media]` section.
    pub(crate) fn start_with(test: &str, media_extra: &str, after: &str) -> Self {
        let dir = TestDir::new(&format!("{test}-rtpengine"))
            .unwrap_or_else(|e| panic!("cannot create the rtpengine directory: {e}"));
        let rtp = Rtpengine::start(&dir, test_ip(test));
        let config = format!(
            "[media]\nrtpengine = [\"udp:{}=1\"]\n{media_extra}{after}",
            rtp.ng_addr()
        );
        let harness = Harness::try_start_with_config(SIPMESH, test, &config, |_| {})
            .unwrap_or_else(|e| panic!("cannot start the node for {test}: {e}"));
        Self {
            harness,
            rtp,
            _dir: dir,
        }
    }

    /// A phone for `user` on the test's address.
    pub(crate) fn phone(&self, user: &str) -> Phone {
        let peer = UdpPeer::bind(self.harness.ip())
            .unwrap_or_else(|e| panic!("cannot bind a phone socket: {e}"));
        Phone {
            user: user.to_owned(),
            peer,
            node: self.harness.node().udp_addr(),
            ip: self.harness.ip(),
        }
    }
}

/// An established call as its two ends see it.
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    /// The Call-ID.
    pub(crate) call_id: String,
    /// The caller's tag.
    pub(crate) from_tag: String,
    /// The callee's tag.
    pub(crate) to_tag: String,
    /// The callee's Contact URI (the caller's remote target).
    pub(crate) callee_target: String,
    /// The caller's Contact URI.
    pub(crate) caller_target: String,
    /// Record-Route values as received (the callee's route set; the caller's reversed).
    pub(crate) record_route: Vec<String>,
    /// The caller's next CSeq.
    pub(crate) caller_cseq: u32,
}

/// A plain RTP/AVP SDP with media on `port` of 127.0.0.1.
pub(crate) fn plain_sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- {port} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// Panics unless `sdp` went through rtpengine: its media port in rtpengine's range and its
/// connection address rtpengine's.
pub(crate) fn assert_relayed(sdp: &str, media_ip: IpAddr) {
    let port = media_port(sdp).unwrap_or_else(|| panic!("no m= line in:\n{sdp}"));
    assert!(
        (30000..=39999).contains(&port),
        "media port {port} is not rtpengine's:\n{sdp}"
    );
    assert!(
        sdp.contains(&format!("c=IN IP4 {media_ip}")),
        "connection address is not rtpengine's {media_ip}:\n{sdp}"
    );
}

/// The port of the first `m=` line.
pub(crate) fn media_port(sdp: &str) -> Option<u16> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m="))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|p| p.trim().parse().ok())
}

/// Panics unless the Content-Length of `msg` is its body's length.
pub(crate) fn assert_length_right(msg: &RawMessage) {
    let declared: usize = msg
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in:\n{msg}"));
    assert_eq!(
        declared,
        msg.body().len(),
        "Content-Length wrong in:\n{msg}"
    );
}

/// rtpengine knows the leg pair `call_id` + `from_tag` (ng `query` answered `ok`).
pub(crate) fn ng_query_ok(ng: SocketAddr, call_id: &str, from_tag: &str) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let cookie = format!(
        "q{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let bstr = |s: &str| format!("{}:{s}", s.len());
    let request = format!(
        "{cookie} d7:call-id{}7:command5:query8:from-tag{}e",
        bstr(call_id),
        bstr(from_tag)
    );
    let sock = UdpSocket::bind(SocketAddr::new(ng.ip(), 0))
        .unwrap_or_else(|e| panic!("cannot bind an ng socket: {e}"));
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("{e}"));
    sock.send_to(request.as_bytes(), ng)
        .unwrap_or_else(|e| panic!("ng send: {e}"));
    let mut buf = vec![0u8; 65_535];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("rtpengine did not answer a query: {e}"));
    let reply = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
    reply.contains("6:result2:ok")
}

/// A response to `req`: Vias, Record-Route, From, Call-ID and CSeq copied, To with
/// `to_tag` added when it has none, an optional Contact and SDP body.
pub(crate) fn respond(
    req: &RawMessage,
    code: u16,
    reason: &str,
    to_tag: &str,
    contact: Option<&str>,
    sdp: Option<&str>,
) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for via in req.header_all("Via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    for rr in req.header_all("Record-Route") {
        out.push_str(&format!("Record-Route: {rr}\r\n"));
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        let Some(value) = req.header(name) else {
            continue;
        };
        if name == "To" && !value.contains(";tag=") && !to_tag.is_empty() {
            out.push_str(&format!("To: {value};tag={to_tag}\r\n"));
        } else {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if let Some(c) = contact {
        out.push_str(&format!("Contact: <{c}>\r\n"));
    }
    with_body(out, sdp)
}

fn with_body(mut head: String, sdp: Option<&str>) -> String {
    match sdp {
        Some(b) => head.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => head.push_str("Content-Length: 0\r\n\r\n"),
    }
    head
}

fn body_text(msg: &RawMessage) -> String {
    String::from_utf8_lossy(msg.body()).into_owned()
}

fn record_route(msg: &RawMessage) -> Vec<String> {
    msg.header_all("Record-Route")
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn contact_uri(msg: &RawMessage) -> String {
    msg.header("Contact")
        .map(|c| {
            c.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_else(|| panic!("no Contact in:\n{msg}"))
}

/// A UDP phone.
pub(crate) struct Phone {
    /// Its user name (AOR `user@test ip`).
    pub(crate) user: String,
    /// Its socket.
    pub(crate) peer: UdpPeer,
    node: SocketAddr,
    ip: IpAddr,
}

impl Phone {
    /// Its Contact URI.
    pub(crate) fn contact(&self) -> String {
        format!("sip:{}@{}", self.user, self.peer.local_addr())
    }

    /// Its address of record.
    pub(crate) fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.ip)
    }

    /// Registers its contact at the node (200 expected).
    pub(crate) fn register(&self, _harness: &Harness) {
        let req = RawRequest::register(
            &self.ip.to_string(),
            &self.user,
            self.peer.local_addr(),
            "media-ua",
            1,
        );
        let answer = self
            .peer
            .request(self.node, &req, WAIT)
            .unwrap_or_else(|e| panic!("REGISTER send: {e}"))
            .unwrap_or_else(|| panic!("no answer to REGISTER"));
        assert_eq!(answer.status(), Some(200), "REGISTER answered:\n{answer}");
    }

    /// Sends `text` to the node.
    pub(crate) fn send_to_node(&self, _setup: &Setup, text: &str) {
        self.peer
            .send(self.node, text.as_bytes())
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    fn send(&self, text: &str) {
        self.peer
            .send(self.node, text.as_bytes())
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// The next request `method` within `wait` (other messages are skipped).
    pub(crate) fn next_request(&self, method: &str, wait: Duration) -> Option<RawMessage> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = self.peer.recv(left)?;
            if msg.method() == Some(method) {
                return Some(msg);
            }
        }
    }

    /// The next request `method`, or a panic after `wait`.
    pub(crate) fn expect_request(&self, method: &str, wait: Duration) -> RawMessage {
        self.next_request(method, wait)
            .unwrap_or_else(|| panic!("{}: no {method} within {wait:?}", self.user))
    }

    /// The next final response to a `method` request.
    pub(crate) fn expect_final(&self, method: &str) -> RawMessage {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("{}: no final response to {method}", self.user));
            let Some(msg) = self.peer.recv(left) else {
                panic!("{}: no final response to {method}", self.user);
            };
            let cseq_method = msg
                .header("CSeq")
                .and_then(|c| c.split_whitespace().nth(1))
                .unwrap_or_default();
            if msg.status().is_some_and(|s| s >= 200) && cseq_method == method {
                return msg;
            }
        }
    }

    fn via(&self, branch: &str) -> String {
        format!(
            "Via: SIP/2.0/UDP {};rport;branch=z9hG4bK{branch}\r\n",
            self.peer.local_addr()
        )
    }

    /// The INVITE of a new call to `callee`.
    fn invite(&self, callee: &Self, call_id: &str, from_tag: &str, sdp: Option<&str>) -> String {
        let head = format!(
            "INVITE {} SIP/2.0\r\n{}Max-Forwards: 70\r\nFrom: <{}>;tag={from_tag}\r\n\
             To: <{}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <{}>\r\n",
            callee.aor(),
            self.via(&format!("inv-{from_tag}")),
            self.aor(),
            callee.aor(),
            self.contact(),
        );
        with_body(head, sdp)
    }

    /// A request inside `d` from the caller (this phone) with its next CSeq.
    fn caller_request(
        &self,
        callee: &Self,
        d: &mut Dialog,
        method: &str,
        sdp: Option<&str>,
    ) -> String {
        let cseq = if method == "ACK" {
            d.caller_cseq - 1
        } else {
            let c = d.caller_cseq;
            d.caller_cseq += 1;
            c
        };
        let routes: String = d
            .record_route
            .iter()
            .rev()
            .map(|r| format!("Route: {r}\r\n"))
            .collect();
        let head = format!(
            "{method} {} SIP/2.0\r\n{}Max-Forwards: 70\r\nFrom: <{}>;tag={}\r\n\
             To: <{}>;tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <{}>\r\n{routes}",
            d.callee_target,
            self.via(&format!("{}-{method}-{cseq}", d.from_tag)),
            self.aor(),
            d.from_tag,
            callee.aor(),
            d.to_tag,
            d.call_id,
            self.contact(),
        );
        with_body(head, sdp)
    }

    /// A call to `callee` with an offer on `sdp_port` (or none), answered 200 by `callee`
    /// (tag `to_tag`, an answer when there was an offer) and ACKed; both SDPs must have
    /// crossed rtpengine.
    pub(crate) fn call(
        &self,
        setup: &Setup,
        callee: &Self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp_port: Option<u16>,
    ) -> Dialog {
        self.call_checked(setup, callee, (call_id, from_tag, to_tag), sdp_port, true)
    }

    /// [`Phone::call`]; with `relayed` false both SDPs must arrive exactly as sent.
    pub(crate) fn call_checked(
        &self,
        setup: &Setup,
        callee: &Self,
        (call_id, from_tag, to_tag): (&str, &str, &str),
        sdp_port: Option<u16>,
        relayed: bool,
    ) -> Dialog {
        let media_ip = setup.rtp.media_ip();
        let check = |got: &str, sent: &str| {
            if relayed {
                assert_relayed(got, media_ip);
            } else {
                assert_eq!(got, sent, "SDP not passed untouched");
            }
        };
        let offer = sdp_port.map(plain_sdp);
        self.send(&self.invite(callee, call_id, from_tag, offer.as_deref()));
        let invite = callee.expect_request("INVITE", WAIT);
        if let Some(o) = &offer {
            check(&body_text(&invite), o);
        }
        let answer = sdp_port.map(|p| plain_sdp(p + 1000));
        callee.send(&respond(
            &invite,
            200,
            "OK",
            to_tag,
            Some(&callee.contact()),
            answer.as_deref(),
        ));
        let ok = self.expect_final("INVITE");
        assert_eq!(ok.status(), Some(200), "INVITE answered:\n{ok}");
        if let Some(a) = &answer {
            check(&body_text(&ok), a);
        }
        let mut d = Dialog {
            call_id: call_id.to_owned(),
            from_tag: from_tag.to_owned(),
            to_tag: to_tag.to_owned(),
            callee_target: contact_uri(&ok),
            caller_target: contact_uri(&invite),
            record_route: record_route(&ok),
            caller_cseq: 2,
        };
        self.send(&self.caller_request(callee, &mut d, "ACK", None));
        callee.expect_request("ACK", WAIT);
        d
    }

    /// A call whose INVITE has no SDP: `callee` offers in its 200, this phone answers in
    /// the ACK; both bodies must cross rtpengine and the ACK keep a right Content-Length.
    pub(crate) fn late_call(
        &self,
        setup: &Setup,
        callee: &Self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
    ) -> Dialog {
        let media_ip = setup.rtp.media_ip();
        self.send(&self.invite(callee, call_id, from_tag, None));
        let invite = callee.expect_request("INVITE", WAIT);
        assert!(
            invite.body().is_empty(),
            "the INVITE grew a body:\n{invite}"
        );
        let offer = plain_sdp(4100);
        callee.send(&respond(
            &invite,
            200,
            "OK",
            to_tag,
            Some(&callee.contact()),
            Some(&offer),
        ));
        let ok = self.expect_final("INVITE");
        assert_eq!(ok.status(), Some(200), "INVITE answered:\n{ok}");
        assert_relayed(&body_text(&ok), media_ip);
        let mut d = Dialog {
            call_id: call_id.to_owned(),
            from_tag: from_tag.to_owned(),
            to_tag: to_tag.to_owned(),
            callee_target: contact_uri(&ok),
            caller_target: contact_uri(&invite),
            record_route: record_route(&ok),
            caller_cseq: 2,
        };
        let answer = plain_sdp(4200);
        self.send(&self.caller_request(callee, &mut d, "ACK", Some(&answer)));
        let ack = callee.expect_request("ACK", WAIT);
        assert_length_right(&ack);
        assert_relayed(&body_text(&ack), media_ip);
        d
    }

    /// A re-INVITE without SDP inside `d`: the offer in the callee's 200, the answer in
    /// the ACK, both through rtpengine.
    pub(crate) fn late_reinvite(&self, setup: &Setup, callee: &Self, d: &mut Dialog) {
        let media_ip = setup.rtp.media_ip();
        self.send(&self.caller_request(callee, d, "INVITE", None));
        let invite = callee.expect_request("INVITE", WAIT);
        assert!(
            invite.body().is_empty(),
            "the re-INVITE grew a body:\n{invite}"
        );
        callee.send(&respond(
            &invite,
            200,
            "OK",
            "",
            Some(&callee.contact()),
            Some(&plain_sdp(4102)),
        ));
        let ok = self.expect_final("INVITE");
        assert_eq!(ok.status(), Some(200), "re-INVITE answered:\n{ok}");
        assert_relayed(&body_text(&ok), media_ip);
        self.send(&self.caller_request(callee, d, "ACK", Some(&plain_sdp(4202))));
        let ack = callee.expect_request("ACK", WAIT);
        assert_length_right(&ack);
        assert_relayed(&body_text(&ack), media_ip);
    }

    /// The caller (this phone) hangs up `d`; `callee` answers 200.
    pub(crate) fn bye_from_caller(&self, _setup: &Setup, callee: &Self, d: &mut Dialog) {
        self.send(&self.caller_request(callee, d, "BYE", None));
        let bye = callee.expect_request("BYE", WAIT);
        callee.send(&respond(&bye, 200, "OK", "", None, None));
        let ok = self.expect_final("BYE");
        assert_eq!(ok.status(), Some(200), "BYE answered:\n{ok}");
    }

    /// The callee (this phone) hangs up `d`; `caller` answers 200.
    pub(crate) fn bye_from_callee(&self, _setup: &Setup, caller: &Self, d: &Dialog) {
        let routes: String = d
            .record_route
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect();
        let head = format!(
            "BYE {} SIP/2.0\r\n{}Max-Forwards: 70\r\nFrom: <{}>;tag={}\r\n\
             To: <{}>;tag={}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\n{routes}",
            d.caller_target,
            self.via(&format!("{}-bye", d.to_tag)),
            self.aor(),
            d.to_tag,
            caller.aor(),
            d.from_tag,
            d.call_id,
        );
        self.send(&with_body(head, None));
        let bye = caller.expect_request("BYE", WAIT);
        caller.send(&respond(&bye, 200, "OK", "", None, None));
        let ok = self.expect_final("BYE");
        assert_eq!(ok.status(), Some(200), "BYE answered:\n{ok}");
    }
}
