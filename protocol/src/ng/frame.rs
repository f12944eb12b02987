//! The ng framing: `<cookie> <bencoded dictionary>` in one UDP datagram.
//!
//! The cookie is an opaque token chosen by the client, unique among its outstanding requests;
//! rtpengine echoes it in the reply, which is how replies are matched and retransmissions are
//! recognised. Generating cookies is the caller's business (this crate has no RNG): pass them in.

use bytes::Bytes;

use super::bencode::{self, DecodeError, Dict, Value, encode_dict};

/// Longest cookie accepted (rtpengine's own are well under this).
pub const MAX_COOKIE_LEN: usize = 64;

/// A request cookie: 1 to [`MAX_COOKIE_LEN`] printable ASCII bytes without spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cookie(Bytes);

/// Why a cookie or a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The cookie is empty, too long, or holds a space or a non-printable byte.
    #[error("invalid ng cookie")]
    BadCookie,
    /// No space separates the cookie from the dictionary.
    #[error("ng datagram has no cookie separator")]
    NoSeparator,
    /// The payload is not valid bencode.
    #[error("ng payload: {0}")]
    Bencode(#[from] DecodeError),
    /// The payload is bencode but not a dictionary.
    #[error("ng payload is not a dictionary")]
    NotADict,
}

impl Cookie {
    /// Checks and wraps a cookie.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, FrameError> {
        let bytes = bytes.into();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_COOKIE_LEN
            && bytes.iter().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(bytes))
        } else {
            Err(FrameError::BadCookie)
        }
    }

    /// A cookie from a per-client `prefix` and a sequence number: `<prefix as 8 hex>_<n>`.
    /// Always valid; the caller supplies the randomness of the prefix.
    pub fn numbered(prefix: u32, n: u64) -> Self {
        Self(Bytes::from(format!("{prefix:08x}_{n}")))
    }

    /// The cookie's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Display for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// Builds one datagram: the cookie, a space, the encoded dictionary.
pub fn encode_datagram(cookie: &Cookie, dict: &Dict) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.0.len() + 64);
    out.extend_from_slice(&cookie.0);
    out.push(b' ');
    encode_dict(dict, &mut out);
    out
}

/// Splits a datagram into its cookie and dictionary.
pub fn decode_datagram(datagram: &Bytes) -> Result<(Cookie, Dict), FrameError> {
    let space = datagram
        .iter()
        .position(|b| *b == b' ')
        .ok_or(FrameError::NoSeparator)?;
    let cookie = Cookie::new(datagram.slice(..space))?;
    let payload = datagram.slice(space + 1..);
    match bencode::decode(&payload)? {
        Value::Dict(d) => Ok((cookie, d)),
        _ => Err(FrameError::NotADict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let cookie = Cookie::new(Bytes::from_static(b"5323_1")).unwrap();
        let mut d = Dict::new();
        d.insert(Bytes::from_static(b"command"), Value::str("ping"));
        let wire = encode_datagram(&cookie, &d);
        assert_eq!(wire, b"5323_1 d7:command4:pinge");
        assert_eq!(decode_datagram(&Bytes::from(wire)), Ok((cookie, d)));
    }

    #[test]
    fn numbered_cookies_are_valid() {
        let c = Cookie::numbered(0xdead_beef, u64::MAX);
        assert_eq!(c.to_string(), "deadbeef_18446744073709551615");
        assert_eq!(Cookie::new(Bytes::copy_from_slice(c.as_bytes())), Ok(c));
    }

    #[test]
    fn refuses_bad_frames() {
        assert_eq!(Cookie::new(Bytes::new()), Err(FrameError::BadCookie));
        assert_eq!(
            Cookie::new(Bytes::from_static(b"a\tb")),
            Err(FrameError::BadCookie)
        );
        assert_eq!(
            decode_datagram(&Bytes::from_static(b"abc")),
            Err(FrameError::NoSeparator)
        );
        assert_eq!(
            decode_datagram(&Bytes::from_static(b" d1:ai1ee")),
            Err(FrameError::BadCookie)
        );
        assert_eq!(
            decode_datagram(&Bytes::from_static(b"c li1ee")),
            Err(FrameError::NotADict)
        );
        assert!(matches!(
            decode_datagram(&Bytes::from_static(b"c d1:a")),
            Err(FrameError::Bencode(_))
        ));
    }
}
