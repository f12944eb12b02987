//! Contact URI equivalence: the identity of a binding (RFC 3261 §10.3 step 8, §19.1.4).
//!
//! The glue hands us the raw URI text of each Contact; [`contact_uris_equivalent`] compares two
//! such strings without a full URI parser. What it covers, for `sip:` and `sips:` URIs:
//! - the scheme is compared case-insensitively (`sip` never equals `sips`);
//! - user and password are compared case-sensitively, after `%XX` escapes of unreserved
//!   characters are decoded (so `%61lice` equals `alice`);
//! - the host is compared case-insensitively; ports must both be absent or both equal (an
//!   explicit `:5060` does not equal no port);
//! - URI parameters: names are case-insensitive, values are compared case-insensitively after
//!   escape normalisation; a parameter present in both must match; `user`, `ttl`, `method` and
//!   `maddr` present in only one URI make them different; any other parameter present in only
//!   one (e.g. `transport`, `ob`, `lr`) is ignored, as §19.1.4 says;
//! - URI headers (`?a=b`) must all be present in both and equal (order-insensitive, names
//!   case-insensitive, values case-sensitive).
//!
//! Not covered: IPv6 address textual variants (`::1` vs `0:0::1`), and a `?` inside the user
//! part (the first `@` before any `?` starts the host). Other schemes (`tel:`, …) are compared
//! as lowercased scheme plus exact remaining bytes. Unparseable URIs fall back to byte equality.

use crate::registrar::aor::{normalise_escapes, split_host_port};

/// Whether two Contact URIs (the text inside `<>`) denote the same binding per RFC 3261 §19.1.4.
pub fn contact_uris_equivalent(a: &[u8], b: &[u8]) -> bool {
    match (ParsedUri::parse(a), ParsedUri::parse(b)) {
        (Some(a), Some(b)) => a.equivalent(&b),
        _ => a.trim_ascii() == b.trim_ascii(),
    }
}

/// Pieces of a URI, split on the raw text and normalised for comparison.
struct ParsedUri {
    scheme: Vec<u8>,
    /// `user[:password]` after escape normalisation, for SIP(S) URIs; the whole remainder for
    /// other schemes.
    userinfo: Option<Vec<u8>>,
    host: Vec<u8>,
    port: Option<u16>,
    /// (lowercased name, lowercased normalised value).
    params: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// (lowercased name, normalised value), sorted.
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parameters which, when present in only one URI, make the URIs differ (§19.1.4).
const MUST_MATCH_PARAMS: [&[u8]; 4] = [b"user", b"ttl", b"method", b"maddr"];

impl ParsedUri {
    fn parse(uri: &[u8]) -> Option<Self> {
        let uri = uri.trim_ascii();
        let colon = uri.iter().position(|&b| b == b':')?;
        let scheme = uri.get(..colon)?.to_ascii_lowercase();
        let rest = uri.get(colon + 1..)?;
        if scheme != b"sip" && scheme != b"sips" {
            return Some(Self {
                scheme,
                userinfo: Some(rest.to_vec()),
                host: Vec::new(),
                port: None,
                params: Vec::new(),
                headers: Vec::new(),
            });
        }
        let (userinfo, after) = split_userinfo(rest);
        let (before_headers, headers) = match after.iter().position(|&b| b == b'?') {
            Some(q) => (after.get(..q)?, after.get(q + 1..)),
            None => (after, None),
        };
        let mut parts = before_headers.split(|&b| b == b';');
        let hostport = parts.next()?;
        let (host, port) = split_host_port(hostport).ok()?;
        if host.is_empty() {
            return None;
        }
        let userinfo = match userinfo {
            Some(u) => {
                let mut out = Vec::with_capacity(u.len());
                normalise_escapes(u, &mut out).ok()?;
                Some(out)
            }
            None => None,
        };
        let mut params = Vec::new();
        for p in parts.filter(|p| !p.is_empty()) {
            let (name, value) = split_pair(p);
            let value = match value {
                Some(v) => {
                    let mut out = Vec::with_capacity(v.len());
                    normalise_escapes(v, &mut out).ok()?;
                    out.make_ascii_lowercase();
                    Some(out)
                }
                None => None,
            };
            params.push((name.to_ascii_lowercase(), value));
        }
        let mut header_list = Vec::new();
        for h in headers.into_iter().flat_map(|h| h.split(|&b| b == b'&')) {
            if h.is_empty() {
                continue;
            }
            let (name, value) = split_pair(h);
            let mut out = Vec::new();
            normalise_escapes(value.unwrap_or_default(), &mut out).ok()?;
            header_list.push((name.to_ascii_lowercase(), out));
        }
        header_list.sort();
        Some(Self {
            scheme,
            userinfo,
            host: host.to_ascii_lowercase(),
            port,
            params,
            headers: header_list,
        })
    }

