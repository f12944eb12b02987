//! One-pass indexing of a complete SIP message (RFC 3261 §7): the start line, the byte
//! ranges of every header line (folding joined), and the body delimited by Content-Length
//! (RFC 3261 §18.3: bytes past Content-Length in a datagram are ignored; a missing
//! Content-Length means the body is the rest of the datagram).

use std::ops::Range;

use bytes::Bytes;

use super::{Method, ParseError, StatusCode};
use crate::header::HeaderName;
use crate::header::scan::{is_token_char, parse_u64, trim_bytes};

/// The parsed start line.
#[derive(Clone, Debug)]
pub(crate) enum StartLine {
    Request {
        method: Method,
        uri: Range<usize>,
    },
    Response {
        status: StatusCode,
        reason: Range<usize>,
    },
}

/// One indexed header line (with its continuation lines).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The classified name; `None` for unknown names.
    pub(crate) name: Option<HeaderName>,
    pub(crate) name_start: u32,
    pub(crate) name_end: u32,
    /// The value, trimmed; may contain folded CRLF + WSP.
    pub(crate) value_start: u32,
    pub(crate) value_end: u32,
    /// The whole line including the terminating CRLF (and continuation lines).
    pub(crate) line_start: u32,
    pub(crate) line_end: u32,
}

/// A parsed SIP message: the original bytes plus an index into them.
#[derive(Clone, Debug)]
pub struct Message {
    pub(crate) buf: Bytes,
    pub(crate) start: StartLine,
    /// Range of the start line text (without its CRLF).
    pub(crate) start_line: Range<usize>,
    pub(crate) headers: Vec<Entry>,
    /// Offset of the first header line.
    pub(crate) headers_start: usize,
    /// Offset of the empty line ending the header section.
    pub(crate) headers_end: usize,
    pub(crate) body: Range<usize>,
}

/// Finds the end of the line starting at `pos`: `(end_without_crlf, start_of_next_line)`.
fn line_at(b: &[u8], pos: usize) -> Option<(usize, usize)> {
    let rest = b.get(pos..)?;
    let nl = pos + memchr::memchr(b'\n', rest)?;
    let end = if nl > pos && b.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

fn to_u32(v: usize) -> Result<u32, ParseError> {
    u32::try_from(v).map_err(|_| ParseError::InvalidHeaderLine)
}

fn is_sip_version_prefix(b: &[u8]) -> bool {
    b.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
}

fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        Ok(())
    } else if is_sip_version_prefix(v) {
        Err(ParseError::UnsupportedVersion)
    } else {
        Err(ParseError::InvalidStartLine)
    }
}

impl Message {
    /// Parses one complete message. See the module docs for the body rules.
    pub fn parse(buf: Bytes) -> Result<Self, ParseError> {
        let b: &[u8] = &buf;
        let mut pos = b
            .iter()
            .position(|c| *c != b'\r' && *c != b'\n')
            .ok_or(ParseError::Empty)?;
        let (sl_end, next) = line_at(b, pos).ok_or(ParseError::UnterminatedHeaders)?;
        let start_line = pos..sl_end;
        let start = Self::parse_start_line(&buf, pos, sl_end)?;
        pos = next;
        let headers_start = pos;
        let mut headers: Vec<Entry> = Vec::with_capacity(24);
        let mut content_length: Option<usize> = None;
        let (headers_end, body_start) = loop {
            if pos == b.len() {
                // No empty line but the data ends at a line boundary: accept (datagram).
                break (pos, pos);
            }
            let (le, next) = line_at(b, pos).ok_or(ParseError::UnterminatedHeaders)?;
            if le == pos {
                break (pos, next);
            }
            let first = b.get(pos).copied().unwrap_or(b' ');
            if first == b' ' || first == b'\t' {
                let last = headers.last_mut().ok_or(ParseError::InvalidHeaderLine)?;
                if !trim_bytes(b.get(pos..le).unwrap_or_default()).is_empty() {
                    last.value_end = to_u32(le)?;
                    if last.value_start > last.value_end {
                        last.value_start = to_u32(pos)?;
                    }
                }
                last.line_end = to_u32(next)?;
            } else {
                let line = b.get(pos..le).unwrap_or_default();
                let colon = memchr::memchr(b':', line).ok_or(ParseError::InvalidHeaderLine)?;
                let mut name_end = pos + colon;
                while name_end > pos && matches!(b.get(name_end - 1), Some(b' ' | b'\t')) {
                    name_end -= 1;
                }
                let name_bytes = b.get(pos..name_end).unwrap_or_default();
                if name_bytes.is_empty() || !name_bytes.iter().all(|c| is_token_char(*c)) {
                    return Err(ParseError::InvalidHeaderLine);
                }
                let mut vs = pos + colon + 1;
                while vs < le && matches!(b.get(vs), Some(b' ' | b'\t')) {
                    vs += 1;
                }
                let mut ve = le;
                while ve > vs && matches!(b.get(ve - 1), Some(b' ' | b'\t')) {
                    ve -= 1;
                }
                let name = HeaderName::classify(name_bytes);
                if name == Some(HeaderName::ContentLength) && content_length.is_none() {
                    content_length = Some(headers.len());
                }
                headers.push(Entry {
                    name,
                    name_start: to_u32(pos)?,
                    name_end: to_u32(name_end)?,
                    value_start: to_u32(vs)?,
                    value_end: to_u32(ve)?,
                    line_start: to_u32(pos)?,
                    line_end: to_u32(next)?,
                });
            }
            pos = next;
        };
        // Trim trailing whitespace left by continuation lines.
        for e in &mut headers {
            while e.value_end > e.value_start
                && b.get(e.value_end as usize - 1)
                    .is_some_and(|c| crate::header::scan::is_lws(*c))
            {
                e.value_end -= 1;
            }
        }
        let body = match content_length.and_then(|i| headers.get(i)) {
            Some(e) => {
                let v = trim_bytes(
                    b.get(e.value_start as usize..e.value_end as usize)
                        .unwrap_or_default(),
                );
                if v.first() == Some(&b'-') {
                    return Err(ParseError::NegativeContentLength);
                }
                let n = std::str::from_utf8(v)
                    .ok()
                    .and_then(parse_u64)
                    .ok_or(ParseError::InvalidContentLength)?;
                let avail = (b.len() - body_start) as u64;
                if n > avail {
                    return Err(ParseError::ContentLengthExceedsBody);
                }
                body_start..body_start + n as usize
            }
            None => body_start..b.len(),
        };
        Ok(Self {
            buf,
            start,
            start_line,
            headers,
            headers_start,
            headers_end,
            body,
        })
    }

