//! Unit tests for message parsing, accessors, editing and building, plus a deterministic
//! no-panic property test over mutated corpus messages.

use bytes::Bytes;

use super::*;
use crate::header::{Contacts, HeaderName};
use crate::uri::Host;

const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Timestamp: 54\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn msg(s: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

#[test]
fn parse_invite() {
    let m = msg(INVITE);
    assert!(m.is_request());
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.request_uri_raw(), Some(&b"sip:bob@biloxi.com"[..]));
    let v = m.top_via().unwrap();
    assert_eq!(v.branch, Some("z9hG4bK776asdhds"));
    assert_eq!(v.host, Host::Domain("pc33.atlanta.com"));
    assert_eq!(m.call_id().unwrap(), "a84b4c76e66710@pc33.atlanta.com");
    assert_eq!(m.cseq().unwrap().seq, 314159);
    assert_eq!(m.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(m.to().unwrap().tag(), None);
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert_eq!(m.routes().unwrap().len(), 3);
    assert_eq!(m.header_count(&HeaderName::Route), 2);
    assert_eq!(m.content_length().unwrap(), Some(4));
    assert_eq!(m.content_type(), Some("application/sdp"));
    assert_eq!(&m.body()[..], b"v=0\n");
    let Contacts::List(c) = m.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c.len(), 1);
    m.validate_request().unwrap();
}

#[test]
fn body_rules() {
    // Bytes past Content-Length are ignored (RFC 3261 §18.3).
    let m = msg(&INVITE.replace("v=0\n", "v=0\ngarbage"));
    assert_eq!(&m.body()[..], b"v=0\n");
    // Missing Content-Length: body is the rest.
    let m = msg(&INVITE.replace("Content-Length: 4\r\n", ""));
    assert_eq!(&m.body()[..], b"v=0\n");
    let e = Message::parse(Bytes::from(
        INVITE.replace("Content-Length: 4", "Content-Length: 40"),
    ));
    assert_eq!(e.unwrap_err(), ParseError::ContentLengthExceedsBody);
    let e = Message::parse(Bytes::from(INVITE.replace("Content-Length: 4", "l: -4")));
    assert_eq!(e.unwrap_err(), ParseError::NegativeContentLength);
}

#[test]
fn start_line_errors() {
    let p = |s: &str| Message::parse(Bytes::copy_from_slice(s.as_bytes()));
    assert_eq!(p("").unwrap_err(), ParseError::Empty);
    assert_eq!(
        p("INVITE sip:a@b SIP/3.0\r\n\r\n").unwrap_err(),
        ParseError::UnsupportedVersion
    );
    assert_eq!(
        p("SIP/2.0 99 x\r\n\r\n").unwrap_err(),
        ParseError::InvalidStatusCode
    );
    assert_eq!(
        p("INVITE <sip:a@b> SIP/2.0\r\n\r\n").unwrap_err(),
        ParseError::RequestUriInAngleBrackets
    );
    assert_eq!(
        p("INVITE sip:a@b SIP/2.0\r\nNoColon\r\n\r\n").unwrap_err(),
        ParseError::InvalidHeaderLine
    );
    let r = p("\r\n\r\nSIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP a\r\n\r\n").unwrap();
    assert_eq!(r.status(), Some(StatusCode::RINGING));
    assert_eq!(r.reason(), Some("Ringing"));
    assert!(r.method().is_none());
}

#[test]
fn compact_and_folded_headers() {
    let m = msg("OPTIONS sip:a@b SIP/2.0\r\n\
v: SIP/2.0/UDP h1;branch=z9hG4bK1,\r\n SIP/2.0/TCP h2;branch=z9hG4bK2\r\n\
i: abc\r\nf: <sip:a@b>;tag=x\r\nt: sip:c@d\r\nCSeq: 1 OPTIONS\r\nk: path, outbound\r\n\
X-Custom: 1\r\nx-custom: 2\r\n\r\n");
    let vias: Vec<_> = m.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(vias, vec!["UDP", "TCP"]);
    assert_eq!(m.call_id().unwrap(), "abc");
    let tags: Vec<_> = m.option_tags(&HeaderName::Supported).collect();
    assert_eq!(tags, vec!["path", "outbound"]);
    let other = HeaderName::from("X-CUSTOM");
    assert_eq!(m.header_count(&other), 2);
    assert_eq!(m.header(&other).unwrap().value, b"1");
    m.validate_request().unwrap();
}

