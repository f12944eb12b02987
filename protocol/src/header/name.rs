//! Header names: the well-known ones as an enum, compact forms (RFC 3261 §7.3.3 and the
//! IANA registry) folded onto their long form, everything else kept as raw bytes.

use bytes::Bytes;
use std::fmt;

macro_rules! header_names {
    (@compact) => { None };
    (@compact $c:literal) => { Some(&$c[..]) };
    ($( $variant:ident => $canon:literal, $lower:literal $(, $compact:literal)? ;)*) => {
        /// A SIP header field name. Comparison is case-insensitive and compact forms are
        /// normalised to the long form when parsed ([`HeaderName::from_bytes`]).
        #[derive(Clone, Debug, Eq)]
        #[non_exhaustive]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $canon, "`")]
                $variant,
            )*
            /// Any other header; compared case-insensitively on the raw name bytes.
            Other(Bytes),
        }

        impl HeaderName {
            /// The canonical spelling of the name (the raw bytes for [`HeaderName::Other`]).
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $canon, )*
                    Self::Other(b) => std::str::from_utf8(b).unwrap_or("?"),
                }
            }

        }

        impl HeaderName {
            /// The lower-case long name and compact form; `None` for [`HeaderName::Other`].
            pub(crate) fn lower_forms(&self) -> Option<(&'static [u8], Option<&'static [u8]>)> {
                match self {
                    $(
                        Self::$variant => Some((&$lower[..], header_names!(@compact $($compact)?))),
                    )*
                    Self::Other(_) => None,
                }
            }
        }

        /// Every known lower-case name and compact form with its variant.
        const KNOWN: &[(&[u8], HeaderName)] = &[
            $(
                ($lower, HeaderName::$variant),
                $( ($compact, HeaderName::$variant), )?
            )*
        ];
    };
}

/// Multiplier of the name hash; chosen so that every entry of `KNOWN` gets its own slot
/// (checked at compile time by `build_slots`).
const HASH_K: u64 = 0x7ce6_f4d5_4557_5e1d;

/// Case-insensitive hash of a header name into 0..=255 from its length and its first,
/// middle and last bytes (no per-byte loop).
const fn name_hash(name: &[u8]) -> usize {
    let n = name.len();
    if n == 0 {
        return 0;
    }
    let x = (name[0].to_ascii_lowercase() as u64)
        | ((name[n - 1].to_ascii_lowercase() as u64) << 8)
        | ((name[n / 2].to_ascii_lowercase() as u64) << 16)
        | ((n as u64 & 0xff) << 24);
    (x.wrapping_mul(HASH_K) >> 56) as usize
}

const fn build_slots() -> [u8; 256] {
    let mut slots = [u8::MAX; 256];
    let mut i = 0;
    while i < KNOWN.len() {
        let h = name_hash(KNOWN[i].0);
        assert!(slots[h] == u8::MAX, "header name hash collision");
        slots[h] = i as u8;
        i += 1;
    }
    slots
}

/// Hash slot -> index into `KNOWN` (`u8::MAX` = empty).
static SLOTS: [u8; 256] = build_slots();

header_names! {
    Via => "Via", b"via", b"v";
    CallId => "Call-ID", b"call-id", b"i";
    CSeq => "CSeq", b"cseq";
    From => "From", b"from", b"f";
    To => "To", b"to", b"t";
    Contact => "Contact", b"contact", b"m";
    MaxForwards => "Max-Forwards", b"max-forwards";
    Route => "Route", b"route";
    RecordRoute => "Record-Route", b"record-route";
    Expires => "Expires", b"expires";
    ContentLength => "Content-Length", b"content-length", b"l";
    ContentType => "Content-Type", b"content-type", b"c";
    ContentEncoding => "Content-Encoding", b"content-encoding", b"e";
    Require => "Require", b"require";
    ProxyRequire => "Proxy-Require", b"proxy-require";
    Supported => "Supported", b"supported", b"k";
    Unsupported => "Unsupported", b"unsupported";
    Path => "Path", b"path";
    Allow => "Allow", b"allow";
    MinExpires => "Min-Expires", b"min-expires";
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate";
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate";
    Authorization => "Authorization", b"authorization";
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization";
    UserAgent => "User-Agent", b"user-agent";
    Server => "Server", b"server";
    Date => "Date", b"date";
    Timestamp => "Timestamp", b"timestamp";
    RetryAfter => "Retry-After", b"retry-after";
    Subject => "Subject", b"subject", b"s";
    Event => "Event", b"event", b"o";
    AllowEvents => "Allow-Events", b"allow-events", b"u";
    ReferTo => "Refer-To", b"refer-to", b"r";
    ReferredBy => "Referred-By", b"referred-by", b"b";
    SessionExpires => "Session-Expires", b"session-expires", b"x";
    Identity => "Identity", b"identity", b"y";
    AcceptContact => "Accept-Contact", b"accept-contact", b"a";
    RejectContact => "Reject-Contact", b"reject-contact", b"j";
    RequestDisposition => "Request-Disposition", b"request-disposition", b"d";
    Accept => "Accept", b"accept";
    AcceptEncoding => "Accept-Encoding", b"accept-encoding";
    AcceptLanguage => "Accept-Language", b"accept-language";
    ContentDisposition => "Content-Disposition", b"content-disposition";
    Warning => "Warning", b"warning";
    Organization => "Organization", b"organization";
    Priority => "Priority", b"priority";
    InReplyTo => "In-Reply-To", b"in-reply-to";
    ReplyTo => "Reply-To", b"reply-to";
    AuthenticationInfo => "Authentication-Info", b"authentication-info";
    ServiceRoute => "Service-Route", b"service-route";
    SubscriptionState => "Subscription-State", b"subscription-state";
    RSeq => "RSeq", b"rseq";
    RAck => "RAck", b"rack";
    MinSE => "Min-SE", b"min-se";
}

