//! The address-of-record key: the canonical form of the To URI of a REGISTER.
//!
//! RFC 3261 §10.3 step 5: the registrar extracts the AOR from the To header field and converts it
//! "to the canonical form by removing all URI parameters (including the user-parameter), headers
//! and, … escaped characters". Our canonical form is `scheme:user@host[:port]`:
//! - the scheme is lowercased; only `sip` and `sips` are accepted, and they stay distinct keys;
//! - the user part is kept case-sensitive (§19.1.4); `%XX` escapes of unreserved characters are
//!   decoded, every other escape is kept with uppercase hex digits, so equivalent spellings give
//!   the same key and the key stays a valid URI;
//! - a password is dropped;
//! - the host is lowercased; a port is kept only when the URI gives one (`host` and `host:5060`
//!   are different keys, as §19.1.4 says for URIs);
//! - URI parameters and headers are removed.

use std::fmt;

use bytes::Bytes;

use crate::registrar::contact_uri::split_userinfo;

/// A canonical address-of-record, e.g. `sip:alice@example.com`.
///
/// Cheap to clone (it is a [`Bytes`]); used as the location-store key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor(Bytes);

/// Why a URI cannot be used as an address-of-record (maps to 404 or 400 in the glue).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AorError {
    /// No `scheme:` prefix.
    #[error("AOR has no URI scheme")]
    MissingScheme,
    /// A scheme other than `sip` / `sips`.
    #[error("AOR scheme is not sip or sips")]
    UnsupportedScheme,
    /// The host part is empty.
    #[error("AOR has an empty host")]
    EmptyHost,
    /// The port is not a number in 0..=65535.
    #[error("AOR has an invalid port")]
    InvalidPort,
    /// A `%` not followed by two hex digits.
    #[error("AOR has an invalid %-escape")]
    InvalidEscape,
}

impl Aor {
    /// Canonicalises a SIP or SIPS URI (the text inside `<>` of the To header field).
    pub fn from_uri(uri: &[u8]) -> Result<Self, AorError> {
        let uri = uri.trim_ascii();
        let colon = uri
            .iter()
            .position(|&b| b == b':')
            .ok_or(AorError::MissingScheme)?;
        let (scheme, rest) = uri.split_at(colon);
        let rest = rest.get(1..).unwrap_or_default();
        let scheme = scheme.to_ascii_lowercase();
        if scheme != b"sip" && scheme != b"sips" {
            return Err(AorError::UnsupportedScheme);
        }
        // Parameters and headers start at the first ';' or '?' after the userinfo.
        let (userinfo, hostport) = split_userinfo(rest);
        let end = hostport
            .iter()
            .position(|&b| b == b';' || b == b'?')
            .unwrap_or(hostport.len());
        let hostport = hostport.get(..end).unwrap_or_default();
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(AorError::EmptyHost);
        }
        let mut out = Vec::with_capacity(uri.len());
        out.extend_from_slice(&scheme);
        out.push(b':');
        if let Some(userinfo) = userinfo {
            let user = match userinfo.iter().position(|&b| b == b':') {
                Some(p) => userinfo.get(..p).unwrap_or_default(),
                None => userinfo,
            };
            normalise_escapes(user, &mut out)?;
            out.push(b'@');
        }
        out.extend(host.iter().map(u8::to_ascii_lowercase));
        if let Some(port) = port {
            out.extend_from_slice(format!(":{port}").as_bytes());
        }
        Ok(Self(Bytes::from(out)))
    }

    /// The canonical URI text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The canonical URI as shared bytes.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl fmt::Debug for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aor({})", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// Splits `host[:port]`, where host may be an IPv6 reference `[..]`.
pub(crate) fn split_host_port(hostport: &[u8]) -> Result<(&[u8], Option<u16>), AorError> {
    let port_at = if hostport.first() == Some(&b'[') {
        let close = hostport
            .iter()
            .position(|&b| b == b']')
            .ok_or(AorError::EmptyHost)?;
        match hostport.get(close + 1) {
            Some(b':') => Some(close + 1),
            Some(_) => return Err(AorError::InvalidPort),
            None => None,
        }
    } else {
        hostport.iter().position(|&b| b == b':')
    };
    match port_at {
        None => Ok((hostport, None)),
        Some(p) => {
            let host = hostport.get(..p).unwrap_or_default();
            let digits = hostport.get(p + 1..).unwrap_or_default();
            let port = std::str::from_utf8(digits)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or(AorError::InvalidPort)?;
            Ok((host, Some(port)))
        }
    }
}

/// Copies `input` to `out`, decoding `%XX` escapes of unreserved characters (RFC 3261 §25.1
/// `unreserved`) and uppercasing the hex digits of the others.
pub(crate) fn normalise_escapes(input: &[u8], out: &mut Vec<u8>) -> Result<(), AorError> {
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hi = input.get(i + 1).and_then(|&c| hex_value(c));
        let lo = input.get(i + 2).and_then(|&c| hex_value(c));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(AorError::InvalidEscape);
        };
        let decoded = hi * 16 + lo;
        if is_unreserved(decoded) {
            out.push(decoded);
        } else {
            out.push(b'%');
            // hex_value() returns at most 15, so both lookups are in bounds.
            out.push(HEX_UPPER[usize::from(hi)]);
            out.push(HEX_UPPER[usize::from(lo)]);
        }
        i += 3;
    }
    Ok(())
}

const HEX_UPPER: [u8; 16] = *b"0123456789ABCDEF";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aor(s: &str) -> String {
        Aor::from_uri(s.as_bytes())
            .map(|a| a.to_string())
            .unwrap_or_else(|e| format!("{e:?}"))
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(aor("SIP:Alice@Example.COM"), "sip:Alice@example.com");
        assert_eq!(
            aor("sip:alice:secret@example.com;user=phone?x=y"),
            "sip:alice@example.com"
        );
        assert_eq!(
            aor("sips:alice@example.com:5061;transport=tls"),
            "sips:alice@example.com:5061"
        );
        assert_eq!(aor("sip:%61lice@example.com"), "sip:alice@example.com");
        assert_eq!(aor("sip:a%3bb@example.com"), "sip:a%3Bb@example.com");
        assert_eq!(aor("sip:example.com"), "sip:example.com");
        assert_eq!(
            aor("sip:bob@[2001:DB8::1]:5070"),
            "sip:bob@[2001:db8::1]:5070"
        );
    }

    #[test]
    fn canonical_form_is_a_fixed_point() {
        for s in [
            "sip:Alice@example.com",
            "sip:a%3Bb@example.com:5070",
            "sips:[2001:db8::1]",
        ] {
            assert_eq!(aor(s), s);
        }
    }

    #[test]
    fn rejects() {
        assert_eq!(aor("alice@example.com"), "MissingScheme");
        assert_eq!(aor("tel:+123"), "UnsupportedScheme");
        assert_eq!(aor("sip:alice@"), "EmptyHost");
        assert_eq!(aor("sip:alice@h:99999"), "InvalidPort");
        assert_eq!(aor("sip:al%4@h"), "InvalidEscape");
    }
}
