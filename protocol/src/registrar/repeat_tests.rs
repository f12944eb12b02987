//! Unit tests of [`is_applied_repeat`] and of its use in `apply_register`: an exact copy of an
//! applied REGISTER succeeds without a change, anything else with the same CSeq is refused.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::*;
use crate::registrar::aor::Aor;
use crate::registrar::apply::apply_register;
use crate::registrar::binding::tests::source;
use crate::registrar::error::RegisterError;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn c(uri: &'static str) -> ContactInput {
    ContactInput::new(Bytes::from_static(uri.as_bytes()))
}

fn ce(uri: &'static str, expires: u32) -> ContactInput {
    ContactInput {
        expires: Some(expires),
        ..c(uri)
    }
}

fn req(call_id: &'static str, cseq: u32, contacts: Vec<ContactInput>) -> RegisterRequest {
    RegisterRequest {
        aor: Aor::from_uri(b"sip:alice@example.com").unwrap_or_else(|e| panic!("{e}")),
        call_id: Bytes::from_static(call_id.as_bytes()),
        cseq,
        contacts: RequestContacts::List(contacts),
        expires_header: None,
        path: Vec::new(),
        supports_path: false,
        source: source(),
    }
}

fn policy() -> RegistrarPolicy {
    RegistrarPolicy::default()
}

