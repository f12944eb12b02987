//! A SIP message as raw tests read it back: the start line, the header fields in order and the
//! body, with just enough parsing to assert on a status code, a reason phrase or a header.
//!
//! The node's parser is what is under test, so this one is deliberately separate and lenient:
//! it splits lines (RFC 3261 §7), unfolds nothing, and maps the compact header names of
//! §7.3.3 to their long forms so lookups work either way.

use std::fmt;

/// One SIP message received by a raw test socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The first line without its CRLF (`SIP/2.0 200 OK`, `MESSAGE sip:bob@h SIP/2.0`).
    start_line: String,
    /// Header fields in arrival order, names as sent.
    headers: Vec<(String, String)>,
    /// Everything after the empty line.
    body: Vec<u8>,
}

impl RawMessage {
    /// Splits `bytes` into start line, headers and body; `None` when there is no complete
    /// header section (no empty line) or the start line is empty.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let end = find(bytes, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(bytes.get(..end)?);
        let body = bytes.get(end + 4..).unwrap_or_default().to_vec();
        let mut lines = head.split("\r\n");
        let start_line = lines.next()?.to_owned();
        if start_line.is_empty() {
            return None;
        }
        let headers = lines
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                Some((name.trim().to_owned(), value.trim().to_owned()))
            })
            .collect();
        Some(Self {
            start_line,
            headers,
            body,
        })
    }

    /// The start line.
    pub fn start_line(&self) -> &str {
        &self.start_line
    }

    /// The status code of a response (`None` for a request or a garbled status line).
    pub fn status(&self) -> Option<u16> {
        let rest = self.start_line.strip_prefix("SIP/2.0 ")?;
        rest.get(..3)?.parse().ok()
    }

    /// The reason phrase of a response (empty when there is none).
    pub fn reason(&self) -> &str {
        self.start_line
            .strip_prefix("SIP/2.0 ")
            .and_then(|rest| rest.get(4..))
            .unwrap_or_default()
    }

    /// The method of a request (`None` for a response).
    pub fn method(&self) -> Option<&str> {
        if self.start_line.starts_with("SIP/") {
            return None;
        }
        self.start_line.split(' ').next()
    }

    /// Whether this is a provisional (1xx) response.
    pub fn is_provisional(&self) -> bool {
        self.status().is_some_and(|code| code < 200)
    }

    /// The first value of header `name` (case-insensitive; compact forms match long ones).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).next()
    }

    /// Every value of header `name`, one per header line, in order.
    pub fn header_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let wanted = long_name(name).to_owned();
        self.headers
            .iter()
            .filter(move |(n, _)| long_name(n).eq_ignore_ascii_case(&wanted))
            .map(|(_, v)| v.as_str())
    }

    /// A response to this request with `code` and `reason` (RFC 3261 §8.2.6.2): every Via,
    /// From, To (with a tag added when it has none), Call-ID and CSeq copied, no body.
    pub fn reply(&self, code: u16, reason: &str) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {code} {reason}\r\n");
        for via in self.header_all("Via") {
            out.push_str(&format!("Via: {via}\r\n"));
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            let Some(value) = self.header(name) else {
                continue;
            };
            if name == "To" && !value.contains(";tag=") {
                out.push_str(&format!("To: {value};tag=rawuas\r\n"));
            } else {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out.into_bytes()
    }

    /// The header fields in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// A UAS response to this request (RFC 3261 §8.2.6.2, §12.1.1): its Vias, Record-Routes,
    /// From, Call-ID and CSeq copied, To tagged `to_tag` when it has no tag, Contact
    /// `contact`, and an optional SDP body. The reason phrase is always "OK".
    pub fn response(&self, code: u16, to_tag: &str, contact: &str, sdp: Option<&str>) -> String {
        let mut out = format!("SIP/2.0 {code} OK\r\n");
        for via in self.header_all("Via") {
            out.push_str(&format!("Via: {via}\r\n"));
        }
        for rr in self.header_all("Record-Route") {
            out.push_str(&format!("Record-Route: {rr}\r\n"));
        }
        for name in ["From", "Call-ID", "CSeq"] {
            if let Some(v) = self.header(name) {
                out.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        let to = self.header("To").unwrap_or_default();
        if to.contains(";tag=") {
            out.push_str(&format!("To: {to}\r\n"));
        } else {
            out.push_str(&format!("To: {to};tag={to_tag}\r\n"));
        }
        out.push_str(&format!("Contact: <{contact}>\r\n"));
        match sdp {
            Some(b) => out.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out
    }
}

impl fmt::Display for RawMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.start_line)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        if !self.body.is_empty() {
            writeln!(f)?;
            write!(f, "{}", String::from_utf8_lossy(&self.body))?;
        }
        Ok(())
    }
}

/// The long form of a compact header name (RFC 3261 §7.3.3, RFC 3515, RFC 3841); other names
/// are returned unchanged.
fn long_name(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "i" => "Call-ID",
        "m" => "Contact",
        "e" => "Content-Encoding",
        "l" => "Content-Length",
        "c" => "Content-Type",
        "f" => "From",
        "s" => "Subject",
        "k" => "Supported",
        "t" => "To",
        "v" => "Via",
        _ => name,
    }
}

/// The offset of the first `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response_with_compact_headers() {
        let msg = RawMessage::parse(
            b"SIP/2.0 420 Bad Extension\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
              Unsupported: foo, bar\r\nl: 0\r\n\r\n",
        )
        .expect("parses");
        assert_eq!(msg.status(), Some(420));
        assert_eq!(msg.reason(), "Bad Extension");
        assert_eq!(msg.method(), None);
        assert_eq!(msg.header("Via"), Some("SIP/2.0/UDP h;branch=z9hG4bKx"));
        assert_eq!(msg.header("unsupported"), Some("foo, bar"));
        assert_eq!(msg.header("Content-Length"), Some("0"));
        assert!(msg.body().is_empty());
    }

    #[test]
    fn parses_a_request_with_a_body() {
        let msg = RawMessage::parse(b"MESSAGE sip:bob@h SIP/2.0\r\nContent-Length: 2\r\n\r\nhi")
            .expect("parses");
        assert_eq!(msg.method(), Some("MESSAGE"));
        assert_eq!(msg.status(), None);
        assert_eq!(msg.body(), b"hi");
    }

    #[test]
    fn reply_copies_the_transaction_headers() {
        let request = RawMessage::parse(
            b"MESSAGE sip:bob@h SIP/2.0\r\nVia: SIP/2.0/UDP p1;branch=z9hG4bK1\r\n\
              v: SIP/2.0/UDP p2;branch=z9hG4bK2\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:bob@h>\r\n\
              Call-ID: c1\r\nCSeq: 5 MESSAGE\r\nContent-Length: 0\r\n\r\n",
        )
        .expect("parses");
        let reply = RawMessage::parse(&request.reply(200, "OK")).expect("reply parses");
        assert_eq!(reply.status(), Some(200));
        assert_eq!(reply.header_all("Via").count(), 2);
        assert_eq!(reply.header("To"), Some("<sip:bob@h>;tag=rawuas"));
        assert_eq!(reply.header("CSeq"), Some("5 MESSAGE"));
        assert_eq!(reply.header("Call-ID"), Some("c1"));
    }

    #[test]
    fn rejects_an_incomplete_head() {
        assert_eq!(RawMessage::parse(b"SIP/2.0 200 OK\r\nVia: x\r\n"), None);
        assert_eq!(RawMessage::parse(b"\r\n\r\n"), None);
    }
}
