//! Unit tests of [`apply_register`]: one per §10.3 rule, all with an explicit `now`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::*;
use crate::registrar::aor::Aor;
use crate::registrar::binding::{contact_header_values, remaining, tests::source};

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn req(call_id: &'static str, cseq: u32, contacts: RequestContacts) -> RegisterRequest {
    RegisterRequest {
        aor: Aor::from_uri(b"sip:alice@example.com").unwrap_or_else(|e| panic!("{e}")),
        call_id: Bytes::from_static(call_id.as_bytes()),
        cseq,
        contacts,
        expires_header: None,
        path: Vec::new(),
        supports_path: false,
        source: source(),
    }
}

fn list(contacts: Vec<ContactInput>) -> RequestContacts {
    RequestContacts::List(contacts)
}

fn c(uri: &'static str) -> ContactInput {
    ContactInput::new(Bytes::from_static(uri.as_bytes()))
}

fn cq(uri: &'static str, q: u16) -> ContactInput {
    ContactInput {
        q: Some(q),
        ..c(uri)
    }
}

fn ce(uri: &'static str, expires: u32) -> ContactInput {
    ContactInput {
        expires: Some(expires),
        ..c(uri)
    }
}

fn apply(
    current: &[Binding],
    r: &RegisterRequest,
    now: SystemTime,
) -> Result<RegisterOutcome, RegisterError> {
    apply_register(current, r, &RegistrarPolicy::default(), now)
}

fn ok(current: &[Binding], r: &RegisterRequest, now: SystemTime) -> Vec<Binding> {
    match apply(current, r, now) {
        Ok(o) => o.bindings,
        Err(e) => panic!("unexpected {e:?}"),
    }
}

fn uris(bindings: &[Binding]) -> Vec<&[u8]> {
    bindings.iter().map(|b| &b.contact[..]).collect()
}

#[test]
fn two_contacts_with_q() {
    let r = req(
        "c1",
        1,
        list(vec![cq("sip:a@10.0.0.1", 1000), cq("sip:a@10.0.0.2", 500)]),
    );
    let out = ok(&[], &r, t0());
    assert_eq!(uris(&out), vec![&b"sip:a@10.0.0.1"[..], b"sip:a@10.0.0.2"]);
    assert_eq!(out.iter().map(|b| b.q).collect::<Vec<_>>(), vec![1000, 500]);
    assert!(out.iter().all(|b| b.expires_at == t0() + secs(3600)));
    assert!(out.iter().all(|b| b.cseq == 1 && &b.call_id[..] == b"c1"));
    let values = contact_header_values(&out, t0());
    assert_eq!(
        values[1],
        Bytes::from_static(b"<sip:a@10.0.0.2>;expires=3600;q=0.5")
    );
}

#[test]
fn default_q_applies_when_absent() {
    let out = ok(&[], &req("c1", 1, list(vec![c("sip:a@h")])), t0());
    assert_eq!(out[0].q, 1000);
}

#[test]
fn refresh_with_higher_cseq_updates_expiry() {
    let first = ok(&[], &req("c1", 1, list(vec![ce("sip:a@h", 600)])), t0());
    let later = t0() + secs(300);
    let out = apply(&first, &req("c1", 2, list(vec![ce("sip:a@h", 600)])), later);
    let out = out.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(out.changed);
    assert_eq!(out.bindings.len(), 1);
    assert_eq!(out.bindings[0].expires_at, later + secs(600));
    assert_eq!(out.bindings[0].cseq, 2);
}

#[test]
fn same_call_id_not_higher_cseq_is_rejected_whole() {
    let stored = ok(&[], &req("c1", 5, list(vec![c("sip:a@h")])), t0());
    for cseq in [4, 5] {
        // Even a new contact in the same request must not be added.
        let r = req("c1", cseq, list(vec![c("sip:new@h"), ce("sip:a@h", 0)]));
        let err = apply(&stored, &r, t0() + secs(1));
        assert_eq!(err, Err(RegisterError::CSeqOutOfOrder));
        assert_eq!(
            err.map_err(|e| (e.status_code(), e.reason_phrase())),
            Err((400, "CSeq out of order"))
        );
    }
}