#[test]
fn validation_errors() {
    let m = msg(&INVITE.replace("CSeq: 314159 INVITE", "CSeq: 1 BYE"));
    assert_eq!(m.validate_request(), Err(ParseError::CSeqMethodMismatch));
    let m = msg(&INVITE.replace("Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n", ""));
    assert_eq!(
        m.validate_request(),
        Err(ParseError::Missing(HeaderName::CallId))
    );
    let m = msg(&INVITE.replace("Max-Forwards: 70", "Max-Forwards: 256"));
    assert_eq!(m.validate_request(), Err(ParseError::InvalidMaxForwards));
    let m = msg(&INVITE.replace("To: Bob", "t: x <sip:x@y>\r\nTo: Bob"));
    assert_eq!(
        m.validate_request(),
        Err(ParseError::Duplicate(HeaderName::To))
    );
    assert_eq!(ParseError::UnsupportedVersion.status(), StatusCode(505));
    assert_eq!(
        ParseError::Missing(HeaderName::CallId).reason_phrase(),
        "Missing Call-ID header"
    );
}

#[test]
fn contact_star() {
    let m = msg("REGISTER sip:b SIP/2.0\r\nContact: *\r\nExpires: 0\r\n\r\n");
    assert_eq!(m.contacts().unwrap(), Contacts::Star);
    assert_eq!(m.expires().unwrap(), Some(0));
    let m = msg("REGISTER sip:b SIP/2.0\r\nContact: *, <sip:a@b>\r\n\r\n");
    assert_eq!(m.contacts(), Err(ParseError::StarContactMixed));
}

#[test]
fn editor_roundtrip_and_edits() {
    let m = msg(INVITE);
    assert_eq!(Editor::new(&m).finish(), m.message_bytes());
    let mut ed = Editor::new(&m);
    ed.prepend_header("Record-Route", "<sip:proxy.example.com;lr>");
    ed.prepend_header("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1");
    ed.remove_first_value(&HeaderName::Route);
    ed.set_header("Max-Forwards", "69");
    ed.set_request_uri("sip:bob@192.0.2.4");
    ed.append_header("X-Test", "yes");
    let out = ed.finish();
    let s = std::str::from_utf8(&out).unwrap();
    assert!(s.starts_with(
        "INVITE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1\r\nRecord-Route: <sip:proxy.example.com;lr>\r\nVia: SIP/2.0/UDP pc33"
    ));
    assert!(s.contains("Route: <sip:p2.example.com;lr>\r\nRoute: <sip:p3"));
    assert!(s.contains("Max-Forwards: 69\r\n"));
    assert!(s.ends_with("X-Test: yes\r\n\r\nv=0\n"));
    let e = Message::parse(out).unwrap();
    assert_eq!(e.routes().unwrap().len(), 2);
    assert_eq!(e.vias().count(), 2);
    e.validate_request().unwrap();

    // Pop every Route value, one at a time, across lines.
    let mut ed = Editor::new(&m);
    ed.remove_first_value(&HeaderName::Route);
    ed.remove_first_value(&HeaderName::Route);
    let e = Message::parse(ed.finish()).unwrap();
    let r = e.routes().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].uri_raw, "sip:p3.example.com;lr");
    let mut ed = Editor::new(&m);
    ed.remove_header(&HeaderName::Route);
    ed.remove_first_value(&HeaderName::Via);
    let e = Message::parse(ed.finish()).unwrap();
    assert_eq!(e.header_count(&HeaderName::Route), 0);
    assert_eq!(e.vias().count(), 0);
}

