//! CSeq spaces of a dialog in which the proxy sent requests of its own (issue 6, media
//! failover; RFC 3261 §12.2.1.1 and §12.2.2).
//!
//! Each side of a dialog numbers its requests in its own CSeq space, and the other side
//! rejects (500) a request whose CSeq is lower than the last one it saw from that side. When
//! the proxy sends a re-INVITE *in the name of* side X (to move the call's media to another
//! rtpengine), the other side's view of X's space moves ahead of X's own counter. From then
//! on every request from X must be raised by an offset before it is forwarded, and every
//! response to such a request lowered by it again on the way back, so that each end keeps
//! seeing a consistent space.
//!
//! [`CseqShifts`] keeps the offsets by (Call-ID, From tag of the side), and rewrites messages:
//! a request *from* X ([`CseqShifts::shift_request`]) and a response whose From tag is X's
//! (the responses to X's requests, [`CseqShifts::unshift_response`]) are keyed the same way.
//! The proxy's own request takes [`CseqShifts::claim`]: its CSeq is [`STEP`] above the
//! highest the other side has seen from X, and X's offset grows by [`STEP`], so up to
//! `STEP - 1` requests of X that the proxy did not record (an INFO, a MESSAGE) still stay
//! below it.
//!
//! Responses leaving a node are raw bytes: [`CseqShifts::may_shift_raw`] finds their Call-ID
//! without parsing them (`raw_call_id.rs`), so that only responses of shifted calls (or ones
//! whose Call-ID line is unusual) are parsed.

use std::collections::HashMap;

use crate::message::{Editor, Message, ParseError};

use super::raw_call_id::{Scan, scan};

/// How far the proxy's own request jumps over the highest CSeq it recorded from a side.
pub const STEP: u32 = 100;

/// Why a message could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShiftError {
    /// Its CSeq, From tag or Call-ID did not parse.
    #[error("unparsable message: {0}")]
    Parse(#[from] ParseError),
    /// The shifted number would leave the range of RFC 3261 §8.1.1.5 (below 2^31).
    #[error("CSeq {0} out of range after the shift")]
    OutOfRange(u64),
}

/// The CSeq offsets of the dialogs in which the proxy sent requests (see the module doc).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CseqShifts {
    /// Offsets by Call-ID, then by the From tag of the side.
    by_call: HashMap<String, HashMap<String, u32>>,
}

impl CseqShifts {
    /// No offsets.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no dialog has an offset (the fast path: nothing to rewrite).
    pub fn is_empty(&self) -> bool {
        self.by_call.is_empty()
    }

    /// Whether the raw message `bytes` may need a rewrite: false only when its Call-ID,
    /// found without parsing ([`scan`]), has no offset. Never false for a message whose
    /// parsed Call-ID has one.
    pub fn may_shift_raw(&self, bytes: &[u8]) -> bool {
        if self.is_empty() {
            return false;
        }
        match scan(bytes) {
            Scan::Found(id) => std::str::from_utf8(id).map_or(true, |id| self.has_call(id)),
            Scan::Unsure => true,
        }
    }

    /// Whether any side of `call_id` has an offset.
    pub fn has_call(&self, call_id: &str) -> bool {
        self.by_call.contains_key(call_id)
    }

    /// The offset of the side tagged `tag` in call `call_id` (0 when none).
    pub fn offset(&self, call_id: &str, tag: &str) -> u32 {
        self.by_call
            .get(call_id)
            .and_then(|sides| sides.get(tag))
            .copied()
            .unwrap_or(0)
    }

    /// Claims a CSeq for a request the proxy sends in the name of the side tagged `tag`,
    /// given `recorded`, the highest CSeq the other side has seen from it (as forwarded,
    /// so already shifted): returns the CSeq to use, and raises the side's offset by
    /// [`STEP`].
    pub fn claim(&mut self, call_id: &str, tag: &str, recorded: u32) -> u32 {
        let offset = self
            .by_call
            .entry(call_id.to_owned())
            .or_default()
            .entry(tag.to_owned())
            .or_insert(0);
        *offset = offset.saturating_add(STEP);
        recorded.saturating_add(STEP)
    }

    /// Sets the offset of a side to `offset` unless it is already at least that (offsets
    /// only grow): how a node applies an offset another node claimed. True when it changed.
    pub fn raise_to(&mut self, call_id: &str, tag: &str, offset: u32) -> bool {
        let current = self
            .by_call
            .entry(call_id.to_owned())
            .or_default()
            .entry(tag.to_owned())
            .or_insert(0);
        let raised = offset > *current;
        *current = (*current).max(offset);
        raised
    }

