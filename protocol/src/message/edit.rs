//! Forwarding without re-serialising (RFC 3261 §16.6): the proxy prepends Via and
//! Record-Route, pops Route, decrements Max-Forwards and maybe rewrites the Request-URI;
//! every other byte is copied from the received message as it came.

use bytes::{BufMut, Bytes, BytesMut};

use super::Message;
use super::parse::StartLine;
use crate::header::HeaderName;
use crate::header::scan::split_commas;

/// What happens to one indexed header line.
#[derive(Clone, Debug, Default)]
struct LineEdit {
    /// Header lines inserted just before this one, in order.
    before: Vec<(String, Bytes)>,
    /// Header lines inserted just after this one, in order.
    after: Vec<(String, Bytes)>,
    /// Number of leading comma-separated values removed.
    removed_values: usize,
    /// Whole line removed.
    removed: bool,
    /// Replacement value.
    replace: Option<Bytes>,
}

/// Builds a modified copy of a [`Message`] by splicing.
#[derive(Debug)]
pub struct Editor<'a> {
    msg: &'a Message,
    request_uri: Option<Bytes>,
    prepends: Vec<(String, Bytes)>,
    appends: Vec<(String, Bytes)>,
    lines: Vec<LineEdit>,
    touched: bool,
}

impl<'a> Editor<'a> {
    /// Starts editing `msg`.
    pub fn new(msg: &'a Message) -> Self {
        Self {
            msg,
            request_uri: None,
            prepends: Vec::new(),
            appends: Vec::new(),
            lines: vec![LineEdit::default(); msg.headers.len()],
            touched: false,
        }
    }

    /// Replaces the Request-URI (ignored for responses).
    pub fn set_request_uri(&mut self, uri: impl Into<Bytes>) {
        self.request_uri = Some(uri.into());
        self.touched = true;
    }

    /// Inserts a header line above all others; the most recent call ends up on top.
    pub fn prepend_header(&mut self, name: &str, value: impl Into<Bytes>) {
        self.prepends.push((name.to_owned(), value.into()));
        self.touched = true;
    }

    /// Appends a header line just before the empty line.
    pub fn append_header(&mut self, name: &str, value: impl Into<Bytes>) {
        self.appends.push((name.to_owned(), value.into()));
        self.touched = true;
    }

    fn matching(&self, name: &HeaderName) -> Vec<usize> {
        self.msg
            .headers
            .iter()
            .enumerate()
            .filter(|(_, e)| super::entry_matches(e, name, &self.msg.buf))
            .map(|(i, _)| i)
            .collect()
    }

    fn value_ranges(&self, idx: usize) -> Vec<std::ops::Range<usize>> {
        let Some(e) = self.msg.headers.get(idx) else {
            return Vec::new();
        };
        let v = self
            .msg
            .buf
            .get(e.value_start as usize..e.value_end as usize)
            .unwrap_or_default();
        split_commas(v)
            .map(|r| r.start + e.value_start as usize..r.end + e.value_start as usize)
            .collect()
    }

    /// Inserts a header line just before the first line of `before`; when the message has no
    /// such header, just after the last line of `or_after`; failing both, before all headers.
    /// A proxy uses it to put its Record-Route above the existing ones, or right below the Via
    /// block when there are none (RFC 3261 §16.6 step 4).
    pub fn insert_header_near(
        &mut self,
        before: &HeaderName,
        or_after: &HeaderName,
        name: &str,
        value: impl Into<Bytes>,
    ) {
        let value = value.into();
        self.touched = true;
        if let Some(&idx) = self.matching(before).first()
            && let Some(le) = self.lines.get_mut(idx)
        {
            le.before.push((name.to_owned(), value));
            return;
        }
        if let Some(&idx) = self.matching(or_after).last()
            && let Some(le) = self.lines.get_mut(idx)
        {
            le.after.push((name.to_owned(), value));
            return;
        }
        self.prepends.push((name.to_owned(), value));
    }

