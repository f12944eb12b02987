//! Matching messages to transactions (RFC 3261 §17.1.3 for clients, §17.2.3 for servers).
//!
//! Keys are built from plain fields (so this module does not depend on the message parser) and
//! own compact copies of them, so they can live in a `HashMap` next to the transactions.
//!
//! - Client side: a response matches the client transaction whose request carried the same
//!   top-Via `branch` and whose method equals the response's CSeq method (§17.1.3). A CANCEL
//!   thus has its own client transaction next to the INVITE it cancels.
//! - Server side, RFC 3261 requests (branch starting with the magic cookie `z9hG4bK`): branch,
//!   top-Via sent-by and method, where an ACK maps to the INVITE transaction and a CANCEL is a
//!   transaction of its own (§17.2.3).
//! - Server side, RFC 2543 requests (no magic cookie): Request-URI, To tag, From tag, Call-ID,
//!   CSeq number and method, and the top Via. The ACK for a final response carries the To tag
//!   of that response rather than the INVITE's, so once the TU answers, the owner also files the
//!   INVITE transaction under [`TransactionKey::for_ack`].

use bytes::Bytes;

/// The RFC 3261 magic cookie that starts every compliant branch (RFC 3261 §8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Builds a branch parameter: the magic cookie followed by `random` in hex. The caller supplies
/// the randomness (RFC 3261 §8.1.1.7 requires uniqueness across space and time; 64 random bits
/// suffice).
///
/// ```
/// # use sipmesh_protocol::transaction::generate_branch;
/// assert_eq!(generate_branch(0xdead_beef), "z9hG4bK00000000deadbeef");
/// ```
pub fn generate_branch(random: u64) -> String {
    format!("{MAGIC_COOKIE}{random:016x}")
}

/// Whether `branch` follows RFC 3261 (starts with the magic cookie).
pub fn is_rfc3261_branch(branch: &str) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

/// The facts of a received request that server-side matching needs (RFC 3261 §17.2.3).
///
/// Values are as they appear in the message; the Request-URI and top Via are compared
/// byte-for-byte, so a caller wanting RFC 3261 §19.1.4 URI equivalence passes a canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// The method of the request line (`INVITE`, `ACK`, `CANCEL`, ...); case-sensitive.
    pub method: &'a str,
    /// The `branch` parameter of the top Via, if any.
    pub branch: Option<&'a str>,
    /// The host of the top Via's sent-by (compared case-insensitively).
    pub sent_by_host: &'a str,
    /// The port of the top Via's sent-by, if present.
    pub sent_by_port: Option<u16>,
    /// The Request-URI (RFC 2543 fallback only).
    pub request_uri: &'a [u8],
    /// The To tag, if any (RFC 2543 fallback only).
    pub to_tag: Option<&'a str>,
    /// The From tag, if any (RFC 2543 fallback only).
    pub from_tag: Option<&'a str>,
    /// The Call-ID (RFC 2543 fallback only).
    pub call_id: &'a str,
    /// The CSeq sequence number (RFC 2543 fallback only).
    pub cseq: u32,
    /// The whole top Via header field value (RFC 2543 fallback only).
    pub top_via: &'a [u8],
}

/// Identifies a transaction: compare or hash it to find the transaction a message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// Which matching rule built the key, with its fields.
    inner: KeyInner,
}

/// The three kinds of key; they never compare equal to one another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyInner {
    /// RFC 3261 §17.1.3.
    Client {
        /// Top-Via branch of the request.
        branch: Bytes,
        /// Method of the request (CSeq method of the response).
        method: Bytes,
    },
    /// RFC 3261 §17.2.3, magic-cookie branch.
    Server {
        /// Top-Via branch.
        branch: Bytes,
        /// Sent-by host, ASCII-lowercased.
        host: Bytes,
        /// Sent-by port as written.
        port: Option<u16>,
        /// Request method, ACK mapped to INVITE.
        method: Bytes,
        /// Call-ID and CSeq number: not part of the RFC 3261 rule, but equal in every
        /// retransmission, CANCEL and ACK of the transaction. Including them keeps two different
        /// requests that reuse a branch (RFC 4475 `escnull`/`regescrt` do) apart.
        call_id: Bytes,
        /// See `call_id`.
        cseq: u32,
    },
    /// RFC 3261 §17.2.3, RFC 2543 fallback.
    Legacy {
        /// Request-URI.
        request_uri: Bytes,
        /// To tag (for ACK: the tag of the response it acknowledges).
        to_tag: Option<Bytes>,
        /// From tag.
        from_tag: Option<Bytes>,
        /// Call-ID.
        call_id: Bytes,
        /// CSeq number.
        cseq: u32,
        /// CSeq method, ACK mapped to INVITE.
        method: Bytes,
        /// Top Via value, trimmed.
        top_via: Bytes,
    },
}

