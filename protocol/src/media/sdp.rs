//! SDP bodies in SIP messages (RFC 3264 offer/answer carried per RFC 3261 §13.2.1, §20.15).

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{Editor, Message, ParseError};

/// Why a body could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum SdpError {
    /// The edited message has no header/body separator (cannot happen for a parsed message).
    #[error("message has no end of headers")]
    NoHeaderEnd,
    /// The rewritten message did not parse back.
    #[error("rewritten message does not parse: {0}")]
    Reparse(#[from] ParseError),
}

/// True when `msg` carries an SDP body (`Content-Type: application/sdp`, non-empty body).
/// Multipart bodies are not looked into.
pub fn has_sdp(msg: &Message) -> bool {
    let sdp_type = msg.content_type().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    });
    sdp_type && !msg.body().is_empty()
}

/// A copy of `msg` with `body` instead of its body and a matching Content-Length
/// (RFC 3261 §20.14). Every other byte is kept.
pub fn replace_body(msg: &Message, body: &Bytes) -> Result<Message, SdpError> {
    let mut e = Editor::new(msg);
    e.set_header("Content-Length", body.len().to_string());
    let head = e.finish();
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(SdpError::NoHeaderEnd)?
        + 4;
    let mut out = BytesMut::with_capacity(end + body.len());
    out.put_slice(head.get(..end).ok_or(SdpError::NoHeaderEnd)?);
    out.put_slice(body);
    Ok(Message::parse(out.freeze())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 10\r\n\
\r\n\
v=0\r\no=x\r\n";

    #[test]
    fn spots_sdp_and_replaces_it_with_its_length() {
        let m = Message::parse(Bytes::from_static(INVITE.as_bytes())).unwrap();
        assert!(has_sdp(&m));
        let new = Bytes::from_static(b"v=0\r\nc=IN IP4 127.0.0.1\r\n");
        let r = replace_body(&m, &new).unwrap();
        assert_eq!(r.body(), new);
        assert_eq!(
            r.content_length().unwrap(),
            Some(u32::try_from(new.len()).unwrap())
        );
        assert_eq!(r.call_id().unwrap(), "c1");
    }

    #[test]
    fn no_body_or_other_type_is_not_sdp() {
        let other = INVITE.replace("application/sdp", "text/plain");
        let m = Message::parse(Bytes::from(other)).unwrap();
        assert!(!has_sdp(&m));
        let empty = INVITE
            .replace("Content-Length: 10", "Content-Length: 0")
            .replace("v=0\r\no=x\r\n", "");
        let m = Message::parse(Bytes::from(empty)).unwrap();
        assert!(!has_sdp(&m));
    }
}
