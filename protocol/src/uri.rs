//! URIs: SIP/SIPS (RFC 3261 §19.1), TEL (RFC 3966) and, for any other scheme, an opaque
//! absolute URI (RFC 3986 §4.3) so the core can answer 416 rather than 400 (RFC 4475 §3.1.1.9).
//! Values borrow from the message buffer; escapes are kept and can be decoded on demand.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::header::Params;
use crate::header::scan::{find_char, is_host_char, is_uri_bad, parse_u64};
use crate::message::ParseError;

/// A host: a domain name or an IP address (RFC 3261 §25.1 `host`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A hostname as written (compare case-insensitively).
    Domain(&'a str),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference (written in `[]`).
    Ipv6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parses `host[:port]`, including `[v6]:port` and the RFC 5118 §4.3 three-colon form.
    pub fn parse_hostport(s: &'a str) -> Result<(Self, Option<u16>), ParseError> {
        if let Some(inner) = s.strip_prefix('[') {
            let close = find_char(inner, b']').ok_or(ParseError::InvalidHost)?;
            let addr = parse_v6(inner.get(..close).ok_or(ParseError::InvalidHost)?)?;
            let after = inner.get(close + 1..).unwrap_or_default();
            let port = match after {
                "" => None,
                p => Some(parse_port(
                    p.strip_prefix(':').ok_or(ParseError::InvalidHost)?,
                )?),
            };
            return Ok((Host::Ipv6(addr), port));
        }
        // The port is after the last colon; any other colon makes the host invalid (an IPv6
        // address without brackets is ambiguous, RFC 5118 §4.4) and `parse` rejects it.
        let (host, port) = match s.bytes().rposition(|b| b == b':') {
            Some(i) => {
                let host = s.get(..i).unwrap_or_default();
                let port = parse_port(s.get(i + 1..).unwrap_or_default()).map_err(|e| {
                    if host.contains(':') {
                        ParseError::InvalidHost
                    } else {
                        e
                    }
                })?;
                (host, Some(port))
            }
            None => (s, None),
        };
        Ok((Self::parse(host)?, port))
    }

    /// Parses a host without port.
    pub fn parse(host: &'a str) -> Result<Self, ParseError> {
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return Ok(Host::Ipv6(parse_v6(inner)?));
        }
        if host.is_empty() {
            return Err(ParseError::InvalidHost);
        }
        if !host.bytes().all(is_host_char) {
            return Err(ParseError::InvalidHost);
        }
        Ok(Self::from_host_chars(host))
    }

    /// [`Host::parse`] for a non-empty `host` already known to consist of host characters
    /// (alphanumerics, `-`, `.`, `_`): an IPv4 address if it is a dotted quad, else a domain.
    #[inline]
    pub(crate) fn from_host_chars(host: &'a str) -> Self {
        let b = host.as_bytes();
        if b.first().is_some_and(u8::is_ascii_digit)
            && b.last().is_some_and(u8::is_ascii_digit)
            && let Some(v4) = parse_ipv4(b).or_else(|| host.parse::<Ipv4Addr>().ok())
        {
            return Host::Ipv4(v4);
        }
        Host::Domain(host)
    }

    /// True if this is an IP address rather than a name.
    pub fn is_ip(&self) -> bool {
        !matches!(self, Host::Domain(_))
    }

    /// Case-insensitive host comparison (RFC 3261 §19.1.4).
    pub fn equivalent(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
            (Host::Ipv6(a), Host::Ipv6(b)) => a == b,
            _ => false,
        }
    }
}

/// A dotted-quad IPv4 address in the form `Ipv4Addr::from_str` accepts (four decimal octets of
/// at most three digits, no leading zeros), without its general-purpose parser machinery.
/// `None` means "not in that form"; callers fall back to the std parser.
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u16 = 0;
        while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
            v = v * 10 + u16::from(d - b'0');
            i += 1;
            if i - start > 3 {
                return None;
            }
        }
        if i == start || (i - start > 1 && b.get(start) == Some(&b'0')) {
            return None;
        }
        *octet = u8::try_from(v).ok()?;
    }
    (i == b.len()).then_some(Ipv4Addr::from(octets))
}

