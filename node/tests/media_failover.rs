//! Issue 6, point 4: a call whose rtpengine instance dies is moved to a healthy one. A real
//! `sipmesh` with two real rtpengine daemons (on different addresses, so an SDP shows which
//! one relays it), alice and bob as raw UDP user agents. The call is set up through one
//! instance, that daemon is killed, and within a few seconds bob and then alice each get a
//! re-INVITE whose SDP points at the other daemon; they answer, the node ACKs, and a later
//! BYE from alice reaches bob with a CSeq above the node's own re-INVITE (the node shifted
//! alice's CSeq space), is answered 200 with alice's own CSeq, and leaves no session. Both
//! ends answer the re-INVITEs with new RTP ports, and RTP reaches them through the other
//! daemon. In a 3-node cluster over one Redis, the BYE entering another node than the one
//! that ran the failover is shifted the same way (the offsets are shared through Redis), and
//! a call whose node was SIGKILLed is failed over by the node that adopted its dialog (the
//! record keeps the call's last offer and answer).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sipmesh_test_support::{
    Harness, RawMessage, RawRequest, Rtpengine, SipmeshNode, TestDir, UdpPeer, test_ip,
};

mod cluster_support;

use cluster_support::{Cluster, DOMAIN, SIPMESH, all_live};

/// One node, or a 3-node cluster (over one Redis) whose node1 sets the call up.
enum Nodes {
    One(Box<Harness>),
    Three(Cluster),
}

impl Nodes {
    /// Node `i` (0-based; the only one when not clustered).
    fn node(&self, i: usize) -> &SipmeshNode {
        match self {
            Self::One(h) => h.node(),
            Self::Three(c) => &c.nodes[i.min(c.nodes.len() - 1)],
        }
    }

    fn ip(&self) -> IpAddr {
        self.node(0).udp_addr().ip()
    }

    fn domain(&self) -> String {
        match self {
            Self::One(h) => h.ip().to_string(),
            Self::Three(_) => DOMAIN.to_owned(),
        }
    }

    fn logs(&self) -> String {
        match self {
            Self::One(h) => h.node().log_tail(),
            Self::Three(c) => c
                .nodes
                .iter()
                .map(SipmeshNode::log_tail)
                .collect::<Vec<_>>()
                .join("\n-----\n"),
        }
    }
}

/// How long an answer may take.
const WAIT: Duration = Duration::from_secs(3);

/// How long the re-INVITE may take after the daemon died: the pool notices within about a
/// second, the calls move after about 2 s of failed pings.
const MOVED: Duration = Duration::from_secs(8);

/// A plain RTP/AVP SDP for media at `ip:port`.
fn sdp(ip: IpAddr, port: u16) -> String {
    format!(
        "v=0\r\no=- 42 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// The connection address of an SDP body.
fn connection_ip(msg: &RawMessage) -> Option<IpAddr> {
    String::from_utf8_lossy(msg.body())
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .and_then(|ip| ip.trim().parse().ok())
}

/// The audio port of an SDP body.
fn media_port(msg: &RawMessage) -> Option<u16> {
    String::from_utf8_lossy(msg.body())
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
}

/// A UDP socket for an end's RTP on `ip`, with a read timeout.
fn rtp_socket(ip: IpAddr) -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap_or_else(|e| panic!("{e}"));
    s
}

/// Sends RTP (PCMU, 20 ms frames) from `from` to `to` until `at` receives one (at most
/// `WAIT`); true when one arrived.
fn rtp_flows(from: &std::net::UdpSocket, to: SocketAddr, at: &std::net::UdpSocket) -> bool {
    let deadline = Instant::now() + WAIT;
    let mut seq: u16 = 0;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        seq = seq.wrapping_add(1);
        let mut packet = vec![0x80, 0x00];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        packet.extend_from_slice(&[0xff; 160]);
        from.send_to(&packet, to).unwrap_or_else(|e| panic!("{e}"));
        if at.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

/// A response to `req` ([`RawMessage::response`]).
fn respond(req: &RawMessage, code: u16, to_tag: &str, contact: &str, sdp: Option<&str>) -> String {
    req.response(code, to_tag, contact, sdp)
}

/// The next request `method` at `peer` within `wait` (others are skipped).
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

/// The next final response at `peer` for `call_id` and CSeq method `method`.
fn next_final(peer: &UdpPeer, call_id: &str, method: &str) -> RawMessage {
    let deadline = Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(r) = peer.recv_final(left) else {
            break;
        };
        if r.header("Call-ID") == Some(call_id)
            && r.header("CSeq").is_some_and(|c| c.ends_with(method))
        {
            return r;
        }
    }
    panic!("no final response to {method} at {}", peer.local_addr());
}

fn cseq_number(msg: &RawMessage) -> u32 {
    msg.header("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CSeq in {msg:?}"))
}