    /// Removes the first remaining value of `name` (the top Route or Via): the whole line if
    /// it is the only value left on it, otherwise just that value and its comma.
    pub fn remove_first_value(&mut self, name: &HeaderName) {
        for idx in self.matching(name) {
            let n = self.value_ranges(idx).len();
            let Some(le) = self.lines.get_mut(idx) else {
                continue;
            };
            if le.removed || le.replace.is_some() || le.removed_values >= n {
                continue;
            }
            le.removed_values += 1;
            if le.removed_values >= n {
                le.removed = true;
            }
            self.touched = true;
            return;
        }
    }

    /// Replaces the value of the first `name` line, or appends the header if absent.
    pub fn set_header(&mut self, name: &str, value: impl Into<Bytes>) {
        let hn = HeaderName::from_bytes(name.as_bytes());
        let value = value.into();
        self.touched = true;
        for idx in self.matching(&hn) {
            if let Some(le) = self.lines.get_mut(idx)
                && !le.removed
            {
                le.replace = Some(value);
                le.removed_values = 0;
                return;
            }
        }
        self.appends.push((name.to_owned(), value));
    }

    /// Removes every line with this name.
    pub fn remove_header(&mut self, name: &HeaderName) {
        for idx in self.matching(name) {
            if let Some(le) = self.lines.get_mut(idx) {
                le.removed = true;
                self.touched = true;
            }
        }
    }

    /// Produces the edited message. Bytes after the body (ignored datagram tail) are dropped.
    pub fn finish(self) -> Bytes {
        let msg = self.msg;
        let buf = &msg.buf;
        if !self.touched {
            return msg.message_bytes();
        }
        let extra: usize = self
            .prepends
            .iter()
            .chain(&self.appends)
            .chain(
                self.lines
                    .iter()
                    .flat_map(|l| l.before.iter().chain(&l.after)),
            )
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
            + self.request_uri.as_ref().map_or(0, Bytes::len);
        let mut out = BytesMut::with_capacity(msg.body.end + extra);
        let put = |out: &mut BytesMut, r: std::ops::Range<usize>| {
            out.put_slice(buf.get(r).unwrap_or_default());
        };
        // Start line.
        match (&msg.start, &self.request_uri) {
            (StartLine::Request { uri, .. }, Some(new)) => {
                put(&mut out, 0..uri.start);
                out.put_slice(new);
                put(&mut out, uri.end..msg.headers_start);
            }
            _ => put(&mut out, 0..msg.headers_start),
        }
        for (n, v) in self.prepends.iter().rev() {
            put_line(&mut out, n, v);
        }
        let mut run_start = msg.headers_start;
        for (idx, (e, le)) in msg.headers.iter().zip(&self.lines).enumerate() {
            let (ls, lend) = (e.line_start as usize, e.line_end as usize);
            if !le.before.is_empty() {
                put(&mut out, run_start..ls);
                run_start = ls;
                for (n, v) in &le.before {
                    put_line(&mut out, n, v);
                }
            }
            if le.removed {
                put(&mut out, run_start..ls);
                run_start = lend;
            } else if let Some(v) = &le.replace {
                put(&mut out, run_start..e.value_start as usize);
                out.put_slice(v);
                run_start = e.value_end as usize;
            } else if le.removed_values > 0 {
                let ranges = self.value_ranges(idx);
                if let Some(keep) = ranges.get(le.removed_values) {
                    put(&mut out, run_start..e.value_start as usize);
                    run_start = keep.start;
                }
            }
            if !le.after.is_empty() {
                if !le.removed {
                    put(&mut out, run_start..lend);
                    run_start = lend;
                }
                for (n, v) in &le.after {
                    put_line(&mut out, n, v);
                }
            }
        }
        put(&mut out, run_start..msg.headers_end);
        for (n, v) in &self.appends {
            put_line(&mut out, n, v);
        }
        put(&mut out, msg.headers_end..msg.body.end);
        out.freeze()
    }
}

fn put_line(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}
