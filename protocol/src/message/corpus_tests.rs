//! Table test over the RFC 4475 / RFC 5118 torture messages in `protocol/testdata/`.

use bytes::Bytes;

use super::{Editor, Message, ParseError};
use crate::header::HeaderName;

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Parses and validates; typed accessors work.
    Valid,
    /// `parse` or `validate_request` fails with this error.
    Invalid(fn(&ParseError) -> bool),
    /// Either outcome is acceptable; must not panic.
    Lenient,
}

macro_rules! corpus {
    ($($name:literal => $path:literal, $expect:expr;)*) => {
        &[$( ($name, include_bytes!(concat!("../../testdata/", $path)) as &[u8], $expect), )*]
    };
}

#[allow(clippy::type_complexity)]
static CORPUS: &[(&str, &[u8], Expect)] = corpus! {
    "wsinv" => "rfc4475/wsinv.dat", Expect::Valid;
    "intmeth" => "rfc4475/intmeth.dat", Expect::Valid;
    "escnull" => "rfc4475/escnull.dat", Expect::Valid;
    "esc02" => "rfc4475/esc02.dat", Expect::Valid;
    "longreq" => "rfc4475/longreq.dat", Expect::Valid;
    "dblreq" => "rfc4475/dblreq.dat", Expect::Valid;
    "transports" => "rfc4475/transports.dat", Expect::Valid;
    "mpart01" => "rfc4475/mpart01.dat", Expect::Valid;
    "noreason" => "rfc4475/noreason.dat", Expect::Valid;
    "badinv01" => "rfc4475/badinv01.dat", Expect::Invalid(|e| matches!(e, ParseError::Malformed(_)));
    "ncl" => "rfc4475/ncl.dat", Expect::Invalid(|e| *e == ParseError::NegativeContentLength);
    "scalar02" => "rfc4475/scalar02.dat", Expect::Invalid(|e| *e == ParseError::CSeqOutOfRange);
    "quotbal" => "rfc4475/quotbal.dat", Expect::Invalid(|e| *e == ParseError::UnterminatedQuote);
    "ltgtruri" => "rfc4475/ltgtruri.dat", Expect::Invalid(|e| *e == ParseError::RequestUriInAngleBrackets);
    "lwsstart" => "rfc4475/lwsstart.dat", Expect::Lenient;
    "trws" => "rfc4475/trws.dat", Expect::Lenient;
    "baddate" => "rfc4475/baddate.dat", Expect::Lenient;
    "regbadct" => "rfc4475/regbadct.dat", Expect::Lenient;
    "baddn" => "rfc4475/baddn.dat", Expect::Lenient;
    "badvers" => "rfc4475/badvers.dat", Expect::Invalid(|e| *e == ParseError::UnsupportedVersion);
    "mismatch02" => "rfc4475/mismatch02.dat", Expect::Invalid(|e| *e == ParseError::CSeqMethodMismatch);
    "bigcode" => "rfc4475/bigcode.dat", Expect::Invalid(|e| *e == ParseError::InvalidStatusCode);
    "insuf" => "rfc4475/insuf.dat", Expect::Invalid(|e| matches!(e, ParseError::Missing(_)));
    "unkscm" => "rfc4475/unkscm.dat", Expect::Valid;
    "unksm2" => "rfc4475/unksm2.dat", Expect::Valid;
    "bext01" => "rfc4475/bext01.dat", Expect::Valid;
    "regaut01" => "rfc4475/regaut01.dat", Expect::Valid;
    "multi01" => "rfc4475/multi01.dat", Expect::Invalid(|e| matches!(e, ParseError::Duplicate(_)));
    "bcast" => "rfc4475/bcast.dat", Expect::Valid;
    "zeromf" => "rfc4475/zeromf.dat", Expect::Valid;
    "cparam02" => "rfc4475/cparam02.dat", Expect::Valid;
    "regescrt" => "rfc4475/regescrt.dat", Expect::Valid;
    "inv2543" => "rfc4475/inv2543.dat", Expect::Valid;
    "test" => "rfc4475/test.dat", Expect::Lenient;
    "ipv6-good" => "rfc5118/ipv6-good.sip", Expect::Valid;
    "ipv6-bad" => "rfc5118/ipv6-bad.sip", Expect::Invalid(|e| *e == ParseError::InvalidHost);
    "port-unambiguous" => "rfc5118/port-unambiguous.sip", Expect::Valid;
    "via-received-param-with-delim" => "rfc5118/via-received-param-with-delim.sip", Expect::Valid;
    "ipv6-in-sdp" => "rfc5118/ipv6-in-sdp.sip", Expect::Valid;
    "mult-ip-in-header" => "rfc5118/mult-ip-in-header.sip", Expect::Valid;
    "ipv4-mapped-ipv6" => "rfc5118/ipv4-mapped-ipv6.sip", Expect::Valid;
    "ipv6-bug-abnf-3-colons" => "rfc5118/ipv6-bug-abnf-3-colons.sip", Expect::Valid;
};

