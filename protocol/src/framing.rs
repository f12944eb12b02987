//! Content-Length framing of SIP messages carried over byte streams (TCP, TLS).
//!
//! A stream transport delivers bytes, not messages. RFC 3261 §18.3 makes `Content-Length`
//! mandatory on streams so that a receiver can find where one message ends and the next begins:
//! the header section ends at the first empty line, and the body is exactly `Content-Length`
//! octets long. [`StreamFramer`] applies that rule to bytes pushed into it and yields whole
//! messages as [`Frame::Message`], without parsing anything beyond the framing headers.
//!
//! It also recognises the RFC 5626 §3.5.1 keep-alives that share the stream: a double CRLF
//! "ping" ([`Frame::KeepAlivePing`], to be answered with a single CRLF) and a single CRLF "pong"
//! ([`Frame::KeepAlivePong`]). RFC 3261 §7.5 says CRLFs before a start-line are to be ignored;
//! they are reported here as pongs (at most one per CRLF), which a caller that did not ping
//! simply ignores.
//!
//! Memory is bounded: a message whose header section, or header section plus declared body, is
//! larger than the configured maximum is refused with [`FramingError::TooLarge`] as soon as that
//! is known, without waiting for its body. After any error the stream cannot be resynchronised;
//! the framer stays failed and the caller closes the connection.
//!
//! Incomplete input is never an error: [`StreamFramer::next_frame`] returns `Ok(None)` until
//! more bytes arrive.

use bytes::{Bytes, BytesMut};

/// Default limit on the size of one framed message (header section plus body), in octets.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 65_536;

/// One unit taken off a SIP byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete SIP message: start-line, header section, empty line and `Content-Length`
    /// octets of body. Not parsed beyond framing.
    Message(Bytes),
    /// A CRLFCRLF keep-alive ping (RFC 5626 §3.5.1); answer with a single CRLF.
    KeepAlivePing,
    /// A lone CRLF between messages: a keep-alive pong (RFC 5626 §3.5.1), or stray line
    /// terminators before a start-line that RFC 3261 §7.5 says to ignore.
    KeepAlivePong,
}

/// Why a stream could not be framed. Every variant ends the stream: the caller should close it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The header section has no `Content-Length`, which RFC 3261 §18.3 makes mandatory on
    /// stream transports.
    #[error("message on a stream has no Content-Length header (RFC 3261 §18.3)")]
    MissingContentLength,
    /// A `Content-Length` value is not a non-negative decimal number, or two
    /// `Content-Length` headers disagree.
    #[error("invalid or conflicting Content-Length value")]
    InvalidContentLength,
    /// The message exceeds the configured maximum size; a server may answer 513 (RFC 3261
    /// §21.5.14) when it can parse enough of `partial` to build a response.
    #[error("message too large ({size:?} octets declared, limit {limit})")]
    TooLarge {
        /// The whole header section when it was complete (`headers_complete`), otherwise the
        /// first `limit` octets of the message.
        partial: Bytes,
        /// Whether `partial` holds a complete header section (ending with the empty line).
        headers_complete: bool,
        /// Header section plus declared body length, when the header section was complete.
        size: Option<usize>,
        /// The configured maximum message size.
        limit: usize,
    },
    /// An earlier call returned an error; the stream cannot be resynchronised.
    #[error("stream framing already failed")]
    Poisoned,
}