    /// The From tags of the sides of `call_id` that have an offset.
    pub fn sides(&self, call_id: &str) -> Vec<String> {
        self.by_call
            .get(call_id)
            .map(|sides| sides.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets every offset of `call_id` (the dialog ended).
    pub fn remove_call(&mut self, call_id: &str) {
        self.by_call.remove(call_id);
    }

    /// A request from a side with an offset, with its CSeq raised by it; `Ok(None)` when the
    /// request needs no change.
    pub fn shift_request(&self, msg: &Message) -> Result<Option<Message>, ShiftError> {
        self.rewrite(msg, true)
    }

    /// A response to a request of a side with an offset (its From tag is that side's), with
    /// its CSeq lowered back; `Ok(None)` when it needs no change.
    pub fn unshift_response(&self, msg: &Message) -> Result<Option<Message>, ShiftError> {
        self.rewrite(msg, false)
    }

    fn rewrite(&self, msg: &Message, up: bool) -> Result<Option<Message>, ShiftError> {
        if self.is_empty() {
            return Ok(None);
        }
        let Some(tag) = msg.from_tag()? else {
            return Ok(None);
        };
        let offset = self.offset(msg.call_id()?, tag);
        if offset == 0 {
            return Ok(None);
        }
        let cseq = msg.cseq()?;
        let seq = if up {
            u64::from(cseq.seq) + u64::from(offset)
        } else {
            // A response to a request that was never shifted (sent before the offset) keeps
            // its number.
            match cseq.seq.checked_sub(offset) {
                Some(s) => u64::from(s),
                None => return Ok(None),
            }
        };
        if seq >= 1 << 31 {
            return Err(ShiftError::OutOfRange(seq));
        }
        let mut e = Editor::new(msg);
        e.set_header("CSeq", format!("{seq} {}", cseq.method.as_str()));
        Ok(Some(Message::parse(e.finish())?))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn msg(text: &str) -> Message {
        Message::parse(Bytes::from(text.to_owned())).unwrap()
    }

    fn request(from_tag: &str, seq: u32, method: &str) -> Message {
        msg(&format!(
            "{method} sip:bob@10.0.0.3 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKa\r\n\
             From: <sip:alice@example.com>;tag={from_tag}\r\nTo: <sip:bob@example.com>;tag=b\r\n\
             Call-ID: c1\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    fn response(from_tag: &str, seq: u32, method: &str) -> Message {
        msg(&format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKa\r\n\
             From: <sip:alice@example.com>;tag={from_tag}\r\nTo: <sip:bob@example.com>;tag=b\r\n\
             Call-ID: c1\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn nothing_is_rewritten_without_an_offset() {
        let shifts = CseqShifts::new();
        assert!(shifts.is_empty());
        assert!(matches!(
            shifts.shift_request(&request("a", 2, "BYE")),
            Ok(None)
        ));
        assert!(matches!(
            shifts.unshift_response(&response("a", 2, "BYE")),
            Ok(None)
        ));
    }

    #[test]
    fn a_claim_jumps_over_the_recorded_cseq_and_shifts_later_requests_above_it() {
        let mut shifts = CseqShifts::new();
        // The proxy re-INVITEs bob in alice's name; bob last saw CSeq 1 from alice.
        let own = shifts.claim("c1", "a", 1);
        assert_eq!(own, 1 + STEP);
        assert_eq!(shifts.offset("c1", "a"), STEP);
        // alice's next request (CSeq 2, she knows nothing) reaches bob above the proxy's.
        let bye = shifts
            .shift_request(&request("a", 2, "BYE"))
            .unwrap()
            .unwrap();
        let seq = bye.cseq().unwrap().seq;
        assert_eq!(seq, 2 + STEP);
        assert!(seq > own);
        // bob's 200 goes back to alice with her own number.
        let ok = shifts
            .unshift_response(&response("a", seq, "BYE"))
            .unwrap()
            .unwrap();
        assert_eq!(ok.cseq().unwrap().seq, 2);
        assert_eq!(ok.cseq().unwrap().method.as_str(), "BYE");
        // Every other byte is kept.
        assert_eq!(ok.call_id().unwrap(), "c1");
        assert_eq!(ok.from_tag().unwrap(), Some("a"));
    }

    #[test]
    fn each_side_has_its_own_offset_and_the_other_call_is_untouched() {
        let mut shifts = CseqShifts::new();
        shifts.claim("c1", "a", 1);
        shifts.claim("c1", "b", 7);
        shifts.claim("c1", "b", 107);
        assert_eq!(shifts.offset("c1", "b"), 2 * STEP);
        let from_b = shifts
            .shift_request(&request("b", 8, "INFO"))
            .unwrap()
            .unwrap();
        assert_eq!(from_b.cseq().unwrap().seq, 8 + 2 * STEP);
        assert!(matches!(
            shifts.shift_request(&request("z", 8, "INFO")),
            Ok(None)
        ));
        shifts.remove_call("c1");
        assert!(shifts.is_empty());
    }

    #[test]
    fn an_offset_learned_from_another_node_only_grows() {
        let mut shifts = CseqShifts::new();
        assert!(shifts.raise_to("c1", "a", 2 * STEP));
        assert!(!shifts.raise_to("c1", "a", STEP));
        assert_eq!(shifts.offset("c1", "a"), 2 * STEP);
        // A later local claim builds on the learned offset.
        shifts.claim("c1", "a", 250);
        assert_eq!(shifts.offset("c1", "a"), 3 * STEP);
    }

    #[test]
    fn a_response_below_the_offset_is_left_alone_and_overflow_is_refused() {
        let mut shifts = CseqShifts::new();
        shifts.claim("c1", "a", 1);
        assert!(matches!(
            shifts.unshift_response(&response("a", 1, "INVITE")),
            Ok(None)
        ));
        let near_top = request("a", (1 << 31) - 2, "BYE");
        assert!(matches!(
            shifts.shift_request(&near_top),
            Err(ShiftError::OutOfRange(_))
        ));
    }
}
