//! The Contact header (RFC 3261 §20.10): name-addr plus `q` and `expires`, or `*`
//! (§10.2.2); `+sip.instance` and `reg-id` from RFC 5626.

use super::NameAddr;
use super::scan::{parse_delta_seconds, trim};
use crate::header::HeaderName;
use crate::message::ParseError;

/// One Contact value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact<'a> {
    /// Display name, URI and parameters.
    pub name_addr: NameAddr<'a>,
    /// The `q` parameter in thousandths (0..=1000).
    pub q: Option<u16>,
    /// The `expires` parameter, saturating at `u32::MAX`.
    pub expires: Option<u32>,
}

/// The whole Contact header set of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts<'a> {
    /// `Contact: *` (only valid in REGISTER with `Expires: 0`).
    Star,
    /// Zero or more contacts, in order.
    List(Vec<Contact<'a>>),
}

fn malformed() -> ParseError {
    ParseError::Malformed(HeaderName::Contact)
}

impl<'a> Contact<'a> {
    /// Parses one Contact value (not `*`).
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        let name_addr = NameAddr::parse(s).map_err(|e| match e {
            ParseError::MalformedNameAddr => malformed(),
            e => e,
        })?;
        let q = match name_addr.params.get("q") {
            None => None,
            Some(v) => Some(parse_q(v.ok_or_else(malformed)?).ok_or_else(malformed)?),
        };
        let expires = match name_addr.params.get("expires") {
            None => None,
            Some(v) => Some(parse_delta_seconds(v.ok_or_else(malformed)?).ok_or_else(malformed)?),
        };
        Ok(Self {
            name_addr,
            q,
            expires,
        })
    }

    /// The `+sip.instance` parameter without its quotes and `<>` (RFC 5626 §4.1).
    pub fn sip_instance(&self) -> Option<&'a str> {
        let v = self.name_addr.params.get("+sip.instance").flatten()?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        Some(
            v.strip_prefix('<')
                .and_then(|v| v.strip_suffix('>'))
                .unwrap_or(v),
        )
    }

    /// The `reg-id` parameter (RFC 5626 §4.2).
    pub fn reg_id(&self) -> Option<u32> {
        self.name_addr
            .params
            .get("reg-id")
            .flatten()
            .and_then(|v| v.parse().ok())
    }

    /// A parameter by name.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.name_addr.params.get(name)
    }
}

/// Parses a `qvalue` (RFC 3261 §25.1) into thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let v = trim(v);
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1].get(i).copied().unwrap_or(0);
    }
    let q = whole * 1000 + thousandths;
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        let c = Contact::parse(
            "<sip:a@192.0.2.4>;expires=3600;q=0.33;+sip.instance=\"<urn:uuid:1>\";reg-id=2",
        )
        .unwrap();
        assert_eq!(c.q, Some(330));
        assert_eq!(c.expires, Some(3600));
        assert_eq!(c.sip_instance(), Some("urn:uuid:1"));
        assert_eq!(c.reg_id(), Some(2));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.7"), Some(700));
        assert!(Contact::parse("<sip:a@b>;q=x").is_err());
        assert_eq!(
            Contact::parse("<sip:a@b>;expires=280297596632815")
                .unwrap()
                .expires,
            Some(u32::MAX)
        );
    }
}