#[test]
fn response_builder() {
    let m = msg(INVITE);
    let r = response_to(&m, StatusCode::TRYING, "Trying").build();
    let r = Message::parse(r).unwrap();
    assert_eq!(r.status(), Some(StatusCode::TRYING));
    assert_eq!(r.header(&HeaderName::Timestamp).unwrap().value, b"54");
    assert_eq!(r.content_length().unwrap(), Some(0));
    let r = response_to(&m, StatusCode::OK, "OK")
        .to_tag("abc")
        .header("Contact", "<sip:bob@192.0.2.4>")
        .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
        .build();
    let r = Message::parse(r).unwrap();
    assert_eq!(r.to().unwrap().tag(), Some("abc"));
    assert_eq!(r.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(r.call_id().unwrap(), m.call_id().unwrap());
    assert_eq!(r.cseq().unwrap(), m.cseq().unwrap());
    assert!(r.header(&HeaderName::Timestamp).is_none());
    assert_eq!(&r.body()[..], b"v=0\r\n");
    assert_eq!(r.content_type(), Some("application/sdp"));
    r.validate_request().unwrap();
    // An existing To tag is kept.
    let r2 = Message::parse(response_to(&r, StatusCode::OK, "OK").to_tag("zzz").build()).unwrap();
    assert_eq!(r2.to().unwrap().tag(), Some("abc"));
}

#[test]
fn request_builder() {
    let b = RequestBuilder::new(Method::Options, "sip:a@192.0.2.1:5060")
        .header("Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKk1")
        .header("Max-Forwards", "70")
        .header("From", "<sip:p@x>;tag=1")
        .header("To", "<sip:a@192.0.2.1>")
        .header("Call-ID", "ka1")
        .header("CSeq", "1 OPTIONS")
        .build();
    let m = Message::parse(b).unwrap();
    assert_eq!(m.method(), Some(&Method::Options));
    m.validate_request().unwrap();
    assert!(is_magic_cookie_branch(m.top_via().unwrap().branch.unwrap()));
}

/// Small deterministic xorshift generator so the property test needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn no_panic_on_mutated_input() {
    let seeds: Vec<&[u8]> = vec![INVITE.as_bytes(), b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n"];
    let interesting = b";,<>\"\\:[]@% \r\n\t=?/0123456789z";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..20_000 {
        let base = seeds[i % seeds.len()];
        let mut v = base.to_vec();
        for _ in 0..1 + rng.below(8) {
            let pos = rng.below(v.len());
            match rng.below(4) {
                0 => v[pos] = interesting[rng.below(interesting.len())],
                1 => v[pos] = rng.next() as u8,
                2 => {
                    v.insert(pos, interesting[rng.below(interesting.len())]);
                }
                _ => {
                    v.remove(pos);
                }
            }
            if v.is_empty() {
                break;
            }
        }
        if let Ok(m) = Message::parse(Bytes::from(v)) {
            corpus_tests::exercise(&m);
            assert_eq!(Editor::new(&m).finish(), m.message_bytes());
            let mut ed = Editor::new(&m);
            ed.prepend_header("Via", "SIP/2.0/UDP p;branch=z9hG4bKx");
            ed.remove_first_value(&HeaderName::Route);
            ed.remove_first_value(&HeaderName::Via);
            ed.set_header("Max-Forwards", "1");
            let _ = Message::parse(ed.finish());
            let _ = response_to(&m, StatusCode::OK, "OK").to_tag("t").build();
        }
    }
}

#[test]
fn editor_inserts_near_existing_headers() {
    use crate::message::Editor;
    let raw = "INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nTo: <sip:b@example.com>\r\nContent-Length: 0\r\n\r\n";
    let m = Message::parse(Bytes::from(raw)).unwrap();
    let mut e = Editor::new(&m);
    e.insert_header_near(
        &HeaderName::RecordRoute,
        &HeaderName::Via,
        "Record-Route",
        "<sip:p;lr>",
    );
    let out = e.finish();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(
        text.contains("branch=z9hG4bK2\r\nRecord-Route: <sip:p;lr>\r\nTo:"),
        "{text}"
    );

    let raw = "INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nRecord-Route: <sip:q;lr>\r\nTo: <sip:b@example.com>\r\nContent-Length: 0\r\n\r\n";
    let m = Message::parse(Bytes::from(raw)).unwrap();
    let mut e = Editor::new(&m);
    e.remove_header(&HeaderName::Via);
    e.insert_header_near(
        &HeaderName::RecordRoute,
        &HeaderName::Via,
        "Record-Route",
        "<sip:p;lr>",
    );
    let out = e.finish();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(
        text.contains("SIP/2.0\r\nRecord-Route: <sip:p;lr>\r\nRecord-Route: <sip:q;lr>\r\nTo:"),
        "{text}"
    );
}

#[test]
fn displays_and_auth() {
    let m = msg("REGISTER sip:[2001:db8::10]:5070 SIP/2.0\r\n\
Via: SIP/2.0/TCP [2001:db8::9:1]:5061;branch=z9hG4bKx;received=[2001:db8::9:255]\r\n\
To: <sip:u@example.com>\r\nFrom: <sip:u@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\n\
Authorization: Digest username=\"u\", realm=\"example.com\", nonce=\"n\", uri=\"sip:example.com\", response=\"r\"\r\n\
Content-Length: 0\r\n\r\n");
    m.validate_request().unwrap();
    let uri = m.request_uri().unwrap().unwrap();
    assert_eq!(uri.to_string(), "sip:[2001:db8::10]:5070");
    assert_eq!(uri.as_sip().unwrap().host.to_string(), "[2001:db8::10]");
    let via = m.top_via().unwrap();
    assert_eq!(via.sent_by().to_string(), "[2001:db8::9:1]:5061");
    assert_eq!(via.received_ip(), Some("2001:db8::9:255".parse().unwrap()));
    let auth = m.auth(HeaderName::Authorization).unwrap().unwrap();
    assert!(auth.is_digest());
    assert_eq!(auth.param("realm"), Some("example.com"));
    assert!(m.auth(HeaderName::ProxyAuthorization).is_none());
    assert_eq!(m.from_tag().unwrap(), Some("1"));
    assert_eq!(m.to_tag().unwrap(), None);
}

#[test]
fn response_validation_and_reason() {
    let r = msg(
        "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
To: <sip:b@x>;tag=2\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
    );
    assert_eq!(r.status(), Some(StatusCode::BUSY_HERE));
    assert!(r.status().unwrap().is_final());
    assert_eq!(r.reason(), Some("Busy Here"));
    r.validate_request().unwrap();
    assert_eq!(r.cseq().unwrap().method, Method::Invite);
}
