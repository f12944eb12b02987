//! The SIP message model (RFC 3261 §7): a [`Message`] owns the received `Bytes` and an index
//! of header byte ranges; typed values ([`Via`], [`CSeq`], [`NameAddr`], ...) are parsed on
//! demand and borrow from the buffer. [`Editor`] forwards a message by splicing the original
//! bytes; [`response_to`] and [`RequestBuilder`] build new messages.

mod build;
mod edit;
mod error;
mod method;
mod parse;
mod status;
mod validate;

pub use build::{RequestBuilder, ResponseBuilder, response_to};
pub use edit::Editor;
pub use error::ParseError;
pub use method::Method;
pub use parse::Message;
pub use status::StatusCode;

use bytes::Bytes;

use crate::header::name::NameMatcher;
use crate::header::params::scan_params;
use crate::header::scan::{
    eq_letters, find_byte, find_unquoted, parse_delta_seconds, parse_u64, quoted_end, split_commas,
    trim, trim_bytes,
};
use crate::header::{AuthValue, CSeq, Contact, Contacts, HeaderName, NameAddr, Via};
use crate::uri::Uri;
use parse::{Entry, Hot, StartLine};

/// True if a Via branch carries the RFC 3261 magic cookie `z9hG4bK` (§8.1.1.7).
pub fn is_magic_cookie_branch(branch: &str) -> bool {
    branch.starts_with("z9hG4bK")
}

/// One header line as it appears in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHeader<'a> {
    /// The name exactly as written (possibly a compact form).
    pub name: &'a [u8],
    /// The value, trimmed; folded lines are kept as CRLF + WSP.
    pub value: &'a [u8],
}

impl<'a> RawHeader<'a> {
    /// The classified header name.
    pub fn header_name(&self) -> HeaderName {
        HeaderName::from_bytes(self.name)
    }

    /// The name as text.
    pub fn name_str(&self) -> &'a str {
        std::str::from_utf8(self.name).unwrap_or_default()
    }

    /// The value as text, if UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }
}

fn entry_matches(e: &Entry, name: &HeaderName, buf: &[u8]) -> bool {
    entry_matches_with(e, &name.matcher(), buf)
}

fn entry_matches_with(e: &Entry, m: &NameMatcher<'_>, buf: &[u8]) -> bool {
    buf.get(e.name_start as usize..e.name_end as usize)
        .is_some_and(|raw| m.matches(raw))
}