/// The transaction method a request belongs to: an ACK belongs to the INVITE transaction.
fn transaction_method(method: &str) -> Bytes {
    if method == "ACK" {
        Bytes::from_static(b"INVITE")
    } else {
        Bytes::copy_from_slice(method.as_bytes())
    }
}

impl TransactionKey {
    /// The client-transaction key for a request sent with `branch` and method `method`, or for
    /// a response whose top Via has `branch` and whose CSeq method is `method` (§17.1.3).
    pub fn client(branch: &str, method: &str) -> Self {
        Self {
            inner: KeyInner::Client {
                branch: Bytes::copy_from_slice(branch.as_bytes()),
                method: Bytes::copy_from_slice(method.as_bytes()),
            },
        }
    }

    /// The server-transaction key of a received request (§17.2.3). Uses the branch rule when
    /// the top Via branch has the magic cookie, the RFC 2543 rule otherwise. An ACK yields the
    /// key of its INVITE transaction; a CANCEL yields its own.
    pub fn server(facts: &RequestFacts<'_>) -> Self {
        let method = transaction_method(facts.method);
        let inner = match facts.branch {
            Some(branch) if is_rfc3261_branch(branch) => KeyInner::Server {
                branch: Bytes::copy_from_slice(branch.as_bytes()),
                host: Bytes::from(facts.sent_by_host.to_ascii_lowercase()),
                port: facts.sent_by_port,
                method,
                call_id: Bytes::copy_from_slice(facts.call_id.as_bytes()),
                cseq: facts.cseq,
            },
            _ => KeyInner::Legacy {
                request_uri: Bytes::copy_from_slice(facts.request_uri),
                to_tag: facts.to_tag.map(|t| Bytes::copy_from_slice(t.as_bytes())),
                from_tag: facts.from_tag.map(|t| Bytes::copy_from_slice(t.as_bytes())),
                call_id: Bytes::copy_from_slice(facts.call_id.as_bytes()),
                cseq: facts.cseq,
                method,
                top_via: Bytes::copy_from_slice(facts.top_via.trim_ascii()),
            },
        };
        Self { inner }
    }

    /// For an RFC 2543 INVITE server transaction answered with To tag `response_to_tag`: the key
    /// its ACK will produce (§17.2.3: the ACK's To tag is that of the response, everything else
    /// as in the INVITE). The owner files the transaction under this key too. Returns `None`
    /// for other keys, which need no alias (the RFC 3261 ACK carries the INVITE's branch).
    pub fn for_ack(&self, response_to_tag: &str) -> Option<Self> {
        match &self.inner {
            KeyInner::Legacy {
                request_uri,
                from_tag,
                call_id,
                cseq,
                method,
                top_via,
                ..
            } if method.as_ref() == b"INVITE" => Some(Self {
                inner: KeyInner::Legacy {
                    request_uri: request_uri.clone(),
                    to_tag: Some(Bytes::copy_from_slice(response_to_tag.as_bytes())),
                    from_tag: from_tag.clone(),
                    call_id: call_id.clone(),
                    cseq: *cseq,
                    method: method.clone(),
                    top_via: top_via.clone(),
                },
            }),
            _ => None,
        }
    }

    /// A 128-bit digest of the key, for tables that must stay small (a finished transaction kept
    /// only to absorb retransmissions). Two SipHash-1-3 passes with different prefixes; a
    /// collision between live transactions needs about 2^64 keys.
    pub fn digest(&self) -> u128 {
        use std::hash::{Hash, Hasher};
        // DefaultHasher::new() is SipHash-1-3 with fixed keys: deterministic, as a digest must be.
        let mut a = std::collections::hash_map::DefaultHasher::new();
        let mut b = std::collections::hash_map::DefaultHasher::new();
        0xa5u8.hash(&mut b);
        self.hash(&mut a);
        self.hash(&mut b);
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }

    /// Whether the key was built by the RFC 2543 fallback rule.
    pub fn is_rfc2543(&self) -> bool {
        matches!(self.inner, KeyInner::Legacy { .. })
    }

    /// Whether this is a client-transaction key.
    pub fn is_client(&self) -> bool {
        matches!(self.inner, KeyInner::Client { .. })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn invite() -> RequestFacts<'static> {
        RequestFacts {
            method: "INVITE",
            branch: Some("z9hG4bK776asdhds"),
            sent_by_host: "PC33.atlanta.com",
            sent_by_port: None,
            request_uri: b"sip:bob@biloxi.com",
            to_tag: None,
            from_tag: Some("1928301774"),
            call_id: "a84b4c76e66710@pc33.atlanta.com",
            cseq: 314159,
            top_via: b"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
        }
    }

