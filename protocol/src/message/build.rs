//! Building new messages: responses to a received request (RFC 3261 §8.2.6) and requests
//! originated by the proxy itself (ACK, CANCEL, OPTIONS keep-alives).

use bytes::{BufMut, Bytes, BytesMut};

use super::{Message, Method, StatusCode};
use crate::header::HeaderName;

/// A response under construction; see [`response_to`].
#[derive(Clone, Debug)]
pub struct ResponseBuilder {
    code: StatusCode,
    reason: String,
    /// Copied header lines (name, raw value), in order.
    copied: Vec<(&'static str, Bytes)>,
    to: Option<Bytes>,
    to_has_tag: bool,
    to_tag: Option<String>,
    extra: Vec<(String, Bytes)>,
    body: Option<(String, Bytes)>,
}

/// Starts a response to `req` (RFC 3261 §8.2.6.2): copies every Via (in order), From, To,
/// Call-ID and CSeq, and Timestamp for 100 Trying (§8.2.6.1). `Content-Length: 0` unless a
/// body is set.
pub fn response_to(req: &Message, code: StatusCode, reason: &str) -> ResponseBuilder {
    let mut copied = Vec::new();
    let slice = |v: &[u8]| req.buf.slice_ref(v);
    for h in req.headers() {
        let name = h.header_name();
        let canon = match name {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Timestamp if code == StatusCode::TRYING => "Timestamp",
            _ => continue,
        };
        copied.push((canon, slice(h.value)));
    }
    let to = req.header(&HeaderName::To).map(|h| slice(h.value));
    let to_has_tag = req.to().is_ok_and(|t| t.tag().is_some());
    ResponseBuilder {
        code,
        reason: reason.to_owned(),
        copied,
        to,
        to_has_tag,
        to_tag: None,
        extra: Vec::new(),
        body: None,
    }
}

impl ResponseBuilder {
    /// Adds `;tag=` to the To header unless it already has one (RFC 3261 §8.2.6.2).
    pub fn to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(tag.to_owned());
        self
    }

    /// Adds a header line (after the copied ones).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.extra
            .push((name.to_owned(), Bytes::copy_from_slice(value.as_ref())));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_owned(), body));
        self
    }

    /// Serialises the response.
    pub fn build(self) -> Bytes {
        let mut out = BytesMut::with_capacity(512);
        out.put_slice(b"SIP/2.0 ");
        out.put_slice(self.code.0.to_string().as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.reason.as_bytes());
        out.put_slice(b"\r\n");
        let mut to_done = false;
        for (name, value) in &self.copied {
            // Keep To next to From for readability.
            if *name == "Call-ID" && !to_done {
                self.put_to(&mut out);
                to_done = true;
            }
            line(&mut out, name, value);
        }
        if !to_done {
            self.put_to(&mut out);
        }
        for (n, v) in &self.extra {
            line(&mut out, n, v);
        }
        put_body(&mut out, self.body.as_ref());
        out.freeze()
    }

    fn put_to(&self, out: &mut BytesMut) {
        let Some(to) = &self.to else { return };
        out.put_slice(b"To: ");
        out.put_slice(to);
        if let (Some(tag), false) = (&self.to_tag, self.to_has_tag) {
            out.put_slice(b";tag=");
            out.put_slice(tag.as_bytes());
        }
        out.put_slice(b"\r\n");
    }
}

fn line(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// A request originated locally: method, Request-URI, headers in the order given, body.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    method: Method,
    uri: Bytes,
    headers: Vec<(String, Bytes)>,
    body: Option<(String, Bytes)>,
}

impl RequestBuilder {
    /// Starts a request.
    pub fn new(method: Method, uri: impl Into<Bytes>) -> Self {
        Self {
            method,
            uri: uri.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header line.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), Bytes::copy_from_slice(value.as_ref())));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_owned(), body));
        self
    }

    /// Serialises the request; Content-Length is always written.
    pub fn build(self) -> Bytes {
        let mut out = BytesMut::with_capacity(512);
        out.put_slice(self.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(&self.uri);
        out.put_slice(b" SIP/2.0\r\n");
        for (n, v) in &self.headers {
            line(&mut out, n, v);
        }
        put_body(&mut out, self.body.as_ref());
        out.freeze()
    }
}

/// Content-Type and Content-Length (0 without a body), the blank line, then the body.
fn put_body(out: &mut BytesMut, body: Option<&(String, Bytes)>) {
    match body {
        Some((ct, body)) => {
            line(out, "Content-Type", ct.as_bytes());
            line(out, "Content-Length", body.len().to_string().as_bytes());
            out.put_slice(b"\r\n");
            out.put_slice(body);
        }
        None => {
            line(out, "Content-Length", b"0");
            out.put_slice(b"\r\n");
        }
    }
}