    fn parse_start_line(buf: &Bytes, start: usize, end: usize) -> Result<StartLine, ParseError> {
        let line = buf.get(start..end).ok_or(ParseError::InvalidStartLine)?;
        if is_sip_version_prefix(line) {
            // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
            let sp = memchr::memchr(b' ', line).ok_or(ParseError::InvalidStartLine)?;
            check_version(line.get(..sp).unwrap_or_default())?;
            let rest = line.get(sp + 1..).unwrap_or_default();
            let code_len = rest.iter().position(|c| *c == b' ').unwrap_or(rest.len());
            let code = rest.get(..code_len).unwrap_or_default();
            if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::InvalidStatusCode);
            }
            let code = code.iter().fold(0u16, |a, c| a * 10 + u16::from(c - b'0'));
            if !(100..=699).contains(&code) {
                return Err(ParseError::InvalidStatusCode);
            }
            let reason_start = (start + sp + 1 + code_len + 1).min(end);
            return Ok(StartLine::Response {
                status: StatusCode(code),
                reason: reason_start..end,
            });
        }
        // Request-Line = Method SP Request-URI SP SIP-Version (liberal about extra spaces,
        // RFC 4475 §3.1.2.6/§3.1.2.7).
        let sp = memchr::memchr(b' ', line).ok_or(ParseError::InvalidStartLine)?;
        let method = line.get(..sp).unwrap_or_default();
        if method.is_empty() || !method.iter().all(|c| is_token_char(*c)) {
            return Err(ParseError::InvalidMethod);
        }
        let trimmed_end = line
            .iter()
            .rposition(|c| *c != b' ' && *c != b'\t')
            .map_or(0, |p| p + 1);
        let last_sp = memchr::memrchr(b' ', line.get(..trimmed_end).unwrap_or_default())
            .ok_or(ParseError::InvalidStartLine)?;
        if last_sp <= sp {
            return Err(ParseError::InvalidStartLine);
        }
        check_version(line.get(last_sp + 1..trimmed_end).unwrap_or_default())?;
        let mut us = sp + 1;
        let mut ue = last_sp;
        while us < ue && line.get(us) == Some(&b' ') {
            us += 1;
        }
        while ue > us && line.get(ue - 1) == Some(&b' ') {
            ue -= 1;
        }
        let uri = line.get(us..ue).unwrap_or_default();
        if uri.is_empty() {
            return Err(ParseError::InvalidRequestUri);
        }
        if uri.first() == Some(&b'<') {
            return Err(ParseError::RequestUriInAngleBrackets);
        }
        if uri.iter().any(|c| *c == b' ' || *c == b'\t' || *c < 0x20) {
            return Err(ParseError::InvalidRequestUri);
        }
        Ok(StartLine::Request {
            method: Method::from_shared(buf, start, start + sp),
            uri: start + us..start + ue,
        })
    }
}
