//! Deterministic tests of the proxy core: messages in, bytes out, virtual time, a scripted
//! location store. No sockets, no sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::message::Message;
use crate::peer::{Destination, Listener, Origin, Transport};
use crate::registrar::{Binding, RegistrarPolicy, apply_register};
use crate::transaction::TimerConfig;

use super::{Core, CoreConfig, Output, StoreFailure};

pub(super) const PROXY: &str = "127.0.0.1:5060";
/// The node's WebSocket listener.
pub(super) const PROXY_WS: &str = "127.0.0.1:8080";
pub(super) const ALICE: &str = "127.0.0.2:5070";
pub(super) const BOB: &str = "127.0.0.3:5080";
pub(super) const CAROL: &str = "127.0.0.4:5090";

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A core plus a tiny in-memory location store run synchronously.
pub(super) struct Harness {
    pub(super) core: Core,
    pub(super) now: Instant,
    pub(super) wall: SystemTime,
    pub(super) bindings: Vec<(crate::registrar::Aor, Vec<Binding>)>,
    pub(super) sent: Vec<(Destination, Message)>,
    /// Messages for connections held by other cluster nodes, with their holder.
    pub(super) remote: Vec<(super::Incarnation, Destination, Message)>,
    pub(super) store_down: bool,
    /// Lookups of AORs with no binding answer [`StoreFailure::FlowsClosed`].
    pub(super) flows_closed: bool,
    /// A scripted DNS: name -> addresses.
    pub(super) hosts: Vec<(String, Vec<SocketAddr>)>,
    /// Dialog events the core emitted, in order.
    pub(super) dialogs: Vec<crate::dialog::DialogEvent>,
    /// Acknowledge `Output::StoreDialog` at once (a store that always succeeds); when off,
    /// the tokens wait in `unacked`.
    pub(super) ack_dialogs: bool,
    pub(super) unacked: Vec<u64>,
    /// ng requests the core asked for (`Output::Media`), in order.
    pub(super) media: Vec<(Option<u64>, crate::ng::Request)>,
}