#[test]
fn stale_request_cannot_readd_removed_contact() {
    let stored = ok(&[], &req("c1", 1, list(vec![c("sip:a@h")])), t0());
    let swapped = ok(
        &stored,
        &req("c1", 2, list(vec![ce("sip:a@h", 0), c("sip:b@h")])),
        t0(),
    );
    assert_eq!(uris(&swapped), vec![&b"sip:b@h"[..]]);
    // The delayed first REGISTER (CSeq 1) arrives again.
    let err = apply(&swapped, &req("c1", 1, list(vec![c("sip:a@h")])), t0()).err();
    assert_eq!(err, Some(RegisterError::CSeqOutOfOrder));
}

#[test]
fn other_call_id_replaces_even_with_lower_cseq() {
    let stored = ok(&[], &req("c1", 50, list(vec![ce("sip:a@h", 600)])), t0());
    let out = ok(
        &stored,
        &req("c2", 1, list(vec![ce("sip:A@H", 900)])),
        t0() + secs(10),
    );
    // "sip:A@H" differs in user case: a new binding, not a replacement.
    assert_eq!(out.len(), 2);
    let out = ok(
        &stored,
        &req("c2", 1, list(vec![ce("sip:a@H;transport=udp", 900)])),
        t0(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].call_id[..], b"c2");
    assert_eq!(out[0].cseq, 1);
    assert_eq!(&out[0].contact[..], b"sip:a@H;transport=udp");
    assert_eq!(out[0].expires_at, t0() + secs(900));
}

#[test]
fn expires_param_beats_header() {
    let mut r = req("c1", 1, list(vec![ce("sip:a@h", 120), c("sip:b@h")]));
    r.expires_header = Some(300);
    let out = ok(&[], &r, t0());
    assert_eq!(out[0].expires_at, t0() + secs(120));
    assert_eq!(out[1].expires_at, t0() + secs(300));
}

#[test]
fn interval_too_brief_carries_min_expires() {
    let mut r = req("c1", 1, list(vec![c("sip:a@h"), ce("sip:b@h", 59)]));
    r.expires_header = Some(600);
    let err = apply(&[], &r, t0()).err();
    assert_eq!(
        err,
        Some(RegisterError::IntervalTooBrief { min_expires: 60 })
    );
    assert_eq!(err.as_ref().map(RegisterError::status_code), Some(423));
    assert_eq!(err.as_ref().and_then(RegisterError::min_expires), Some(60));
    // Header too brief, no param.
    let mut r = req("c1", 1, list(vec![c("sip:a@h")]));
    r.expires_header = Some(1);
    assert!(matches!(
        apply(&[], &r, t0()),
        Err(RegisterError::IntervalTooBrief { .. })
    ));
    // Exactly the minimum is fine; a configured minimum is honoured.
    assert!(apply(&[], &req("c1", 1, list(vec![ce("sip:a@h", 60)])), t0()).is_ok());
    let policy = RegistrarPolicy {
        min_expires: 300,
        ..Default::default()
    };
    let err = apply_register(
        &[],
        &req("c1", 1, list(vec![ce("sip:a@h", 120)])),
        &policy,
        t0(),
    );
    assert_eq!(
        err,
        Err(RegisterError::IntervalTooBrief { min_expires: 300 })
    );
}

#[test]
fn expires_above_max_is_clamped() {
    let out = ok(&[], &req("c1", 1, list(vec![ce("sip:a@h", 86_400)])), t0());
    assert_eq!(out[0].expires_at, t0() + secs(3600));
    let policy = RegistrarPolicy {
        max_expires: 1800,
        default_expires: 900,
        ..Default::default()
    };
    let out = apply_register(&[], &req("c1", 1, list(vec![c("sip:a@h")])), &policy, t0());
    assert_eq!(out.map(|o| o.bindings[0].expires_at), Ok(t0() + secs(900)));
}

