//! The Via header (RFC 3261 §20.42, §18.2.1; `rport` RFC 3581; IPv6 per RFC 5118).

use std::fmt;
use std::net::IpAddr;

use super::Params;
use super::params::scan_params;
use super::scan::{eq_letters, find_char, is_host_char, is_lws, is_token_char, parse_u64, trim};
use crate::header::HeaderName;
use crate::message::ParseError;
use crate::uri::Host;

/// One Via value: `SIP/2.0/UDP host:port;branch=...;received=...;rport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// The transport token as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, unknown ones too).
    pub transport: &'a str,
    /// The sent-by host.
    pub host: Host<'a>,
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// The `branch` parameter (RFC 3261 §8.1.1.7).
    pub branch: Option<&'a str>,
    /// The `received` parameter (RFC 3261 §18.2.1), brackets kept for IPv6 (RFC 5118 §4.5).
    pub received: Option<&'a str>,
    /// `rport`: absent, present without value (`Some(None)`), or filled in (RFC 3581).
    pub rport: Option<Option<u16>>,
    /// The `maddr` parameter.
    pub maddr: Option<&'a str>,
    /// The `ttl` parameter.
    pub ttl: Option<u8>,
    /// All parameters, including the ones above.
    pub params: Params<'a>,
}

/// The sent-by part of a Via (host and optional port), as used for transaction matching
/// (RFC 3261 §17.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SentBy<'a> {
    /// The host.
    pub host: Host<'a>,
    /// The port, if written.
    pub port: Option<u16>,
}

impl fmt::Display for SentBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

fn malformed() -> ParseError {
    ParseError::Malformed(HeaderName::Via)
}

/// `SIP/2.0/` in any case, compared as one word: the letters are folded to lower case by
/// setting bit 0x20 in their three bytes only, so the comparison stays exact elsewhere.
fn is_sip_2_0_slash(p: &[u8]) -> bool {
    const FOLD: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0, 0, 0, 0, 0]);
    const WANT: u64 = u64::from_le_bytes(*b"sip/2.0/");
    <[u8; 8]>::try_from(p).is_ok_and(|w| u64::from_le_bytes(w) | FOLD == WANT)
}

/// The common sent-by spelling, `host[:port]` with a domain or IPv4 host, scanned in one pass
/// from `s[i..]` up to the `;` that starts the parameters (or the end). Returns the host, the
/// port and the offset of that `;`; `None` for anything else (IPv6, odd spacing, errors), which
/// the general path then handles, so both give the same result.
fn sent_by_fast(s: &str, i: usize) -> Option<(Host<'_>, Option<u16>, Option<usize>)> {
    let b = s.as_bytes();
    let skip_lws = |mut j: usize| {
        while b.get(j).is_some_and(|c| is_lws(*c)) {
            j += 1;
        }
        j
    };
    let hs = skip_lws(i);
    let mut j = hs;
    while b.get(j).is_some_and(|c| is_host_char(*c)) {
        j += 1;
    }
    let host = s.get(hs..j).filter(|h| !h.is_empty())?;
    let mut port = None;
    if b.get(j) == Some(&b':') {
        j += 1;
        let ps = j;
        let mut v: u32 = 0;
        while let Some(d) = b.get(j).filter(|c| c.is_ascii_digit()) {
            v = v * 10 + u32::from(d - b'0');
            j += 1;
            if j - ps > 5 {
                return None;
            }
        }
        if j == ps {
            return None;
        }
        port = Some(u16::try_from(v).ok()?);
    }
    let j = skip_lws(j);
    let semi = match b.get(j) {
        None => None,
        Some(b';') => Some(j),
        Some(_) => return None,
    };
    Some((Host::from_host_chars(host), port, semi))
}