/// The flow-token key of every test core.
pub(super) fn test_flow_key() -> super::FlowTokenKey {
    super::FlowTokenKey::new([0x5a; super::FlowTokenKey::LEN])
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::clustered(super::Incarnation::default())
    }

    /// A harness whose core is the cluster process `incarnation`.
    pub(super) fn clustered(incarnation: super::Incarnation) -> Self {
        let cfg = CoreConfig {
            listeners: vec![
                Listener {
                    transport: Transport::Udp,
                    addr: addr(PROXY),
                },
                Listener {
                    transport: Transport::Tcp,
                    addr: addr(PROXY),
                },
                Listener {
                    transport: Transport::Ws,
                    addr: addr(PROXY_WS),
                },
            ],
            domains: vec!["example.com".to_owned()],
            relay: false,
            timers: TimerConfig::default(),
            shard: 3,
            rng_seed: 42,
            flow_token_key: test_flow_key(),
            incarnation,
        };
        let now = Instant::now();
        Self {
            core: Core::new(cfg, now),
            now,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            bindings: Vec::new(),
            sent: Vec::new(),
            remote: Vec::new(),
            store_down: false,
            flows_closed: false,
            hosts: Vec::new(),
            dialogs: Vec::new(),
            ack_dialogs: true,
            unacked: Vec::new(),
            media: Vec::new(),
        }
    }

    pub(super) fn recv(&mut self, from: &str, text: &str) {
        let origin = Origin {
            transport: Transport::Udp,
            source: addr(from),
            local: addr(PROXY),
            connection: None,
        };
        self.recv_from(origin, text);
    }

    /// A message arriving from `origin` (any transport, any connection).
    pub(super) fn recv_from(&mut self, origin: Origin, text: &str) {
        let msg = Message::parse(Bytes::from(
            text.replace("\r\n", "\n").replace('\n', "\r\n"),
        ))
        .expect("test message parses");
        self.core.handle_message(self.now, msg, origin);
        self.pump();
    }

    pub(super) fn pump(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit(t) => {
                    let m = Message::parse(t.payload.clone()).expect("core output parses");
                    self.sent.push((t.destination, m));
                }
                Output::RemoteTransmit { holder, transmit } => {
                    let m = Message::parse(transmit.payload.clone()).expect("core output parses");
                    self.remote.push((holder, transmit.destination, m));
                }
                Output::Register { token, request } => {
                    let result = if self.store_down {
                        Err(StoreFailure::Unavailable)
                    } else {
                        let current = self.lookup(&request.aor);
                        match apply_register(
                            &current,
                            &request,
                            &RegistrarPolicy::default(),
                            self.wall,
                        ) {
                            Ok(outcome) => {
                                self.bindings.retain(|(a, _)| *a != request.aor);
                                self.bindings
                                    .push((request.aor.clone(), outcome.bindings.clone()));
                                Ok(outcome)
                            }
                            Err(e) => Err(StoreFailure::Rejected(e)),
                        }
                    };
                    self.core
                        .handle_register_result(self.now, self.wall, token, result);
                }
                Output::Resolve { token, host, port } => {
                    let found = self
                        .hosts
                        .iter()
                        .find(|(h, _)| *h == host)
                        .map(|(_, a)| a.iter().map(|a| SocketAddr::new(a.ip(), port)).collect())
                        .unwrap_or_default();
                    self.core.handle_resolve_result(self.now, token, found);
                }
                Output::Dialog(ev) => self.dialogs.push(ev),
                Output::Media { token, request } => self.media.push((token, request)),
                Output::StoreDialog { token, event } => {
                    self.dialogs.push(event);
                    if self.ack_dialogs {
                        self.core.handle_dialog_stored(self.now, token, true);
                    } else {
                        self.unacked.push(token);
                    }
                }
                Output::Lookup { token, aor } => {
                    let result = if self.store_down {
                        Err(StoreFailure::Unavailable)
                    } else {
                        match self.lookup(&aor) {
                            b if b.is_empty() && self.flows_closed => {
                                Err(StoreFailure::FlowsClosed)
                            }
                            b => Ok(b),
                        }
                    };
                    self.core.handle_lookup_result(self.now, token, result);
                }
            }
        }
    }

    fn lookup(&self, aor: &crate::registrar::Aor) -> Vec<Binding> {
        self.bindings
            .iter()
            .find(|(a, _)| a == aor)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }

    pub(super) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.core.poll_timeout().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            self.core.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
    }

    pub(super) fn take(&mut self) -> Vec<(Destination, Message)> {
        std::mem::take(&mut self.sent)
    }

    pub(super) fn register(&mut self, user: &str, contact: &str, cseq: u32) {
        self.register_with(user, contact, &format!("reg-{user}"), cseq);
    }

    /// Registers `user` at `contact` from the registration `call_id` (another Call-ID adds a
    /// second binding), asserting the 200.
    pub(super) fn register_with(&mut self, user: &str, contact: &str, call_id: &str, cseq: u32) {
        self.recv(
            contact,
            &format!(
                "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP {contact};branch=z9hG4bKreg{call_id}{cseq}\nMax-Forwards: 70\n\
                 From: <sip:{user}@example.com>;tag=r{user}\nTo: <sip:{user}@example.com>\nCall-ID: {call_id}\nCSeq: {cseq} REGISTER\n\
                 Contact: <sip:{user}@{contact}>\nExpires: 600\nContent-Length: 0\n\n"
            ),
        );
        let out = self.take();
        assert_eq!(
            status(&out[0].1),
            200,
            "REGISTER answered 200: {:?}",
            text(&out[0].1)
        );
    }
}

pub(super) fn status(m: &Message) -> u16 {
    m.status().expect("a response").0
}

pub(super) fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.as_bytes()).into_owned()
}

pub(super) fn invite(to_user: &str, branch: &str) -> String {
    format!(
        "INVITE sip:{to_user}@example.com SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch={branch}\nMax-Forwards: 70\n\
         From: <sip:alice@example.com>;tag=a1\nTo: <sip:{to_user}@example.com>\nCall-ID: call-1\nCSeq: 1 INVITE\n\
         Contact: <sip:alice@{ALICE}>\nContent-Type: application/sdp\nContent-Length: 5\n\nv=0\n"
    )
}

