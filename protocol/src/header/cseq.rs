//! The CSeq header (RFC 3261 §20.16, §8.1.1.5).

use std::fmt;

use super::scan::{is_lws, parse_u64, trim};
use crate::header::HeaderName;
use crate::message::{Method, ParseError};

/// `CSeq: <seq> <method>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number; always below 2^31 (RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value. Leading zeros are accepted; numbers of 2^31 and above are
    /// rejected with [`ParseError::CSeqOutOfRange`].
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = trim(s);
        let split = s
            .bytes()
            .position(is_lws)
            .ok_or(ParseError::Malformed(HeaderName::CSeq))?;
        let num = s.get(..split).unwrap_or_default();
        let method = trim(s.get(split..).unwrap_or_default());
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Malformed(HeaderName::CSeq));
        }
        let seq = parse_u64(num)
            .filter(|v| *v < (1 << 31))
            .ok_or(ParseError::CSeqOutOfRange)?;
        let method = Method::parse(method).map_err(|_| ParseError::Malformed(HeaderName::CSeq))?;
        Ok(Self {
            seq: u32::try_from(seq).map_err(|_| ParseError::CSeqOutOfRange)?,
            method,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let c = CSeq::parse("0009\r\n  INVITE").unwrap();
        assert_eq!(c.seq, 9);
        assert_eq!(c.method, Method::Invite);
        assert_eq!(c.to_string(), "9 INVITE");
        assert_eq!(
            CSeq::parse("36893488147419103232 INVITE"),
            Err(ParseError::CSeqOutOfRange)
        );
        assert_eq!(
            CSeq::parse("2147483648 ACK"),
            Err(ParseError::CSeqOutOfRange)
        );
        assert!(CSeq::parse("2147483647 ACK").is_ok());
        assert!(CSeq::parse("INVITE").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(matches!(
            CSeq::parse("1 FOO").unwrap().method,
            Method::Extension(_)
        ));
    }
}