#[test]
fn star_removes_all_with_expires_zero() {
    let stored = ok(
        &[],
        &req("c1", 1, list(vec![c("sip:a@h"), c("sip:b@h")])),
        t0(),
    );
    let mut r = req("c9", 1, RequestContacts::Star);
    r.expires_header = Some(0);
    let out = apply(&stored, &r, t0() + secs(5)).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(out.bindings.is_empty());
    assert!(out.changed);
    // A list holding only "*" is the same thing.
    let mut r = req("c9", 1, list(vec![c("*")]));
    r.expires_header = Some(0);
    assert_eq!(apply(&stored, &r, t0()).map(|o| o.bindings.len()), Ok(0));
}

#[test]
fn star_rules() {
    let stored = ok(&[], &req("c1", 3, list(vec![c("sip:a@h")])), t0());
    let r = req("c9", 1, RequestContacts::Star);
    assert_eq!(
        apply(&stored, &r, t0()).err(),
        Some(RegisterError::StarWithNonZeroExpires)
    );
    let mut r = req("c9", 1, RequestContacts::Star);
    r.expires_header = Some(60);
    assert_eq!(
        apply(&stored, &r, t0()).err(),
        Some(RegisterError::StarWithNonZeroExpires)
    );
    let mut r = req("c9", 1, list(vec![c("*"), c("sip:a@h")]));
    r.expires_header = Some(0);
    let err = apply(&stored, &r, t0()).err();
    assert_eq!(err, Some(RegisterError::StarWithOtherContacts));
    assert_eq!(err.map(|e| e.status_code()), Some(400));
    // Same Call-ID, CSeq not higher: refused even for "*".
    let mut r = req("c1", 3, RequestContacts::Star);
    r.expires_header = Some(0);
    assert_eq!(
        apply(&stored, &r, t0()).err(),
        Some(RegisterError::CSeqOutOfOrder)
    );
}

#[test]
fn remove_one_contact_with_expires_zero() {
    let stored = ok(
        &[],
        &req("c1", 1, list(vec![c("sip:a@h"), c("sip:b@h")])),
        t0(),
    );
    let mut r = req("c1", 2, list(vec![ce("sip:b@h", 0)]));
    r.expires_header = Some(3600);
    let out = ok(&stored, &r, t0() + secs(1));
    assert_eq!(uris(&out), vec![&b"sip:a@h"[..]]);
    // Header 0 removes too; removing an unknown contact changes nothing.
    let mut r = req("c1", 3, list(vec![c("sip:zzz@h")]));
    r.expires_header = Some(0);
    let o = apply(&out, &r, t0() + secs(2)).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!o.changed);
    assert_eq!(o.bindings, out);
}

#[test]
fn query_returns_live_bindings_without_change() {
    let stored = ok(
        &[],
        &req("c1", 1, list(vec![ce("sip:a@h", 60), ce("sip:b@h", 600)])),
        t0(),
    );
    let o = apply(
        &stored,
        &req("c2", 1, RequestContacts::None),
        t0() + secs(10),
    );
    let o = o.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!o.changed);
    assert_eq!(o.bindings.len(), 2);
    let o = apply(
        &stored,
        &req("c2", 1, RequestContacts::None),
        t0() + secs(60),
    );
    let o = o.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(o.changed, "an expired binding was pruned");
    assert_eq!(uris(&o.bindings), vec![&b"sip:b@h"[..]]);
}

#[test]
fn expired_binding_does_not_block_cseq() {
    let stored = ok(&[], &req("c1", 9, list(vec![ce("sip:a@h", 60)])), t0());
    // Same Call-ID, lower CSeq, but the old binding has expired: treated as absent.
    let out = ok(
        &stored,
        &req("c1", 1, list(vec![ce("sip:a@h", 60)])),
        t0() + secs(61),
    );
    assert_eq!(out[0].cseq, 1);
}