/// A response from a downstream UAS to a forwarded request: its Vias copied, a To tag added.
pub(super) fn answer(req: &Message, code: u16, to_tag: &str) -> String {
    let mut s = format!("SIP/2.0 {code} Whatever\r\n");
    for h in req.headers() {
        let n = h.name_str();
        let v = h.value_str().unwrap();
        if n.eq_ignore_ascii_case("Via")
            || n.eq_ignore_ascii_case("From")
            || n.eq_ignore_ascii_case("Call-ID")
            || n.eq_ignore_ascii_case("CSeq")
            || n.eq_ignore_ascii_case("Record-Route")
        {
            s.push_str(&format!("{n}: {v}\r\n"));
        } else if n.eq_ignore_ascii_case("To") {
            s.push_str(&format!("To: {v};tag={to_tag}\r\n"));
        }
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

#[test]
fn register_then_query_lists_the_binding_with_remaining_expiry() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    h.recv(
        BOB,
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bKq1\nMax-Forwards: 70\n\
         From: <sip:bob@example.com>;tag=q\nTo: <sip:bob@example.com>\nCall-ID: query\nCSeq: 1 REGISTER\nContent-Length: 0\n\n",
    );
    let out = h.take();
    assert_eq!(status(&out[0].1), 200);
    let contact = out[0]
        .1
        .header(&crate::header::HeaderName::Contact)
        .unwrap()
        .value_str()
        .unwrap()
        .to_owned();
    assert!(
        contact.contains("sip:bob@127.0.0.3:5080") && contact.contains("expires=600"),
        "{contact}"
    );
    assert_eq!(
        out[0].0.addr,
        addr(BOB),
        "UDP response goes to the Via port on the source IP"
    );
}

#[test]
fn register_errors_423_and_503() {
    let mut h = Harness::new();
    h.recv(
        BOB,
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bKe1\nMax-Forwards: 70\n\
         From: <sip:bob@example.com>;tag=q\nTo: <sip:bob@example.com>\nCall-ID: e\nCSeq: 1 REGISTER\n\
         Contact: <sip:bob@127.0.0.3:5080>\nExpires: 10\nContent-Length: 0\n\n",
    );
    let out = h.take();
    assert_eq!(status(&out[0].1), 423);
    assert!(text(&out[0].1).contains("Min-Expires: 60"));
    h.store_down = true;
    h.recv(
        BOB,
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bKe2\nMax-Forwards: 70\n\
         From: <sip:bob@example.com>;tag=q\nTo: <sip:bob@example.com>\nCall-ID: e\nCSeq: 2 REGISTER\n\
         Contact: <sip:bob@127.0.0.3:5080>\nContent-Length: 0\n\n",
    );
    let out = h.take();
    assert_eq!(status(&out[0].1), 503);
    assert!(text(&out[0].1).contains("Retry-After: 5"));
}

#[test]
fn invite_is_forwarded_with_via_record_route_and_responses_come_back() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    h.recv(ALICE, &invite("bob", "z9hG4bKinv1"));
    let out = h.take();
    assert_eq!(
        out.len(),
        2,
        "100 Trying upstream and the INVITE downstream"
    );
    assert_eq!(status(&out[0].1), 100);
    let (dest, fwd) = &out[1];
    assert_eq!(dest.addr, addr(BOB));
    let t = text(fwd);
    assert!(
        t.starts_with("INVITE sip:bob@127.0.0.3:5080 SIP/2.0\r\n"),
        "{t}"
    );
    assert!(t.contains("Record-Route: <sip:127.0.0.1:5060;lr>"), "{t}");
    assert!(t.contains("Max-Forwards: 69"), "{t}");
    assert!(
        t.ends_with("\r\n\r\nv=0\r\n"),
        "body copied as it came: {t}"
    );
    let vias: Vec<_> = fwd.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), 2);
    assert!(vias[0].branch.unwrap().starts_with("z9hG4bKsm03"));
    assert_eq!(vias[1].branch, Some("z9hG4bKinv1"));

    let ringing = answer(fwd, 180, "b1");
    h.recv(BOB, &ringing);
    let out = h.take();
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), 180);
    assert_eq!(out[0].0.addr, addr(ALICE));
    assert_eq!(out[0].1.vias().count(), 1, "our Via popped");

    h.recv(BOB, &answer(fwd, 200, "b1"));
    let out = h.take();
    assert_eq!(status(&out[0].1), 200);
    assert!(text(&out[0].1).contains("Record-Route: <sip:127.0.0.1:5060;lr>"));
    // A retransmitted 2xx is forwarded again (RFC 6026).
    h.recv(BOB, &answer(fwd, 200, "b1"));
    assert_eq!(status(&h.take()[0].1), 200);
}