    fn legacy_invite() -> RequestFacts<'static> {
        RequestFacts {
            branch: None,
            top_via: b"SIP/2.0/UDP pc33.atlanta.com",
            ..invite()
        }
    }

    #[test]
    fn branch_generation() {
        let b = generate_branch(1);
        assert!(is_rfc3261_branch(&b));
        assert_eq!(b.len(), MAGIC_COOKIE.len() + 16);
        assert_ne!(generate_branch(2), b);
    }

    #[test]
    fn rfc3261_ack_matches_invite_and_cancel_does_not() {
        let inv = TransactionKey::server(&invite());
        assert!(!inv.is_rfc2543());
        let ack = TransactionKey::server(&RequestFacts {
            method: "ACK",
            to_tag: Some("a6c85cf"),
            ..invite()
        });
        assert_eq!(inv, ack);
        let cancel = TransactionKey::server(&RequestFacts {
            method: "CANCEL",
            ..invite()
        });
        assert_ne!(inv, cancel);
        let mut map = HashMap::new();
        map.insert(inv, "invite");
        map.insert(cancel.clone(), "cancel");
        assert_eq!(map.get(&ack), Some(&"invite"));
        assert_eq!(map.get(&cancel), Some(&"cancel"));
    }

    #[test]
    fn rfc3261_sent_by_and_branch_matter() {
        let inv = TransactionKey::server(&invite());
        let upper = TransactionKey::server(&RequestFacts {
            sent_by_host: "pc33.ATLANTA.com",
            ..invite()
        });
        assert_eq!(inv, upper, "host compares case-insensitively");
        let port = TransactionKey::server(&RequestFacts {
            sent_by_port: Some(5070),
            ..invite()
        });
        assert_ne!(inv, port);
        let branch = TransactionKey::server(&RequestFacts {
            branch: Some("z9hG4bK776asdhdt"),
            ..invite()
        });
        assert_ne!(inv, branch);
        // The Request-URI does not matter under the 3261 rule...
        let other = TransactionKey::server(&RequestFacts {
            request_uri: b"sip:carol@chicago.com",
            ..invite()
        });
        assert_eq!(inv, other);
        // ...but a different request that reuses the branch (RFC 4475 escnull/regescrt) is
        // another transaction.
        let reused = TransactionKey::server(&RequestFacts {
            call_id: "other",
            ..invite()
        });
        assert_ne!(inv, reused);
    }

    #[test]
    fn rfc2543_invite_retransmission_matches_but_other_cseq_does_not() {
        let inv = TransactionKey::server(&legacy_invite());
        assert!(inv.is_rfc2543());
        assert_eq!(inv, TransactionKey::server(&legacy_invite()));
        let next = TransactionKey::server(&RequestFacts {
            cseq: 314160,
            ..legacy_invite()
        });
        assert_ne!(inv, next);
        let from = TransactionKey::server(&RequestFacts {
            from_tag: Some("x"),
            ..legacy_invite()
        });
        assert_ne!(inv, from);
        let via = TransactionKey::server(&RequestFacts {
            top_via: b"SIP/2.0/UDP pc34.atlanta.com",
            ..legacy_invite()
        });
        assert_ne!(inv, via);
        let ruri = TransactionKey::server(&RequestFacts {
            request_uri: b"sip:bob@biloxi.net",
            ..legacy_invite()
        });
        assert_ne!(inv, ruri);
        // A non-cookie branch falls back to 2543 as well.
        let odd_branch = TransactionKey::server(&RequestFacts {
            branch: Some("1234"),
            ..legacy_invite()
        });
        assert_eq!(inv, odd_branch);
    }

    #[test]
    fn rfc2543_ack_matches_by_response_to_tag() {
        let inv = TransactionKey::server(&legacy_invite());
        let ack = TransactionKey::server(&RequestFacts {
            method: "ACK",
            to_tag: Some("a6c85cf"),
            ..legacy_invite()
        });
        assert_ne!(inv, ack, "the ACK carries the response's To tag");
        assert_eq!(inv.for_ack("a6c85cf"), Some(ack.clone()));
        assert_ne!(inv.for_ack("other"), Some(ack));
        // A CANCEL is its own transaction under the fallback too.
        let cancel = TransactionKey::server(&RequestFacts {
            method: "CANCEL",
            ..legacy_invite()
        });
        assert_ne!(inv, cancel);
        assert_eq!(cancel.for_ack("a6c85cf"), None);
        assert_eq!(TransactionKey::server(&invite()).for_ack("t"), None);
    }

    #[test]
    fn client_keys() {
        let inv = TransactionKey::client("z9hG4bK1", "INVITE");
        assert!(inv.is_client());
        assert_eq!(inv, TransactionKey::client("z9hG4bK1", "INVITE"));
        assert_ne!(inv, TransactionKey::client("z9hG4bK1", "CANCEL"));
        assert_ne!(inv, TransactionKey::client("z9hG4bK2", "INVITE"));
        assert_ne!(inv, TransactionKey::server(&invite()));
    }
}