#[test]
fn instance_and_reg_id_replace_other_uri() {
    let flow = |uri: &'static str, reg_id| ContactInput {
        instance: Some(Bytes::from_static(
            b"\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"",
        )),
        reg_id: Some(reg_id),
        ..c(uri)
    };
    let stored = ok(
        &[],
        &req("c1", 1, list(vec![flow("sip:a@10.0.0.1:5060", 1)])),
        t0(),
    );
    // Second flow of the same instance with the same URI is a separate binding.
    let two = ok(
        &stored,
        &req("c1", 2, list(vec![flow("sip:a@10.0.0.1:5060", 2)])),
        t0(),
    );
    assert_eq!(two.len(), 2);
    // New address, same instance + reg-id 1: replaces the first flow.
    let moved = ok(
        &two,
        &req("c7", 1, list(vec![flow("sip:a@10.9.9.9:4000", 1)])),
        t0(),
    );
    assert_eq!(moved.len(), 2);
    assert_eq!(&moved[0].contact[..], b"sip:a@10.9.9.9:4000");
    assert_eq!(moved[0].reg_id, Some(1));
    let values = contact_header_values(&moved, t0());
    assert_eq!(
        values[0],
        Bytes::from_static(
            b"<sip:a@10.9.9.9:4000>;expires=3600;q=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1"
        )
    );
    // A plain contact with the same URI does not touch a flow binding.
    let plain = ok(
        &moved,
        &req("c8", 1, list(vec![c("sip:a@10.0.0.1:5060")])),
        t0(),
    );
    assert_eq!(plain.len(), 3);
}

#[test]
fn path_is_stored_and_echoed_only_when_supported() {
    let mut r = req("c1", 1, list(vec![c("sip:a@h")]));
    r.path = vec![Bytes::from_static(b"<sip:edge1.example.com;lr>")];
    let o = apply(&[], &r, t0()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(o.bindings[0].path, r.path);
    assert!(o.response_path.is_empty());
    r.supports_path = true;
    let o = apply(&[], &r, t0()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(o.response_path, r.path);
    assert_eq!(o.bindings[0].source, source());
}

#[test]
fn too_many_contacts() {
    let policy = RegistrarPolicy {
        max_contacts: 2,
        ..Default::default()
    };
    let r = req("c1", 1, list(vec![c("sip:a@h"), c("sip:b@h")]));
    let stored = apply_register(&[], &r, &policy, t0())
        .map(|o| o.bindings)
        .unwrap_or_default();
    assert_eq!(stored.len(), 2);
    let err = apply_register(
        &stored,
        &req("c2", 1, list(vec![c("sip:c@h")])),
        &policy,
        t0(),
    )
    .err();
    assert_eq!(err, Some(RegisterError::TooManyContacts { max: 2 }));
    assert_eq!(err.map(|e| e.status_code()), Some(403));
    // Replacing one while adding another stays within the limit.
    let r = req("c2", 1, list(vec![ce("sip:a@h", 0), c("sip:c@h")]));
    assert_eq!(
        apply_register(&stored, &r, &policy, t0()).map(|o| o.bindings.len()),
        Ok(2)
    );
    // A refresh still works when the limit was lowered below the stored count.
    let lower = RegistrarPolicy {
        max_contacts: 1,
        ..Default::default()
    };
    let r = req("c1", 2, list(vec![c("sip:a@h")]));
    assert!(apply_register(&stored, &r, &lower, t0()).is_ok());
}

#[test]
fn invalid_q_is_rejected() {
    let err = apply(&[], &req("c1", 1, list(vec![cq("sip:a@h", 1001)])), t0()).err();
    assert_eq!(err, Some(RegisterError::InvalidQValue));
}

#[test]
fn duplicate_contact_in_one_request_last_wins() {
    let r = req("c1", 1, list(vec![ce("sip:a@h", 100), ce("sip:a@h", 200)]));
    let out = ok(&[], &r, t0());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].expires_at, t0() + secs(200));
}

#[test]
fn remaining_in_200_counts_down() {
    let out = ok(&[], &req("c1", 1, list(vec![ce("sip:a@h", 600)])), t0());
    assert_eq!(
        remaining(&out[0], t0() + Duration::from_millis(100_500)),
        500
    );
    let values = contact_header_values(&out, t0() + secs(100));
    assert_eq!(
        values,
        vec![Bytes::from_static(b"<sip:a@h>;expires=500;q=1")]
    );
}