#[test]
fn ack_and_bye_follow_the_route_set_without_lookup() {
    let mut h = Harness::new();
    h.recv(
        ALICE,
        &format!(
            "ACK sip:bob@{BOB} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKack1\nRoute: <sip:127.0.0.1:5060;lr>\nMax-Forwards: 70\n\
             From: <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>;tag=b1\nCall-ID: call-1\nCSeq: 1 ACK\nContent-Length: 0\n\n"
        ),
    );
    let out = h.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.addr, addr(BOB));
    assert!(
        out[0].1.header(&crate::header::HeaderName::Route).is_none(),
        "our Route popped"
    );
    h.recv(
        ALICE,
        &format!(
            "BYE sip:bob@{BOB} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKbye1\nRoute: <sip:127.0.0.1:5060;lr>\nMax-Forwards: 70\n\
             From: <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>;tag=b1\nCall-ID: call-1\nCSeq: 2 BYE\nContent-Length: 0\n\n"
        ),
    );
    let out = h.take();
    assert_eq!(out.len(), 1);
    let (dest, bye) = &out[0];
    assert_eq!(dest.addr, addr(BOB));
    h.recv(BOB, &answer(bye, 200, "b1"));
    let out = h.take();
    assert_eq!(status(&out[0].1), 200);
    assert_eq!(out[0].0.addr, addr(ALICE));
}

#[test]
fn a_phone_on_the_proxy_ip_but_another_port_is_not_the_proxy() {
    let mut h = Harness::new();
    h.recv(
        ALICE,
        "BYE sip:uas@127.0.0.1:5099 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKbye2\nRoute: <sip:127.0.0.1:5060;lr>\nMax-Forwards: 70\n\
         From: <sip:alice@example.com>;tag=a1\nTo: <sip:uas@example.com>;tag=b1\nCall-ID: c2\nCSeq: 2 BYE\nContent-Length: 0\n\n",
    );
    let out = h.take();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].0.addr,
        addr("127.0.0.1:5099"),
        "forwarded to the phone, not looped into the proxy"
    );
}

#[test]
fn forking_cancels_the_losing_branch() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    h.register_with("bob", CAROL, "reg-bob-2", 1);
    h.recv(ALICE, &invite("bob", "z9hG4bKfork"));
    let out = h.take();
    assert_eq!(out.len(), 3, "100 + two branches");
    let to_bob = out
        .iter()
        .find(|(d, _)| d.addr == addr(BOB))
        .unwrap()
        .1
        .clone();
    let to_carol = out
        .iter()
        .find(|(d, _)| d.addr == addr(CAROL))
        .unwrap()
        .1
        .clone();
    h.recv(CAROL, &answer(&to_carol, 180, "c1"));
    h.recv(BOB, &answer(&to_bob, 200, "b1"));
    let out = h.take();
    let codes: Vec<_> = out
        .iter()
        .filter(|(_, m)| !m.is_request())
        .map(|(_, m)| status(m))
        .collect();
    assert_eq!(codes, vec![180, 200]);
    let cancel = out
        .iter()
        .find(|(_, m)| m.method() == Some(&crate::message::Method::Cancel))
        .expect("CANCEL sent");
    assert_eq!(cancel.0.addr, addr(CAROL));
    assert_eq!(
        cancel.1.top_via().unwrap().branch,
        to_carol.top_via().unwrap().branch,
        "same branch as the INVITE"
    );
    // Carol answers the CANCEL and the INVITE with 487: absorbed; we ACK the 487 ourselves.
    h.recv(CAROL, &answer(&cancel.1, 200, "c1"));
    h.recv(CAROL, &answer(&to_carol, 487, "c1"));
    let out = h.take();
    assert_eq!(
        out.len(),
        1,
        "only our ACK for the 487: {:?}",
        out.iter().map(|(_, m)| text(m)).collect::<Vec<_>>()
    );
    assert_eq!(out[0].1.method(), Some(&crate::message::Method::Ack));
}