fn record_routes(msg: &RawMessage) -> Vec<String> {
    msg.header_all("Record-Route")
        .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()))
        .collect()
}

fn contact_uri(msg: &RawMessage) -> String {
    msg.header("Contact")
        .and_then(|c| c.split_once('<'))
        .and_then(|(_, c)| c.split_once('>'))
        .map(|(u, _)| u.to_owned())
        .unwrap_or_else(|| panic!("no Contact in {msg:?}"))
}

/// Answers a re-INVITE with `body` and waits for the node's ACK.
fn answer_reinvite(peer: &UdpPeer, reinvite: &RawMessage, from: SocketAddr, body: &str) {
    let contact = format!("sip:ua@{}", peer.local_addr());
    peer.send(
        from,
        respond(reinvite, 200, "x", &contact, Some(body)).as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (ack, _) = next_request(peer, "ACK", WAIT)
        .unwrap_or_else(|| panic!("no ACK of the re-INVITE's 200 at {}", peer.local_addr()));
    assert_eq!(cseq_number(&ack), cseq_number(reinvite), "{ack:?}");
}

/// A call set up through a node with two rtpengine daemons, alice calling bob.
struct Call {
    harness: Nodes,
    rtp: [Rtpengine; 2],
    _dir: TestDir,
    alice: UdpPeer,
    bob: UdpPeer,
    alice_sdp: String,
    bob_sdp: String,
    /// The daemon the call was set up on, and the other.
    first: usize,
    other: usize,
    /// alice's in-dialog requests towards bob: (method, CSeq, branch) → request text.
    route_lines: String,
    from: String,
    to: String,
    bob_target: String,
}

const CALL_ID: &str = "mf-call-1";

impl Call {
    /// Sets the call up; bob's 200 carries `bob_allow` as its Allow header when given.
    fn set_up(test: &str, bob_allow: Option<&str>) -> Self {
        Self::set_up_on(test, bob_allow, false)
    }

    /// Sets the call up through node1 of a 3-node cluster (`clustered`) or a single node.
    fn set_up_on(test: &str, bob_allow: Option<&str>, clustered: bool) -> Self {
        let dir = TestDir::new(&format!("{test}-rtpengine")).unwrap_or_else(|e| panic!("{e}"));
        let rtp = [
            Rtpengine::start_named(&dir, test_ip(test), "rtp-a"),
            Rtpengine::start_named(&dir, test_ip(&format!("{test}-b")), "rtp-b"),
        ];
        assert_ne!(rtp[0].media_ip(), rtp[1].media_ip());
        let specs: Vec<String> = rtp.iter().map(|r| format!("udp:{}", r.ng_addr())).collect();
        let harness = if clustered {
            let args: Vec<String> = specs
                .iter()
                .flat_map(|s| ["--rtpengine".to_owned(), s.clone()])
                .collect();
            let c = Cluster::start_with(test, 3, &args);
            c.wait("a full live mesh", Duration::from_secs(10), |c| {
                all_live(c, &["node1", "node2", "node3"])
            });
            Nodes::Three(c)
        } else {
            Nodes::One(Box::new(
                Harness::try_start(SIPMESH, test, |o| {
                    for s in &specs {
                        o.extra_args.extend(["--rtpengine".to_owned(), s.clone()]);
                    }
                })
                .unwrap_or_else(|e| panic!("{e}")),
            ))
        };
        let node = harness.node(0).udp_addr();
        let domain = harness.domain();

        let bob = UdpPeer::bind(harness.ip()).unwrap_or_else(|e| panic!("{e}"));
        let ok = bob
            .request(
                node,
                &RawRequest::register(&domain, "bob", bob.local_addr(), "mf", 1),
                WAIT,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ok.as_ref().and_then(RawMessage::status),
            Some(200),
            "{ok:?}"
        );
        let alice = UdpPeer::bind(harness.ip()).unwrap_or_else(|e| panic!("{e}"));
        let alice_sdp = sdp(alice.local_addr().ip(), 41000);
        let bob_sdp = sdp(bob.local_addr().ip(), 41010);
        let from = format!("<sip:alice@{domain}>;tag=alice1");
        let alice_contact = format!("sip:alice@{}", alice.local_addr());
        let invite = format!(
            "INVITE sip:bob@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {};rport;branch=z9hG4bKua-t-inv\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:bob@{domain}>\r\nCall-ID: {CALL_ID}\r\n\
             CSeq: 1 INVITE\r\nContact: <{alice_contact}>\r\nAllow: INVITE, ACK, BYE\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{alice_sdp}",
            alice.local_addr(),
            alice_sdp.len()
        );
        alice
            .send(node, invite.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let (at_bob, from_node) =
            next_request(&bob, "INVITE", WAIT).unwrap_or_else(|| panic!("no INVITE at bob"));
        let first = rtp
            .iter()
            .position(|r| connection_ip(&at_bob) == Some(r.media_ip()))
            .unwrap_or_else(|| panic!("bob's offer is not from either rtpengine: {at_bob:?}"));
        let bob_contact = format!("sip:bob@{}", bob.local_addr());
        let mut ok_200 = respond(&at_bob, 200, "bob1", &bob_contact, Some(&bob_sdp));
        if let Some(allow) = bob_allow {
            ok_200 = ok_200.replacen(
                "\r\nContact:",
                &format!("\r\nAllow: {allow}\r\nContact:"),
                1,
            );
        }
        bob.send(from_node, ok_200.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let ok = next_final(&alice, CALL_ID, "INVITE");
        assert_eq!(ok.status(), Some(200), "{ok:?}");
        assert_eq!(connection_ip(&ok), Some(rtp[first].media_ip()));
        let mut routes = record_routes(&ok);
        routes.reverse();
        let call = Self {
            route_lines: routes.iter().map(|r| format!("Route: {r}\r\n")).collect(),
            to: ok.header("To").unwrap_or_default().to_owned(),
            bob_target: contact_uri(&ok),
            from,
            harness,
            rtp,
            _dir: dir,
            alice,
            bob,
            alice_sdp,
            bob_sdp,
            first,
            other: 1 - first,
        };
        call.alice_sends("ACK", 1, "z9hG4bKua-t-ack");
        next_request(&call.bob, "ACK", WAIT).unwrap_or_else(|| panic!("no ACK at bob"));
        assert!(
            call.rtp[first]
                .list_calls(WAIT)
                .is_some_and(|c| c.iter().any(|c| c == CALL_ID)),
            "the call is not on the instance its SDP names"
        );
        call
    }

    /// alice sends an in-dialog request to bob through the node.
    fn alice_sends(&self, method: &str, cseq: u32, branch: &str) {
        self.alice_sends_via(0, method, cseq, branch);
    }

    /// alice sends an in-dialog request to bob through node `i` (its Route set still names
    /// the node that record-routed the call).
    fn alice_sends_via(&self, i: usize, method: &str, cseq: u32, branch: &str) {
        let request = format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {};rport;branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {CALL_ID}\r\n\
             CSeq: {cseq} {method}\r\n{}Content-Length: 0\r\n\r\n",
            self.bob_target,
            self.alice.local_addr(),
            self.from,
            self.to,
            self.route_lines,
        );
        self.alice
            .send(self.harness.node(i).udp_addr(), request.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// alice's BYE (her CSeq 2) reaches bob with a CSeq above `above`, and is answered 200
    /// with her own CSeq; `daemon` holds no call afterwards.
    fn bye_works(&self, above: u32, daemon: usize) {
        self.bye_works_via(0, above, daemon);
    }

    /// [`Self::bye_works`] with the BYE entering node `i`.
    fn bye_works_via(&self, i: usize, above: u32, daemon: usize) {
        self.alice_sends_via(i, "BYE", 2, "z9hG4bKua-t-bye");
        let (bye, src) =
            next_request(&self.bob, "BYE", WAIT).unwrap_or_else(|| panic!("no BYE at bob"));
        eprintln!("BYE reached bob with CSeq {}", cseq_number(&bye));
        assert!(
            cseq_number(&bye) > above,
            "BYE CSeq {} not above {above}",
            cseq_number(&bye)
        );
        self.bob
            .send(src, &bye.reply(200, "OK"))
            .unwrap_or_else(|e| panic!("{e}"));
        let done = next_final(&self.alice, CALL_ID, "BYE");
        assert_eq!(done.status(), Some(200), "{done:?}");
        assert_eq!(
            cseq_number(&done),
            2,
            "alice's BYE answered outside her CSeq space"
        );
        self.rtp[daemon].assert_no_calls(Duration::from_secs(3));
    }
}

#[test]
fn a_call_on_a_dead_rtpengine_is_re_invited_onto_the_other_and_a_later_bye_works() {
    let c = Call::set_up("media-failover-reinvite", Some("INVITE, ACK, BYE, CANCEL"));
    let (c, own_cseq, other) = move_the_call(c);
    c.bye_works(own_cseq, other);
}

/// Issue 6 in a cluster: node1 set the call up and moves it; alice's BYE enters node2,
/// which learned alice's CSeq offset through Redis, so bob sees it shifted and alice gets
/// her own CSeq back.
#[test]
fn after_a_failover_on_node1_a_bye_entering_node2_is_shifted_too() {
    let c = Call::set_up_on(
        "media-failover-cluster",
        Some("INVITE, ACK, BYE, CANCEL"),
        true,
    );
    let (c, own_cseq, other) = move_the_call(c);
    if let Nodes::Three(cluster) = &c.harness {
        let all = cluster.redis.cli(&["HGETALL", "sipmesh:media:shifts"]);
        eprintln!("shared offsets: {all:?}");
        assert!(
            all.contains("alice1"),
            "alice's offset not in Redis: {all:?}"
        );
    }
    c.bye_works_via(1, own_cseq, other);
}

/// Issue 6: node1 set the call up and is SIGKILLed; the survivor that adopts the dialog
/// finds the call's last offer and answer in the record, so when the call's daemon dies it
/// re-INVITEs both ends onto the other daemon; alice's BYE then enters node2, shifted.
#[test]
fn a_call_adopted_from_a_killed_node_is_failed_over_by_its_adopter() {
    let mut c = Call::set_up_on(
        "media-failover-adopted",
        Some("INVITE, ACK, BYE, CANCEL"),
        true,
    );
    let Nodes::Three(cluster) = &mut c.harness else {
        unreachable!("clustered")
    };
    let record = || {
        let keys = cluster
            .redis
            .cli(&["--scan", "--pattern", &format!("sipmesh:dlg:{CALL_ID}*")]);
        keys.lines()
            .map(str::trim)
            .find(|k| !k.is_empty())
            .map(str::to_owned)
    };
    let deadline = Instant::now() + WAIT;
    let key = loop {
        if let Some(k) = record()
            && cluster.redis.cli(&["HEXISTS", &k, "media_answer"]).trim() == "1"
        {
            break k;
        }
        assert!(Instant::now() < deadline, "no offer/answer in the record");
        std::thread::sleep(Duration::from_millis(20));
    };
    let node1 = cluster.nodes[0].udp_addr();
    cluster.nodes[0].kill();
    let killed = Instant::now();
    // Adopted: the record is written under another node's fence.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let owner = cluster.redis.cli(&["HGET", &key, "owner"]);
        if !owner.trim().is_empty() && !owner.contains("node1") {
            eprintln!(
                "adopted by {} {:?} after the kill",
                owner.trim(),
                killed.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dialog was not adopted: {owner:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (first, other) = (c.first, c.other);
    c.rtp[first].stop();
    let (reinvite, src) = next_request(&c.bob, "INVITE", MOVED)
        .unwrap_or_else(|| panic!("no re-INVITE at bob\n{}", c.harness.logs()));
    assert_ne!(
        src.ip(),
        node1.ip(),
        "the re-INVITE came from the killed node"
    );
    assert_eq!(connection_ip(&reinvite), Some(c.rtp[other].media_ip()));
    let own_cseq = cseq_number(&reinvite);
    answer_reinvite(&c.bob, &reinvite, src, &c.bob_sdp);
    let (reinvite, src) = next_request(&c.alice, "INVITE", WAIT)
        .unwrap_or_else(|| panic!("no re-INVITE at alice\n{}", c.harness.logs()));
    assert_eq!(connection_ip(&reinvite), Some(c.rtp[other].media_ip()));
    answer_reinvite(&c.alice, &reinvite, src, &c.alice_sdp);
    eprintln!(
        "measured: adopted call moved {:?} after node1's SIGKILL",
        killed.elapsed()
    );
    c.bye_works_via(1, own_cseq, other);
}

/// Kills the call's daemon and checks both ends are re-INVITEd onto the other; the call
/// and the node's re-INVITE CSeq at bob, and the other daemon.
fn move_the_call(mut c: Call) -> (Call, u32, usize) {
    let (first, other) = (c.first, c.other);
    c.rtp[first].stop();
    let stopped = Instant::now();
    // bob first: the replayed offer comes from the other instance, in alice's name.
    let (reinvite, src) = next_request(&c.bob, "INVITE", MOVED)
        .unwrap_or_else(|| panic!("no re-INVITE at bob\n{}", c.harness.logs()));
    let at_bob_after = stopped.elapsed();
    assert_eq!(
        connection_ip(&reinvite),
        Some(c.rtp[other].media_ip()),
        "{reinvite:?}"
    );
    assert!(
        reinvite
            .header("From")
            .is_some_and(|f| f.contains("tag=alice1"))
    );
    let own_cseq = cseq_number(&reinvite);
    assert!(own_cseq > 1, "re-INVITE CSeq {own_cseq}");
    // bob and alice answer with new media ports (each end may move its media in an
    // answer): media must flow through the other daemon to the new ports.
    let bob_rtp = rtp_socket(c.bob.local_addr().ip());
    let bob_port = bob_rtp.local_addr().map(|a| a.port()).unwrap_or_default();
    let to_bob_side = SocketAddr::new(
        c.rtp[other].media_ip(),
        media_port(&reinvite).unwrap_or_else(|| panic!("no m= in {reinvite:?}")),
    );
    answer_reinvite(
        &c.bob,
        &reinvite,
        src,
        &sdp(c.bob.local_addr().ip(), bob_port),
    );
    // Then alice, in bob's name, with the other instance's answer as the offer.
    let (reinvite, src) = next_request(&c.alice, "INVITE", WAIT)
        .unwrap_or_else(|| panic!("no re-INVITE at alice\n{}", c.harness.logs()));
    assert_eq!(
        connection_ip(&reinvite),
        Some(c.rtp[other].media_ip()),
        "{reinvite:?}"
    );
    assert!(
        reinvite
            .header("From")
            .is_some_and(|f| f.contains("tag=bob1"))
    );
    let alice_rtp = rtp_socket(c.alice.local_addr().ip());
    let alice_port = alice_rtp.local_addr().map(|a| a.port()).unwrap_or_default();
    let to_alice_side = SocketAddr::new(
        c.rtp[other].media_ip(),
        media_port(&reinvite).unwrap_or_else(|| panic!("no m= in {reinvite:?}")),
    );
    answer_reinvite(
        &c.alice,
        &reinvite,
        src,
        &sdp(c.alice.local_addr().ip(), alice_port),
    );
    assert!(
        rtp_flows(&bob_rtp, to_bob_side, &alice_rtp),
        "bob's RTP does not reach alice's new port {alice_port} through the other daemon"
    );
    assert!(
        rtp_flows(&alice_rtp, to_alice_side, &bob_rtp),
        "alice's RTP does not reach bob's new port {bob_port} through the other daemon"
    );
    eprintln!(
        "measured: re-INVITE at bob {at_bob_after:?} (CSeq {own_cseq}), both ends moved {:?} \
         after the daemon was killed",
        stopped.elapsed()
    );
    assert!(
        c.rtp[other]
            .list_calls(WAIT)
            .is_some_and(|l| l.iter().any(|l| l == CALL_ID)),
        "the call is not on the other instance"
    );
    (c, own_cseq, other)
}

/// bob refuses the re-INVITE (488): the node ACKs it on the same branch and leaves the call
/// as it is (alice gets no re-INVITE); the call still ends cleanly with a BYE.
#[test]
fn a_refused_failover_re_invite_leaves_the_call_and_a_later_bye_works() {
    let mut c = Call::set_up("media-failover-refused", None);
    let (first, other) = (c.first, c.other);
    c.rtp[first].stop();
    let (reinvite, src) = next_request(&c.bob, "INVITE", MOVED)
        .unwrap_or_else(|| panic!("no re-INVITE at bob\n{}", c.harness.logs()));
    let own_cseq = cseq_number(&reinvite);
    c.bob
        .send(src, &reinvite.reply(488, "Not Acceptable Here"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (ack, _) =
        next_request(&c.bob, "ACK", WAIT).unwrap_or_else(|| panic!("the node did not ACK the 488"));
    assert_eq!(cseq_number(&ack), own_cseq);
    let branch = |m: &RawMessage| {
        m.header("Via")
            .and_then(|v| v.split("branch=").nth(1))
            .map(|b| b.split(';').next().unwrap_or_default().to_owned())
    };
    assert_eq!(
        branch(&ack),
        branch(&reinvite),
        "a failure's ACK keeps the branch"
    );
    assert!(
        next_request(&c.alice, "INVITE", Duration::from_secs(1)).is_none(),
        "alice was re-INVITEd after bob refused"
    );
    c.bye_works(own_cseq, other);
}

/// bob's 200 listed Allow without INVITE: the node does not re-INVITE either end (moving
/// alice alone would not bring the media back); the call still ends with a BYE.
#[test]
fn an_end_that_does_not_allow_invite_is_not_re_invited() {
    let mut c = Call::set_up("media-failover-no-invite", Some("ACK, BYE, CANCEL"));
    let first = c.first;
    c.rtp[first].stop();
    // The failover round runs about 2 s after the stop; give it twice that.
    let wait = Duration::from_secs(4);
    assert!(
        next_request(&c.bob, "INVITE", wait).is_none(),
        "bob was re-INVITEd although his Allow has no INVITE"
    );
    assert!(
        next_request(&c.alice, "INVITE", Duration::from_millis(200)).is_none(),
        "alice was re-INVITEd although bob cannot be"
    );
    assert!(
        c.harness.logs().contains("does not allow re-INVITE"),
        "no failover refusal in the log:\n{}",
        c.harness.logs()
    );
    // The BYE goes through unshifted (no request was sent in alice's name).
    c.alice_sends("BYE", 2, "z9hG4bKua-t-bye");
    let (bye, src) = next_request(&c.bob, "BYE", WAIT).unwrap_or_else(|| panic!("no BYE at bob"));
    assert_eq!(cseq_number(&bye), 2);
    c.bob
        .send(src, &bye.reply(200, "OK"))
        .unwrap_or_else(|e| panic!("{e}"));
    let done = next_final(&c.alice, CALL_ID, "BYE");
    assert_eq!(done.status(), Some(200), "{done:?}");
    c.rtp[c.other].assert_no_calls(Duration::from_secs(1));
}