/// Applies `r` to `current` at `now` and returns the new bindings.
fn applied(current: &[Binding], r: &RegisterRequest, now: SystemTime) -> Vec<Binding> {
    match apply_register(current, r, &policy(), now) {
        Ok(o) => o.bindings,
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[test]
fn exact_copy_succeeds_with_the_stored_bindings_and_no_change() {
    let r = req(
        "c1",
        7,
        vec![c("sip:a@10.0.0.1"), ce("sip:a@10.0.0.2", 600)],
    );
    let stored = applied(&[], &r, t0());
    // The copy reaches another node 4 s later, from the same UA but another local socket.
    let mut copy = r;
    copy.source.local = "198.51.100.2:5060"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let later = t0() + secs(4);
    assert!(is_applied_repeat(&stored, &copy, &policy(), later));
    let out = apply_register(&stored, &copy, &policy(), later);
    assert_eq!(
        out.as_ref().map(|o| (&o.bindings, o.changed)),
        Ok((&stored, false))
    );
}

#[test]
fn copy_that_removed_a_contact_is_a_repeat() {
    let first = applied(&[], &req("c1", 1, vec![c("sip:a@h"), c("sip:b@h")]), t0());
    let r = req("c1", 2, vec![ce("sip:a@h", 0), c("sip:b@h")]);
    let stored = applied(&first, &r, t0() + secs(100));
    assert_eq!(stored.len(), 1);
    assert!(is_applied_repeat(&stored, &r, &policy(), t0() + secs(101)));
}

#[test]
fn a_later_contact_naming_the_same_binding_wins() {
    let r = req("c1", 3, vec![ce("sip:a@h", 600), ce("sip:a@h", 1200)]);
    let stored = applied(&[], &r, t0());
    assert!(is_applied_repeat(&stored, &r, &policy(), t0() + secs(1)));
    let removed_last = req("c1", 4, vec![c("sip:a@h"), ce("sip:a@h", 0)]);
    let stored = applied(&stored, &removed_last, t0() + secs(2));
    assert!(stored.is_empty());
    // Nothing is left with that Call-ID, so the copy is not even out of order.
    assert!(apply_register(&stored, &removed_last, &policy(), t0() + secs(3)).is_ok());
}

#[test]
fn same_cseq_with_other_contacts_or_expiry_is_still_refused() {
    let r = req("c1", 5, vec![c("sip:a@h"), c("sip:b@h")]);
    let stored = applied(&[], &r, t0());
    let later = t0() + secs(1);
    let others = [
        req("c1", 5, vec![c("sip:a@h")]),
        req("c1", 5, vec![c("sip:a@h"), c("sip:b@h"), c("sip:c@h")]),
        req("c1", 5, vec![c("sip:a@h"), ce("sip:b@h", 600)]),
        req("c1", 5, vec![c("sip:a@h"), ce("sip:b@h", 0)]),
        {
            let mut q = req("c1", 5, vec![c("sip:a@h"), c("sip:b@h")]);
            if let RequestContacts::List(list) = &mut q.contacts
                && let Some(first) = list.first_mut()
            {
                first.q = Some(500);
            }
            q
        },
        {
            let mut path = r;
            path.path = vec![Bytes::from_static(b"<sip:edge;lr>")];
            path
        },
    ];
    for other in &others {
        assert!(
            !is_applied_repeat(&stored, other, &policy(), later),
            "{other:?}"
        );
        assert_eq!(
            apply_register(&stored, other, &policy(), later).err(),
            Some(RegisterError::CSeqOutOfOrder),
            "{other:?}"
        );
    }
}

#[test]
fn lower_cseq_or_a_later_register_makes_the_copy_stale() {
    let r = req("c1", 5, vec![c("sip:a@h")]);
    let stored = applied(&[], &r, t0());
    let lower = req("c1", 4, vec![c("sip:a@h")]);
    assert!(!is_applied_repeat(&stored, &lower, &policy(), t0()));
    // A refresh (CSeq 6) of another contact came after: the copy of CSeq 5 is stale even
    // though the binding it wrote is untouched.
    let newer = applied(&stored, &req("c1", 6, vec![c("sip:b@h")]), t0() + secs(1));
    assert!(!is_applied_repeat(&newer, &r, &policy(), t0() + secs(2)));
    assert_eq!(
        apply_register(&newer, &r, &policy(), t0() + secs(2)).err(),
        Some(RegisterError::CSeqOutOfOrder)
    );
}

#[test]
fn only_within_the_retransmission_window() {
    let r = req("c1", 1, vec![c("sip:a@h")]);
    let stored = applied(&[], &r, t0());
    assert!(is_applied_repeat(
        &stored,
        &r,
        &policy(),
        t0() + REPEAT_WINDOW
    ));
    let too_late = t0() + REPEAT_WINDOW + CLOCK_SKEW + secs(1);
    assert!(!is_applied_repeat(&stored, &r, &policy(), too_late));
    // A node whose clock is slightly behind the one that applied the first copy.
    assert!(is_applied_repeat(&stored, &r, &policy(), t0() - secs(1)));
    assert!(!is_applied_repeat(&stored, &r, &policy(), t0() - secs(10)));
}

#[test]
fn flows_match_on_instance_and_reg_id_and_uri() {
    let flow = |uri: &'static str| ContactInput {
        instance: Some(Bytes::from_static(b"\"<urn:uuid:1>\"")),
        reg_id: Some(1),
        ..c(uri)
    };
    let r = req("c1", 1, vec![flow("sip:a@192.0.2.1;transport=tcp")]);
    let stored = applied(&[], &r, t0());
    assert!(is_applied_repeat(&stored, &r, &policy(), t0()));
    let moved = req("c1", 1, vec![flow("sip:a@192.0.2.9;transport=tcp")]);
    assert!(!is_applied_repeat(&stored, &moved, &policy(), t0()));
}

#[test]
fn queries_wildcards_and_refused_requests_are_never_repeats() {
    let r = req("c1", 1, vec![c("sip:a@h")]);
    let stored = applied(&[], &r, t0());
    let mut query = r.clone();
    query.contacts = RequestContacts::None;
    let mut star = r;
    star.contacts = RequestContacts::Star;
    star.expires_header = Some(0);
    let brief = req("c1", 1, vec![ce("sip:a@h", 10)]);
    for other in [query, star, brief] {
        assert!(
            !is_applied_repeat(&stored, &other, &policy(), t0()),
            "{other:?}"
        );
    }
}

#[test]
fn expired_bindings_are_ignored() {
    let r = req("c1", 1, vec![ce("sip:a@h", 60)]);
    let stored = applied(&[], &r, t0());
    assert!(!is_applied_repeat(&stored, &r, &policy(), t0() + secs(60)));
}