#[test]
fn cancel_before_answer_gives_200_and_487() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    h.recv(ALICE, &invite("bob", "z9hG4bKc1"));
    let fwd = h.take().pop().unwrap().1;
    h.recv(BOB, &answer(&fwd, 180, "b1"));
    h.take();
    h.recv(
        ALICE,
        "CANCEL sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKc1\nMax-Forwards: 70\n\
         From: <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>\nCall-ID: call-1\nCSeq: 1 CANCEL\nContent-Length: 0\n\n",
    );
    let out = h.take();
    assert_eq!(status(&out[0].1), 200);
    let cancel = &out[1].1;
    assert_eq!(cancel.method(), Some(&crate::message::Method::Cancel));
    h.recv(BOB, &answer(cancel, 200, "b1"));
    h.recv(BOB, &answer(&fwd, 487, "b1"));
    let out = h.take();
    let upstream: Vec<_> = out
        .iter()
        .filter(|(d, _)| d.addr == addr(ALICE))
        .map(|(_, m)| status(m))
        .collect();
    assert_eq!(upstream, vec![487]);
}

#[test]
fn unknown_user_gets_404_and_foreign_domain_403() {
    let mut h = Harness::new();
    h.recv(ALICE, &invite("nobody", "z9hG4bKn1"));
    let codes: Vec<_> = h.take().iter().map(|(_, m)| status(m)).collect();
    assert_eq!(codes, vec![100, 404]);
    h.recv(
        ALICE,
        "MESSAGE sip:x@example.org SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKf1\nMax-Forwards: 70\n\
         From: <sip:alice@example.com>;tag=a1\nTo: <sip:x@example.org>\nCall-ID: m1\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n",
    );
    assert_eq!(status(&h.take()[0].1), 403);
}

#[test]
fn validation_errors() {
    let mut h = Harness::new();
    let base = |extra: &str, ruri: &str, mf: &str| {
        format!(
            "OPTIONS {ruri} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK{}\nMax-Forwards: {mf}\n\
             From: <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>\nCall-ID: v{}\nCSeq: 1 OPTIONS\n{extra}Content-Length: 0\n\n",
            ruri.len() + mf.len() + extra.len(),
            extra.len()
        )
    };
    h.recv(ALICE, &base("", "sip:bob@example.com", "0"));
    assert_eq!(status(&h.take()[0].1), 483);
    h.recv(ALICE, &base("", "sip:127.0.0.1", "70"));
    let out = h.take();
    assert_eq!(status(&out[0].1), 200);
    assert!(text(&out[0].1).contains("Allow: INVITE"));
    h.recv(
        ALICE,
        &base("", "nobodyKnowsThisScheme:totallyopaquecontent", "70"),
    );
    assert_eq!(status(&h.take()[0].1), 416);
    h.recv(
        ALICE,
        &base("Proxy-Require: foo\n", "sip:bob@example.com", "70"),
    );
    let out = h.take();
    assert_eq!(status(&out[0].1), 420);
    assert!(text(&out[0].1).contains("Unsupported: foo"));
}

#[test]
fn a_looping_request_gets_482() {
    let mut h = Harness::new();
    h.recv(
        ALICE,
        "MESSAGE sip:x@127.0.0.9 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKl1\nRoute: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.9;lr>\nMax-Forwards: 70\n\
         From: <sip:alice@example.com>;tag=a1\nTo: <sip:x@example.org>\nCall-ID: loop\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n",
    );
    let (_, fwd) = h.take().pop().unwrap();
    // The next hop sends it straight back, unchanged apart from its own Via.
    let back = text(&fwd)
        .replacen(
            "Via: ",
            "Via: SIP/2.0/UDP 127.0.0.9;branch=z9hG4bKother\r\nVia: ",
            1,
        )
        .replacen(
            "Route: <sip:127.0.0.9;lr>",
            "Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.9;lr>",
            1,
        );
    h.recv("127.0.0.9:5060", &back.replace("\r\n", "\n"));
    let out = h.take();
    assert_eq!(status(&out[0].1), 482, "{}", text(&out[0].1));
}

