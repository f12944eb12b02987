//! Basic request validation before the core acts on a message (RFC 3261 §8.2, §16.3):
//! mandatory headers present and well-formed, single-valued headers not repeated, CSeq
//! method equal to the request method.

use super::{Message, ParseError};
use crate::header::HeaderName;

impl Message {
    /// Runs the RFC 3261 §8.2 / §16.3 sanity checks. Responses get the same header checks
    /// except the Request-URI and CSeq method comparison.
    pub fn validate_request(&self) -> Result<(), ParseError> {
        for name in [
            HeaderName::To,
            HeaderName::From,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::MaxForwards,
            HeaderName::ContentLength,
        ] {
            if self.header_count(&name) > 1 {
                return Err(ParseError::Duplicate(name));
            }
        }
        if let Some(Err(e)) = self.request_uri() {
            return Err(e);
        }
        self.to()?;
        self.from()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if let Some(m) = self.method()
            && *m != cseq.method
        {
            return Err(ParseError::CSeqMethodMismatch);
        }
        let mut n = 0;
        for v in self.vias() {
            v?;
            n += 1;
        }
        if n == 0 {
            return Err(ParseError::Missing(HeaderName::Via));
        }
        self.max_forwards()?;
        self.content_length()?;
        self.contacts()?;
        self.expires()?;
        self.routes()?;
        self.record_routes()?;
        Ok(())
    }
}