/// Calls every typed accessor (used by the table test and the property tests).
pub(crate) fn exercise(m: &Message) {
    let _ = m.request_uri();
    let _ = m.reason();
    let _ = m.top_via();
    let _ = m.vias().count();
    let _ = m.call_id();
    let _ = m.cseq();
    let _ = m.from().map(|f| f.tag());
    let _ = m.to().map(|t| t.tag());
    let _ = m.from_tag();
    let _ = m.to_tag();
    let _ = m.max_forwards();
    let _ = m.contacts();
    let _ = m.routes();
    let _ = m.record_routes();
    let _ = m.paths();
    let _ = m.expires();
    let _ = m.content_length();
    let _ = m.content_type();
    let _ = m.option_tags(&HeaderName::Require).count();
    let _ = m.auth(HeaderName::Authorization);
    let _ = m.validate_request();
    let _ = m.body();
    let _ = m.headers().count();
}

fn check(name: &str, bytes: &[u8], expect: Expect) {
    let parsed = Message::parse(Bytes::copy_from_slice(bytes));
    match expect {
        Expect::Valid => {
            let m = parsed.unwrap_or_else(|e| panic!("{name}: parse failed: {e:?}"));
            m.validate_request()
                .unwrap_or_else(|e| panic!("{name}: validate failed: {e:?}"));
            let via = m.top_via().unwrap();
            let _ = via.branch;
            m.call_id().unwrap();
            m.cseq().unwrap();
            assert_eq!(m.from_tag().unwrap(), m.from().unwrap().tag(), "{name}");
            assert_eq!(m.to_tag().unwrap(), m.to().unwrap().tag(), "{name}");
            if m.is_request() {
                m.request_uri().unwrap().unwrap();
            }
            exercise(&m);
            // Editor roundtrip.
            let same = Editor::new(&m).finish();
            assert_eq!(same, m.message_bytes(), "{name}: roundtrip");
            let mut ed = Editor::new(&m);
            ed.prepend_header("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy");
            ed.remove_first_value(&HeaderName::Route);
            ed.set_header("Max-Forwards", "9");
            let edited = Message::parse(ed.finish())
                .unwrap_or_else(|e| panic!("{name}: edited reparse: {e:?}"));
            assert_eq!(edited.top_via().unwrap().branch, Some("z9hG4bKproxy"));
            assert_eq!(edited.max_forwards().unwrap(), Some(9));
            assert_eq!(edited.body(), m.body());
        }
        Expect::Invalid(pred) => {
            let err = match parsed {
                Err(e) => e,
                Ok(m) => {
                    exercise(&m);
                    m.validate_request()
                        .expect_err(&format!("{name}: expected an error"))
                }
            };
            assert!(pred(&err), "{name}: unexpected error {err:?}");
        }
        Expect::Lenient => {
            if let Ok(m) = parsed {
                exercise(&m);
                let _ = Editor::new(&m).finish();
            }
        }
    }
}

#[test]
fn corpus_table() {
    let mut failures = Vec::new();
    for (name, bytes, expect) in CORPUS {
        if let Err(e) = std::panic::catch_unwind(|| check(name, bytes, *expect)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{name}: {msg}"));
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[test]
fn corpus_specifics() {
    let get = |n: &str| {
        let (_, b, _) = CORPUS.iter().find(|(name, _, _)| *name == n).unwrap();
        Message::parse(Bytes::copy_from_slice(b)).unwrap()
    };
    let m = get("wsinv");
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.cseq().unwrap().seq, 9);
    assert_eq!(m.vias().count(), 3);
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(m.from().unwrap().tag(), Some("98asjd8"));
    // Pop the top Via value of a folded, multi-value line.
    let mut ed = Editor::new(&m);
    ed.remove_first_value(&HeaderName::Via);
    ed.remove_first_value(&HeaderName::Via);
    let e = Message::parse(ed.finish()).unwrap();
    let vias: Vec<_> = e.vias().map(|v| v.unwrap().host.to_string()).collect();
    assert_eq!(vias, vec!["192.168.255.111"]);
    assert_eq!(e.top_via().unwrap().branch, Some("z9hG4bK30239"));
    let m = get("dblreq");
    assert!(m.body().is_empty());
    let m = get("unkscm");
    assert!(matches!(
        m.request_uri().unwrap().unwrap(),
        crate::uri::Uri::Absolute { .. }
    ));
    let m = get("noreason");
    assert_eq!(m.reason(), Some(""));
    let m = get("escnull");
    let to = m.to().unwrap();
    let user = to.uri.as_sip().unwrap().user_unescaped().unwrap();
    assert_eq!(user.as_ref(), b"null-\0-null");
    assert_eq!(to.uri.as_sip().unwrap().user, Some("null-%00-null"));
    let m = get("longreq");
    assert!(m.vias().count() > 30);
}