impl Message {
    fn raw(&self, e: &Entry) -> RawHeader<'_> {
        RawHeader {
            name: self
                .buf
                .get(e.name_start as usize..e.name_end as usize)
                .unwrap_or_default(),
            value: self
                .buf
                .get(e.value_start as usize..e.value_end as usize)
                .unwrap_or_default(),
        }
    }

    fn entries<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'s Entry> + 's {
        let m = name.matcher();
        self.headers
            .iter()
            .filter(move |e| entry_matches_with(e, &m, &self.buf))
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The start line as written (without CRLF).
    pub fn start_line(&self) -> &[u8] {
        self.buf.get(self.start_line.clone()).unwrap_or_default()
    }

    /// The request method; `None` for responses.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code; `None` for requests.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response (may be empty).
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => {
                std::str::from_utf8(self.buf.get(reason.clone())?).ok()
            }
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI bytes as written.
    pub fn request_uri_raw(&self) -> Option<&[u8]> {
        match &self.start {
            StartLine::Request { uri, .. } => self.buf.get(uri.clone()),
            StartLine::Response { .. } => None,
        }
    }

    /// The parsed Request-URI; `None` for responses.
    pub fn request_uri(&self) -> Option<Result<Uri<'_>, ParseError>> {
        let raw = self.request_uri_raw()?;
        Some(
            std::str::from_utf8(raw)
                .map_err(|_| ParseError::InvalidRequestUri)
                .and_then(Uri::parse),
        )
    }

    /// All header lines in order.
    pub fn headers(&self) -> impl Iterator<Item = RawHeader<'_>> {
        self.headers.iter().map(|e| self.raw(e))
    }

    /// The first header line with this name.
    pub fn header(&self, name: &HeaderName) -> Option<RawHeader<'_>> {
        if let Some(h) = Hot::of(name) {
            let idx = self.hot.get(h as usize).copied().unwrap_or(u16::MAX);
            if idx != u16::MAX || self.headers.len() < usize::from(u16::MAX) {
                return self.headers.get(usize::from(idx)).map(|e| self.raw(e));
            }
            // More lines than the hot index can address: fall back to a scan.
        }
        self.header_by_scan(name)
    }

    /// [`Message::header`] by scanning every line; out of line so that the hot-header lookup
    /// stays small.
    #[inline(never)]
    fn header_by_scan(&self, name: &HeaderName) -> Option<RawHeader<'_>> {
        self.entries(name).next().map(|e| self.raw(e))
    }

    /// The comma-separated values of every line with this name, in order (trimmed).
    pub fn header_values<'s>(
        &'s self,
        name: &'s HeaderName,
    ) -> impl Iterator<Item = &'s [u8]> + 's {
        self.entries(name).flat_map(move |e| {
            let v = self.raw(e).value;
            split_commas(v).map(move |r| v.get(r).unwrap_or_default())
        })
    }

    /// Number of header lines with this name.
    pub fn header_count(&self, name: &HeaderName) -> usize {
        self.entries(name).count()
    }

    fn first_str(&self, name: HeaderName) -> Result<&str, ParseError> {
        let h = self
            .header(&name)
            .ok_or_else(|| ParseError::Missing(name.clone()))?;
        std::str::from_utf8(h.value).map_err(|_| ParseError::NotUtf8(name))
    }

    fn values_str<'s>(
        &'s self,
        name: &'s HeaderName,
    ) -> impl Iterator<Item = Result<&'s str, ParseError>> + 's {
        self.header_values(name)
            .map(move |v| std::str::from_utf8(v).map_err(|_| ParseError::NotUtf8(name.clone())))
    }

    /// The first Via value (RFC 3261 §8.2.6.2, §17.2.3).
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        let v = self
            .header(&HeaderName::Via)
            .ok_or(ParseError::Missing(HeaderName::Via))?
            .value;
        // A Via has no display name, so the first comma usually ends the first value; only
        // a quote or `<` before it needs the full quote-aware split. (An empty value is
        // malformed either way: `Via::parse("")` fails.)
        let first = match memchr::memchr3(b',', b'"', b'<', v) {
            None => Some(trim_bytes(v)),
            Some(i) if v.get(i) == Some(&b',') => v.get(..i).map(trim_bytes),
            Some(_) => split_commas(v).next().and_then(|r| v.get(r)),
        }
        .ok_or(ParseError::Malformed(HeaderName::Via))?;
        Via::parse(std::str::from_utf8(first).map_err(|_| ParseError::NotUtf8(HeaderName::Via))?)
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> {
        self.values_str(&HeaderName::Via)
            .map(|v| v.and_then(Via::parse))
    }

    /// The Call-ID (RFC 3261 §20.8).
    pub fn call_id(&self) -> Result<&str, ParseError> {
        // One pass: a value without any LWS needs no trimming (and is valid as it is).
        let v = self.first_str(HeaderName::CallId)?;
        if !v.is_empty() && !v.bytes().any(crate::header::scan::is_lws) {
            return Ok(v);
        }
        let v = trim(v);
        if v.is_empty() || v.bytes().any(crate::header::scan::is_lws) {
            return Err(ParseError::Malformed(HeaderName::CallId));
        }
        Ok(v)
    }

    /// The CSeq (RFC 3261 §20.16).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        // The common form is plain ASCII: parse it from the bytes, skipping UTF-8 validation.
        if let Some(c) = self
            .header(&HeaderName::CSeq)
            .and_then(|h| CSeq::parse_common(h.value))
        {
            return Ok(c);
        }
        CSeq::parse(self.first_str(HeaderName::CSeq)?)
    }

    fn name_addr(&self, name: HeaderName) -> Result<NameAddr<'_>, ParseError> {
        NameAddr::parse(self.first_str(name.clone())?).map_err(|e| match e {
            ParseError::MalformedNameAddr => ParseError::Malformed(name),
            e => e,
        })
    }

    /// The From header (RFC 3261 §20.20).
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(HeaderName::From)
    }

    /// The To header (RFC 3261 §20.39).
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(HeaderName::To)
    }

    /// The From tag, found without parsing the URI (fast path for transaction and dialog
    /// matching). `Ok(None)` if there is no tag.
    pub fn from_tag(&self) -> Result<Option<&str>, ParseError> {
        self.tag_of(HeaderName::From)
    }

    /// The To tag, found without parsing the URI. `Ok(None)` if there is no tag.
    pub fn to_tag(&self) -> Result<Option<&str>, ParseError> {
        self.tag_of(HeaderName::To)
    }

    fn tag_of(&self, name: HeaderName) -> Result<Option<&str>, ParseError> {
        // Work on bytes and validate UTF-8 only for the (short) parameter part.
        let b = self
            .header(&name)
            .ok_or_else(|| ParseError::Missing(name.clone()))?
            .value;
        if b.first() == Some(&b'"') && quoted_end(b).is_none() {
            return Err(ParseError::UnterminatedQuote);
        }
        let params_at = match find_unquoted(b, b'<') {
            Some(lt) => {
                let close = b
                    .get(lt..)
                    .and_then(|r| find_byte(r, b'>'))
                    .ok_or(ParseError::Malformed(name.clone()))?;
                lt + close + 1
            }
            None => match find_byte(b, b';') {
                Some(semi) => semi,
                None => return Ok(None),
            },
        };
        let rest = std::str::from_utf8(b.get(params_at..).unwrap_or_default())
            .map_err(|_| ParseError::NotUtf8(name.clone()))?;
        let rest = trim(rest);
        let Some(params) = rest.strip_prefix(';') else {
            return if rest.is_empty() {
                Ok(None)
            } else {
                Err(ParseError::Malformed(name))
            };
        };
        let mut tag = None;
        scan_params(params, |n, v| {
            if eq_letters(n, b"tag") {
                tag = v;
                false
            } else {
                true
            }
        })
        .map_err(|()| ParseError::Malformed(name))?;
        Ok(tag)
    }

    /// Max-Forwards (RFC 3261 §20.22); values above 255 are an error.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        let Some(h) = self.header(&HeaderName::MaxForwards) else {
            return Ok(None);
        };
        std::str::from_utf8(h.value)
            .ok()
            .and_then(|v| parse_u64(trim(v)))
            .and_then(|v| u8::try_from(v).ok())
            .map(Some)
            .ok_or(ParseError::InvalidMaxForwards)
    }

    /// The Contact header set (RFC 3261 §20.10, `*` per §10.2.2).
    pub fn contacts(&self) -> Result<Contacts<'_>, ParseError> {
        let mut list = Vec::new();
        let mut star = false;
        for v in self.values_str(&HeaderName::Contact) {
            let v = v?;
            if v == "*" {
                star = true;
            } else {
                list.push(Contact::parse(v)?);
            }
        }
        match (star, list.is_empty()) {
            (true, true) => Ok(Contacts::Star),
            (true, false) => Err(ParseError::StarContactMixed),
            (false, _) => Ok(Contacts::List(list)),
        }
    }

    fn name_addrs(&self, name: HeaderName) -> Result<Vec<NameAddr<'_>>, ParseError> {
        let mut out = Vec::new();
        for e in self
            .headers
            .iter()
            .filter(|e| entry_matches(e, &name, &self.buf))
        {
            let v = self.raw(e).value;
            for r in split_commas(v) {
                let item = std::str::from_utf8(v.get(r).unwrap_or_default())
                    .map_err(|_| ParseError::NotUtf8(name.clone()))?;
                out.push(NameAddr::parse(item).map_err(|e| match e {
                    ParseError::MalformedNameAddr => ParseError::Malformed(name.clone()),
                    e => e,
                })?);
            }
        }
        Ok(out)
    }

    /// Route values, top first (RFC 3261 §20.34).
    pub fn routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.name_addrs(HeaderName::Route)
    }

    /// Record-Route values, top first (RFC 3261 §20.30).
    pub fn record_routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Path values (RFC 3327).
    pub fn paths(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.name_addrs(HeaderName::Path)
    }

    /// The Expires header in seconds (RFC 3261 §20.19), saturating at `u32::MAX`.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.delta(HeaderName::Expires)
    }

    /// The Min-Expires header (RFC 3261 §20.23).
    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.delta(HeaderName::MinExpires)
    }

    fn delta(&self, name: HeaderName) -> Result<Option<u32>, ParseError> {
        let Some(h) = self.header(&name) else {
            return Ok(None);
        };
        std::str::from_utf8(h.value)
            .ok()
            .and_then(|v| parse_delta_seconds(trim(v)))
            .map(Some)
            .ok_or(ParseError::Malformed(name))
    }

    /// Content-Length (RFC 3261 §20.14).
    pub fn content_length(&self) -> Result<Option<u32>, ParseError> {
        let Some(h) = self.header(&HeaderName::ContentLength) else {
            return Ok(None);
        };
        let v = std::str::from_utf8(h.value).map(trim).unwrap_or_default();
        if v.starts_with('-') {
            return Err(ParseError::NegativeContentLength);
        }
        parse_u64(v)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or(ParseError::InvalidContentLength)
    }

    /// Content-Type as written (RFC 3261 §20.15).
    pub fn content_type(&self) -> Option<&str> {
        self.header(&HeaderName::ContentType)
            .and_then(|h| h.value_str())
            .map(trim)
    }

    /// Option tags of Require / Proxy-Require / Supported / Unsupported (RFC 3261 §19.2).
    pub fn option_tags<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'s str> + 's {
        self.header_values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter(|v| !v.is_empty())
    }

    /// The first WWW-Authenticate / Proxy-Authenticate / Authorization /
    /// Proxy-Authorization value of that name.
    pub fn auth(&self, name: HeaderName) -> Option<Result<AuthValue<'_>, ParseError>> {
        let h = self.header(&name)?;
        Some(
            std::str::from_utf8(h.value)
                .map_err(|_| ParseError::NotUtf8(name.clone()))
                .and_then(|v| AuthValue::parse(v, name)),
        )
    }

    /// Every value of an authentication header (one per header line).
    pub fn auths<'s>(
        &'s self,
        name: &'s HeaderName,
    ) -> impl Iterator<Item = Result<AuthValue<'s>, ParseError>> + 's {
        self.entries(name).map(move |e| {
            std::str::from_utf8(self.raw(e).value)
                .map_err(|_| ParseError::NotUtf8(name.clone()))
                .and_then(|v| AuthValue::parse(v, name.clone()))
        })
    }

    /// The body (shares the message buffer).
    pub fn body(&self) -> Bytes {
        self.buf.slice(self.body.clone())
    }

    /// The whole buffer the message was parsed from (may include ignored trailing bytes).
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// The message bytes up to the end of the body (trailing datagram bytes dropped).
    pub fn message_bytes(&self) -> Bytes {
        self.buf.slice(..self.body.end)
    }
}

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;