impl<'a> Via<'a> {
    /// Parses one Via value (one element of a comma-separated Via header). LWS, including
    /// folded lines, is allowed around the `/` separators.
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        let b = s.as_bytes();
        let mut i = 0;
        let skip = |i: &mut usize| {
            while b.get(*i).is_some_and(|c| is_lws(*c)) {
                *i += 1;
            }
        };
        let token = |i: &mut usize| -> Result<&'a str, ParseError> {
            let start = *i;
            while b.get(*i).is_some_and(|c| is_token_char(*c)) {
                *i += 1;
            }
            match s.get(start..*i) {
                Some(t) if !t.is_empty() => Ok(t),
                _ => Err(malformed()),
            }
        };
        let slash = |i: &mut usize| -> Result<(), ParseError> {
            skip(i);
            if b.get(*i) != Some(&b'/') {
                return Err(malformed());
            }
            *i += 1;
            skip(i);
            Ok(())
        };
        skip(&mut i);
        let transport = if b.get(i..i + 8).is_some_and(is_sip_2_0_slash) {
            // Common compact spelling.
            i += 8;
            token(&mut i)?
        } else {
            let name = token(&mut i)?;
            slash(&mut i)?;
            let version = token(&mut i)?;
            slash(&mut i)?;
            let transport = token(&mut i)?;
            if !name.eq_ignore_ascii_case("SIP") {
                return Err(malformed());
            }
            if version != "2.0" {
                return Err(ParseError::UnsupportedVersion);
            }
            transport
        };
        let (host, port, semi) = match sent_by_fast(s, i) {
            Some(v) => v,
            None => {
                let rest = s.get(i..).ok_or_else(malformed)?;
                let semi = find_char(rest, b';');
                let sent_by = match semi {
                    Some(p) => rest.get(..p).unwrap_or_default(),
                    None => rest,
                };
                let sent_by = trim(sent_by);
                if sent_by.bytes().any(is_lws) {
                    return Err(malformed());
                }
                let (host, port) = Host::parse_hostport(sent_by).map_err(|_| malformed())?;
                (host, port, semi.map(|p| i + p))
            }
        };
        let params = Params::new(semi.and_then(|p| s.get(p + 1..)).unwrap_or_default());
        if params.raw().is_empty() && semi.is_some() {
            return Err(malformed());
        }
        let mut via = Self {
            transport,
            host,
            port,
            branch: None,
            received: None,
            rport: None,
            maddr: None,
            ttl: None,
            params,
        };
        let mut bad = false;
        let scanned = scan_params(params.raw(), |n, v| {
            // Dispatch on length first: most parameters are compared only once.
            let ok = match n.len() {
                6 if eq_letters(n, b"branch") => v.map(|v| via.branch = Some(v)),
                8 if eq_letters(n, b"received") => v.map(|v| via.received = Some(v)),
                5 if eq_letters(n, b"rport") => match v {
                    None => {
                        via.rport = Some(None);
                        Some(())
                    }
                    Some(p) => parse_u64(p)
                        .and_then(|p| u16::try_from(p).ok())
                        .map(|p| via.rport = Some(Some(p))),
                },
                5 if eq_letters(n, b"maddr") => v.map(|v| via.maddr = Some(v)),
                3 if eq_letters(n, b"ttl") => v
                    .and_then(parse_u64)
                    .and_then(|t| u8::try_from(t).ok())
                    .map(|t| via.ttl = Some(t)),
                _ => Some(()),
            };
            bad = ok.is_none();
            !bad
        });
        if bad || (semi.is_some() && scanned.is_err()) {
            return Err(malformed());
        }
        Ok(via)
    }

    /// The sent-by host and port.
    pub fn sent_by(&self) -> SentBy<'a> {
        SentBy {
            host: self.host,
            port: self.port,
        }
    }

    /// The `received` parameter as an IP address (brackets around IPv6 accepted).
    pub fn received_ip(&self) -> Option<IpAddr> {
        let r = self.received?;
        let r = r
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(r);
        r.parse().ok()
    }

    /// A parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    /// True if the branch starts with the RFC 3261 magic cookie `z9hG4bK` (§8.1.1.7).
    pub fn has_magic_cookie(&self) -> bool {
        self.branch
            .is_some_and(crate::message::is_magic_cookie_branch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple() {
        let v =
            Via::parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Domain("pc33.atlanta.com"));
        assert_eq!(v.port, Some(5066));
        assert_eq!(v.branch, Some("z9hG4bK776asdhds"));
        assert_eq!(v.rport, Some(None));
        assert!(v.has_magic_cookie());
        assert_eq!(v.sent_by().to_string(), "pc33.atlanta.com:5066");
    }

    #[test]
    fn folded_and_spaced() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Ipv4("192.0.2.2".parse().unwrap()));
        let v = Via::parse(
            "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.branch, Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn ipv6_and_received() {
        let v = Via::parse(
            "SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];rport=7;ttl=16;maddr=x",
        )
        .unwrap();
        assert_eq!(v.host, Host::Ipv6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.received_ip(), Some("2001:db8::9:255".parse().unwrap()));
        assert_eq!(v.rport, Some(Some(7)));
        assert_eq!(v.ttl, Some(16));
        assert_eq!(v.maddr, Some("x"));
    }

    #[test]
    fn protocol_prefix() {
        for p in [b"SIP/2.0/", b"sip/2.0/", b"Sip/2.0/"] {
            assert!(is_sip_2_0_slash(p));
        }
        for p in [
            b"SIP/2.0 ",
            b"SIP\x0f2.0/",
            b"SIP/2\x0e0/",
            b"S\tP/2.0/",
            b"SIP/2.1/",
        ] {
            assert!(!is_sip_2_0_slash(p));
        }
        assert!(!is_sip_2_0_slash(b"SIP/2.0"));
    }

    #[test]
    fn sent_by_forms() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1:5060 ;branch=z9hG4bK1").unwrap();
        assert_eq!(v.host, Host::Ipv4([192, 0, 2, 1].into()));
        assert_eq!(v.port, Some(5060));
        let v = Via::parse("SIP/2.0/TCP a.example.com").unwrap();
        assert_eq!(
            (v.host, v.port, v.branch),
            (Host::Domain("a.example.com"), None, None)
        );
        assert!(Via::parse("SIP/2.0/UDP a.example.com:65536").is_err());
        assert!(Via::parse("SIP/2.0/UDP a.example.com:").is_err());
        assert_eq!(
            Via::parse("SIP/2.0/UDP a.example.com:050600;branch=x")
                .unwrap()
                .port,
            Some(50600)
        );
        assert!(Via::parse("SIP/2.0/UDP a.example.com;").is_err());
        assert!(Via::parse("SIP/2.0/UDP a b;branch=x").is_err());
        assert_eq!(
            Via::parse("SIP/2.0/UDP a.example.com:05060").unwrap().port,
            Some(5060)
        );
    }

    #[test]
    fn errors() {
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse(";").is_err());
        assert!(Via::parse("").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert_eq!(
            Via::parse("SIP/7.0/UDP c.example.com"),
            Err(ParseError::UnsupportedVersion)
        );
        assert!(Via::parse("SIP/2.0/UDP a.com;ttl=300").is_err());
    }
}
