//! Small SIP helpers for the agents: the bits of a header value they need (RFC 3261 §20.10
//! name-addr), and the dialog state a UAC keeps after a 2xx to INVITE (RFC 3261 §12.1.2).

use serde::Serialize;
use sipmesh_protocol::{HeaderName, Message};

/// The URI inside a name-addr (`"Bob" <sip:bob@h>;tag=1` → `sip:bob@h`), or an addr-spec
/// without its header parameters.
pub fn uri_of(value: &str) -> &str {
    let value = value.trim();
    match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => value.get(open + 1..close).unwrap_or(value),
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// Every value of header `name` in `msg`, comma-separated values split.
pub fn values(msg: &Message, name: &HeaderName) -> Vec<String> {
    msg.header_values(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Whether a binding-query answer lists `contact` (compared on the URI, case-insensitively on
/// the whole text: the registrar may reorder parameters but keeps user and host).
pub fn lists_contact(msg: &Message, contact: &str) -> bool {
    let wanted = contact.to_ascii_lowercase();
    values(msg, &HeaderName::Contact)
        .iter()
        .any(|v| uri_of(v).to_ascii_lowercase().starts_with(&wanted))
}

/// The UAC side of an established dialog (RFC 3261 §12.1.2).
#[derive(Debug, Clone, Serialize)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// Our From (with tag).
    pub local: String,
    /// The peer's To (with its tag).
    pub remote: String,
    /// The route set: the 2xx's Record-Route values, reversed.
    pub route_set: Vec<String>,
    /// The peer's Contact URI.
    pub remote_target: String,
    /// The caller's agent index.
    pub caller: usize,
    /// The callee's agent index.
    pub callee: usize,
    /// The callee's connection generation when the call was answered: a stream callee whose
    /// connection has changed since is no longer reachable through this dialog.
    pub callee_generation: u64,
    /// The node the INVITE entered at.
    pub entry: usize,
}

impl Dialog {
    /// Builds the dialog from a 2xx to our INVITE; `None` when the answer lacks a To tag or a
    /// Contact.
    pub fn from_answer(
        answer: &Message,
        local: String,
        caller: usize,
        callee: usize,
        callee_generation: u64,
        entry: usize,
    ) -> Option<Self> {
        let remote = answer
            .header(&HeaderName::To)
            .and_then(|h| h.value_str())
            .map(str::to_owned)?;
        answer.to_tag().ok().flatten()?;
        let target = values(answer, &HeaderName::Contact).into_iter().next()?;
        let mut route_set = values(answer, &HeaderName::RecordRoute);
        route_set.reverse();
        Some(Self {
            call_id: answer.call_id().ok()?.to_owned(),
            local,
            remote,
            route_set,
            remote_target: uri_of(&target).to_owned(),
            caller,
            callee,
            callee_generation,
            entry,
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn uri_of_strips_brackets_and_params() {
        assert_eq!(
            uri_of("\"Bob\" <sip:bob@h:5;transport=tcp>;tag=1"),
            "sip:bob@h:5;transport=tcp"
        );
        assert_eq!(uri_of(" sip:bob@h;expires=3"), "sip:bob@h");
    }

    #[test]
    fn dialog_from_2xx_reverses_the_record_route() {
        let answer = Message::parse(Bytes::from_static(
            b"SIP/2.0 200 OK\r\n\
              Via: SIP/2.0/UDP 127.0.0.1:5998;branch=z9hG4bKuac\r\n\
              Record-Route: <sip:b;lr>, <sip:a;lr>\r\n\
              From: <sip:alice@d>;tag=a1\r\nTo: <sip:bob@d>;tag=b1\r\nCall-ID: c9\r\n\
              CSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:7000>\r\n\
              Content-Length: 0\r\n\r\n",
        ))
        .expect("parses");
        let d = Dialog::from_answer(&answer, "<sip:alice@d>;tag=a1".into(), 1, 2, 0, 0)
            .expect("dialog");
        assert_eq!(d.route_set, ["<sip:a;lr>", "<sip:b;lr>"]);
        assert_eq!(d.remote_target, "sip:bob@127.0.0.1:7000");
        assert_eq!(d.call_id, "c9");
        assert!(lists_contact(&answer, "sip:bob@127.0.0.1:7000"));
        assert!(!lists_contact(&answer, "sip:carol@127.0.0.1:7000"));
    }
}
