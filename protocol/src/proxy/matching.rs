//! Finding the server transaction a request belongs to: the RFC 3261 §17.2.3 key built from a
//! parsed request, and the cheap hasher for the 128-bit digests of completed transactions.

use crate::header::HeaderName;
use crate::message::Message;
use crate::transaction::{RequestFacts, TransactionKey};

/// Hashes a `u128` digest (already uniformly random) by taking its low bits.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DigestState;

/// See [`DigestState`].
#[derive(Debug, Default)]
pub(super) struct DigestHasher(u64);

impl std::hash::BuildHasher for DigestState {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        // Truncation intended: the low 64 bits of a digest are as good a hash as any.
        self.0 = v as u64;
    }
}

/// The server-transaction key of a request (§17.2.3).
pub(super) fn server_key(msg: &Message, method: &str) -> Result<TransactionKey, crate::ParseError> {
    let via = msg.top_via()?;
    let top_via_raw = msg.header(&HeaderName::Via).map_or(&[][..], |h| h.value);
    let host = via.host.to_string();
    let to_tag = msg.to().ok().and_then(|t| t.tag());
    let from_tag = msg.from().ok().and_then(|f| f.tag());
    let call_id = msg.call_id().unwrap_or("");
    let cseq = msg.cseq().map(|c| c.seq).unwrap_or(0);
    let facts = RequestFacts {
        method,
        branch: via.branch,
        sent_by_host: &host,
        sent_by_port: via.port,
        request_uri: msg.request_uri_raw().unwrap_or_default(),
        to_tag,
        from_tag,
        call_id,
        cseq,
        top_via: top_via_raw,
    };
    Ok(TransactionKey::server(&facts))
}