/// Splits a SIP byte stream into messages and keep-alives (see the module docs).
///
/// Drive it by pushing each chunk read from the stream with [`push`](Self::push), then calling
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)` or an error. Used that way,
/// the internal buffer never holds more than `max_message_size` plus one pushed chunk.
#[derive(Debug)]
pub struct StreamFramer {
    /// Limit on header section plus body of one message, in octets.
    max_message_size: usize,
    /// Bytes received and not yet returned as frames.
    buf: BytesMut,
    /// Where the search for the end of the header section resumes, so that a message arriving
    /// in many small chunks is scanned once, not once per chunk.
    scan_from: usize,
    /// Total length (headers plus body) of the message at the front of `buf`, once its header
    /// section has been seen and checked.
    pending_len: Option<usize>,
    /// Set after an error; all later input is discarded.
    failed: bool,
    /// Frame a header section without Content-Length as a message with no body instead of
    /// failing (see [`StreamFramer::lenient_content_length`]).
    lenient_content_length: bool,
}

impl StreamFramer {
    /// A framer refusing messages larger than `max_message_size` octets.
    pub fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size,
            buf: BytesMut::new(),
            scan_from: 0,
            pending_len: None,
            failed: false,
            lenient_content_length: false,
        }
    }

    /// RFC 3261 §18.3 makes Content-Length mandatory on streams, but RFC 2543 peers
    /// (RFC 4475 §3.4.1) and some old phones omit it on bodiless requests. When `lenient`, such a
    /// header section is framed as a message without a body, as Kamailio does; whatever follows
    /// is read as the next message (and a body that was really there fails framing then).
    pub fn lenient_content_length(mut self, lenient: bool) -> Self {
        self.lenient_content_length = lenient;
        self
    }

    /// The configured limit on one message, in octets.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Number of octets buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether an error was returned; a failed framer discards all input.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Appends bytes read from the stream. Call [`next_frame`](Self::next_frame) until it
    /// returns `Ok(None)` before pushing again, so the buffer stays bounded.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Takes the next complete frame off the buffer.
    ///
    /// Returns `Ok(None)` when more input is needed, and an error when the stream cannot be
    /// framed (after which the framer stays failed and returns [`FramingError::Poisoned`]).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if self.failed {
            return Err(FramingError::Poisoned);
        }
        match self.frame() {
            Ok(frame) => Ok(frame),
            Err(err) => {
                self.failed = true;
                self.buf = BytesMut::new();
                self.pending_len = None;
                self.scan_from = 0;
                Err(err)
            }
        }
    }

    fn frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if self.pending_len.is_none() {
            if let Some(keepalive) = self.leading_line_ends() {
                return Ok(keepalive);
            }
            if self.buf.is_empty() {
                return Ok(None);
            }
            let Some(header_len) = self.find_header_end() else {
                if self.buf.len() > self.max_message_size {
                    return Err(self.too_large_incomplete());
                }
                return Ok(None);
            };
            if header_len > self.max_message_size {
                return Err(self.too_large_incomplete());
            }
            let headers = self.buf.get(..header_len).unwrap_or_default();
            let body_len = match content_length(headers) {
                Err(FramingError::MissingContentLength) if self.lenient_content_length => 0,
                other => other?,
            };
            let total = header_len.saturating_add(body_len);
            if total > self.max_message_size {
                return Err(FramingError::TooLarge {
                    partial: self.buf.split_to(header_len).freeze(),
                    headers_complete: true,
                    size: Some(total),
                    limit: self.max_message_size,
                });
            }
            self.pending_len = Some(total);
        }
        match self.pending_len {
            Some(total) if self.buf.len() >= total => {
                self.pending_len = None;
                self.scan_from = 0;
                Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
            }
            _ => Ok(None),
        }
    }

    /// Consumes line terminators before a start-line. Returns `Some(Some(frame))` for a
    /// keep-alive, `Some(None)` when it cannot decide yet, and `None` when the buffer starts with
    /// something else (or is empty).
    fn leading_line_ends(&mut self) -> Option<Option<Frame>> {
        loop {
            match (self.buf.first(), self.buf.get(1)) {
                (Some(b'\n'), _) => {
                    // A bare LF before a start-line: tolerated and ignored.
                    let _ = self.buf.split_to(1);
                }
                (Some(b'\r'), None) => return Some(None),
                (Some(b'\r'), Some(b'\n')) => break,
                _ => return None,
            }
        }
        // The buffer starts with CRLF: a ping if another CRLF follows, else a pong. Wait for the
        // next octet(s) so that a ping split across reads is not mistaken for two pongs.
        match (self.buf.get(2), self.buf.get(3)) {
            (None, _) | (Some(b'\r'), None) => Some(None),
            (Some(b'\r'), Some(b'\n')) => {
                let _ = self.buf.split_to(4);
                Some(Some(Frame::KeepAlivePing))
            }
            _ => {
                let _ = self.buf.split_to(2);
                Some(Some(Frame::KeepAlivePong))
            }
        }
    }

    /// Length of the header section including the terminating empty line, if it is complete.
    /// Accepts CRLF and bare LF line ends.
    fn find_header_end(&mut self) -> Option<usize> {
        let mut pos = self.scan_from;
        while let Some(rest) = self.buf.get(pos..) {
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                self.scan_from = self.buf.len();
                return None;
            };
            let at = pos + lf;
            match (self.buf.get(at + 1), self.buf.get(at + 2)) {
                (Some(b'\n'), _) => return Some(at + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(at + 3),
                (None, _) | (Some(b'\r'), None) => {
                    self.scan_from = at;
                    return None;
                }
                _ => pos = at + 1,
            }
        }
        None
    }

    fn too_large_incomplete(&mut self) -> FramingError {
        let keep = self.max_message_size.min(self.buf.len());
        FramingError::TooLarge {
            partial: self.buf.split_to(keep).freeze(),
            headers_complete: false,
            size: None,
            limit: self.max_message_size,
        }
    }
}

/// Finds the `Content-Length` (or compact `l`, RFC 3261 §7.3.3) value in a complete header
/// section, unfolding continuation lines (RFC 3261 §7.3.1). The start-line is skipped.
fn content_length(headers: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    // The value of the Content-Length header being collected, across folded lines.
    let mut current: Option<Vec<u8>> = None;
    let mut finish = |value: Option<Vec<u8>>| -> Result<(), FramingError> {
        if let Some(value) = value {
            let n = parse_length(&value)?;
            match found {
                Some(prev) if prev != n => return Err(FramingError::InvalidContentLength),
                _ => found = Some(n),
            }
        }
        Ok(())
    };
    for line in headers.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(value) = current.as_mut() {
                value.push(b' ');
                value.extend_from_slice(line);
            }
            continue;
        }
        finish(current.take())?;
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim(line.get(..colon).unwrap_or_default());
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            current = Some(line.get(colon + 1..).unwrap_or_default().to_vec());
        }
    }
    finish(current.take())?;
    found.ok_or(FramingError::MissingContentLength)
}

/// Parses `1*DIGIT` surrounded by optional whitespace; values beyond `usize` saturate (they are
/// then refused as too large rather than as invalid).
fn parse_length(value: &[u8]) -> Result<usize, FramingError> {
    let digits = trim(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(FramingError::InvalidContentLength);
    }
    Ok(digits.iter().fold(0usize, |acc, d| {
        acc.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

fn trim(s: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ws(b)).map_or(start, |p| p + 1);
    s.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests;
