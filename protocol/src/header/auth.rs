//! WWW-Authenticate, Proxy-Authenticate, Authorization and Proxy-Authorization values
//! (RFC 3261 §20.7, §20.27, §20.28, §20.44; RFC 7616 digest): a scheme token followed by
//! comma-separated `name=value` parameters. Unknown schemes parse too (RFC 4475 §3.1.1.11).

use super::scan::{is_lws, is_token, split_commas, trim};
use crate::message::ParseError;

/// A challenge or credentials value: `Digest realm="x", nonce="y", ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthValue<'a> {
    /// The scheme token (`Digest`, or anything else).
    pub scheme: &'a str,
    /// The parameter text after the scheme.
    pub params_raw: &'a str,
}

/// A WWW-Authenticate / Proxy-Authenticate value.
pub type Challenge<'a> = AuthValue<'a>;
/// An Authorization / Proxy-Authorization value.
pub type Credentials<'a> = AuthValue<'a>;

impl<'a> AuthValue<'a> {
    /// Parses the whole header value.
    pub fn parse(s: &'a str, header: crate::header::HeaderName) -> Result<Self, ParseError> {
        let s = trim(s);
        let split = s.bytes().position(is_lws).unwrap_or(s.len());
        let scheme = s.get(..split).unwrap_or_default();
        if !is_token(scheme) {
            return Err(ParseError::Malformed(header));
        }
        Ok(Self {
            scheme,
            params_raw: trim(s.get(split..).unwrap_or_default()),
        })
    }

    /// Iterates `(name, value)`; quoted values are returned without their quotes
    /// (escapes kept).
    pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let raw = self.params_raw;
        split_commas(raw.as_bytes()).filter_map(move |r| {
            let item = raw.get(r)?;
            let (n, v) = item.split_once('=')?;
            let v = trim(v);
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((trim(n), v))
        })
    }

    /// A parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// True for the Digest scheme.
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::HeaderName;

    #[test]
    fn digest() {
        let a = AuthValue::parse(
            "Digest username=\"bob\", realm=\"a, b\",\r\n nonce=\"x\", uri=\"sip:b\", qop=auth",
            HeaderName::Authorization,
        )
        .unwrap();
        assert!(a.is_digest());
        assert_eq!(a.param("realm"), Some("a, b"));
        assert_eq!(a.param("QOP"), Some("auth"));
        assert_eq!(a.param("username"), Some("bob"));
        let o = AuthValue::parse(
            "NoOneKnowsThisScheme opaque-data=here",
            HeaderName::Authorization,
        )
        .unwrap();
        assert_eq!(o.scheme, "NoOneKnowsThisScheme");
        assert!(AuthValue::parse("", HeaderName::Authorization).is_err());
    }
}