    fn param(&self, name: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn equivalent(&self, other: &Self) -> bool {
        if self.scheme != other.scheme
            || self.userinfo != other.userinfo
            || self.host != other.host
            || self.port != other.port
            || self.headers != other.headers
        {
            return false;
        }
        let one_way = |a: &Self, b: &Self| {
            a.params.iter().all(|(name, value)| match b.param(name) {
                Some(v) => v == value,
                None => !MUST_MATCH_PARAMS.contains(&name.as_slice()),
            })
        };
        one_way(self, other) && one_way(other, self)
    }
}

/// Splits `userinfo@rest`: the userinfo is everything before the first `@` that comes before
/// any `?` (headers may contain `@`).
pub(crate) fn split_userinfo(rest: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let at = rest.iter().position(|&b| b == b'@');
    let question = rest.iter().position(|&b| b == b'?');
    match (at, question) {
        (Some(at), q) if q.is_none_or(|q| at < q) => {
            (rest.get(..at), rest.get(at + 1..).unwrap_or_default())
        }
        _ => (None, rest),
    }
}

fn split_pair(p: &[u8]) -> (&[u8], Option<&[u8]>) {
    match p.iter().position(|&b| b == b'=') {
        Some(eq) => (p.get(..eq).unwrap_or_default(), p.get(eq + 1..)),
        None => (p, None),
    }
}

#[cfg(test)]
mod tests {
    use super::contact_uris_equivalent as eq;

    #[test]
    fn rfc3261_equivalent_examples() {
        assert!(eq(
            b"sip:%61lice@atlanta.com;transport=TCP",
            b"sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            b"sip:carol@chicago.com",
            b"sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            b"sip:carol@chicago.com;security=on",
            b"sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            b"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            b"sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            b"sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            b"sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
        assert!(eq(
            b"sip:alice@10.0.0.1:5060;ob",
            b"sip:alice@10.0.0.1:5060"
        ));
    }

    #[test]
    fn rfc3261_non_equivalent_examples() {
        assert!(!eq(
            b"SIP:ALICE@AtLanTa.CoM;Transport=udp",
            b"sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq(b"sip:bob@biloxi.com", b"sip:bob@biloxi.com:5060"));
        assert!(!eq(
            b"sip:bob@biloxi.com",
            b"sip:bob@biloxi.com;transport=udp;user=phone"
        ));
        assert!(!eq(
            b"sip:bob@biloxi.com;transport=udp",
            b"sip:bob@biloxi.com;transport=tcp"
        ));
        assert!(!eq(
            b"sip:carol@chicago.com",
            b"sip:carol@chicago.com?Subject=next%20meeting"
        ));
        assert!(!eq(b"sip:bob@phone21.boxesbybob.com", b"sip:bob@192.0.2.4"));
        assert!(!eq(b"sip:bob@h", b"sips:bob@h"));
        assert!(!eq(b"sip:bob@h", b"sip:bob@h;maddr=10.0.0.1"));
        assert!(!eq(b"sip:bob:pw1@h", b"sip:bob:pw2@h"));
    }

    #[test]
    fn ipv6_and_other_schemes() {
        assert!(eq(b"sip:a@[2001:DB8::1]:5060", b"sip:a@[2001:db8::1]:5060"));
        assert!(!eq(b"sip:a@[2001:db8::1]", b"sip:a@[2001:db8::1]:5060"));
        assert!(eq(b"TEL:+1234", b"tel:+1234"));
        assert!(!eq(b"tel:+1234", b"tel:+1235"));
    }
}
