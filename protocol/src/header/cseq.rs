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
        if let Some(c) = Self::parse_common(s.as_bytes()) {
            return Ok(c);
        }
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

impl CSeq {
    /// The common spelling, `<digits> SP <known method>` with nothing around it, parsed from
    /// bytes in one pass. `None` for anything else (leading zeros past ten digits, folding,
    /// extension methods, errors), which [`CSeq::parse`] then handles; whatever this accepts,
    /// that accepts with the same result, so callers may use it before UTF-8 validation.
    pub(crate) fn parse_common(b: &[u8]) -> Option<Self> {
        let digits = b.iter().position(|c| !c.is_ascii_digit())?;
        if digits == 0 || digits > 10 {
            return None;
        }
        let seq = b
            .get(..digits)?
            .iter()
            .fold(0u64, |v, c| v * 10 + u64::from(c - b'0'));
        let seq = u32::try_from(seq).ok().filter(|v| *v < (1 << 31))?;
        let rest = b.get(digits..)?;
        let method = rest.get(rest.iter().position(|c| *c != b' ')?..)?;
        if method.len() == rest.len() {
            return None;
        }
        Some(Self {
            seq,
            method: Method::known(method)?,
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
        assert_eq!(
            CSeq::parse_common(b"0009  ACK"),
            CSeq::parse("0009  ACK").ok()
        );
        for s in [
            "1 INVITE ",
            " 1 INVITE",
            "1\tBYE",
            "1 FOO",
            "12345678901 ACK",
            "1 ",
            "1",
        ] {
            assert_eq!(CSeq::parse_common(s.as_bytes()), None, "{s:?}");
        }
    }
}