#[test]
fn unanswered_branch_times_out_with_408_and_retransmits() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    h.recv(
        ALICE,
        "MESSAGE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKt1\nMax-Forwards: 70\n\
         From: <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>\nCall-ID: t1\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n",
    );
    assert_eq!(h.take().len(), 1);
    h.advance(Duration::from_secs(33));
    let out = h.take();
    let retransmits = out.iter().filter(|(_, m)| m.is_request()).count();
    assert!(retransmits >= 8, "Timer E retransmissions: {retransmits}");
    let last = out
        .iter()
        .rev()
        .find(|(_, m)| !m.is_request())
        .expect("a response upstream");
    assert_eq!(status(&last.1), 408);
    h.advance(Duration::from_secs(40));
    assert_eq!(h.core.transaction_counts(), (0, 0), "everything cleaned up");
}

#[test]
fn request_retransmission_is_absorbed_and_answered_again() {
    let mut h = Harness::new();
    let req = "OPTIONS sip:127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKr1\nMax-Forwards: 70\n\
               From: <sip:alice@example.com>;tag=a1\nTo: <sip:p@example.com>\nCall-ID: r1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n";
    h.recv(ALICE, req);
    h.recv(ALICE, req);
    let out = h.take();
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].1.as_bytes(),
        out[1].1.as_bytes(),
        "same response resent by the transaction"
    );
}

#[test]
fn path_is_echoed_and_used_as_the_route_to_the_binding() {
    let mut h = Harness::new();
    // An edge proxy at 127.0.0.8:5060 registered bob with a Path (RFC 3327).
    h.recv(
        "127.0.0.8:5060",
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.8:5060;branch=z9hG4bKedge1\n\
         Via: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bKp1\nMax-Forwards: 69\n\
         From: <sip:bob@example.com>;tag=p\nTo: <sip:bob@example.com>\nCall-ID: path-1\nCSeq: 1 REGISTER\n\
         Supported: path\nPath: <sip:127.0.0.8:5060;lr>\nContact: <sip:bob@10.9.9.9:5080>\nContent-Length: 0\n\n",
    );
    let out = h.take();
    assert_eq!(status(&out[0].1), 200);
    assert!(
        text(&out[0].1).contains("Path: <sip:127.0.0.8:5060;lr>"),
        "{}",
        text(&out[0].1)
    );
    h.recv(ALICE, &invite("bob", "z9hG4bKpath"));
    let out = h.take();
    let (dest, fwd) = out
        .iter()
        .find(|(_, m)| m.is_request())
        .expect("INVITE forwarded");
    assert_eq!(
        dest.addr,
        addr("127.0.0.8:5060"),
        "sent to the first Path hop, not the contact"
    );
    let t = text(fwd);
    assert!(
        t.starts_with("INVITE sip:bob@10.9.9.9:5080 SIP/2.0\r\n"),
        "{t}"
    );
    assert!(t.contains("Route: <sip:127.0.0.8:5060;lr>"), "{t}");
}

#[test]
fn challenges_of_every_branch_are_aggregated_into_the_401() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    h.register_with("bob", CAROL, "reg-bob-3", 1);
    h.recv(ALICE, &invite("bob", "z9hG4bKauth"));
    let out = h.take();
    let to_bob = out
        .iter()
        .find(|(d, _)| d.addr == addr(BOB))
        .unwrap()
        .1
        .clone();
    let to_carol = out
        .iter()
        .find(|(d, _)| d.addr == addr(CAROL))
        .unwrap()
        .1
        .clone();
    let challenge = |req: &Message, realm: &str| {
        answer(req, 401, realm).replace(
            "Content-Length: 0",
            &format!(
                "WWW-Authenticate: Digest realm=\"{realm}\", nonce=\"n\"\r\nContent-Length: 0"
            ),
        )
    };
    h.recv(BOB, &challenge(&to_bob, "bob.example.com"));
    h.recv(CAROL, &challenge(&to_carol, "carol.example.com"));
    let out = h.take();
    let upstream = out
        .iter()
        .find(|(d, m)| d.addr == addr(ALICE) && !m.is_request())
        .expect("a response upstream");
    assert_eq!(status(&upstream.1), 401);
    let t = text(&upstream.1);
    assert!(
        t.contains("realm=\"bob.example.com\"") && t.contains("realm=\"carol.example.com\""),
        "{t}"
    );
}

