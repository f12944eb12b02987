//! Processing a REGISTER against the stored bindings: RFC 3261 §10.3 steps 6–8.
//!
//! [`apply_register`] is all-or-nothing: it validates every Contact before it changes anything,
//! and on error the caller keeps the stored bindings untouched.
//!
//! Binding identity (which stored binding a Contact updates):
//! - a Contact with both `+sip.instance` and `reg-id` is an RFC 5626 flow: it matches the
//!   binding with the same instance and reg-id, whatever its URI (RFC 5626 §6, so a UA that
//!   changed address replaces its old flow), and never a binding without both;
//! - any other Contact matches a binding lacking instance or reg-id whose URI is equivalent per §19.1.4
//!   ([`contact_uris_equivalent`]).
//!
//! Expiry of a Contact: its `expires` parameter, else the `Expires` header, else
//! `policy.default_expires`; 0 removes; `0 < e < min_expires` refuses the whole request with 423;
//! `e > max_expires` is lowered to `max_expires` (§10.3 step 7).
//!
//! Ordering (§10.3 steps 6 and 7): when any live binding of the AOR has the request's Call-ID
//! and a CSeq not lower than the request's, the whole request is refused (400 "CSeq out of
//! order"). This is slightly stricter than §10.3 step 7, which checks only the binding a Contact
//! updates: it also refuses a stale REGISTER that would re-add a contact a later REGISTER of the
//! same Call-ID removed. A UA that follows §10.2 (CSeq increases within a Call-ID) is never
//! refused. The one exception is an exact copy of a REGISTER whose result the bindings already
//! record ([`is_applied_repeat`], a retransmission that outlived its transaction on a failed
//! node): it succeeds with the current bindings and changes nothing. Bindings with another Call-ID are simply replaced or removed. Queries (no Contact)
//! are not checked. Two Contacts of one request that name the same binding are applied in order
//! (the last wins).
//!
//! The contact limit applies only when the request would grow the AOR beyond
//! `policy.max_contacts`, so refreshes and removals keep working after the limit is lowered.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::registrar::binding::Binding;
use crate::registrar::contact_uri::contact_uris_equivalent;
use crate::registrar::error::RegisterError;
use crate::registrar::policy::RegistrarPolicy;
use crate::registrar::repeat::is_applied_repeat;
use crate::registrar::request::{ContactInput, RegisterRequest, RequestContacts};

/// The result of a successful REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// The new full set of live bindings of the AOR (expired ones dropped), in insertion order.
    /// The 200 OK lists them with [`contact_header_values`](crate::registrar::contact_header_values).
    pub bindings: Vec<Binding>,
    /// Whether the set differs from the stored one (the store must write it).
    pub changed: bool,
    /// `Path` values to echo in the 200 OK: the request's Path when it said `Supported: path`,
    /// else empty (RFC 3327 §5.3).
    pub response_path: Vec<Bytes>,
}

/// Applies `req` to the `current` bindings of `req.aor` at wall-clock time `now`.
///
/// See the module documentation for the rules. `current` may contain expired bindings; they are
/// dropped from the result and never block a request.
pub fn apply_register(
    current: &[Binding],
    req: &RegisterRequest,
    policy: &RegistrarPolicy,
    now: SystemTime,
) -> Result<RegisterOutcome, RegisterError> {
    let live: Vec<Binding> = current
        .iter()
        .filter(|b| !b.is_expired(now))
        .cloned()
        .collect();
    let pruned = live.len() != current.len();
    let response_path = if req.supports_path {
        req.path.clone()
    } else {
        Vec::new()
    };
    let outcome = |bindings, changed| RegisterOutcome {
        bindings,
        changed,
        response_path,
    };

    let contacts = match &req.contacts {
        RequestContacts::None => return Ok(outcome(live, pruned)),
        RequestContacts::Star => {
            return remove_all(live, req).map(|c| outcome(Vec::new(), c || pruned));
        }
        RequestContacts::List(list) => list,
    };
    if contacts.iter().any(|c| c.uri.trim_ascii() == b"*") {
        return if contacts.len() == 1 {
            remove_all(live, req).map(|c| outcome(Vec::new(), c || pruned))
        } else {
            Err(RegisterError::StarWithOtherContacts)
        };
    }

    // Validate every contact first: nothing may change if one of them is refused.
    let mut granted = Vec::with_capacity(contacts.len());
    for c in contacts {
        if c.q.is_some_and(|q| q > 1000) {
            return Err(RegisterError::InvalidQValue);
        }
        let asked = c
            .expires
            .or(req.expires_header)
            .unwrap_or(policy.default_expires);
        if asked != 0 && asked < policy.min_expires {
            return Err(RegisterError::IntervalTooBrief {
                min_expires: policy.min_expires,
            });
        }
        granted.push(asked.min(policy.max_expires));
    }

    if out_of_order(&live, req) {
        // A copy of a REGISTER already applied (its transaction died with another node):
        // answered with the current bindings, nothing written.
        if is_applied_repeat(&live, req, policy, now) {
            return Ok(outcome(live, pruned));
        }
        return Err(RegisterError::CSeqOutOfOrder);
    }
    let before = live.len();
    let mut working = live;
    let mut changed = pruned;
    for (c, &expires) in contacts.iter().zip(&granted) {
        let found = working.iter().position(|b| same_binding(b, c));
        if expires == 0 {
            if let Some(i) = found {
                working.remove(i);
                changed = true;
            }
            continue;
        }
        let expires_at = now
            .checked_add(Duration::from_secs(u64::from(expires)))
            .ok_or(RegisterError::ExpiryOverflow)?;
        let binding = Binding::compact(
            &c.uri,
            c.q.unwrap_or(policy.default_q),
            expires_at,
            &req.call_id,
            req.cseq,
            &req.path,
            c.instance.as_deref(),
            c.reg_id,
            req.source,
        );
        match found.and_then(|i| working.get_mut(i)) {
            Some(slot) => *slot = binding,
            None => working.push(binding),
        }
        changed = true;
    }
    if working.len() > policy.max_contacts && working.len() > before {
        return Err(RegisterError::TooManyContacts {
            max: policy.max_contacts,
        });
    }
    Ok(outcome(working, changed))
}

/// `Contact: *` (§10.3 step 6): checks `Expires: 0` and the CSeq order of every binding.
/// Returns whether anything was removed.
fn remove_all(live: Vec<Binding>, req: &RegisterRequest) -> Result<bool, RegisterError> {
    if req.expires_header != Some(0) {
        return Err(RegisterError::StarWithNonZeroExpires);
    }
    if live
        .iter()
        .any(|b| b.call_id == req.call_id && req.cseq <= b.cseq)
    {
        return Err(RegisterError::CSeqOutOfOrder);
    }
    Ok(!live.is_empty())
}

/// Whether a live binding of the AOR was written by a REGISTER with the same Call-ID and a CSeq
/// not lower than `req`'s: then `req` is stale or reordered.
fn out_of_order(live: &[Binding], req: &RegisterRequest) -> bool {
    live.iter()
        .any(|b| b.call_id == req.call_id && req.cseq <= b.cseq)
}

/// Whether Contact `c` names stored binding `b` (see the module documentation).
pub(crate) fn same_binding(b: &Binding, c: &ContactInput) -> bool {
    match (&c.instance, c.reg_id) {
        (Some(instance), Some(reg_id)) => {
            b.reg_id == Some(reg_id) && b.instance.as_ref() == Some(instance)
        }
        _ => {
            !(b.instance.is_some() && b.reg_id.is_some())
                && contact_uris_equivalent(&b.contact, &c.uri)
        }
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
