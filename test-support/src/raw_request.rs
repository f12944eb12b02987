//! A builder for hand-made SIP requests, well formed by default so a test can break exactly one
//! thing (drop a header, change the version, lie in Content-Length) and assert the answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes the requests of one test process (branch, tags, Call-ID).
static SEQ: AtomicU64 = AtomicU64::new(1);

/// The transport named in a request's Via (RFC 3261 §18.2.1 `sent-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViaTransport {
    /// `SIP/2.0/UDP`.
    Udp,
    /// `SIP/2.0/TCP`.
    Tcp,
}

impl ViaTransport {
    /// The token as written in a Via.
    pub fn token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        }
    }

    /// The `transport=` URI parameter value.
    pub fn param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// A SIP request under construction.
///
/// [`RawRequest::new`] fills in a top Via (with `rport` and a fresh RFC 3261 branch), Max-Forwards
/// 70, From with a tag, To, a fresh Call-ID and `CSeq: 1 <method>`; the Content-Length is
/// computed from the body unless a test sets it (or removes it) itself.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The method token.
    method: String,
    /// The Request-URI, verbatim.
    uri: String,
    /// The SIP-Version (`SIP/2.0` unless a test breaks it).
    version: String,
    /// Header fields in order.
    headers: Vec<(String, String)>,
    /// The body.
    body: Vec<u8>,
    /// Append `Content-Length: <body length>` when building (off once a test touches it).
    auto_length: bool,
}

impl RawRequest {
    /// A well-formed `method` request for `uri`, sent from `local` over `transport`; To is
    /// `<uri>` and From is `<sip:tester@local>`.
    pub fn new(method: &str, uri: &str, transport: ViaTransport, local: SocketAddr) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let to = if uri.starts_with("sip:") || uri.starts_with("sips:") {
            format!("<{uri}>")
        } else {
            "<sip:nobody@invalid>".to_owned()
        };
        Self {
            method: method.to_owned(),
            uri: uri.to_owned(),
            version: "SIP/2.0".to_owned(),
            headers: vec![
                (
                    "Via".to_owned(),
                    format!(
                        "SIP/2.0/{} {local};rport;branch=z9hG4bK-raw-{pid}-{n}",
                        transport.token()
                    ),
                ),
                ("Max-Forwards".to_owned(), "70".to_owned()),
                (
                    "From".to_owned(),
                    format!("<sip:tester@{local}>;tag=raw{pid}x{n}"),
                ),
                ("To".to_owned(), to),
                (
                    "Call-ID".to_owned(),
                    format!("raw-{pid}-{n}@{}", local.ip()),
                ),
                ("CSeq".to_owned(), format!("1 {method}")),
            ],
            body: Vec::new(),
            auto_length: true,
        }
    }

    /// A UDP REGISTER of `user@domain` binding `<sip:user@contact>` for 600 s, with CSeq `cseq`
    /// and the Call-ID `{call_id_prefix}-{user}@{contact ip}` (the same for every CSeq of that
    /// user, as a UA keeps it across refreshes).
    pub fn register(
        domain: &str,
        user: &str,
        contact: SocketAddr,
        call_id_prefix: &str,
        cseq: u32,
    ) -> Self {
        Self::new(
            "REGISTER",
            &format!("sip:{domain}"),
            ViaTransport::Udp,
            contact,
        )
        .set("To", format!("<sip:{user}@{domain}>"))
        .set("From", format!("<sip:{user}@{domain}>;tag=r{cseq}"))
        .set(
            "Call-ID",
            format!("{call_id_prefix}-{user}@{}", contact.ip()),
        )
        .set("CSeq", format!("{cseq} REGISTER"))
        .header("Contact", format!("<sip:{user}@{contact}>"))
        .header("Expires", "600")
    }

    /// Appends a header field (after the existing ones).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        if name.eq_ignore_ascii_case("Content-Length") {
            self.auto_length = false;
        }
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Replaces every field named `name` with one field (in the first one's place, or at the end).
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        if name.eq_ignore_ascii_case("Content-Length") {
            self.auto_length = false;
        }
        let value = value.into();
        match self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(at) => {
                if let Some(slot) = self.headers.get_mut(at) {
                    slot.1 = value;
                }
                let mut index = 0;
                self.headers.retain(|(n, _)| {
                    let keep = index == at || !n.eq_ignore_ascii_case(name);
                    index += 1;
                    keep
                });
            }
            None => self.headers.push((name.to_owned(), value)),
        }
        self
    }

    /// Removes every field named `name` (also stops the automatic Content-Length for that name).
    pub fn without(mut self, name: &str) -> Self {
        if name.eq_ignore_ascii_case("Content-Length") {
            self.auto_length = false;
        }
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Sets the SIP-Version of the Request-Line (e.g. `SIP/7.0`).
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.set("Content-Type", content_type)
    }

    /// The first value of header `name`, if set.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.uri, self.version).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if self.auto_length {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        SocketAddr::from(([127, 9, 9, 9], 5999))
    }

    #[test]
    fn default_request_is_complete() {
        let text = String::from_utf8(
            RawRequest::new("OPTIONS", "sip:127.9.9.8:5060", ViaTransport::Udp, local()).to_bytes(),
        )
        .expect("utf-8");
        assert!(text.starts_with("OPTIONS sip:127.9.9.8:5060 SIP/2.0\r\n"));
        for name in [
            "Via: SIP/2.0/UDP 127.9.9.9:5999;rport;branch=z9hG4bK-raw-",
            "Max-Forwards: 70",
            "To: <sip:127.9.9.8:5060>",
            "CSeq: 1 OPTIONS",
            "Content-Length: 0\r\n\r\n",
        ] {
            assert!(text.contains(name), "{name:?} missing in {text}");
        }
    }

    #[test]
    fn set_without_and_explicit_length() {
        let request = RawRequest::new("MESSAGE", "sip:bob@h", ViaTransport::Tcp, local())
            .without("Call-ID")
            .set("CSeq", "7 INVITE")
            .body("text/plain", "hello")
            .set("Content-Length", "500")
            .version("SIP/7.0");
        let text = String::from_utf8(request.to_bytes()).expect("utf-8");
        assert!(text.starts_with("MESSAGE sip:bob@h SIP/7.0\r\n"));
        assert!(!text.contains("Call-ID"));
        assert!(text.contains("CSeq: 7 INVITE\r\n"));
        assert_eq!(text.matches("Content-Length").count(), 1);
        assert!(text.ends_with("Content-Length: 500\r\n\r\nhello"));
        assert_eq!(request.header_value("cseq"), Some("7 INVITE"));
    }
}