#[test]
fn relayed_requests_to_host_names_are_resolved_first() {
    let mut h = Harness::new();
    h.core = Core::new(
        CoreConfig {
            listeners: vec![Listener {
                transport: Transport::Udp,
                addr: addr(PROXY),
            }],
            domains: vec!["example.com".to_owned()],
            relay: true,
            timers: TimerConfig::default(),
            shard: 3,
            rng_seed: 42,
            flow_token_key: test_flow_key(),
            incarnation: super::Incarnation::default(),
        },
        h.now,
    );
    h.hosts.push((
        "sip.example.org".to_owned(),
        vec![addr("[2001:db8::1]:0"), addr("127.0.0.9:0")],
    ));
    let message = |to: &str, branch: &str| {
        format!(
            "MESSAGE sip:x@{to} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch={branch}\nMax-Forwards: 70\n\
             From: <sip:alice@example.com>;tag=a1\nTo: <sip:x@{to}>\nCall-ID: {branch}\nCSeq: 1 MESSAGE\nContent-Length: 0\n\n"
        )
    };
    h.recv(ALICE, &message("sip.example.org:5070", "z9hG4bKdns1"));
    let out = h.take();
    assert_eq!(out.len(), 1, "forwarded once the name resolved");
    // No IPv6 listener: the IPv4 address is the reachable one.
    assert_eq!(out[0].0.addr, addr("127.0.0.9:5070"));
    h.recv(ALICE, &message("nowhere.example.org", "z9hG4bKdns2"));
    let out = h.take();
    assert_eq!(status(&out[0].1), 502);
    assert!(text(&out[0].1).contains("cannot resolve"));
}

#[test]
fn sips_requests_need_tls_on_both_sides() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    let sips_invite = invite("bob", "z9hG4bKsips1").replacen("INVITE sip:", "INVITE sips:", 1);
    h.recv(ALICE, &sips_invite);
    let out = h.take();
    let last = out.last().expect("an answer");
    assert_eq!(
        status(&last.1),
        403,
        "a SIPS request over UDP is refused: {}",
        text(&last.1)
    );
    // Over TLS it is accepted, but bob is only reachable over UDP: no secure path.
    h.core = Core::new(
        CoreConfig {
            listeners: vec![
                Listener {
                    transport: Transport::Udp,
                    addr: addr(PROXY),
                },
                Listener {
                    transport: Transport::Tls,
                    addr: addr("127.0.0.1:5061"),
                },
            ],
            domains: vec!["example.com".to_owned()],
            relay: false,
            timers: TimerConfig::default(),
            shard: 3,
            rng_seed: 42,
            flow_token_key: test_flow_key(),
            incarnation: super::Incarnation::default(),
        },
        h.now,
    );
    h.register("bob", BOB, 2);
    let origin = Origin {
        transport: Transport::Tls,
        source: addr("127.0.0.2:40000"),
        local: addr("127.0.0.1:5061"),
        connection: Some(crate::peer::ConnectionId(9)),
    };
    h.recv_from(
        origin,
        &sips_invite
            .replace("z9hG4bKsips1", "z9hG4bKsips2")
            .replace("SIP/2.0/UDP", "SIP/2.0/TLS"),
    );
    let out = h.take();
    let last = out.last().expect("an answer");
    assert_eq!(status(&last.1), 480, "{}", text(&last.1));
    assert!(
        out.iter()
            .all(|(d, m)| !m.is_request() || d.transport == Transport::Tls),
        "nothing sent in clear"
    );
}