fn parse_v6(s: &str) -> Result<Ipv6Addr, ParseError> {
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        return Ok(a);
    }
    // RFC 5118 §4.3: the RFC 3261 ABNF admits `2001:db8:::192.0.2.1`; accept it as `::`.
    if s.contains(":::")
        && let Ok(a) = s.replacen(":::", "::", 1).parse::<Ipv6Addr>()
    {
        return Ok(a);
    }
    Err(ParseError::InvalidHost)
}

fn parse_port(p: &str) -> Result<u16, ParseError> {
    parse_u64(p)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(ParseError::InvalidPort)
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Any URI that may appear in a SIP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:` (see [`SipUri::secure`]).
    Sip(SipUri<'a>),
    /// `tel:` (RFC 3966).
    Tel(TelUri<'a>),
    /// Any other scheme, kept opaque (RFC 3986 `absoluteURI`).
    Absolute {
        /// The scheme as written, without the colon.
        scheme: &'a str,
        /// Everything after the colon.
        rest: &'a str,
    },
}

impl<'a> Uri<'a> {
    /// Parses a URI (surrounding whitespace is ignored).
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        let s = crate::header::scan::trim(s);
        let colon = find_char(s, b':').ok_or(ParseError::InvalidUri)?;
        let scheme = s.get(..colon).ok_or(ParseError::InvalidUri)?;
        let rest = s.get(colon + 1..).ok_or(ParseError::InvalidUri)?;
        let mut sb = scheme.bytes();
        if !sb.next().is_some_and(|b| b.is_ascii_alphabetic())
            || !sb.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(ParseError::InvalidUri);
        }
        if rest.bytes().any(is_uri_bad) {
            return Err(ParseError::InvalidUri);
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(s, rest, false).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(s, rest, true).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse_rest(s, rest).map(Uri::Tel)
        } else if rest.is_empty() {
            Err(ParseError::InvalidUri)
        } else {
            Ok(Uri::Absolute { scheme, rest })
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The scheme as written.
    pub fn scheme(&self) -> &'a str {
        match self {
            Uri::Sip(u) => {
                if u.secure {
                    "sips"
                } else {
                    "sip"
                }
            }
            Uri::Tel(_) => "tel",
            Uri::Absolute { scheme, .. } => scheme,
        }
    }

    /// URI comparison per RFC 3261 §19.1.4 for SIP URIs; exact (case-insensitive scheme)
    /// comparison for others.
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        match (self, other) {
            (Uri::Sip(a), Uri::Sip(b)) => a.equivalent(b),
            (Uri::Tel(a), Uri::Tel(b)) => a.number == b.number,
            (
                Uri::Absolute {
                    scheme: s1,
                    rest: r1,
                },
                Uri::Absolute {
                    scheme: s2,
                    rest: r2,
                },
            ) => s1.eq_ignore_ascii_case(s2) && r1 == r2,
            _ => false,
        }
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => f.write_str(u.raw),
            Uri::Tel(u) => f.write_str(u.raw),
            Uri::Absolute { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

/// Free function form of [`Uri::equivalent`] (RFC 3261 §19.1.4).
pub fn uri_equivalent(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    a.equivalent(b)
}

/// A `sip:` / `sips:` URI (RFC 3261 §19.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, escapes kept (see [`unescape`]).
    pub user: Option<&'a str>,
    /// The password, escapes kept.
    pub password: Option<&'a str>,
    /// The host.
    pub host: Host<'a>,
    /// The port, if given.
    pub port: Option<u16>,
    /// URI parameters (`transport`, `lr`, `maddr`, `user`, ...).
    pub params: Params<'a>,
    /// The header part after `?`, escapes kept.
    pub headers: Option<&'a str>,
    raw: &'a str,
}

impl<'a> SipUri<'a> {
    /// Parses a `sip:`/`sips:` URI.
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(ParseError::InvalidUri),
        }
    }

    fn parse_rest(raw: &'a str, rest: &'a str, secure: bool) -> Result<Self, ParseError> {
        let (user, password, hp_rest) = match find_char(rest, b'@') {
            Some(at) => {
                let userinfo = rest.get(..at).ok_or(ParseError::InvalidUri)?;
                let after = rest.get(at + 1..).ok_or(ParseError::InvalidUri)?;
                let (u, p) = match find_char(userinfo, b':') {
                    Some(c) => (userinfo.get(..c), userinfo.get(c + 1..)),
                    None => (Some(userinfo), None),
                };
                if u.is_none_or(str::is_empty) {
                    return Err(ParseError::InvalidUri);
                }
                (u, p, after)
            }
            None => (None, None, rest),
        };
        let hp_end = hp_rest
            .bytes()
            .position(|b| b == b';' || b == b'?')
            .unwrap_or(hp_rest.len());
        let hostport = hp_rest.get(..hp_end).ok_or(ParseError::InvalidUri)?;
        let (host, port) = Host::parse_hostport(hostport)?;
        let tail = hp_rest.get(hp_end..).unwrap_or_default();
        let (params, headers) = match find_char(tail, b'?') {
            Some(q) => (tail.get(..q).unwrap_or_default(), tail.get(q + 1..)),
            None => (tail, None),
        };
        let params = Params::new(params.strip_prefix(';').unwrap_or(params));
        if !params.is_well_formed() {
            return Err(ParseError::InvalidUri);
        }
        Ok(Self {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
            raw,
        })
    }

    /// The URI text exactly as it appeared.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The user part with `%XX` escapes decoded (may contain any byte, including NUL).
    pub fn user_unescaped(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(unescape)
    }

    /// The address-of-record form used as a registrar key (RFC 3261 §10.3 step 5):
    /// `sip:user@host` (or `sips:`), user unescaped where printable, host lower-cased, no port,
    /// parameters or headers.
    pub fn address_of_record(&self) -> String {
        let mut out = String::from(if self.secure { "sips:" } else { "sip:" });
        if let Some(user) = self.user {
            match std::str::from_utf8(&unescape(user)) {
                Ok(u)
                    if u.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"%@:;?<>\"".contains(&b)) =>
                {
                    out.push_str(u);
                }
                _ => out.push_str(user),
            }
            out.push('@');
        }
        match self.host {
            Host::Domain(d) => out.push_str(&d.to_ascii_lowercase()),
            h => out.push_str(&h.to_string()),
        }
        out
    }

    /// The `transport` parameter.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// True if the `lr` parameter is present (loose routing, RFC 3261 §19.1.1).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// RFC 3261 §19.1.4 comparison: scheme, user (escapes decoded, case-sensitive), password,
    /// host (case-insensitive), port, the `user`/`ttl`/`method`/`maddr`/`transport` parameters
    /// when present in either, other parameters when present in both, and headers.
    pub fn equivalent(&self, other: &SipUri<'_>) -> bool {
        if self.secure != other.secure
            || self.user.map(unescape) != other.user.map(unescape)
            || self.password.map(unescape) != other.password.map(unescape)
            || !self.host.equivalent(&other.host)
            || self.port != other.port
        {
            return false;
        }
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            let a = self.params.get(name).map(|v| v.map(unescape));
            let b = other.params.get(name).map(|v| v.map(unescape));
            let same = match (&a, &b) {
                (Some(Some(x)), Some(Some(y))) => eq_ci(x, y),
                (None, None) | (Some(None), Some(None)) => true,
                _ => false,
            };
            if !same {
                return false;
            }
        }
        for (n, v) in self.params.iter() {
            if let Some(w) = other.params.get(n) {
                let same = match (v, w) {
                    (Some(x), Some(y)) => eq_ci(&unescape(x), &unescape(y)),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    return false;
                }
            }
        }
        let hdrs = |h: Option<&str>| {
            let mut v: Vec<_> = h
                .unwrap_or_default()
                .split('&')
                .filter(|s| !s.is_empty())
                .map(|s| unescape(s).into_owned())
                .collect();
            v.sort();
            v
        };
        hdrs(self.headers) == hdrs(other.headers)
    }
}

fn eq_ci(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A `tel:` URI (RFC 3966).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The telephone-subscriber number (global `+...` or local).
    pub number: &'a str,
    /// Parameters (`phone-context`, `ext`, ...).
    pub params: Params<'a>,
    raw: &'a str,
}

impl<'a> TelUri<'a> {
    fn parse_rest(raw: &'a str, rest: &'a str) -> Result<Self, ParseError> {
        let (number, params) = match find_char(rest, b';') {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i + 1..).unwrap_or_default(),
            ),
            None => (rest, ""),
        };
        if number.is_empty() {
            return Err(ParseError::InvalidUri);
        }
        Ok(Self {
            number,
            params: Params::new(params),
            raw,
        })
    }

    /// The URI text exactly as it appeared.
    pub fn raw(&self) -> &'a str {
        self.raw
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits is kept literally.
pub fn unescape(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_fast_path_agrees_with_std() {
        for s in [
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "1.2.3.4.",
            "1234.1.1.1",
            "1.2.3.04",
            "10.0.0.10",
            "9",
        ] {
            assert_eq!(parse_ipv4(s.as_bytes()), s.parse().ok(), "{s}");
        }
        assert_eq!(
            Host::parse("10.0.0.1"),
            Ok(Host::Ipv4([10, 0, 0, 1].into()))
        );
        assert_eq!(Host::parse("10.0.0.1a"), Ok(Host::Domain("10.0.0.1a")));
        assert_eq!(Host::parse("1.2.3.4.5"), Ok(Host::Domain("1.2.3.4.5")));
    }

    #[test]
    fn sip_uri_full() {
        let u =
            SipUri::parse("sips:alice:secret@Atlanta.com:5061;transport=tcp;lr?subject=x").unwrap();
        assert!(u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::Domain("Atlanta.com"));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(u.headers, Some("subject=x"));
    }

    #[test]
    fn aor() {
        let u = SipUri::parse("sip:%61lice@Atlanta.COM:5060;transport=tcp?x=y").unwrap();
        assert_eq!(u.address_of_record(), "sip:alice@atlanta.com");
        let u = SipUri::parse("sips:[2001:db8::1]").unwrap();
        assert_eq!(u.address_of_record(), "sips:[2001:db8::1]");
        let u = SipUri::parse("sip:a%40b@x").unwrap();
        assert_eq!(u.address_of_record(), "sip:a%40b@x");
    }

    #[test]
    fn ipv6_forms() {
        let u = SipUri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.host.to_string(), "[2001:db8::10]");
        let u = SipUri::parse("sip:user@[2001:db8:::192.0.2.1]").unwrap();
        assert!(matches!(u.host, Host::Ipv6(_)));
        assert_eq!(
            SipUri::parse("sip:2001:db8::10"),
            Err(ParseError::InvalidHost)
        );
        let u = SipUri::parse("sip:[::ffff:192.0.2.10]:19823").unwrap();
        assert_eq!(u.port, Some(19823));
    }

    #[test]
    fn escapes() {
        let u = SipUri::parse("sip:null-%00-null@example.com").unwrap();
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"null-\0-null");
        let a = Uri::parse("sip:%61lice@atlanta.com;transport=TCP").unwrap();
        let b = Uri::parse("sip:alice@AtLanTa.CoM;Transport=tcp").unwrap();
        assert!(uri_equivalent(&a, &b));
        let c = Uri::parse("sip:alice@atlanta.com").unwrap();
        assert!(!uri_equivalent(&a, &c));
    }

    #[test]
    fn other_schemes() {
        assert_eq!(
            Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap(),
            Uri::Absolute {
                scheme: "nobodyKnowsThisScheme",
                rest: "totallyopaquecontent"
            }
        );
        assert!(matches!(
            Uri::parse("isbn:2983792873"),
            Ok(Uri::Absolute { .. })
        ));
        let t = Uri::parse("tel:+1-201-555-0123;ext=1").unwrap();
        let Uri::Tel(t) = t else { panic!() };
        assert_eq!(t.number, "+1-201-555-0123");
        assert_eq!(t.params.get("ext"), Some(Some("1")));
        assert!(Uri::parse("<sip:a@b>").is_err());
        assert!(Uri::parse("nocolon").is_err());
    }
}
