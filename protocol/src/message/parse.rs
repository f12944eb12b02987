//! One-pass indexing of a complete SIP message (RFC 3261 §7): the start line, the byte
//! ranges of every header line (folding joined), and the body delimited by Content-Length
//! (RFC 3261 §18.3: bytes past Content-Length in a datagram are ignored; a missing
//! Content-Length means the body is the rest of the datagram).

use std::ops::Range;

use bytes::Bytes;

use super::{Method, ParseError, StatusCode};
use crate::header::HeaderName;
use crate::header::name::eq_lowercase;
use crate::header::scan::{is_token_char, parse_u64_bytes, trim_bytes};

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
    /// Index of the first line of the hot headers (see [`Hot`]), `u16::MAX` if absent.
    pub(crate) hot: [u16; HOT_COUNT],
}

/// Headers whose first occurrence is remembered while indexing, so that the
/// transaction-key accessors need no scan.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Hot {
    Via = 0,
    From = 1,
    To = 2,
    CallId = 3,
    CSeq = 4,
    ContentLength = 5,
}

/// Number of [`Hot`] headers.
pub(crate) const HOT_COUNT: usize = 6;

impl Hot {
    /// The hot header for a name, if it is one.
    pub(crate) fn of(name: &HeaderName) -> Option<Self> {
        Some(match name {
            HeaderName::Via => Self::Via,
            HeaderName::From => Self::From,
            HeaderName::To => Self::To,
            HeaderName::CallId => Self::CallId,
            HeaderName::CSeq => Self::CSeq,
            HeaderName::ContentLength => Self::ContentLength,
            _ => return None,
        })
    }

    /// Recognises a raw wire name (long or compact form) cheaply.
    fn classify(raw: &[u8]) -> Option<Self> {
        let first = raw.first()? | 0x20;
        match (raw.len(), first) {
            (1, b'v') => Some(Self::Via),
            (1, b'f') => Some(Self::From),
            (1, b't') => Some(Self::To),
            (1, b'i') => Some(Self::CallId),
            (1, b'l') => Some(Self::ContentLength),
            (2, b't') if eq_lowercase(b"to", raw) => Some(Self::To),
            (3, b'v') if eq_lowercase(b"via", raw) => Some(Self::Via),
            (4, b'f') if eq_lowercase(b"from", raw) => Some(Self::From),
            (4, b'c') if eq_lowercase(b"cseq", raw) => Some(Self::CSeq),
            (7, b'c') if eq_lowercase(b"call-id", raw) => Some(Self::CallId),
            (14, b'c') if eq_lowercase(b"content-length", raw) => Some(Self::ContentLength),
            _ => None,
        }
    }
}

/// Offset narrowing; `parse` rejects buffers of 4 GiB or more up front, so every offset
/// fits.
fn off(v: usize) -> u32 {
    v as u32
}

/// The index of the first `\n` at or after `from`. Header lines are short, so the first 64
/// bytes are searched eight at a time in registers (no call, no SIMD set-up); longer lines go
/// to `memchr`.
fn find_newline(b: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let rest = b.get(from..)?;
    let head = rest.get(..64).unwrap_or(rest);
    let mut chunks = head.chunks_exact(8);
    let mut at = from;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w) ^ NL;
        // The lowest set bit marks the first zero byte of `x` (borrows only run upwards).
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    if let Some(p) = tail.iter().position(|c| *c == b'\n') {
        return Some(at + p);
    }
    at += tail.len();
    memchr::memchr(b'\n', b.get(at..)?).map(|p| at + p)
}

/// Splits a (non-continuation) header line into the name length and the value range, the
/// value trimmed of SP/HT: the name is a token, then optional SP/HT, then the colon. `None`
/// if the line is not of that form. Kept out of line so that its loops get registers of their
/// own rather than competing with the whole of [`Message::parse`].
#[inline(never)]
fn split_header_line(line: &[u8]) -> Option<(usize, usize, usize)> {
    let is_wsp = |k: usize| matches!(line.get(k), Some(b' ' | b'\t'));
    let mut k = 0;
    while line.get(k).is_some_and(|c| is_token_char(*c)) {
        k += 1;
    }
    let name_len = k;
    while is_wsp(k) {
        k += 1;
    }
    if name_len == 0 || line.get(k) != Some(&b':') {
        return None;
    }
    let mut vs = k + 1;
    while is_wsp(vs) {
        vs += 1;
    }
    let mut ve = line.len();
    while ve > vs && is_wsp(ve - 1) {
        ve -= 1;
    }
    Some((name_len, vs, ve))
}

fn is_sip_version_prefix(b: &[u8]) -> bool {
    b.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
}

/// `SIP/2.0` in any case: the three letters are folded to lower case by setting bit 0x20 in
/// their bytes only (exact for letters), the rest is compared as is.
fn is_sip_2_0(v: &[u8]) -> bool {
    <[u8; 7]>::try_from(v).is_ok_and(|[s, i, p, slash, two, dot, zero]| {
        u32::from_le_bytes([s, i, p, slash]) | 0x0020_2020 == u32::from_le_bytes(*b"sip/")
            && [two, dot, zero] == *b"2.0"
    })
}

fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if is_sip_2_0(v) {
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
        if u32::try_from(b.len()).is_err() {
            return Err(ParseError::TooLarge);
        }
        let mut pos = b
            .iter()
            .position(|c| *c != b'\r' && *c != b'\n')
            .ok_or(ParseError::Empty)?;
        let next_line = |pos: usize| -> Option<(usize, usize)> {
            let nl = find_newline(b, pos)?;
            let end = if nl > pos && b.get(nl - 1) == Some(&b'\r') {
                nl - 1
            } else {
                nl
            };
            Some((end, nl + 1))
        };
        let (sl_end, next) = next_line(pos).ok_or(ParseError::UnterminatedHeaders)?;
        let start_line = pos..sl_end;
        let start = Self::parse_start_line(&buf, pos, sl_end)?;
        pos = next;
        let headers_start = pos;
        let mut headers: Vec<Entry> = Vec::with_capacity(24);
        let mut hot = [u16::MAX; HOT_COUNT];
        let (headers_end, body_start) = loop {
            if pos == b.len() {
                // No empty line but the data ends at a line boundary: accept (datagram).
                break (pos, pos);
            }
            let (le, next) = next_line(pos).ok_or(ParseError::UnterminatedHeaders)?;
            if le == pos {
                break (pos, next);
            }
            let line = b.get(pos..le).unwrap_or_default();
            let not_wsp = |c: &u8| *c != b' ' && *c != b'\t';
            let first = line.first().copied().unwrap_or(b' ');
            if first == b' ' || first == b'\t' {
                // Continuation (folded) line: extend the previous value (RFC 3261 §7.3.1).
                let last = headers.last_mut().ok_or(ParseError::InvalidHeaderLine)?;
                if let Some(t) = line.iter().rposition(not_wsp) {
                    if last.value_start == last.value_end {
                        let lead = line.iter().position(not_wsp).unwrap_or(0);
                        last.value_start = off(pos + lead);
                    }
                    last.value_end = off(pos + t + 1);
                }
                last.line_end = off(next);
            } else {
                let (name_len, vs, ve) =
                    split_header_line(line).ok_or(ParseError::InvalidHeaderLine)?;
                let name_bytes = line.get(..name_len).unwrap_or_default();
                if let Some(h) = Hot::classify(name_bytes)
                    && let Some(slot) = hot.get_mut(h as usize)
                    && *slot == u16::MAX
                {
                    *slot = u16::try_from(headers.len()).unwrap_or(u16::MAX);
                }
                headers.push(Entry {
                    name_start: off(pos),
                    name_end: off(pos + name_len),
                    value_start: off(pos + vs),
                    value_end: off(pos + ve),
                    line_start: off(pos),
                    line_end: off(next),
                });
            }
            pos = next;
        };
        let cl = hot
            .get(Hot::ContentLength as usize)
            .copied()
            .unwrap_or(u16::MAX);
        let body = match headers.get(usize::from(cl)) {
            Some(e) => {
                let v = trim_bytes(
                    b.get(e.value_start as usize..e.value_end as usize)
                        .unwrap_or_default(),
                );
                if v.first() == Some(&b'-') {
                    return Err(ParseError::NegativeContentLength);
                }
                let n = parse_u64_bytes(v).ok_or(ParseError::InvalidContentLength)?;
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
            hot,
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
        // SP, HT and the other controls are all <= 0x20; no early exit, so this vectorises.
        if uri.iter().fold(false, |bad, c| bad | (*c <= b' ')) {
            return Err(ParseError::InvalidRequestUri);
        }
        Ok(StartLine::Request {
            method: Method::from_shared(buf, start, start + sp),
            uri: start + us..start + ue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_newline_agrees_with_memchr() {
        let mut buf = vec![b'a'; 300];
        for nl in [0, 1, 7, 8, 9, 15, 63, 64, 65, 71, 72, 200, 299] {
            buf.fill(b'a');
            if let Some(c) = buf.get_mut(nl) {
                *c = b'\n';
            }
            for from in [0, 1, 5, 8, 60] {
                let want = memchr::memchr(b'\n', &buf[from..]).map(|p| from + p);
                assert_eq!(find_newline(&buf, from), want, "nl {nl} from {from}");
            }
        }
        buf.fill(0x8a);
        assert_eq!(find_newline(&buf, 0), None);
        assert_eq!(find_newline(&buf, 301), None);
    }

    #[test]
    fn version() {
        for v in [&b"SIP/2.0"[..], b"sip/2.0", b"sIp/2.0"] {
            assert!(is_sip_2_0(v));
        }
        for v in [
            &b"SIP/2.0 "[..],
            b"SIP/2.1",
            b"SIP\x0f2.0",
            b"SIP/2\x0e0",
            b"SIP/2.",
            b"",
        ] {
            assert!(!is_sip_2_0(v));
        }
    }

    #[test]
    fn split_header_line_forms() {
        assert_eq!(split_header_line(b"Via: x"), Some((3, 5, 6)));
        assert_eq!(split_header_line(b"To \t:\t y z \t"), Some((2, 7, 10)));
        assert_eq!(split_header_line(b"Max-Forwards:"), Some((12, 13, 13)));
        assert_eq!(split_header_line(b"Subject:   "), Some((7, 11, 11)));
        assert_eq!(split_header_line(b": x"), None);
        assert_eq!(split_header_line(b"Bad Name: x"), None);
        assert_eq!(split_header_line(b"NoColon"), None);
    }
}