impl HeaderName {
    /// Parses a header name as written on the wire (any case, compact forms allowed).
    /// Unknown names become [`HeaderName::Other`] holding a copy of the bytes.
    pub fn from_bytes(name: &[u8]) -> Self {
        match Self::classify(name) {
            Some(h) => h,
            None => Self::Other(Bytes::copy_from_slice(name)),
        }
    }

    /// Like [`HeaderName::from_bytes`] but returns `None` for unknown names (no allocation).
    pub fn classify(name: &[u8]) -> Option<Self> {
        if name.is_empty() || name.len() > 24 {
            return None;
        }
        let idx = *SLOTS.get(name_hash(name))?;
        let (known, h) = KNOWN.get(usize::from(idx))?;
        eq_lowercase(known, name).then(|| h.clone())
    }

    /// True for headers that RFC 3261 §7.3 allows only once per message.
    pub fn is_single_valued(&self) -> bool {
        matches!(
            self,
            Self::CallId
                | Self::CSeq
                | Self::From
                | Self::To
                | Self::MaxForwards
                | Self::ContentLength
                | Self::ContentType
                | Self::Expires
        )
    }

    /// Whether the raw wire name `raw` denotes this header.
    pub fn matches_raw(&self, raw: &[u8]) -> bool {
        self.matcher().matches(raw)
    }

    /// A precomputed matcher for scanning many raw names.
    pub(crate) fn matcher(&self) -> NameMatcher<'_> {
        match (self.lower_forms(), self) {
            (Some((long, compact)), _) => NameMatcher::Known { long, compact },
            (None, Self::Other(b)) => NameMatcher::Other(b),
            (None, _) => NameMatcher::Other(b""),
        }
    }
}

/// Matches raw wire names against one [`HeaderName`] without classifying them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NameMatcher<'a> {
    Known {
        long: &'static [u8],
        compact: Option<&'static [u8]>,
    },
    Other(&'a [u8]),
}

impl NameMatcher<'_> {
    /// True if `raw` (as written on the wire) is this header.
    pub(crate) fn matches(&self, raw: &[u8]) -> bool {
        match self {
            Self::Known { long, compact } => {
                eq_lowercase(long, raw) || compact.is_some_and(|c| eq_lowercase(c, raw))
            }
            Self::Other(b) => b.eq_ignore_ascii_case(raw),
        }
    }
}

/// Compares a lower-case known name made of `[a-z0-9-]` (all of which have bit 0x20 set)
/// with `name` in any case, eight bytes at a time.
pub(crate) fn eq_lowercase(known: &[u8], name: &[u8]) -> bool {
    if known.len() != name.len() {
        return false;
    }
    const MASK: u64 = 0x2020_2020_2020_2020;
    let mut k = known.chunks_exact(8);
    let mut n = name.chunks_exact(8);
    for (a, b) in (&mut k).zip(&mut n) {
        let (Ok(a), Ok(b)) = (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) else {
            return false;
        };
        if u64::from_le_bytes(a) != u64::from_le_bytes(b) | MASK {
            return false;
        }
    }
    k.remainder()
        .iter()
        .zip(n.remainder())
        .all(|(a, b)| *a == b | 0x20)
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Other(a), Self::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl std::hash::Hash for HeaderName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        if let Self::Other(b) = self {
            for c in b.iter() {
                c.to_ascii_lowercase().hash(state);
            }
        }
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        Self::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"VIA"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"i"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"m"), HeaderName::Contact);
        assert_eq!(HeaderName::from_bytes(b"e"), HeaderName::ContentEncoding);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"c"), HeaderName::ContentType);
        assert_eq!(HeaderName::from_bytes(b"f"), HeaderName::From);
        assert_eq!(HeaderName::from_bytes(b"s"), HeaderName::Subject);
        assert_eq!(HeaderName::from_bytes(b"k"), HeaderName::Supported);
        assert_eq!(HeaderName::from_bytes(b"t"), HeaderName::To);
        assert_eq!(HeaderName::from_bytes(b"o"), HeaderName::Event);
        assert_eq!(HeaderName::from_bytes(b"u"), HeaderName::AllowEvents);
        assert_eq!(HeaderName::from_bytes(b"r"), HeaderName::ReferTo);
        assert_eq!(HeaderName::from_bytes(b"b"), HeaderName::ReferredBy);
        assert_eq!(HeaderName::from_bytes(b"x"), HeaderName::SessionExpires);
        assert_eq!(HeaderName::from_bytes(b"y"), HeaderName::Identity);
        assert_eq!(HeaderName::from_bytes(b"a"), HeaderName::AcceptContact);
        assert_eq!(HeaderName::from_bytes(b"j"), HeaderName::RejectContact);
        assert_eq!(HeaderName::from_bytes(b"d"), HeaderName::RequestDisposition);
        assert_eq!(
            HeaderName::from_bytes(b"X-Foo"),
            HeaderName::from_bytes(b"x-foo")
        );
        assert!(HeaderName::Other(Bytes::from_static(b"X-Foo")).matches_raw(b"X-FOO"));
        assert_eq!(HeaderName::CallId.to_string(), "Call-ID");
    }
}
