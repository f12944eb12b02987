//! Recognising a REGISTER that was already applied: a retransmission that outlived its
//! server transaction.
//!
//! RFC 3261 §10.3 step 7 refuses a REGISTER whose CSeq is not higher than the one stored for
//! the same Call-ID. Normally the server transaction absorbs a retransmitted REGISTER
//! (§17.2.2), so the registrar never sees the second copy. In a cluster the transaction lives on
//! one node: when that node applied the first copy and then died, the UA's retransmission
//! (Timer E, up to 64·T1 after the first copy, §17.1.2.2) reaches a survivor with no
//! transaction for it, and the plain rule would answer 400 "CSeq out of order" to a request
//! that in fact succeeded.
//!
//! [`is_applied_repeat`] tells such a copy apart from a stale or conflicting request: the stored
//! bindings must record exactly what this request would have written. Precisely, with the
//! request's granted expiries computed as [`apply_register`](crate::registrar::apply_register)
//! does:
//! - the request is a Contact list (not `*`, not a query) that passes the request-only checks;
//! - no live binding has the request's Call-ID with a **higher** CSeq (then a later REGISTER
//!   came after it, and the copy is stale);
//! - the live bindings with the request's Call-ID **and** CSeq are exactly the Contacts the
//!   request leaves with a non-zero expiry (after applying its Contacts in order, the last one
//!   naming a binding wins): one each, with the same q-value (or the policy default), the same
//!   `+sip.instance`/`reg-id` and the same `Path`, and a stored expiry that this request could
//!   have granted within the last [`REPEAT_WINDOW`] (`now + granted − REPEAT_WINDOW ≤
//!   expires_at ≤ now + granted + CLOCK_SKEW`).
//!
//! A Contact the request removes (expiry 0) is then absent from those bindings by construction.
//! Where the request came from ([`Source`](crate::registrar::Source)) is not compared: the copy
//! reaches another node, so its local address and connection differ by design.
//!
//! The caller answers such a repeat with 200 and the current bindings, and writes nothing: the
//! first copy's write is the state the UA asked for. Any other request with the same Call-ID and
//! a CSeq not higher than stored is refused as before.
//!
//! For comparison, Kamailio's usrloc (`get_ucontact`) treats an equal CSeq on the same Call-ID
//! and contact as a retransmission to skip (the contact is left as it is, the REGISTER succeeds)
//! when the contact was last modified less than `cseq_delay` seconds ago (default 20 s), and as
//! an invalid CSeq otherwise; it compares neither the expiry nor the rest of the Contact set.
//! This rule is narrower: the whole stored result of the request must match.

use std::time::{Duration, SystemTime};

use crate::registrar::apply::same_binding;
use crate::registrar::binding::Binding;
use crate::registrar::contact_uri::contact_uris_equivalent;
use crate::registrar::policy::RegistrarPolicy;
use crate::registrar::request::{ContactInput, RegisterRequest, RequestContacts};

/// How long after the first copy a retransmission may arrive: 64·T1 with the default T1 of
/// 500 ms (Timer F, RFC 3261 §17.1.2.2), the lifetime of the UA's client transaction.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(32);

/// Tolerance for wall clocks of cluster nodes that differ slightly (the first copy's expiry was
/// computed from another node's clock).
pub const CLOCK_SKEW: Duration = Duration::from_secs(2);

/// Whether `req` is a copy of a REGISTER whose result `current` already records (see the module
/// documentation). `current` may hold expired bindings; they are ignored.
pub fn is_applied_repeat(
    current: &[Binding],
    req: &RegisterRequest,
    policy: &RegistrarPolicy,
    now: SystemTime,
) -> bool {
    let RequestContacts::List(contacts) = &req.contacts else {
        return false;
    };
    let Some(expected) = expected_bindings(contacts, req, policy) else {
        return false;
    };
    let mut written = Vec::new();
    for b in current.iter().filter(|b| !b.is_expired(now)) {
        if b.call_id != req.call_id {
            continue;
        }
        if b.cseq > req.cseq {
            return false;
        }
        if b.cseq == req.cseq {
            written.push(b);
        }
    }
    written.len() == expected.len()
        && expected.iter().all(|(c, granted)| {
            let mut matching = written.iter().filter(|b| same_binding(b, c));
            match (matching.next(), matching.next()) {
                (Some(b), None) => records(b, c, *granted, req, policy, now),
                _ => false,
            }
        })
}

/// The Contacts `req` leaves bound, each with its granted expiry, after applying its list in
/// order; `None` when the request would be refused before any stored state is consulted
/// (wildcard in a list, q-value above 1, interval too brief).
fn expected_bindings<'a>(
    contacts: &'a [ContactInput],
    req: &RegisterRequest,
    policy: &RegistrarPolicy,
) -> Option<Vec<(&'a ContactInput, u32)>> {
    let mut expected: Vec<(&ContactInput, u32)> = Vec::with_capacity(contacts.len());
    for c in contacts {
        if c.uri.trim_ascii() == b"*" || c.q.is_some_and(|q| q > 1000) {
            return None;
        }
        let asked = c
            .expires
            .or(req.expires_header)
            .unwrap_or(policy.default_expires);
        if asked != 0 && asked < policy.min_expires {
            return None;
        }
        let granted = asked.min(policy.max_expires);
        // The identity rule of `apply_register`, with the contact input standing in for the
        // binding it would create.
        let found = expected.iter().position(|(e, _)| same_identity(e, c));
        match (found, granted) {
            (Some(i), 0) => {
                expected.remove(i);
            }
            (None, 0) => {}
            (Some(i), g) => {
                if let Some(slot) = expected.get_mut(i) {
                    *slot = (c, g);
                }
            }
            (None, g) => expected.push((c, g)),
        }
    }
    Some(expected)
}

/// Whether Contacts `a` and `b` of one request name the same binding (the identity rule of
/// [`same_binding`], applied between two Contacts).
fn same_identity(a: &ContactInput, b: &ContactInput) -> bool {
    let flow = |c: &ContactInput| c.instance.is_some() && c.reg_id.is_some();
    match (flow(a), flow(b)) {
        (true, true) => a.instance == b.instance && a.reg_id == b.reg_id,
        (false, false) => contact_uris_equivalent(&a.uri, &b.uri),
        _ => false,
    }
}

/// Whether stored binding `b` is what Contact `c` of `req` would have written with expiry
/// `granted`, at most [`REPEAT_WINDOW`] before `now`.
fn records(
    b: &Binding,
    c: &ContactInput,
    granted: u32,
    req: &RegisterRequest,
    policy: &RegistrarPolicy,
    now: SystemTime,
) -> bool {
    let granted = Duration::from_secs(u64::from(granted));
    let Some(latest) = now
        .checked_add(granted)
        .and_then(|t| t.checked_add(CLOCK_SKEW))
    else {
        return false;
    };
    let earliest = now
        .checked_add(granted)
        .and_then(|t| t.checked_sub(REPEAT_WINDOW + CLOCK_SKEW))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    contact_uris_equivalent(&b.contact, &c.uri)
        && b.q == c.q.unwrap_or(policy.default_q)
        && b.instance == c.instance
        && b.reg_id == c.reg_id
        && b.path == req.path
        && (earliest..=latest).contains(&b.expires_at)
}

#[cfg(test)]
#[path = "repeat_tests.rs"]
mod tests;
